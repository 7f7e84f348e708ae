"""``dicomml predict RUN_DIR PATH --out DIR``: predict new studies, write SRs and Grad-CAMs.

Only the series the run's input contract (``RUN_DIR/contract.json``) accepts are predicted;
every other series, and every image that cannot be given to the model, is listed in
``DIR/skipped.csv`` with the rule it failed (``--force`` predicts series outside the
contract too, and their SRs say so). ``--json`` prints the machine-readable summary.

Extending: another source of studies (e.g. ``--dicomweb URL --study UID``) adds its options
in :func:`add_arguments` and an entry in :data:`SOURCES` (a tuple, built once at import): a
function ``(args) -> int | None``
that handles the request when its options are given (returns the exit status) and returns
None otherwise. The local PATH is the fallback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

HELP = "predict new studies with a trained run: predictions.csv, one SR per study, Grad-CAMs"
EXAMPLE = """example:
  dicomml predict runs/ich-001 /data/incoming --out results/
  dicomml predict runs/ich-001 /data/incoming --out results/ --threshold 0.3 --no-sc
  dicomml predict runs/ich-001 index.sqlite --out results/ --json > results.json

PATH is a DICOM folder or file, or an Index database written by 'dicomml scan'. Only the
series the run's input contract (RUN_DIR/contract.json) accepts are predicted; every other
series and every image the model cannot see is listed in DIR/skipped.csv with its rule.
Writes DIR/predictions.csv, DIR/skipped.csv, DIR/SR_<StudyInstanceUID>.dcm (DICOM
Comprehensive 3D SR, TID 1500) for every study with a prediction, and for every positive
study DIR/GRADCAM_<StudyInstanceUID>.dcm (Secondary Capture) and, when the source has
plane geometry, DIR/PM_GRADCAM_<StudyInstanceUID>.dcm (Parametric Map). Source files are
never modified.
Exit status: 0 done, 1 done but something was skipped (see DIR/skipped.csv), 2 error."""

#: Skipped inputs listed on stderr before "... and N more (all in DIR/skipped.csv)".
SHOW_SKIPPED = 20



def add_arguments(parser: argparse.ArgumentParser) -> None:
    from dicomml.parallel import workers_argument

    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run folder 'dicomml train' wrote")
    parser.add_argument("path", metavar="PATH", nargs="?", default=None,
                        help="DICOM folder (or file) with the new studies")
    parser.add_argument("--out", metavar="DIR", required=True, help="output folder")
    parser.add_argument("--threshold", type=float, default=None, metavar="T",
                        help="decision threshold on the positive-class probability "
                             "(default: the run's study-level threshold from evaluate, "
                             "else 0.5)")
    parser.add_argument("--aggregation", default="max", choices=["max", "mean"],
                        help="study probability from its images (default: max)")
    parser.add_argument("--no-sr", action="store_true", help="do not write Structured Reports")
    parser.add_argument("--no-sc", action="store_true",
                        help="do not write Grad-CAM Secondary Captures")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N")
    parser.add_argument("--workers", type=workers_argument, default=None, metavar="N",
                        help="CPUs to use at once (0: in this process; default: every CPU)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--force", action="store_true",
                        help="also predict series outside the run's input contract (their "
                             "SRs say so); never non-images, segmentations or colour images "
                             "for a grayscale model")
    parser.add_argument("--json", action="store_true",
                        help="print the studies, series, decisions and skips as JSON on "
                             "stdout (instead of the text lines)")
    add_remote_arguments(parser)


def report(result, as_json: bool = False) -> int:
    """Print a result's studies and a summary of what was skipped; return the exit status.

    Text: one line per study on stdout, then the counts; on stderr the number of skips by
    rule and the first :data:`SHOW_SKIPPED` of them, with where the full list is.
    ``as_json``: :meth:`~dicomml.evaluate.prediction.PredictResult.to_dict` on stdout.
    """
    if as_json:
        import json

        from dicomml.report.tables import to_jsonable

        print(json.dumps(to_jsonable(result.to_dict()), indent=2))
    else:
        from dicomml.cli._common import plural

        for s in result.studies:
            state = "present" if s["present"] else "absent"
            forced = f", FORCED: {s['forced']}" if s.get("forced") else ""
            print(f"{s['study_instance_uid']}  {s['finding']}: {state} "
                  f"(p={s['probability']:.3f}, {plural(s['n_images'], 'image')}{forced})")
        print(f"{result.n_studies} studies; threshold {result.threshold:.4g}; "
              f"{len(result.sr_paths)} SR, {len(result.sc_paths)} Grad-CAM objects; "
              f"predictions: {result.predictions_csv}")
    if result.skipped:
        from collections import Counter

        counts = Counter(f"{s['level']} {s['rule']}" for s in result.skipped)
        where = result.skipped_csv or "skipped.csv"
        print(f"skipped {len(result.skipped)} inputs ("
              + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
              + f"); the full list with reasons: {where}", file=sys.stderr)
        for s in result.skipped[:SHOW_SKIPPED]:
            what = s["path"] or s["series_instance_uid"] or s["study_instance_uid"]
            print(f"  {what}: [{s['rule']}] {s['reason']}", file=sys.stderr)
        if len(result.skipped) > SHOW_SKIPPED:
            print(f"  ... and {len(result.skipped) - SHOW_SKIPPED} more (all in {where})",
                  file=sys.stderr)
        return 1
    if not result.n_studies:
        print("dicomml predict: no study in the input matched the run's inputs: nothing "
              "predicted", file=sys.stderr)
        return 1
    return 0


def run(args, sources: tuple[Callable, ...] | None = None) -> int:
    """``dicomml predict``; ``sources``: the sources tried before PATH (default
    :data:`SOURCES`)."""
    from dicomml.cli._common import require_output_dir, require_paths

    require_output_dir(args.out)
    for source in SOURCES if sources is None else sources:
        status = source(args)
        if status is not None:
            return int(status)
    if args.path is None:
        print("dicomml predict: error: give PATH (a DICOM folder or file)", file=sys.stderr)
        return 2
    require_paths([args.run_dir], "RUN_DIR")
    require_paths([args.path], "PATH")
    from dicomml.evaluate.prediction import predict

    result = predict(args.run_dir, args.path, args.out, threshold=args.threshold,
                     write_sr=not args.no_sr, write_sc=not args.no_sc,
                     aggregation=args.aggregation, batch_size=args.batch_size,
                     workers=args.workers, progress=not args.no_progress, force=args.force)
    return report(result, as_json=args.json)


# -- the ``dicomml predict --dicomweb URL --study UID`` source ------------------------------
def add_remote_arguments(parser) -> None:
    """Options of ``dicomml predict`` that predict a study on a PACS (see :func:`cli_source`).

    Adds ``--study UID``, ``--no-store`` and the PACS options of
    :func:`dicomml.pacs.connection.add_pacs_arguments` (``--dicomweb URL`` or ``--aet/--host/
    --port``, timeouts, retries).
    """
    from dicomml.pacs.connection import add_pacs_arguments

    parser.add_argument("--study", metavar="UID", default=None,
                        help="with --dicomweb (or --aet/--host/--port): predict this study "
                             "from the PACS and store its SR back into it")
    parser.add_argument("--no-store", action="store_true",
                        help="with --study: do not store the results back on the PACS")
    add_pacs_arguments(parser)


def pacs_source(args) -> int | None:
    """A :data:`SOURCES` entry: handle ``--study`` with a PACS, else None.

    The retrieved study goes to ``OUT/retrieved/``; the results to ``OUT/`` as for a local
    PATH, and the SR (and SCs) are stored into the same study unless ``--no-store``.
    """
    if not getattr(args, "study", None):
        return None
    from dicomml.pacs.connection import pacs_from_args

    from dicomml.pacs.remote import predict_remote

    with pacs_from_args(args) as pacs:
        res = predict_remote(args.run_dir, pacs, args.study, args.out, store=not args.no_store,
                             progress=not args.no_progress, threshold=args.threshold,
                             write_sr=not args.no_sr, write_sc=not args.no_sc,
                             aggregation=args.aggregation, batch_size=args.batch_size,
                             workers=args.workers, force=args.force)
    status = report(res.prediction, as_json=args.json)
    if res.stored is not None:
        print(f"stored {len(res.stored.stored)} result objects into study {args.study} on "
              f"{pacs.endpoint}", file=sys.stderr if args.json else sys.stdout)
    return status


#: Extra sources of studies, tried in order before the local PATH (see module docstring).
SOURCES: tuple[Callable, ...] = (pacs_source,)
