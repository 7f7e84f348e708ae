"""``dicomml series``: one line per series of an Index (no patient identifiers).

Every line is what a read of the series would meet, from the headers alone: modality,
description, instances, frames, size, orientation and the geometry issues
(:func:`header_issues`: mixed sizes or orientations, missing positions, duplicate
positions, missing slices, irregular spacing, missing or zero pixel spacing), plus the
echoes, volumes, mosaic and conflicts columns of :meth:`dicomml.io.index.Index.series`
when the Index has them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HELP = "list the series of an Index: key, modality, size, orientation, what a read would report"
EXAMPLE = """example:
  dicomml series /data/export                  # scans it first (only new files are read)
  dicomml series --db export.sqlite
  dicomml series --db export.sqlite --json > series.json
  dicomml series --db export.sqlite --csv > series.csv

The key is what 'dicomml show KEY --db FILE' and read_series(KEY, index=...) take.
Exit status: 0 listed, 1 no image series, 2 error."""

#: Columns of ``--csv`` / ``--json`` in order (optional ones only when the Index has them).
COLUMNS = ("series_key", "modality", "series_description", "n_instances", "n_frames", "rows",
           "columns", "orientation", "n_echoes", "n_volumes", "mosaic", "n_conflicts",
           "issues")
OPTIONAL = ("n_echoes", "n_volumes", "mosaic", "n_conflicts")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", nargs="?", default=None,
                        help="a DICOM folder (scanned into its Index first) or an Index "
                             "database file")
    parser.add_argument("--db", metavar="FILE", default=None,
                        help="the Index database (from 'dicomml scan --db FILE')")
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print a JSON list of objects")
    fmt.add_argument("--csv", action="store_true", help="print CSV with a header line")
    parser.add_argument("--all", action="store_true",
                        help="also list non-image objects (SR, KO, DICOMDIR, ...)")
    from dicomml.cli._common import add_progress_argument

    add_progress_argument(parser)


def orientation_label(orientation) -> str:
    """``axial``, ``coronal``, ``sagittal`` or ``oblique`` from (0020,0037), or ``-``.

    The plane is the patient axis the slice normal is closest to (within 25 degrees;
    otherwise ``oblique``).
    """
    import numpy as np

    from dicomml.io.geometry import slice_normal

    if orientation is None or len(orientation) != 6:
        return "-"
    n = np.abs(slice_normal(orientation))
    if not n.any():
        return "-"
    k = int(np.argmax(n))
    if n[k] < np.cos(np.radians(25)):
        return "oblique"
    return ("sagittal", "coronal", "axial")[k]


def header_issues(rows) -> list[str]:
    """What a read of one series would report, from its Index rows (headers only)."""
    import numpy as np

    from dicomml.io.geometry import analyse_gaps, order_along_normal, same_orientation, \
        slice_normal

    issues = []
    sizes = {(r, c) for r, c in zip(rows["rows"], rows["columns"]) if r == r and c == c}
    if len(sizes) > 1:
        issues.append("mixed sizes " + ", ".join(f"{int(r)}x{int(c)}"
                                                 for r, c in sorted(sizes)))
    orients = [o for o in rows["image_orientation"] if o is not None and len(o) == 6]
    positions = [p for p in rows["image_position"] if p is not None and len(p) == 3]
    n = len(rows)
    if orients and any(not same_orientation(orients[0], o) for o in orients[1:]):
        issues.append("mixed orientations")
    elif orients and len(positions) < n:
        issues.append(f"{n - len(positions)} instance(s) without Image Position (0020,0032)")
    elif orients and len(positions) >= 2:
        single = (rows["number_of_frames"].fillna(1).astype(int) <= 1).all()
        if single:
            names = [os.path.basename(str(p)) for p in rows["path"]]
            order, dist = order_along_normal(np.asarray(positions, float),
                                             slice_normal(orients[0]))
            _, _, found = analyse_gaps(dist, where=[names[i] for i in order])
            kinds: dict[str, int] = {}
            for issue in found:
                kinds[issue.kind] = kinds.get(issue.kind, 0) + 1
            issues += [f"{k.replace('_', ' ')} x{v}" for k, v in kinds.items()]
    spacing = [s for s in rows["pixel_spacing"] if s is not None]
    if spacing and any(min(float(v) for v in s) <= 0 for s in spacing):
        issues.append("zero pixel spacing (0028,0030)")
    elif rows["is_image"].astype(bool).any() and not spacing \
            and str(rows["modality"].iloc[0]) in ("CT", "MR", "PT", "NM") \
            and (rows["number_of_frames"].fillna(1).astype(int) <= 1).all():
        # (an enhanced object keeps its spacing in the functional groups: 'dicomml show')
        issues.append("no Pixel Spacing (0028,0030)")
    return issues


def series_table(index, *, include_non_images: bool = False):
    """One row per series key with :data:`COLUMNS` (the optional ones when present)."""
    import pandas as pd

    ser = index.series()
    if not include_non_images:
        ser = ser[ser["is_image"]]
    inst = index.instances()
    groups = dict(tuple(inst.groupby("series_key", sort=False)))
    out = []
    for r in ser.to_dict("records"):
        g = groups.get(r["series_key"])
        row = {c: r.get(c) for c in COLUMNS if c in r}
        if g is not None and r["is_image"]:
            row["orientation"] = orientation_label(next(
                (o for o in g["image_orientation"] if o is not None), None))
            row["issues"] = "; ".join(header_issues(g))
        else:
            row["orientation"], row["issues"] = "-", ""
        out.append(row)
    cols = [c for c in COLUMNS if c not in OPTIONAL or c in ser]
    return pd.DataFrame(out, columns=cols)


def _cell(v) -> str:
    if v is None or v != v:
        return "-"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def format_table(df) -> str:
    """The text listing: a header line and one line per series."""
    opt = [c for c in OPTIONAL if c in df]
    head = ["key", "mod", "inst", "frames", "size", "orient"] + \
        [{"n_echoes": "echoes", "n_volumes": "volumes", "mosaic": "mosaic",
          "n_conflicts": "conflicts"}[c] for c in opt] + ["description", "issues"]
    rows = []
    for r in df.to_dict("records"):
        size = (f"{_cell(r['rows'])}x{_cell(r['columns'])}"
                if r["rows"] == r["rows"] and r["rows"] is not None else "-")
        rows.append([_cell(r["series_key"]), _cell(r["modality"]), _cell(r["n_instances"]),
                     _cell(r["n_frames"]), size, _cell(r["orientation"])]
                    + [("yes" if r[c] else "no") if c == "mosaic" else _cell(r[c]) for c in opt]
                    + [_cell(r["series_description"]), r["issues"] or "ok"])
    widths = [max(len(str(x[k])) for x in [head] + rows) for k in range(len(head) - 1)]
    return "\n".join("  ".join(str(x[k]).ljust(widths[k]) for k in range(len(head) - 1))
                     + "  " + str(x[-1]) for x in [head] + rows)


def _open(args):
    from dicomml.errors import ConfigError
    from dicomml.io.index import Index

    if args.path is None and args.db is None:
        raise ConfigError("give a DICOM folder (PATH) or an Index with --db FILE")
    if args.path is not None and os.path.isdir(args.path):
        from dicomml.io.scanner import scan

        res = scan(args.path, args.db, progress=not args.no_progress)
        return Index(res.db_path)
    db = args.db if args.path is None else args.path
    if not os.path.isfile(db):
        raise ConfigError(f"{db} does not exist: pass a DICOM folder or the Index file "
                          "'dicomml scan --db FILE' wrote")
    return Index(db)


def run(args: argparse.Namespace) -> int:
    with _open(args) as index:
        df = series_table(index, include_non_images=args.all)
    if df.empty:
        print("dicomml series: no image series in this Index (see 'dicomml scan' for what "
              "was skipped)", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(json.loads(df.to_json(orient="records")), indent=2))
    elif args.csv:
        sys.stdout.write(df.to_csv(index=False))
    else:
        print(format_table(df))
    return 0
