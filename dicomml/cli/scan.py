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
    """The text summary of a :class:`~dicomml.io.scanner.ScanResult` (no patient identifiers)."""
    from dicomml.cli._common import plural

    s = result.summary
    lines = [
        f"Index: {result.db_path}",
        f"patients: {s['patients']}   studies: {s['studies']}   "
        f"image series: {s['series']}   instances: {s['instances']} "
        f"({plural(s['images'], 'image')})",
    ]
    if s["series_by_modality"]:
        lines.append("series by modality: " + ", ".join(
            f"{m} {n}" for m, n in s["series_by_modality"].items()))
    if s["non_image_by_kind"]:
        lines.append("non-image objects: " + ", ".join(
            f"{k} {n}" for k, n in s["non_image_by_kind"].items()))
    if s["dicomdir_referenced"]:
        lines.append(f"DICOMDIR cross-check: {s['dicomdir_referenced']} referenced files, "
                     f"{s['dicomdir_missing']} not indexed")
    lines.append(f"files: {result.files_seen} found, {result.files_read} read, "
                 f"{result.files_unchanged} unchanged, {result.files_removed} removed; "
                 f"{result.elapsed_s:.2f} s, {result.files_per_s:.0f} files/s")
    notes = series_notes(result)
    if notes:
        lines.append(f"series to note: {len(notes)}")
        for key, note in notes[:20]:
            lines.append(f"    {key}: {note}")
        if len(notes) > 20:
            lines.append(f"    ... and {len(notes) - 20} more (see Index.series())")
    conflicts = getattr(result, "conflicts", ())
    if conflicts:
        lines.append(f"conflicting duplicates: {len(conflicts)} files indexed although an "
                     "earlier file holds their SOP Instance UID with other content")
        for path, first in conflicts[:20]:
            lines.append(f"    {path}: conflicts with {first}")
        if len(conflicts) > 20:
            lines.append(f"    ... and {len(conflicts) - 20} more (see --json)")
    if s["skipped_by_reason"]:
        lines.append(f"skipped: {s['skipped']} files")
        for reason, n in s["skipped_by_reason"].items():
            lines.append(f"  {n:6d}  {reason}")
        shown = result.skipped[:20]
        for path, reason in shown:
            lines.append(f"    {path}: {reason}")
        if len(result.skipped) > len(shown):
            lines.append(f"    ... and {len(result.skipped) - len(shown)} more "
                         "(see --json or Index.skipped())")
    return "\n".join(lines)


def series_notes(result) -> list[tuple[str, str]]:
    """``(series_key, note)`` of the series that are mosaics, 4-D, multi-echo or hold
    conflicting duplicates (:func:`dicomml.io.index.series_note`)."""
    from dicomml.io.index import series_note

    with result.index() as idx:
        series = idx.series()
    notes = ((row["series_key"], series_note(row)) for _i, row in series.iterrows())
    return [(key, note) for key, note in notes if note]


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
