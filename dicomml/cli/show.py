"""``dicomml show``: a header summary of one file or one series, without patient identifiers."""

from __future__ import annotations

import argparse
import os

HELP = "header summary of one DICOM file or one series key (no patient identifiers)"
EXAMPLE = """example:
  dicomml show /data/export/IM0001
  dicomml show 1.2.840.113619.2.55.3.1234 --db export.sqlite"""

_NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="PATH_OR_SERIES_KEY",
                        help="a DICOM file, or a series key of the Index (needs --db)")
    parser.add_argument("--db", metavar="FILE", default=None,
                        help="the Index (from 'dicomml scan') to look series keys up in")


def _uid_name(uid) -> str:
    from pydicom.uid import UID

    name = UID(str(uid)).name
    return f"{name} ({uid})" if name and name != str(uid) else str(uid)


def codec_text(ts_uid: str | None) -> str:
    """Which installed pydicom plugin decodes the transfer syntax, or what to install."""
    if ts_uid is None:
        return "unknown transfer syntax"
    if ts_uid in _NATIVE:
        return "native (pydicom + NumPy, no plugin)"
    if ts_uid == "1.2.840.10008.1.2.1.99":
        return "native after zlib inflate (pydicom)"
    from pydicom.pixels import get_decoder

    try:
        decoder = get_decoder(ts_uid)
    except NotImplementedError:
        return "no Python decoder exists for this transfer syntax"
    plugins = sorted(decoder.available_plugins)
    if plugins:
        return "decoded by pydicom plugin(s): " + ", ".join(plugins)
    from dicomml.io.codecs import candidate_packages

    pkgs = " or ".join(candidate_packages(ts_uid)) or "a plugin"
    return f"NOT decodable here: install {pkgs}"


def _num(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(_num(x) for x in v) + ")"
    return f"{float(v):g}" if isinstance(v, float) else str(v)


def describe(row: dict, ds=None) -> list[str]:
    """Lines describing one Index row (plus window explanations from ``ds``, if given)."""
    lines = [
        f"SOP class:        {_uid_name(row['sop_class_uid']) if row['sop_class_uid'] else '-'}",
        f"object kind:      {row['object_kind']}",
        f"modality:         {row['modality'] or '-'}",
        f"transfer syntax:  {_uid_name(row['transfer_syntax_uid'])}",
        f"codec:            {codec_text(row['transfer_syntax_uid'])}",
    ]
    if not row["is_image"]:
        return lines
    frames = row["number_of_frames"] or 1
    signed = {0: "unsigned", 1: "signed"}.get(row["pixel_representation"], "-")
    lines += [
        f"rows x columns:   {_num(row['rows'])} x {_num(row['columns'])}, "
        f"{frames} frame(s), {_num(row['samples_per_pixel'])} sample(s)/pixel",
        f"photometric:      {row['photometric_interpretation'] or '-'}",
        f"bits:             allocated {_num(row['bits_allocated'])}, stored "
        f"{_num(row['bits_stored'])}, {signed}",
        f"rescale:          slope {_num(row['rescale_slope'])}, intercept "
        f"{_num(row['rescale_intercept'])}"
        + ("" if row["rescale_slope"] is not None else " (none: stored values are used)"),
        f"position (mm):    {_num(row['image_position'])}",
        f"orientation:      {_num(row['image_orientation'])}",
        f"pixel spacing:    {_num(row['pixel_spacing'])} mm (row, column)",
        f"slice thickness:  {_num(row['slice_thickness'])} mm",
    ]
    centers, widths = row["window_center"] or (), row["window_width"] or ()
    explanations = []
    if ds is not None:
        ex = ds.get("WindowCenterWidthExplanation")
        if ex is not None:
            explanations = [str(e) for e in (ex if not isinstance(ex, str) else [ex])]
    if not centers:
        lines.append("windows:          none in the header (0028,1050)/(0028,1051)")
    for i, (c, w) in enumerate(zip(centers, widths)):
        name = explanations[i] if i < len(explanations) else "no explanation (0028,1055)"
        lines.append(f"window {i + 1}:         center {c:g}, width {w:g} -> "
                     f"[{c - w / 2:g}, {c + w / 2:g}]  {name}")
    return lines


def _read(path: str):
    import warnings

    import pydicom

    from dicomml.io.header import read_header

    row = read_header(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True,
                             specific_tags=[0x00281055])
    return row, ds


def run(args: argparse.Namespace) -> int:
    from dicomml.errors import ConfigError, InvalidDicomError
    from dicomml.io.header import Skip

    target = args.target
    header = []
    if os.path.isfile(target):
        path = os.path.abspath(target)
        header.append(f"file:             {path}")
    else:
        if args.db is None:
            raise ConfigError(f"{target} is not a file; to show a series key pass the Index "
                              "with --db FILE (from 'dicomml scan --db FILE').")
        from dicomml.io.index import Index

        from dicomml.io.index import series_note

        with Index(args.db) as idx:
            paths = idx.series_files(target)
            rows = [idx.instance(p) for p in paths]
            series = idx.series()
        note = series_note(series[series["series_key"] == target].iloc[0])
        path = paths[0]
        positions = [r["image_position"] for r in rows if r["image_position"]]
        header.append(f"series key:       {target}")
        header.append(f"instances:        {len(paths)}; first file {path}")
        if positions:
            zs = sorted(p[2] for p in positions)
            header.append(f"z range (mm):     {zs[0]:g} .. {zs[-1]:g}")
        desc = rows[0]["series_description"]
        header.append(f"description:      {desc or '-'}")
        header.append(f"structure:        {note or 'one 3-D volume (or 2-D images)'}")
    try:
        row, ds = _read(path)
    except Skip as e:
        raise InvalidDicomError(f"{path}: {e.reason}") from None
    print("\n".join(header + describe(row, ds)))
    return 0
