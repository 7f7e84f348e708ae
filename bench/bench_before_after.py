"""Scan and read speed of two source trees of dicomml, measured in the same run (issue 12).

Usage::

    git archive BASE_COMMIT dicomml | tar -x -C /tmp/base    # the "before" tree
    nice -n 5 python bench/bench_before_after.py --base /tmp/base --rounds 5

Each round runs, in a fresh process per tree and in alternating order (before, after,
after, before, ...; a loaded machine then slows both alike), on one generated export
(``--files`` CT slices 512x512, in series of 50, plus the same number of 64x64 slices):
``scan(workers=1)`` and ``scan(workers=2)`` of the whole export into a fresh Index
(process start-up excluded, worker start-up included), and ``read_image`` of every
512x512 file in the process (the fast path of native files). Prints the medians and the
ratios after / before (> 1: faster now) with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time, tempfile, glob, os
root, which = sys.argv[1], sys.argv[2]
from dicomml.io import read_image, scan
out = {}
for w in (1, 2):
    db = tempfile.mktemp(suffix=".sqlite")
    t = time.perf_counter(); r = scan(root, db, workers=w, progress=False)
    out[f"scan w={w}"] = r.files_read / (time.perf_counter() - t)
    os.remove(db)
paths = sorted(glob.glob(os.path.join(root, "big", "*", "*")))
t = time.perf_counter()
for p in paths:
    read_image(p)
out["read_image"] = len(paths) / (time.perf_counter() - t)
print(json.dumps(out))
"""


def _export(folder: Path, n: int) -> Path:
    if (folder / "done").exists():
        return folder
    from dicomml.testing import write_ct_series

    for k in range(max(1, n // 50)):
        write_ct_series(folder / "big" / f"s{k}", seed=k, n_slices=min(50, n), rows=512,
                        columns=512, noise=0.0)
        write_ct_series(folder / "small" / f"s{k}", seed=100 + k, n_slices=min(50, n),
                        rows=64, columns=64, noise=0.0)
    (folder / "done").write_text("")
    return folder


def _run(tree: Path, root: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run([sys.executable, "-c", CHILD, str(root), str(tree)], env=env,
                         capture_output=True, text=True, check=True, cwd=tempfile.gettempdir())
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, required=True, help="the 'before' source tree")
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--data", type=Path,
                    default=Path(tempfile.gettempdir()) / "dicomml-bench-before-after")
    args = ap.parse_args(argv)
    root = _export(args.data, args.files)
    trees = {"before": args.base.resolve(), "after": HERE}
    got: dict[str, list[dict]] = {"before": [], "after": []}
    load0 = os.getloadavg()
    for r in range(args.rounds):
        order = ("before", "after") if r % 2 == 0 else ("after", "before")
        for name in order:
            got[name].append(_run(trees[name], root))
    load1 = os.getloadavg()
    print(f"load average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end; "
          f"{args.rounds} rounds, {2 * args.files} files ({args.files} of 512x512)")
    print("| measure | before (files/s) | after (files/s) | after / before |")
    print("| --- | ---: | ---: | ---: |")
    for key in got["after"][0]:
        b = statistics.median(x[key] for x in got["before"])
        a = statistics.median(x[key] for x in got["after"])
        ratios = [x[key] / y[key] for x, y in zip(got["after"], got["before"])]
        print(f"| {key} | {b:.0f} | {a:.0f} | {statistics.median(ratios):.2f} "
              f"(rounds {min(ratios):.2f}..{max(ratios):.2f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
