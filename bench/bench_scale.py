"""Scale-out benchmark: ``dicomml.io.scan`` and the tensor cache fill, time and peak memory
per executor and size.

Usage::

    python bench/bench_scale.py                                   # quick look: 300 and 1,000 files
    python bench/bench_scale.py --sizes 1000,10000,50000          # the full run (many minutes)
    python bench/bench_scale.py --sizes 1000 --executors processes --stages cache --no-readme

What it does:

1. Generates one tree of small CT slices (``--rows`` x ``--rows``, default 32, noise-free,
   Explicit VR Little Endian) in ``--data``: the first series by
   :func:`dicomml.testing.write_ct_series`, every other one a byte copy whose Study,
   Series and SOP Instance UIDs are replaced by new UIDs of the same length, so every file
   is a distinct instance. The tree is generated once, for the largest size, and reused.
2. Each size is a folder of symbolic links to the first series folders of that tree
   (``scan`` follows links), so 1k, 10k and 50k share their files.
3. Stage "scan": for every size and executor ("inprocess", "processes" with ``--workers``,
   "dask": a ``LocalCluster`` of ``--workers`` processes on 127.0.0.1), runs in a *fresh*
   Python process: create the executor (start-up timed apart), ``scan(root, db,
   executor=ex)`` into a new Index (timed), close. The parent samples the RSS of that
   process plus all its children every 10 ms (psutil) for the peak. Page cache warm (the
   first 64 KiB of every file read once before).
4. Stage "cache": the examples (every frame of the size's Index, scanned once beforehand,
   untimed) are preprocessed with the default ``PreprocessConfig`` (224x224x3, unit
   normalization → uint8 shards of 128 tensors) by ``TensorCache.fill`` into a new cache
   folder, again in a fresh process per executor with start-up timed apart; the cache is
   deleted after each run (50k tensors are 7.5 GB).
5. Prints Markdown tables, writes them under ``## scale`` in ``bench/README.md``
   (``--no-readme`` to skip), with the "Scaling out" notes, and plots the curves into
   ``bench/scale.png`` (``--no-plot``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from dicomml._atomic import atomic_write_bytes, atomic_write_text  # noqa: E402

EXECUTORS = ("inprocess", "processes", "dask")
STAGES = ("scan", "cache")
LABELS = {"inprocess": "in-process", "processes": "{w} local processes",
          "dask": "Dask LocalCluster({w})"}


SCALING_OUT = """### Scaling out

**Scan and preprocessing** take an executor (`dicomml.parallel`): in-process (`--workers 0`),
local processes (`--workers N`, crash-isolating: a decoder that aborts costs one file), a
Dask `LocalCluster` (`--dask-local N`) or a running Dask cluster (`--scheduler
tcp://HOST:8786`; its workers need dicomml installed and the same paths mounted). The
tensor cache is byte-identical whichever executor fills it (shards are named by their keys
and written atomically), so a cache filled on a cluster trains anywhere.

**Training** (`[train] strategy`, see `dicomml.train.trainer`):

* `"default"`: one device (the first GPU, else the CPU).
* `"mirrored"`: `tf.distribute.MirroredStrategy`, synchronous data parallelism over the GPUs
  of one machine (without a GPU, over logical CPU devices made with
  `tf.config.set_logical_device_configuration`, which is how the tests run it).
* `"multi_worker_mirrored"`: `tf.distribute.MultiWorkerMirroredStrategy`, one process per
  machine, each started with the same configuration and its own `TF_CONFIG`, e.g.
  `TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type":
  "worker", "index": 0}}' dicomml train --config train.toml --out runs/x` on host1 and
  `"index": 1` on host2. Worker 0 (the chief) writes the run folder; the others write into
  a temporary folder deleted at the end. Scan and fill the cache first (every worker must
  see the same files at the same paths).

