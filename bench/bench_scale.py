"""Scale-out benchmark: ``dicomml.io.scan`` time and peak memory per executor and size.

Usage::

    python bench/bench_scale.py                                   # quick look: 300 and 1,000 files
    python bench/bench_scale.py --sizes 1000,10000,50000          # the full run (minutes)
    python bench/bench_scale.py --sizes 1000 --executors processes --no-readme --no-plot

What it does:

1. Generates one tree of small CT slices (``--rows`` x ``--rows``, default 32, noise-free,
   Explicit VR Little Endian) in ``--data``: the first series by
   :func:`dicomml.testing.write_ct_series`, every other one a byte copy whose Study,
   Series and SOP Instance UIDs are replaced by new UIDs of the same length, so every file
   is a distinct instance. The tree is generated once, for the largest size, and reused.
2. Each size is a folder of symbolic links to the first series folders of that tree
   (``scan`` follows links), so 1k, 10k and 50k share their files.
3. For every size and executor ("inprocess", "processes" with ``--workers``, "dask": a
   ``LocalCluster`` of ``--workers`` processes on 127.0.0.1), runs in a *fresh* Python
   process: create the executor (start-up timed apart), ``scan(root, db, executor=ex)``
   into a new Index (timed), close. The parent samples the RSS of that process plus all
   its children every 10 ms (psutil) for the peak. Page cache warm (the first 64 KiB of
   every file read once before).
4. Prints a Markdown table, writes it under ``## scale`` in ``bench/README.md``
   (``--no-readme`` to skip) and plots the curves into ``bench/scale.png`` (``--no-plot``).
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
LABELS = {"inprocess": "in-process", "processes": "{w} local processes",
          "dask": "Dask LocalCluster({w})"}


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


def measure(root: Path, db: Path, kind: str, workers: int) -> dict:
    import psutil

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(HERE.parent), str(root), str(db),
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
        raise RuntimeError(f"{kind} scan of {root} failed with status {proc.returncode}")
    res = json.loads(out.splitlines()[-1])
    res.update(peak_mib=peak / 2**20, wall_s=wall)
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    return res


# -- report ---------------------------------------------------------------------------------
def plot(results: list[dict], workers: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for kind in EXECUTORS:
        rows = sorted((r for r in results if r["kind"] == kind), key=lambda r: r["files"])
        if not rows:
            continue
        label = LABELS[kind].format(w=workers)
        x = [r["files"] for r in rows]
        ax1.plot(x, [r["scan_s"] for r in rows], marker="o", label=label)
        ax2.plot(x, [r["peak_mib"] for r in rows], marker="o", label=label)
    for ax, title, ylabel in ((ax1, "scan time (executor start-up excluded)", "seconds"),
                              (ax2, "peak RSS, process + workers", "MiB")):
        ax.set_xscale("log")
        ax.set_xlabel("files")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    ax1.set_yscale("log")
    fig.suptitle("dicomml.io.scan by executor")
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
    bad = set(kinds) - set(EXECUTORS)
    if bad or not sizes or min(sizes) < 1:
        ap.error(f"--executors must be among {EXECUTORS} and --sizes positive")

    t0 = time.perf_counter()
    tree = make_tree(args.data, max(sizes), args.rows, args.per_series)
    print(f"tree ready ({time.perf_counter() - t0:.1f} s): {tree}", file=sys.stderr)
    tmp = Path(tempfile.mkdtemp(prefix="dicomml-bench-scale-db-"))
    results = []
    try:
        for n in sizes:
            tier = make_tier(tree, args.data, n, args.per_series)
            warm(tier)
            for kind in kinds:
                r = measure(tier, tmp / f"{kind}-{n}.sqlite", kind, args.workers)
                r.update(kind=kind, files=n)
                if r["files_read"] != n:
                    raise RuntimeError(f"{kind}: scanned {r['files_read']} files, expected {n}")
                results.append(r)
                print(f"{n:>7} files  {kind:<10} scan {r['scan_s']:7.2f} s "
                      f"({n / r['scan_s']:6.0f} files/s)  start-up {r['startup_s']:5.2f} s  "
                      f"peak {r['peak_mib']:6.0f} MiB", file=sys.stderr)
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
        f"`python bench/bench_scale.py --sizes {','.join(map(str, sizes))} --workers {w}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; load average at the end "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}. Files: CT slices of "
        f"{args.rows}x{args.rows} (Explicit VR Little Endian), {args.per_series} per series, "
        "page cache warm. Each run is a fresh process and a fresh Index; *scan* excludes "
        "the executor's start-up (given apart; local processes are created with "
        "``preload=['dicomml.io.scanner']`` and ``start(wait=True)``); *peak* is the RSS "
        "of the process plus all its workers (Dask: scheduler and nannies run in the "
        "process itself).",
        "",
        "| files | executor | scan (s) | files/s | start-up (s) | peak RSS (MiB) |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(f"| {r['files']} | {LABELS[r['kind']].format(w=w)} | {r['scan_s']:.2f} | "
                     f"{r['files'] / r['scan_s']:.0f} | {r['startup_s']:.2f} | "
                     f"{r['peak_mib']:.0f} |")
    lines += ["", f"![scan time and peak memory by executor]({args.plot.name})", "",
              "The machine is shared with other jobs: figures are noisy; rerun for your own.",
              ""]
    section = "\n".join(lines)
    print(section)
    if not args.no_plot:
        plot(results, w, args.plot)
    if not args.no_readme:
        write_readme(section, args.readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
