"""``dicomml push``: send DICOM files or folders to a PACS (STOW-RS or C-STORE)."""

from __future__ import annotations

import argparse
import sys

HELP = "send DICOM files or folders to a PACS (DICOMweb STOW-RS or DIMSE C-STORE)"
EXAMPLE = """example:
  dicomml push --dicomweb http://pacs:8042/dicom-web results/SR_1.2.3.dcm
  dicomml push --aet ORTHANC --host pacs --port 4242 results/

Each file goes in its own transfer syntax; files that are not DICOM are skipped and listed.
Exit status: 0 all stored, 1 stored but some inputs skipped, 2 error (unreachable, rejected
objects: their SOP Instance UIDs and status codes are printed)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", metavar="FILE_OR_DIR", nargs="+",
                        help="DICOM files or folders (searched recursively)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    from dicomml.pacs.connection import add_pacs_arguments

    add_pacs_arguments(parser)


def run(args) -> int:
    from dicomml.pacs.connection import pacs_from_args

    from dicomml.cli._common import require_paths

    require_paths(args.paths)
    with pacs_from_args(args) as pacs:
        res = pacs.store(args.paths, progress=not args.no_progress)
    print(f"stored {len(res.stored)} instances on {pacs.endpoint}")
    for uid, status in res.warnings:
        print(f"warning: SOP Instance UID {uid}: status {status}", file=sys.stderr)
    if res.skipped:
        print(f"skipped {len(res.skipped)} inputs:", file=sys.stderr)
        for path, reason in res.skipped[:50]:
            print(f"  {path}: {reason}", file=sys.stderr)
        return 1
    return 0
