"""``dicomml scan PATH``: index a folder of DICOM files (headers only) into an SQLite Index."""

from __future__ import annotations

import argparse
import json
import os
import sys

HELP = "index a folder of DICOM files (headers only) into an SQLite Index"
EXAMPLE = """example:
  dicomml scan /data/export --db export.sqlite --workers 4
  dicomml scan /data/export --json > summary.json
  dicomml scan /data/export --scheduler tcp://dask-host:8786

A second scan reads only new or changed files and forgets deleted ones.
Exit status: 0 all files usable, 1 some files skipped (listed), 2 error."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="folder (or one file) to index")
    parser.add_argument("--db", metavar="FILE", default=None,
                        help="Index file (default: in the user cache folder, "
                             "$XDG_CACHE_HOME/dicomml/index-<hash>.sqlite)")
    parser.add_argument("--replace", action="store_true",
                        help="--db may hold the Index of another folder: replace it")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object instead of the text summary")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar on stderr")
    from dicomml.parallel import add_executor_arguments

    add_executor_arguments(parser)  # --workers N (0 or 1: in this process), --scheduler...


def format_summary(result) -> str:
    """The text summary of a :class:`~dicomml.io.scanner.ScanResult` (no patient identifiers);
    see :meth:`~dicomml.io.scanner.ScanResult.format`."""
    return result.format()


def series_notes(result) -> list[tuple[str, str]]:
    """``(series_key, note)`` of the series to note; see
    :meth:`~dicomml.io.scanner.ScanResult.series_notes`."""
    return result.series_notes()


def run(args: argparse.Namespace) -> int:
    from dicomml.errors import ConfigError
    from dicomml.io.scanner import scan

    if not os.path.exists(args.path):
        raise ConfigError(f"{args.path} does not exist: pass a folder of DICOM files.")
    progress = not args.no_progress
    if args.scheduler or args.dask_local or args.item_timeout:
        from dicomml.parallel import executor_from_args

        with executor_from_args(args) as ex:
            result = scan(args.path, args.db, executor=ex, progress=progress,
                          replace=args.replace)
    else:
        result = scan(args.path, args.db, workers=args.workers, progress=progress,
                      replace=args.replace)
    if args.json:
        out = result.to_dict()
        out["series_notes"] = [{"series_key": k, "note": n} for k, n in series_notes(result)]
        print(json.dumps(out, indent=2))
    else:
        print(format_summary(result))
    if not result.files_seen:
        print(f"dicomml scan: no files under {args.path}: nothing indexed", file=sys.stderr)
        return 1
    return 0 if result.ok else 1
