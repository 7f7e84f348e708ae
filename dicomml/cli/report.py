"""``dicomml report RUN_DIR``: one self-contained HTML page of a run (``RUN_DIR/report.html``)."""

from __future__ import annotations

import argparse

HELP = "write RUN_DIR/report.html: data, config, curves, metrics, plots, a gallery with heatmaps"
EXAMPLE = """example:
  dicomml report runs/ich-001
  dicomml report runs/ich-001 --gallery 8 -o /tmp/ich-001.html

One HTML file that needs no network and no other file (pictures are embedded): the data
per split with the label balance and the inputs left out by reason, the configuration,
the training curves, the metrics with 95% intervals and the operating point, ROC,
precision-recall, calibration and confusion plots, and a gallery of the worst false
positives and false negatives and of true positives with Grad-CAM heatmaps and their
study's decision. Run 'dicomml evaluate RUN_DIR' first for the metrics and the gallery.
Exit status: 0 done, 2 error."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run folder 'dicomml train' wrote")
    parser.add_argument("-o", "--output", metavar="FILE", default=None,
                        help="the page to write (default: RUN_DIR/report.html)")
    parser.add_argument("--gallery", type=int, default=4, metavar="N",
                        help="images per gallery row: false positives, false negatives, "
                             "true positives (default 4; 0: no gallery)")
    parser.add_argument("--no-heatmaps", action="store_true",
                        help="gallery without Grad-CAM heatmaps (does not load TensorFlow)")


def run(args: argparse.Namespace) -> int:
    import os

    from dicomml.cli._common import require_output
    from dicomml.errors import ConfigError
    from dicomml.evaluate.report_page import REPORT_NAME, write_report

    if not os.path.isdir(args.run_dir):
        raise ConfigError(f"run folder {args.run_dir} does not exist: pass the folder "
                          "'dicomml train --out' wrote")
    out = args.output or os.path.join(args.run_dir, REPORT_NAME)
    require_output(out, suffixes=(".html", ".htm"), option="-o")
    path = write_report(args.run_dir, out, n_gallery=args.gallery,
                        heatmaps=not args.no_heatmaps)
    print(path)
    return 0
