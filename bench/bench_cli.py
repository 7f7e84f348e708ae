"""How fast ``dicomml --help`` answers, against the same parser built with every verb's options.

Run: ``python bench/bench_cli.py [--repeat 10]``. Each variant is a fresh interpreter:

* ``python -c pass`` (the interpreter's own start-up: the floor);
* ``dicomml --help`` (only the verb table: no verb module adds its options);
* ``dicomml --help`` with every verb's options built (the eager parser the CLI had before:
  it imported pydicom and the PACS layer);
* ``dicomml show --help`` (one verb's options).

Prints the median wall time of each in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = {
    "python -c pass": "pass",
    "dicomml --help": "import sys; from dicomml.cli import main; sys.argv=['dicomml', '--help'];"
                      " main()",
    "eager parser --help": "from dicomml.cli import build_parser; build_parser('*')"
                           ".parse_args(['--help'])",
    "dicomml show --help": "import sys; from dicomml.cli import main; main(['show', '--help'])",
}


def _time(code: str, repeat: int) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
        out.append(time.perf_counter() - t0)
    return statistics.median(out) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    for name, code in VARIANTS.items():
        print(f"{name:<24} {_time(code, args.repeat):8.0f} ms (median of {args.repeat})")


if __name__ == "__main__":
    main()
