"""``dicomml deid``: de-identify DICOM files (PS3.15 Annex E Basic Profile) into a folder."""

from __future__ import annotations

import argparse
import os
import sys

HELP = "de-identify DICOM files (PS3.15 Annex E Basic Profile, consistent UID remapping)"
EXAMPLE = """example:
  DICOMML_DEID_KEY=site-secret dicomml deid /data/export --out deid/
  dicomml deid /data/export --out deid/ --key site-secret --keep-dates
  dicomml deid --key site-secret --table manifest.csv --out deid/

Writes DIR/<Study>/<Series>/<SOPInstance>.dcm with new UIDs (the same key always gives the
same new UIDs) and DIR/deid_manifest.csv (one row per file, with a BurnedInAnnotation column:
images declaring (0028,0301) Burned In Annotation = YES are flagged and warned about).
--table remaps the UID and ID columns of CSV manifests with the same mapping
(DIR/<name>.deid.csv). Sources are never modified.
Exit status: 0 done, 1 done but some inputs were skipped or flagged, 2 error."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", metavar="IN", nargs="*", help="DICOM files or folders")
    parser.add_argument("--out", metavar="DIR", required=True, help="output folder")
    parser.add_argument("--key", metavar="KEY", default=None,
                        help="project key for consistent remapping (default: the "
                             "DICOMML_DEID_KEY environment variable)")
    parser.add_argument("--keep-dates", action="store_true",
                        help="keep dates and times instead of shifting them")
    parser.add_argument("--keep-patient-characteristics", action="store_true",
                        help="keep (0010,0040) sex, (0010,1010) age, size and weight")
    parser.add_argument("--clean-descriptors", action="store_true",
                        help="keep descriptions (Study/Series Description...) that hold no "
                             "identifying value (PS3.15 E.3 Clean Descriptors Option)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace outputs that exist from an earlier run")
    parser.add_argument("--table", metavar="CSV", action="append", default=[],
                        help="also remap the UID/ID columns of this CSV (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="report, write nothing")


def run(args) -> int:
    from pathlib import Path

    from dicomml._atomic import safe_join
    from dicomml.errors import ConfigError
    from dicomml.pacs.deid import deidentify, deidentify_table

    key = args.key or os.environ.get("DICOMML_DEID_KEY")
    if not key:
        raise ConfigError("give --key KEY or set DICOMML_DEID_KEY (the project key that keeps "
                          "UID remapping consistent)")
    if not args.inputs and not args.table:
        raise ConfigError("nothing to do: give DICOM inputs IN... and/or --table CSV")
    from dicomml.cli._common import require_paths

    require_paths(args.inputs)
    require_paths(args.table, "table")
    if not args.dry_run:
        from dicomml.cli._common import require_output_dir

        require_output_dir(args.out)
    status = 0
    if args.inputs:
        res = deidentify(args.inputs, args.out, key=key, shift_dates=not args.keep_dates,
                         retain_patient_characteristics=args.keep_patient_characteristics,
                         clean_descriptors=args.clean_descriptors, overwrite=args.overwrite,
                         dry_run=args.dry_run)
        print(f"de-identified {len(res.written)} files into {args.out}"
              + (f"; manifest {res.manifest}" if res.manifest else " (dry run)"))
        if res.burned_in:
            print(f"{len(res.burned_in)} images declare Burned In Annotation = YES "
                  "(see the BurnedInAnnotation column): review their pixels", file=sys.stderr)
            status = 1
        if res.duplicates:
            print(f"{len(res.duplicates)} inputs duplicate the SOP Instance UID of another "
                  "input and were left out (see below)", file=sys.stderr)
        if res.skipped:
            print(f"skipped {len(res.skipped)} inputs:", file=sys.stderr)
            for path, reason in res.skipped[:50]:
                print(f"  {path}: {reason}", file=sys.stderr)
            status = 1
    for table in args.table:
        dest = safe_join(args.out, Path(table).stem + ".deid.csv")
        deidentify_table(table, None if args.dry_run else dest, key=key)
        print(f"remapped {table} -> {dest}")
    return status
