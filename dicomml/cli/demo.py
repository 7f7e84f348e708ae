"""``dicomml demo [--out DIR]``: scan → train → evaluate → DICOM reports on ``sample_dicom/``."""

from __future__ import annotations

import argparse
import sys

HELP = "run the whole pipeline on the bundled sample_dicom/ export: scan, train, evaluate, SRs"
EXAMPLE = """example:
  dicomml demo
  dicomml demo --out /tmp/demo --epochs 2

Scans the sample export (sample_dicom/, or --data), trains the reference CNN on its head-CT
task with sample_dicom/train.toml, evaluates the held-out patients and writes, under DIR
(default ./dicomml-demo): index.sqlite, cache/, run/ (config.toml, model.keras, history.csv,
metrics.json, predictions.csv, plots/) and reports/ (one DICOM SR per test study, a Grad-CAM
Secondary Capture per positive study, predictions.csv, studies.csv). A few minutes on 2 CPU
cores. Exit status: 0 done, 1 done but some task images could not be decoded, 2 error."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from dicomml.demo import DEFAULT_OUT
    from dicomml.parallel import workers_argument

    parser.add_argument("--out", metavar="DIR", default=DEFAULT_OUT,
                        help=f"output folder (default: ./{DEFAULT_OUT}); never inside the export")
    parser.add_argument("--data", metavar="DIR", default=None,
                        help="the sample export (default: ./sample_dicom if present, else the "
                             "repository's copy)")
    parser.add_argument("--epochs", type=int, default=None, metavar="N",
                        help="override train.epochs of sample_dicom/train.toml")
    parser.add_argument("--workers", type=workers_argument, default=None, metavar="N",
                        help="CPUs to use at once (0: in this process; -1: every CPU; "
                             "default: the config's)")
    parser.add_argument("--resamples", type=int, default=1000, metavar="N",
                        help="bootstrap resamples by patient for the 95%% intervals "
                             "(default: 1000)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars or training progress on stderr")


def run(args) -> int:
    import os

    from dicomml.demo import run_demo, summary_lines
    from dicomml.errors import ConfigError

    if args.data is not None and not os.path.isdir(args.data):
        raise ConfigError(f"--data {args.data} is not a folder: pass the sample export "
                          "(sample_dicom/)")
    if args.epochs is not None and args.epochs < 1:
        raise ConfigError(f"--epochs must be at least 1. Received: epochs={args.epochs}")
    result = run_demo(args.out, data=args.data, epochs=args.epochs, workers=args.workers,
                      n_resamples=args.resamples, progress=not args.no_progress,
                      echo=lambda line: print(line, flush=True))
    for line in summary_lines(result):
        print(line)
    if not result.ok:
        print(f"dicomml demo: {result.n_failed} examples of the task could not be decoded "
              f"and were left out; see {result.run_dir}/failed.csv", file=sys.stderr)
        return 1
    return 0
