"""Benchmark: 512×512 CT file → float32 224×224×3 three-window tensor.

Compares, in one run on the same files (warm page cache, one thread each):

* **baseline** - what a tutorial writes: ``pydicom.dcmread`` → ``pixel_array`` as float64 →
  rescale → per window ``np.clip(hu, c - w/2, c + w/2)`` and scale to [0, 1] →
  ``skimage.transform.resize(anti_aliasing=True)`` per channel → ``np.stack``;
* **MONAI** - ``LoadImage(reader="PydicomReader")`` + ``ScaleIntensityRange`` per window +
  ``Resize((224, 224))`` (MONAI's defaults), run by the interpreter of a separate virtual
  environment given with ``--monai-python PATH`` (MONAI and torch are not dicomml
  dependencies; ``bench/README.md`` says how to make it). Its default ``Resize`` mode is area
  averaging, not Gaussian + linear, so its difference to the baseline is a method
  difference (up to ~0.25 at sharp edges), not an error;
* **dicomml** - ``Pipeline.from_path`` (``dicomml.io.read_image`` + fused windows +
  separable sparse anti-aliased resize) with its **default** settings (DICOM LINEAR, the
  headline), and with ``voi_function="LINEAR_EXACT"``, which is the tutorial's
  ``(x - (c - w/2)) / w`` formula, so that both compute the same thing (the DICOM LINEAR
  default differs from the tutorial formula by up to ``0.5/(w-1)``).

The max |dicomml LINEAR_EXACT − baseline| must be ≤ 1/255. Every method makes one pass over
the files per round, the rounds interleaved (a burst of load from other jobs hits every
method alike); the figures are medians over the rounds, with the load average.

Usage::

    python bench/bench_preprocess.py                 # 32 files, 5 rounds
    python bench/bench_preprocess.py --files 4 --rounds 1   # quick check
    python bench/bench_preprocess.py --monai-python ~/monai-venv/bin/python
    python bench/bench_preprocess.py --write-readme  # also update bench/README.md

``--write-readme`` replaces only the ``## preprocess`` section of ``bench/README.md``.

Files come from :func:`dicomml.testing.write_ct_series` (head CT) in a temporary folder that
is removed afterwards.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WINDOWS = [(40.0, 80.0), (80.0, 200.0), (400.0, 1800.0)]   # brain, subdural, bone
SIZE = 224

MONAI_CHILD = r"""
import json, os, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from monai.transforms import LoadImage, ScaleIntensityRange, Resize
paths, out = json.loads(sys.argv[1]), sys.argv[2]
windows = [(40.0, 80.0), (80.0, 200.0), (400.0, 1800.0)]
load = LoadImage(reader="PydicomReader", image_only=True, ensure_channel_first=True)
scales = [ScaleIntensityRange(a_min=c - w / 2, a_max=c + w / 2, b_min=0.0, b_max=1.0,
                              clip=True) for c, w in windows]
resize = Resize((224, 224))
def one(p):
    img = load(p)                                  # (1, X, Y): PydicomReader swaps i/j
    chans = [resize(s(img)) for s in scales]
    return torch.cat(chans, 0).permute(2, 1, 0).numpy().astype(np.float32)   # (row, col, c)
one(paths[0])
print(json.dumps({"monai": __import__("monai").__version__, "torch": torch.__version__}),
      flush=True)
last = None
for line in sys.stdin:                             # one timed pass per "run" line
    t, c = time.perf_counter(), time.process_time()
    last = [one(p) for p in paths]
    print(json.dumps({"t": time.perf_counter() - t, "cpu": time.process_time() - c}),
          flush=True)
np.save(out, np.stack(last))
"""


MONAI_VENV = """MONAI's interpreter: make a virtual environment outside the repository and pass
its python with `--monai-python`:

```
python3 -m venv ~/monai-venv
~/monai-venv/bin/pip install TORCH_CPU_WHEEL monai pydicom numpy scikit-image
python bench/bench_preprocess.py --monai-python ~/monai-venv/bin/python --write-readme
```

