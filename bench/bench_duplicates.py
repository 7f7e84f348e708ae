"""Benchmark: a scan of an export that holds every file twice (the same study exported again).

Usage::

    python bench/bench_duplicates.py                     # 2,000 CT slices 512x512 + copies
    python bench/bench_duplicates.py --files 10000 --baseline ../old-checkout

A PACS export often holds the same instances twice (a study exported twice, a folder
copied into another): ``dicomml scan`` keeps the first file of each SOP Instance UID and
skips a byte-identical copy as a "duplicate copy" — after comparing the two files' whole
contents, since a file with other content under the same UID is a *conflicting duplicate*
that stays indexed. What it does, in one run:

1. Generates (or reuses) ``--files`` CT slices of 512x512 under ``--data`` with
   ``bench_scan.make_export`` (``orig/``) and a byte copy of every one of them (``copy/``);
   the tree scanned is their parent (``2 × --files`` files).
2. Warms the page cache: every byte of every file is read once (the comparison reads
   whole files, the scan only their headers).
3. In ``--repeat`` interleaved rounds (medians reported, with the load average):

   * *scan, no copies*: ``dicomml.io.scan(orig/, workers=2)`` — the same files without
     their copies;
   * *scan, every file twice*: ``dicomml.io.scan(parent, workers=2)``, and the same scan
     by another checkout of dicomml with ``--baseline DIR`` (the code before a change),
     each in a fresh process;
   * *read floor*: ``open().read()`` of both files of every pair (the bytes any exact
     check must read) and ``filecmp.cmp(shallow=False)`` of every pair (the standard
     library's comparison, 8 KiB at a time), in this process.

   The cost per duplicate is (scan with copies − scan without) / ``--files``.
4. Prints a Markdown section, written under ``## duplicates`` in ``bench/README.md``
   (``--no-readme`` to skip).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_scan import make_export  # noqa: E402
from benchlib import write_section  # noqa: E402

SCAN_CHILD = r"""
import json, os, sys, time
tree, root, db = sys.argv[1:4]
sys.path.insert(0, tree)
import dicomml
from dicomml.io import scan
t = time.perf_counter()
r = scan(root, db, workers=2, progress=False)
dt = time.perf_counter() - t
copies = sum(1 for _p, why in r.skipped if why.startswith("duplicate copy of "))
print(json.dumps({"t": dt, "read": r.files_read, "skipped": copies,
                  "conflicts": len(r.conflicts), "dicomml": dicomml.__file__}))
"""


def make_tree(data: Path, n_files: int) -> tuple[Path, list[tuple[str, str]]]:
    """``data/dups-N/orig`` (the export) and ``copy`` (a byte copy of each file); the
    (original, copy) pairs."""
    root = data / f"dups-{n_files}"
    orig = make_export(root / "orig", n_files, 100, 512)
    marker = root / "copy.complete"
    if not (marker.exists() and marker.read_text() == str(n_files)):
        shutil.rmtree(root / "copy", ignore_errors=True)
        shutil.copytree(orig, root / "copy")
        marker.write_text(str(n_files))
    pairs = []
    for folder, _dirs, files in os.walk(orig):
        for name in sorted(files):
            a = os.path.join(folder, name)
            pairs.append((a, os.path.join(root, "copy", os.path.relpath(a, orig))))
    return root, sorted(pairs)


def scan_once(tree: Path, root: Path, tmp: Path) -> dict:
    """One scan by the dicomml of ``tree`` in a fresh process into a fresh Index."""
    db = tmp / f"i-{time.perf_counter_ns()}.sqlite"
    out = subprocess.run([sys.executable, "-c", SCAN_CHILD, str(tree), str(root), str(db)],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": ""})
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    if not r["dicomml"].startswith(str(tree)):
        raise RuntimeError(f"the scan ran {r['dicomml']}, not the tree {tree}")
    return r


def read_pairs(pairs) -> float:
    t = time.perf_counter()
    for a, b in pairs:
        with open(a, "rb", buffering=0) as fa, open(b, "rb", buffering=0) as fb:
            fa.read()
            fb.read()
    return time.perf_counter() - t


def filecmp_pairs(pairs) -> float:
    filecmp.clear_cache()
    t = time.perf_counter()
    if not all(filecmp.cmp(a, b, shallow=False) for a, b in pairs):
        raise RuntimeError("a copy differs from its original")
    return time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path,
                    default=Path(tempfile.gettempdir()) / "dicomml-bench-dups")
    ap.add_argument("--files", type=int, default=2000,
                    help="CT slices of 512x512, each also copied (default 2000)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline", type=Path, default=None,
                    help="another checkout of dicomml scanned in the same rounds")
    ap.add_argument("--no-readme", action="store_true")
    args = ap.parse_args(argv)

    root, pairs = make_tree(args.data, args.files)
    n = len(pairs)
    read_pairs(pairs)  # warm: every byte once
    here = HERE.parent
    trees = [("this checkout", here)]
    if args.baseline is not None:
        trees.insert(0, ("baseline (--baseline)", args.baseline.resolve()))
    runs: dict[str, list[float]] = {}
    checks = {}
    tmp = Path(tempfile.mkdtemp(prefix="dicomml-bench-dups-"))
    try:
        for _ in range(args.repeat):
            r = scan_once(here, root / "orig", tmp)
            runs.setdefault("scan, no copies", []).append(r["t"])
            for label, tree in trees:
                r = scan_once(tree, root, tmp)
                runs.setdefault(f"scan, every file twice: {label}", []).append(r["t"])
                checks[label] = (r["read"], r["skipped"], r["conflicts"])
            runs.setdefault("read floor: both files of every pair", []).append(read_pairs(pairs))
            runs.setdefault("filecmp.cmp(shallow=False) of every pair", []).append(
                filecmp_pairs(pairs))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    for label, (read, skipped, conflicts) in checks.items():
        if skipped != n or conflicts != 0:
            raise RuntimeError(f"{label}: {skipped} skipped, {conflicts} conflicts; "
                               f"expected {n} duplicate copies")
    base = med["scan, no copies"]
    load = os.getloadavg()
    lines = [
        "## duplicates",
        "",
        f"`python bench/bench_duplicates.py --files {args.files} --repeat {args.repeat}"
        f"{' --baseline DIR' if args.baseline else ''}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; load average at the end "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}. {n} CT slices of 512x512 "
        f"({os.path.getsize(pairs[0][0]) / 1024:.0f} KiB each) and a byte copy of each "
        f"({2 * n} files scanned, {n} skipped as duplicate copies); page cache warm (every "
        f"byte read once); median of {args.repeat} interleaved rounds; scans with 2 workers, "
        "a fresh process and Index each.",
        "",
        "| run | s (median) | runs (s) | per duplicate (ms) |",
        "| --- | ---: | --- | ---: |",
    ]
    for label, values in runs.items():
        if label.startswith("scan, every"):
            per = (med[label] - base) / n * 1e3
        elif label == "scan, no copies":
            per = None
        else:
            per = med[label] / n * 1e3
        lines.append(f"| {label} | {med[label]:.2f} | {', '.join(f'{v:.2f}' for v in values)} "
                     f"| {'' if per is None else f'{per:.3f}'} |")
    lines += ["", "Per duplicate: for the scans, (scan with copies − scan without) / "
              f"{n}; for the floors, the time per pair.", ""]
    section = "\n".join(lines)
    print(section)
    if not args.no_readme:
        write_section(HERE / "README.md", "duplicates", section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
