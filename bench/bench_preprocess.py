"""Benchmark: 512×512 CT file → float32 224×224×3 three-window tensor.

Compares, in one run on the same files (warm page cache, one thread each):

* **baseline** - what a tutorial writes: ``pydicom.dcmread`` → ``pixel_array`` as float64 →
  rescale → per window ``np.clip(hu, c - w/2, c + w/2)`` and scale to [0, 1] →
  ``skimage.transform.resize(anti_aliasing=True)`` per channel → ``np.stack``;
* **MONAI** - ``LoadImage(reader="PydicomReader")`` + ``ScaleIntensityRange`` per window +
  ``Resize((224, 224))`` (MONAI's defaults), run in the separate venv ``/work/bench-venv``
  (MONAI and torch are not dicomml dependencies). Its default ``Resize`` mode is area
  averaging, not Gaussian + linear, so its difference to the baseline is a method
  difference (up to ~0.25 at sharp edges), not an error;
* **dicomml** - ``Pipeline.from_path`` (``dicomml.io.read_image`` + fused windows +
  separable sparse anti-aliased resize), with ``voi_function="LINEAR_EXACT"``, which is
  the tutorial's ``(x - (c - w/2)) / w`` formula, so that both compute the same thing; the
  DICOM LINEAR default differs from the tutorial formula by up to ``0.5/(w-1)``.

The max |dicomml − baseline| must be ≤ 1/255.

Usage::

    python bench/bench_preprocess.py                 # 32 files, 3 rounds
    python bench/bench_preprocess.py --files 4 --rounds 1   # quick check
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
MONAI_PYTHON = Path("/work/bench-venv/bin/python")

MONAI_CHILD = r"""
import json, os, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from monai.transforms import LoadImage, ScaleIntensityRange, Resize
paths, rounds, out = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
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
times, last = [], None
for _ in range(rounds):
    t = time.perf_counter()
    last = [one(p) for p in paths]
    times.append(time.perf_counter() - t)
np.save(out, np.stack(last))
print(json.dumps({"times": times, "monai": __import__("monai").__version__,
                  "torch": torch.__version__}))
"""


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


def _time(fn, paths, rounds):
    fn(paths[0])                                   # warm-up (imports, caches)
    times, last = [], None
    for _ in range(rounds):
        t = time.perf_counter()
        last = [fn(p) for p in paths]
        times.append(time.perf_counter() - t)
    return min(times), np.stack(last)


def _monai(paths, rounds, tmp):
    if not MONAI_PYTHON.exists():
        return None, None, "MONAI venv /work/bench-venv not found"
    out = os.path.join(tmp, "monai.npy")
    r = subprocess.run([str(MONAI_PYTHON), "-c", MONAI_CHILD, json.dumps(paths), str(rounds),
                        out], capture_output=True, text=True, timeout=3600,
                       env={**os.environ, "PYTHONPATH": ""})
    if r.returncode != 0:
        return None, None, f"MONAI run failed: {r.stderr.strip().splitlines()[-1:]}"
    info = json.loads(r.stdout.strip().splitlines()[-1])
    return min(info["times"]), np.load(out), f"MONAI {info['monai']}, torch {info['torch']}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=32, help="number of 512×512 CT files")
    ap.add_argument("--rounds", type=int, default=3, help="timed passes (best is reported)")
    ap.add_argument("--write-readme", action="store_true",
                    help="replace the '## preprocess' section of bench/README.md")
    args = ap.parse_args(argv)

    from dicomml.preprocess import Pipeline, PreprocessConfig
    from dicomml.testing import write_ct_series

    tmp = tempfile.mkdtemp(prefix="bench_preprocess_")
    try:
        paths = sorted(str(p) for p in write_ct_series(tmp + "/ct", seed=1, n_slices=args.files,
                                                       rows=512, columns=512, body="head"))
        n = len(paths)
        exact = Pipeline(PreprocessConfig(windows=tuple(WINDOWS), voi_function="LINEAR_EXACT"))
        dicom = Pipeline(PreprocessConfig(windows=tuple(WINDOWS)))
        t_base, y_base = _time(baseline, paths, args.rounds)
        t_ours, y_ours = _time(exact.from_path, paths, args.rounds)
        t_lin, y_lin = _time(dicom.from_path, paths, args.rounds)
        from dicomml.io import read_image
        images = [read_image(p) for p in paths]
        t_comp, _ = _time(exact, images, args.rounds)
        t_monai, y_monai, monai_note = _monai(paths, args.rounds, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def row(name, t, y):
        diff = "" if y is None else f"{np.abs(y - y_base).max():.2e}"
        return (f"| {name} | {n / t:.1f} | {1000 * t / n:.2f} | {t_base / t:.1f}× | "
                f"{'' if t_monai is None else f'{t_monai / t:.1f}×'} | {diff} |")

    lines = [f"{n} synthetic head-CT files of 512×512 (12-bit, Explicit VR Little Endian) → "
             f"float32 224×224×3 (brain 40/80, subdural 80/200, bone 400/1800); best of "
             f"{args.rounds} passes, warm page cache, one thread per method "
             f"(OMP/OpenBLAS/torch threads = 1); Python {platform.python_version()}, "
             f"{os.cpu_count()} CPU cores **shared with other jobs** (figures are noisy). "
             f"{monai_note}.",
             "",
             "| method | slices/s | ms/slice | vs baseline | vs MONAI | max abs diff vs baseline |",
             "| --- | ---: | ---: | ---: | ---: | ---: |",
             row("baseline: pydicom + float64 clip/scale + skimage resize per channel",
                 t_base, None)]
    if t_monai is not None:
        lines.append(row("MONAI: LoadImage(PydicomReader) + ScaleIntensityRange + Resize",
                         t_monai, y_monai))
    lines += [row("dicomml Pipeline.from_path (LINEAR_EXACT = tutorial formula)", t_ours, y_ours),
              row("dicomml Pipeline.from_path (DICOM LINEAR, the default)", t_lin, y_lin),
              row("dicomml Pipeline on an in-memory Image (no file read)", t_comp, None)]
    text = "\n".join(lines)
    print(text)
    goal = np.abs(y_ours - y_base).max() <= 1 / 255
    print(f"\nmax |dicomml - baseline| <= 1/255: {goal}", file=sys.stderr)
    if args.write_readme:
        _write_readme(text)
    return 0 if goal else 1


def _write_readme(text: str) -> None:
    from dicomml._atomic import atomic_write_text

    readme = ROOT / "bench" / "README.md"
    old = readme.read_text(encoding="utf-8") if readme.exists() else "# Benchmarks\n"
    section = ("## preprocess\n\nGenerated by `python bench/bench_preprocess.py --write-readme` "
               "(goal: dicomml ≥ 5× the tutorial baseline and ≥ 2× MONAI, max difference to "
               "the baseline ≤ 1/255).\n\n" + text + "\n")
    lines = old.split("\n")
    start = next((i for i, ln in enumerate(lines) if ln.strip() == "## preprocess"), None)
    if start is None:
        new = old.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
                   len(lines))
        new = "\n".join(lines[:start]) + "\n" + section + ("\n" + "\n".join(lines[end:])
                                                           if end < len(lines) else "")
    atomic_write_text(readme, new)


if __name__ == "__main__":
    raise SystemExit(main())
