"""``dicomml pull``: copy a study from a PACS into a local export folder (resumable)."""

from __future__ import annotations

import argparse

HELP = "copy a study from a PACS (DICOMweb WADO-RS or DIMSE C-GET) into a folder; resumable"
EXAMPLE = """example:
  dicomml pull --dicomweb http://pacs:8042/dicom-web --study 1.2.3.4 --out export/
  dicomml pull --aet ORTHANC --host pacs --port 4242 --study 1.2.3.4 --out export/

Files land in DIR/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm, each written
atomically; run the same command again after an interruption and only the missing instances
are fetched.
Exit status: 0 done, 2 error (PACS unreachable, association refused...)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--study", metavar="UID", required=True,
                        help="(0020,000D) Study Instance UID to retrieve")
    parser.add_argument("--series", metavar="UID", default=None,
                        help="only this (0020,000E) Series Instance UID")
    parser.add_argument("--out", metavar="DIR", required=True, help="export folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    from dicomml.pacs.connection import add_pacs_arguments

    add_pacs_arguments(parser)


def run(args) -> int:
    from dicomml.pacs.connection import pacs_from_args

    with pacs_from_args(args) as pacs:
        res = pacs.retrieve(args.study, args.out, series_uid=args.series,
                            progress=not args.no_progress)
    print(f"study {res.study_uid}: {res.listed} instances; fetched {len(res.fetched)}, "
          f"already present {res.present}; in {res.out_dir}")
    return 0