`TORCH_CPU_WHEEL` is a CPU-only torch build (a `+cpu` wheel from the package index or a
wheel folder you use): a plain `pip install torch` on Linux pulls the CUDA build, gigabytes
that the benchmark does not use (it sets one torch thread and runs on the CPU).

Without `--monai-python` the MONAI row and column are left out (and the text says so)."""


def baseline(path: str) -> np.ndarray:
    """The tutorial way, on purpose: float64, per-window clip, skimage resize per channel."""
    import pydicom
    from skimage.transform import resize

    ds = pydicom.dcmread(path)
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    chans = []
    for c, w in WINDOWS:
        lo, hi = c - w / 2, c + w / 2
        img = np.clip(hu, lo, hi)
        img = (img - lo) / (hi - lo)
        chans.append(resize(img, (SIZE, SIZE), anti_aliasing=True))
    return np.stack(chans, axis=-1).astype(np.float32)


class _Monai:
    """MONAI in its own interpreter: started once (imports, warm-up), then one timed pass
    over the files per :meth:`run`, so that its rounds interleave with the others'."""

    def __init__(self, python: str | None, paths: list[str], tmp: str):
        self.proc, self.note, self.out = None, "", os.path.join(tmp, "monai.npy")
        if python is None:
            self.note = "MONAI not measured (pass --monai-python, see bench/README.md)"
            return
        if not Path(python).exists():
            self.note = f"MONAI not measured: --monai-python {python} does not exist"
            return
        self.proc = subprocess.Popen([python, "-c", MONAI_CHILD, json.dumps(paths), self.out],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, "PYTHONPATH": ""})
        line = self.proc.stdout.readline()
        if not line:
            self.note = f"MONAI run failed: {self.proc.stderr.read().strip().splitlines()[-1:]}"
            self.proc = None
            return
        info = json.loads(line)
        self.note = f"MONAI {info['monai']}, torch {info['torch']}"

    def run(self) -> tuple[float, float] | None:
        """(wall, CPU) seconds of one pass over the files."""
        if self.proc is None:
            return None
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        r = json.loads(self.proc.stdout.readline())
        return float(r["t"]), float(r["cpu"])

    def result(self) -> np.ndarray | None:
        if self.proc is None:
            return None
        self.proc.stdin.close()
        self.proc.wait(timeout=600)
        return np.load(self.out)