`batch_size` is the **global** batch, split evenly across the replicas; the gradients are
summed across replicas and the loss scaled by 1/replicas, and each epoch's order depends only
on `(seed, epoch)`, so a distributed run follows the single-device run step for step: the
tests (`tests/train/test_distribute.py`: 2 logical CPUs; 2 local workers on 127.0.0.1)
find the final weights, loss history and predictions equal to 2e-8 (tolerance 1e-4
relative). Not identical across replica counts: `BatchNormalization` (per-replica
statistics unless `synchronized=True`), dropout masks and `[train] augment` draws. Keras 3
cannot run `fit` under `MultiWorkerMirroredStrategy` as released (tensorflow/tensorflow#72388);
`dicomml.train._compat` patches the two faulty steps for the duration of `fit`.
"""


# -- data -----------------------------------------------------------------------------------
def _same_length_uid(uid: str, n: int) -> str:
    """A new UID with as many characters as ``uid`` whose last digits carry ``n``."""
    head, _, last = uid.rpartition(".")
    width = min(len(last) - 1, 9)
    if width < 4:
        raise ValueError(f"UID {uid} is too short to derive copies from")
    return f"{head}.{last[:-width]}{n % 10**width:0{width}d}"


def _uids(data: bytes) -> dict[str, str]:
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return {k: str(getattr(ds, k)) for k in
            ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")}


def make_tree(data: Path, n_files: int, rows: int, per_series: int) -> Path:
    """Series folders ``s00000``... holding ``n_files`` distinct instances (reused)."""
    from dicomml.testing import write_ct_series

    tree = data / f"ct{rows}-per{per_series}"
    marker = tree / ".files"
    have = int(marker.read_text()) if marker.exists() else 0
    if have >= n_files:
        return tree
    base = tree / "s00000"
    if not base.exists():
        tree.mkdir(parents=True, exist_ok=True)
        write_ct_series(base, n_slices=per_series, rows=rows, columns=rows, seed=0, noise=0.0)
    files = sorted(base.iterdir())
    originals = [(f.name, f.read_bytes()) for f in files]
    uids = [_uids(d) for _, d in originals]
    n_series = -(-n_files // per_series)
    for k in range(max(1, have // per_series), n_series):
        folder = tree / f"s{k:05d}"
        if folder.exists():
            shutil.rmtree(folder)
        tmp = tree / f".tmp-s{k:05d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for j, ((name, data_), ids) in enumerate(zip(originals, uids)):
            for key in ("StudyInstanceUID", "SeriesInstanceUID"):
                data_ = data_.replace(ids[key].encode(), _same_length_uid(ids[key], k).encode())
            sop = ids["SOPInstanceUID"]
            data_ = data_.replace(sop.encode(), _same_length_uid(sop, k * per_series + j).encode())
            (tmp / name).write_bytes(data_)
        tmp.rename(folder)
    marker.write_text(str(n_series * per_series))
    return tree


def make_tier(tree: Path, data: Path, n_files: int, per_series: int) -> Path:
    """A folder of links to the first ``n_files`` instances of ``tree``."""
    tier = data / f"tier-{tree.name}-{n_files}"
    if tier.exists():
        shutil.rmtree(tier)
    tier.mkdir()
    full, rest = divmod(n_files, per_series)
    for k in range(full):
        os.symlink(tree / f"s{k:05d}", tier / f"s{k:05d}", target_is_directory=True)
    if rest:
        part = tier / f"s{full:05d}"
        part.mkdir()
        for f in sorted((tree / f"s{full:05d}").iterdir())[:rest]:
            os.symlink(f, part / f.name)
    return tier


def warm(root: Path) -> int:
    n = 0
    for folder, _dirs, files in os.walk(root, followlinks=True):
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                f.read(65536)
            n += 1
    return n


# -- one measurement in a fresh process ------------------------------------------------------
_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from dicomml.parallel import get_executor
from dicomml.io import scan
kind, workers = sys.argv[4], int(sys.argv[5])
t0 = time.perf_counter()
if kind == "processes":
    ex = get_executor(kind, workers=workers, preload=["dicomml.io.scanner"])
elif kind == "dask":
    ex = get_executor(kind, workers=workers)
else:
    ex = get_executor(kind)
ex.start(wait=True)
t1 = time.perf_counter()
r = scan(sys.argv[2], sys.argv[3], workers=workers, executor=ex, progress=False)
t2 = time.perf_counter()
ex.close()
print(json.dumps({"startup_s": t1 - t0, "scan_s": t2 - t1, "files_read": r.files_read,
                  "instances": r.summary.get("instances") if hasattr(r.summary, "get") else None,
                  "skipped": len(r.skipped)}))
"""


_CACHE_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import pandas as pd
from dicomml.parallel import get_executor
from dicomml.data.cache import TensorCache
from dicomml.preprocess import Pipeline, PreprocessConfig
kind, workers = sys.argv[4], int(sys.argv[5])
examples = pd.read_csv(sys.argv[2], dtype={"sop_instance_uid": str})
pipe = Pipeline(PreprocessConfig())
t0 = time.perf_counter()
if kind == "processes":
    ex = get_executor(kind, workers=workers,
                      preload=["dicomml.data.cache", "dicomml.preprocess", "dicomml.io"])
elif kind == "dask":
    ex = get_executor(kind, workers=workers)
else:
    ex = get_executor(kind)
ex.start(wait=True)
t1 = time.perf_counter()
rep = TensorCache.for_pipeline(sys.argv[3], pipe).fill(examples, pipe, executor=ex,
                                                        progress=False)
t2 = time.perf_counter()
ex.close()
print(json.dumps({"startup_s": t1 - t0, "scan_s": t2 - t1, "files_read": rep.computed,
                  "failed": len(rep.failed), "shards": rep.shards_written}))
"""


def examples_csv(root: Path, out: Path) -> int:
    """Scan ``root`` in this process (untimed) and write its image frames to ``out``."""
    from dicomml.data.slices import SliceSelection, select_slices
    from dicomml.io import open_index, scan

    db = out.with_suffix(".sqlite")
    scan(root, db, executor=None, workers=0, progress=False)
    with open_index(db=db) as index:
        inst = index.instances()
    ex = select_slices(inst[inst["is_image"].astype(bool)], SliceSelection("all"))
    ex[["path", "sop_instance_uid", "frame"]].to_csv(out, index=False)
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    return len(ex)


def _du(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def measure(root: Path, db: Path, kind: str, workers: int, stage: str = "scan") -> dict:
    """One run of ``stage`` in a fresh process. For "cache", ``root`` is the examples CSV
    and ``db`` the cache folder (deleted afterwards; its size is reported)."""
    import psutil

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    t0 = time.perf_counter()
    child = _CHILD if stage == "scan" else _CACHE_CHILD
    proc = subprocess.Popen([sys.executable, "-c", child, str(HERE.parent), str(root), str(db),
                             kind, str(workers)], stdout=subprocess.PIPE, env=env)
    p = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            procs = [p] + p.children(recursive=True)
            peak = max(peak, sum(q.memory_info().rss for q in procs if q.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.01)
    out = proc.communicate()[0].decode().strip()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} {stage} of {root} failed with status {proc.returncode}")
    res = json.loads(out.splitlines()[-1])
    res.update(peak_mib=peak / 2**20, wall_s=wall, stage=stage)
    if stage == "cache":
        res["size_mib"] = _du(db) / 2**20
        shutil.rmtree(db, ignore_errors=True)
    else:
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
    return res


# -- report ---------------------------------------------------------------------------------
def plot(results: list[dict], workers: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [st for st in STAGES if any(r.get("stage", "scan") == st for r in results)]
    fig, axes = plt.subplots(len(stages), 2, figsize=(10, 4 * len(stages)), squeeze=False)
    titles = {"scan": "scan (dicomml.io.scan)", "cache": "cache fill (TensorCache.fill)"}
    for (ax1, ax2), stage in zip(axes, stages):
        for kind in EXECUTORS:
            rows = sorted((r for r in results if r["kind"] == kind
                           and r.get("stage", "scan") == stage), key=lambda r: r["files"])
            if not rows:
                continue
            label = LABELS[kind].format(w=workers)
            x = [r["files"] for r in rows]
            ax1.plot(x, [r["scan_s"] for r in rows], marker="o", label=label)
            ax2.plot(x, [r["peak_mib"] for r in rows], marker="o", label=label)
        for ax, what, ylabel in ((ax1, "time (executor start-up excluded)", "seconds"),
                                 (ax2, "peak RSS, process + workers", "MiB")):
            ax.set_xscale("log")
            ax.set_xlabel("files")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{titles[stage]}: {what}", fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
        ax1.set_yscale("log")
    fig.suptitle("dicomml scale-out by executor")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def write_readme(section: str, path: Path) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(r"^## scale\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda m: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    atomic_write_text(path, text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path,
                    default=Path(tempfile.gettempdir()) / "dicomml-bench-scale",
                    help="where the generated files live (reused between runs)")
    ap.add_argument("--sizes", default="300,1000",
                    help="comma-separated file counts (full run: 1000,10000,50000)")
    ap.add_argument("--executors", default=",".join(EXECUTORS))
    ap.add_argument("--stages", default=",".join(STAGES),
                    help="comma-separated: scan, cache (default both)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rows", type=int, default=32, help="image size (default 32x32)")
    ap.add_argument("--per-series", type=int, default=100)
    ap.add_argument("--readme", type=Path, default=HERE / "README.md",
                    help="Markdown file whose '## scale' section is (re)written")
    ap.add_argument("--plot", type=Path, default=HERE / "scale.png", help="PNG of the curves")
    ap.add_argument("--no-readme", action="store_true")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--clean", action="store_true", help="delete --data at the end")
    args = ap.parse_args(argv)
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    kinds = [k.strip() for k in args.executors.split(",") if k.strip()]
    stages = [k.strip() for k in args.stages.split(",") if k.strip()]
    bad = set(kinds) - set(EXECUTORS)
    if bad or not sizes or min(sizes) < 1 or not stages or set(stages) - set(STAGES):
        ap.error(f"--executors must be among {EXECUTORS}, --stages among {STAGES} and "
                 "--sizes positive")

    t0 = time.perf_counter()
    tree = make_tree(args.data, max(sizes), args.rows, args.per_series)
    print(f"tree ready ({time.perf_counter() - t0:.1f} s): {tree}", file=sys.stderr)
    tmp = Path(tempfile.mkdtemp(prefix="dicomml-bench-scale-db-"))
    results = []
    try:
        for n in sizes:
            tier = make_tier(tree, args.data, n, args.per_series)
            warm(tier)
            for stage in stages:
                src = tier
                if stage == "cache":
                    src = tmp / f"examples-{n}.csv"
                    if examples_csv(tier, src) != n:
                        raise RuntimeError(f"the Index of {tier} does not hold {n} images")
                for kind in kinds:
                    out = tmp / (f"{kind}-{n}.sqlite" if stage == "scan" else f"cache-{kind}-{n}")
                    r = measure(src, out, kind, args.workers, stage)
                    r.update(kind=kind, files=n)
                    if r["files_read"] != n:
                        raise RuntimeError(f"{kind} {stage}: {r['files_read']} files done, "
                                           f"expected {n}")
                    results.append(r)
                    print(f"{n:>7} files  {stage:<5} {kind:<10} {r['scan_s']:7.2f} s "
                          f"({n / r['scan_s']:6.0f} files/s)  start-up {r['startup_s']:5.2f} s"
                          f"  peak {r['peak_mib']:6.0f} MiB", file=sys.stderr)
            shutil.rmtree(tier)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if args.clean:
            shutil.rmtree(args.data, ignore_errors=True)

    w = args.workers
    load = os.getloadavg()
    lines = [
        "## scale",
        "",
        f"`python bench/bench_scale.py --sizes {','.join(map(str, sizes))} --workers {w} "
        f"--stages {','.join(stages)}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; load average at the end "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}. Files: CT slices of "
        f"{args.rows}x{args.rows} (Explicit VR Little Endian), {args.per_series} per series, "
        "page cache warm. Scan: each run is a fresh process and a fresh Index; *scan* excludes "
        "the executor's start-up (given apart; local processes are created with "
        "``preload=['dicomml.io.scanner']`` and ``start(wait=True)``); *peak* is the RSS "
        "of the process plus all its workers (Dask: scheduler and nannies run in the "
        "process itself).",
    ]
    scan_rows = [r for r in results if r["stage"] == "scan"]
    if scan_rows:
        lines += ["", "| files | executor | scan (s) | files/s | start-up (s) | peak RSS (MiB) |",
                  "| ---: | --- | ---: | ---: | ---: | ---: |"]
    for r in scan_rows:
        lines.append(f"| {r['files']} | {LABELS[r['kind']].format(w=w)} | {r['scan_s']:.2f} | "
                     f"{r['files'] / r['scan_s']:.0f} | {r['startup_s']:.2f} | "
                     f"{r['peak_mib']:.0f} |")
    cache_rows = [r for r in results if r["stage"] == "cache"]
    if cache_rows:
        lines += [
            "",
            "Cache fill (`TensorCache.fill`, default preprocessing: 224x224x3, unit "
            "normalization, uint8 shards of 128 tensors; the examples come from an Index "
            "scanned beforehand; a new cache folder each run, deleted afterwards; local "
            "processes preload ``dicomml.data.cache``, ``dicomml.preprocess`` and "
            "``dicomml.io``). The three fills write byte-identical shards "
            "(``tests/data/test_cache_executors.py``).",
            "",
            "| executor | files | fill (s) | tensors/s | start-up (s) | peak RSS (MiB) | "
            "shards (MiB) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in cache_rows:
            lines.append(f"| {LABELS[r['kind']].format(w=w)} | {r['files']} | "
                         f"{r['scan_s']:.2f} | {r['files'] / r['scan_s']:.0f} | "
                         f"{r['startup_s']:.2f} | {r['peak_mib']:.0f} | {r['size_mib']:.0f} |")
    lines += ["", f"![time and peak memory by executor]({args.plot.name})", "",
              "The machine is shared with other jobs: figures are noisy; rerun for your own.",
              "", SCALING_OUT]
    section = "\n".join(lines)
    print(section)
    if not args.no_plot:
        plot(results, w, args.plot)
    if not args.no_readme:
        write_readme(section, args.readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
