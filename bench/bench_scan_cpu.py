"""CPU time per file of ``dicomml.io.scan``: the parent process and its forked workers apart.

Usage::

    python bench/bench_scan_cpu.py --files 4000 --rows 64 --repeat 5 [--dump rows.json]

Generates (or reuses) an export as ``bench/bench_scan.py`` does (``--rows`` x ``--rows``
CT slices, 100 per series), warms the page cache, and scans it ``--repeat`` times with 1
and with 2 workers into a fresh Index each time. The parent's CPU is
``time.process_time()``; the workers' is ``RUSAGE_CHILDREN`` (forked workers are children
of the parent and are waited for when the scan ends). Prints the medians per file and the
wall time. ``--dump`` writes the row count and SHA-256 of every table of the first
2-worker Index (and its schema), to compare the Index two versions of the code write.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import bench_scan  # noqa: E402


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _digest(db: Path) -> dict:
    con = sqlite3.connect(db)
    try:
        out = {}
        for table in ("instances", "files", "skipped", "series_summary", "dicomdir_refs"):
            rows = sorted(repr(x) for x in con.execute(f"SELECT * FROM {table}"))
            out[table] = (len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest())
        out["schema"] = sorted(x[0] or "" for x in con.execute("SELECT sql FROM sqlite_master"))
        return out
    finally:
        con.close()


def main(argv=None) -> int:
    from dicomml.io import scan

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "dicomml-bench-scan")
    ap.add_argument("--files", type=int, default=4000)
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dump", type=Path, default=None)
    args = ap.parse_args(argv)
    root = bench_scan.make_export(args.data / f"ct{args.rows}-{args.files}", args.files, 100,
                                  args.rows)
    bench_scan.warm(root)
    tmp = Path(tempfile.mkdtemp(prefix="dicomml-bench-cpu-"))
    for workers in (1, 2):
        runs = []
        for k in range(args.repeat):
            db = tmp / f"i{workers}-{k}.sqlite"
            p0, c0, t0 = time.process_time(), _children_cpu(), time.perf_counter()
            n = scan(root, db, workers=workers, progress=False).files_read
            wall = time.perf_counter() - t0
            runs.append(((time.process_time() - p0) * 1e6 / n,
                         (_children_cpu() - c0) * 1e6 / n, wall))
            if args.dump and workers == 2 and k == 0:
                args.dump.write_text(json.dumps(_digest(db), indent=1))
            for suffix in ("", "-wal", "-shm"):
                Path(str(db) + suffix).unlink(missing_ok=True)
        print(f"workers={workers}: parent {statistics.median(r[0] for r in runs):.1f} µs/file, "
              f"workers {statistics.median(r[1] for r in runs):.1f} µs/file, wall "
              f"{statistics.median(r[2] for r in runs) * 1e3:.0f} ms (median of {args.repeat})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