def _pass(fn, items) -> tuple[tuple[float, float], np.ndarray]:
    """((wall, CPU) seconds, outputs) of one pass."""
    t, c = time.perf_counter(), time.process_time()
    out = [fn(p) for p in items]
    return (time.perf_counter() - t, time.process_time() - c), np.stack(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=32, help="number of 512×512 CT files")
    ap.add_argument("--rounds", type=int, default=5,
                    help="interleaved timed passes (the median is reported)")
    ap.add_argument("--monai-python", metavar="PATH", default=None,
                    help="the python of a virtual environment with MONAI and torch")
    ap.add_argument("--write-readme", action="store_true",
                    help="replace the '## preprocess' section of bench/README.md")
    args = ap.parse_args(argv)

    from dicomml.io import read_image
    from dicomml.preprocess import Pipeline, PreprocessConfig
    from dicomml.testing import write_ct_series

    tmp = tempfile.mkdtemp(prefix="bench_preprocess_")
    monai = None
    try:
        paths = sorted(str(p) for p in write_ct_series(tmp + "/ct", seed=1, n_slices=args.files,
                                                       rows=512, columns=512, body="head"))
        n = len(paths)
        default = Pipeline(PreprocessConfig(windows=tuple(WINDOWS)))
        exact = Pipeline(PreprocessConfig(windows=tuple(WINDOWS), voi_function="LINEAR_EXACT"))
        images = [read_image(p) for p in paths]
        methods = {  # name -> (function, items)
            "baseline": (baseline, paths),
            "default": (default.from_path, paths),
            "exact": (exact.from_path, paths),
            "in-memory": (default, images),
        }
        for fn, items in methods.values():  # warm-up: imports, caches
            fn(items[0])
        monai = _Monai(args.monai_python, paths, tmp)
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in [*methods, "monai"]}
        outs: dict[str, np.ndarray] = {}
        for _ in range(args.rounds):
            for k, (fn, items) in methods.items():
                t, outs[k] = _pass(fn, items)
                times[k].append(t)
            t = monai.run()
            if t is not None:
                times["monai"].append(t)
        y_monai = monai.result()
        monai_note = monai.note
    finally:
        if monai is not None and monai.proc is not None and monai.proc.poll() is None:
            monai.proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    load = os.getloadavg()
    med = {k: statistics.median(w for w, _ in v) for k, v in times.items() if v}
    cpu = {k: statistics.median(c for _, c in v) for k, v in times.items() if v}
    y_base = outs["baseline"]

    def row(name, key, y):
        t, c = med[key], cpu[key]
        diff = "" if y is None else f"{np.abs(y - y_base).max():.2e}"
        vs_monai = (f"{med['monai'] / t:.1f}× | {cpu['monai'] / c:.1f}×" if "monai" in med
                    else " | ")
        return (f"| {name} | {n / t:.1f} | {1000 * t / n:.2f} | {1000 * c / n:.2f} | "
                f"{med['baseline'] / t:.1f}× | {cpu['baseline'] / c:.1f}× | {vs_monai} | "
                f"{diff} |")

    lines = [f"`python bench/bench_preprocess.py --files {n} --rounds {args.rounds}"
             f"{' --monai-python PATH' if 'monai' in med else ''}` on "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {n} synthetic head-CT "
             "files of 512×512 (12-bit, Explicit VR Little Endian) → float32 224×224×3 (brain "
             f"40/80, subdural 80/200, bone 400/1800); median of {args.rounds} interleaved "
             "rounds (one pass over the files per method per round) after a warm-up, warm page "
             "cache, one thread per method (OMP/OpenBLAS/torch threads = 1); Python "
             f"{platform.python_version()}, {os.cpu_count()} CPU cores **shared with other "
             f"jobs**, load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}. "
             f"{monai_note}.",
             "",
             "| method | slices/s | ms/slice | CPU ms/slice | vs baseline | vs baseline, "
             "CPU | vs MONAI | vs MONAI, CPU | max abs diff vs baseline |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
             row("**dicomml Pipeline.from_path, default settings (DICOM LINEAR)**", "default",
                 outs["default"]),
             row("baseline: pydicom + float64 clip/scale + skimage resize per channel",
                 "baseline", None)]
    if "monai" in med:
        lines.append(row("MONAI: LoadImage(PydicomReader) + ScaleIntensityRange + Resize",
                         "monai", y_monai))
    lines += [row("dicomml Pipeline.from_path (LINEAR_EXACT = tutorial formula)", "exact",
                  outs["exact"]),
              row("dicomml Pipeline on an in-memory Image (no file read), default settings",
                  "in-memory", outs["in-memory"])]
    text = "\n".join(lines)
    print(text)
    goal = np.abs(outs["exact"] - y_base).max() <= 1 / 255
    print(f"\nmax |dicomml LINEAR_EXACT - baseline| <= 1/255: {goal}", file=sys.stderr)
    if args.write_readme:
        _write_readme(text)
    return 0 if goal else 1


def _write_readme(text: str) -> None:
    from _readme import replace_section

    replace_section("preprocess", "Generated by `python bench/bench_preprocess.py "
                    "--write-readme` (issue 19 goals: the default settings ≥ 12× the tutorial "
                    "baseline and ≥ 10× MONAI; max difference of LINEAR_EXACT to the baseline "
                    "≤ 1/255).\n\n" + text + "\n\n" + MONAI_VENV)

if __name__ == "__main__":
    raise SystemExit(main())
