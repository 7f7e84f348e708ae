"""Instructions per file of the scan's header reader, counted by valgrind (callgrind).

Wall-clock and CPU-time figures on a shared 2-vCPU machine move by ±30 % from one minute to
the next, which hides changes of 10–20 % in the reader. User-space instructions do not
depend on the load: this benchmark runs :func:`dicomml.io.scanner.scan_chunk` over the same
files under ``valgrind --tool=callgrind`` twice, once with ``--chunks`` passes and once with
none (imports, warm-up and the walk alone), and reports the difference per file. Kernel
time (open, read, close) is not counted; the CPU-time column of ``bench_scan.py`` has it.

    python bench/bench_scan_instructions.py --data DIR [--files 1000] [--chunks 2]
        [--baseline OTHER_CHECKOUT]

``--baseline`` counts another checkout (e.g. ``git worktree add /tmp/base main``) in the
same run. The export is a CT tree of ``bench_scan.py`` (512², 100 slices per series; made
under ``--data`` when missing).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

_CHILD = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
from dicomml.io.scanner import scan_chunk
items = []
for dp, dn, fn in sorted(os.walk(sys.argv[2])):
    for f in sorted(fn):
        p = os.path.join(dp, f)
        st = os.stat(p)
        items.append((p, st.st_size, st.st_mtime_ns))
items = items[:int(sys.argv[3])]
scan_chunk(items[:200])  # warm-up: the header layout of the series is learnt here
for _ in range(int(sys.argv[4])):
    rows = scan_chunk(items)
    assert all(r[0] == "row" for r in rows), "a file of the export was skipped"
"""


def _instructions(checkout: Path, data: Path, files: int, chunks: int) -> int:
    """The instructions callgrind counts in one child process."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(checkout)}
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         "-c", _CHILD, str(checkout), str(data), str(files), str(chunks)],
        env=env, capture_output=True, text=True, check=True)
    found = re.search(r"Collected\s*:\s*(\d+)", out.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{out.stderr[-2000:]}")
    return int(found.group(1))


def per_file(checkout: Path, data: Path, files: int, chunks: int) -> float:
    """Instructions per file of ``scan_chunk`` in ``checkout``."""
    full = _instructions(checkout, data, files, chunks)
    base = _instructions(checkout, data, files, 0)
    return (full - base) / (files * chunks)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True,
                    help="folder of bench_scan.py's exports (the CT tree is made if missing)")
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--chunks", type=int, default=2)
    ap.add_argument("--baseline", type=Path, default=None,
                    help="another checkout of dicomml, counted in the same run")
    args = ap.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(HERE.parent))
    sys.path.insert(0, str(HERE))
    from bench_scan import make_export

    n = max(args.files, 2000)
    tree = make_export(args.data / f"ct512-{n}", n, 100, 512)
    trees = [("this checkout", HERE.parent)]
    if args.baseline is not None:
        trees.insert(0, ("baseline " + str(args.baseline), args.baseline.resolve()))
    for name, checkout in trees:
        n = per_file(checkout, tree, args.files, args.chunks)
        print(f"{name}: {n / 1000:.1f} k instructions per file (scan_chunk, {args.files} "
              f"files x {args.chunks})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
