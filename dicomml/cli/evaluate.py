"""``dicomml evaluate RUN_DIR``: metrics with patient-level 95% intervals, predictions, plots."""

from __future__ import annotations

import argparse
import sys

HELP = "evaluate a trained run: metrics with 95% CIs, predictions.csv, plots"
EXAMPLE = """example:
  dicomml evaluate runs/ich-001
  dicomml evaluate runs/ich-001 --data /data/external --labels external.csv --threshold youden

Writes RUN_DIR/metrics.json, RUN_DIR/predictions.csv and RUN_DIR/plots/*.png, and prints
ROC AUC with its interval and sensitivity/specificity per level (image, study_max,
study_mean). Exit status: 0 done, 1 done but some images could not be decoded, 2 error."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from dicomml.parallel import workers_argument

    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run folder 'dicomml train' wrote")
    parser.add_argument("--data", metavar="PATH", default=None,
                        help="evaluate new labelled data in this DICOM folder instead of the "
                             "run's test split (needs --labels)")
    parser.add_argument("--labels", metavar="CSV", default=None,
                        help="labels of --data, keyed like the run's labels")
    parser.add_argument("--split", default="test",
                        help="manifest split to evaluate (default: test)")
    parser.add_argument("--aggregation", nargs="+", default=["max", "mean"],
                        choices=["max", "mean"],
                        help="study-level aggregation(s) of image probabilities "
                             "(default: max mean)")
    parser.add_argument("--threshold", default="youden", metavar="T",
                        help="binary operating point: a number, 'youden' or "
                             "'sensitivity:0.9' (rules use the val split; default: youden)")
    parser.add_argument("--resamples", type=int, default=1000, metavar="N",
                        help="bootstrap resamples by patient (default: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N")
    parser.add_argument("--workers", type=workers_argument, default=None, metavar="N",
                        help="CPUs for the scan and the preprocessing (0: in this process; "
                             "default: every CPU)")
    parser.add_argument("--no-plots", action="store_true", help="do not write plots")
    parser.add_argument("--reports", action="store_true",
                        help="also write one DICOM SR per study (and Grad-CAM images of "
                             "positive studies) into RUN_DIR/reports/")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _threshold(value: str):
    try:
        return float(value)
    except ValueError:
        return value


def run(args) -> int:
    from dicomml.evaluate.evaluation import evaluate_run, headline

    metrics = evaluate_run(args.run_dir, data=args.data, labels=args.labels,
                           aggregation=tuple(args.aggregation),
                           threshold=_threshold(args.threshold), split=args.split,
                           n_resamples=args.resamples, seed=args.seed,
                           batch_size=args.batch_size, workers=args.workers,
                           plots=not args.no_plots, reports=args.reports,
                           progress=not args.no_progress)
    print(headline(metrics))
    for level, m in metrics.items():  # each level has its own operating point
        thr = m.get("threshold", {}) if isinstance(m, dict) else {}
        if thr.get("value") is not None:
            where = {"threshold_data": "on the validation split",
                     "evaluated": "on the evaluated data itself"}.get(thr.get("chosen_on"), "")
            print(f"{level}: operating point {thr['value']:.4g} ({thr['method']}"
                  + (f", chosen {where})" if where else ")"))
    print(f"wrote {args.run_dir}/metrics.json, predictions.csv"
          + (", plots/" if not args.no_plots else ""))
    bad = metrics["meta"].get("excluded_undecodable", 0)
    if bad:
        print(f"{bad} images could not be decoded and were left out", file=sys.stderr)
        return 1
    return 0
