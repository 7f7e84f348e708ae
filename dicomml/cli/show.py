"""``dicomml show``: a header summary of one file or one series, without patient identifiers.

The values shown are those a read uses (:func:`dicomml.io.read_image` of the first frame):
for an enhanced object they come from its functional groups (rescale from the Pixel Value
Transformation Sequence, pixel spacing from the Pixel Measures Sequence, windows from the
Frame VOI LUT Sequence, PS3.3 C.7.6.16). A Modality LUT Sequence (0028,3000) and a VOI LUT
Sequence (0028,3010) are listed; zero pixel spacing and, for a series, duplicate positions
and gaps are flagged. ``--all`` dumps every attribute of the header with identifying ones
masked (PS3.15 Annex E Basic Profile attributes and every person name).
"""

from __future__ import annotations

import argparse
import os

HELP = "header summary of one DICOM file or one series key (no patient identifiers)"
EXAMPLE = """example:
  dicomml show /data/export/IM0001
  dicomml show /data/export/IM0001 --all          # every attribute, identifiers masked
  dicomml show 1.2.840.113619.2.55.3.1234 --db export.sqlite

List the series keys of an Index with 'dicomml series --db FILE'."""

MASK = "<masked>"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="PATH_OR_SERIES_KEY",
                        help="a DICOM file, or a series key of the Index (needs --db)")
    parser.add_argument("--db", metavar="FILE", default=None,
                        help="the Index (from 'dicomml scan') to look series keys up in")
    parser.add_argument("--all", action="store_true",
                        help="also dump every header attribute (identifying ones masked)")


def _uid_name(uid) -> str:
    from pydicom.uid import UID

    name = UID(str(uid)).name
    return f"{name} ({uid})" if name and name != str(uid) else str(uid)


def codec_text(ts_uid: str | None, path: str | None = None, executor=None) -> str:
    """Which installed pydicom plugins decode the file (tried on its first frame, in a
    child process: ``executor``, default one of its own), or what to install. Without
    ``path``: the plugins installed for the transfer syntax."""
    if ts_uid is None:
        return "unknown transfer syntax"
    from dicomml.io.uids import NATIVE_SYNTAXES, TS_DEFLATED_LE

    if ts_uid in NATIVE_SYNTAXES:
        return "native (pydicom + NumPy, no plugin)"
    if ts_uid == TS_DEFLATED_LE:
        return "native after zlib inflate (pydicom)"
    from pydicom.pixels import get_decoder

    from dicomml.io.codecs import candidate_packages, plugins_that_decode

    try:
        decoder = get_decoder(ts_uid)
    except NotImplementedError:
        return "no Python decoder exists for this transfer syntax"
    plugins = sorted(decoder.available_plugins)
    if not plugins:
        pkgs = " or ".join(candidate_packages(ts_uid)) or "a plugin"
        return f"NOT decodable here: install {pkgs}"
    if path is None:
        return "pydicom plugin(s) installed: " + ", ".join(plugins)
    ok, failed = plugins_that_decode(path, executor=executor)
    if ok:
        return ("decoded by pydicom plugin(s): " + ", ".join(ok)
                + (f" (failed: {'; '.join(failed)})" if failed else ""))
    return "NOT decodable here: every installed plugin failed: " + "; ".join(failed)


def _bits_note(row: dict) -> str:
    """A flag when (0028,0101) Bits Stored exceeds (0028,0100) Bits Allocated (invalid, PS3.3
    C.7.6.3.1.1): the reads use every allocated bit, and show says so."""
    alloc, stored = row.get("bits_allocated"), row.get("bits_stored")
    try:
        above = stored is not None and alloc is not None and int(stored) > int(alloc)
    except (TypeError, ValueError):
        return ""
    return (f" -- INVALID: Bits Stored above Bits Allocated; values are read with all "
            f"{int(alloc)} allocated bits" if above else "")


def _num(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, (list, tuple)) or hasattr(v, "tolist"):
        v = v.tolist() if hasattr(v, "tolist") else v
        if isinstance(v, list):
            return "(" + ", ".join(_num(x) for x in v) + ")"
    return f"{float(v):g}" if isinstance(v, float) else str(v)


def _lut_lines(ds) -> list[str]:
    lines = []
    mlut = ds.get("ModalityLUTSequence") if ds is not None else None
    if mlut:
        it = mlut[0]
        desc = [*list(it.get("LUTDescriptor") or []), "?", "?", "?"][:3]
        lines.append(f"modality LUT:     (0028,3000) Modality LUT Sequence: {desc[0]} entries "
                     f"from {desc[1]}, {desc[2]} bits; type {it.get('ModalityLUTType') or '-'}; "
                     f"{it.get('LUTExplanation') or 'no explanation'} (used instead of rescale)")
    return lines


def _window_lines(image, ds) -> list[str]:
    lines = []
    for i, lut in enumerate(getattr(image, "voi_luts", ()) or ()):
        lines.append(f"VOI LUT {i + 1}:        (0028,3010) item: {len(lut.data)} entries from "
                     f"{lut.first_mapped}, {lut.bits} bits; "
                     f"{lut.explanation or 'no explanation (0028,3003)'} (use voilut:{i})")
    windows = getattr(image, "windows", ()) or ()
    if not windows and not lines:
        lines.append("windows:          none in the header (0028,1050)/(0028,1051) or the "
                     "Frame VOI LUT Sequence (0028,9132)")
    for i, w in enumerate(windows):
        c, wd = float(w.center), float(w.width)
        lines.append(f"window {i + 1}:         center {c:g}, width {wd:g} -> "
                     f"[{c - wd / 2:g}, {c + wd / 2:g}]  "
                     f"{w.explanation or 'no explanation (0028,1055)'}"
                     + (f", {w.function}" if w.function and w.function != "LINEAR" else ""))
    return lines


def describe(row: dict, ds=None, image=None, executor=None) -> list[str]:
    """Lines describing one file: its Index ``row``, its header ``ds`` and the first frame's
    :class:`~dicomml.io.Image` (whose values come from the functional groups when enhanced);
    ``executor`` as in :func:`summary`."""
    lines = [
        f"SOP class:        {_uid_name(row['sop_class_uid']) if row['sop_class_uid'] else '-'}",
        f"object kind:      {row['object_kind']}",
        f"modality:         {row['modality'] or '-'}",
        f"transfer syntax:  {_uid_name(row['transfer_syntax_uid'])}",
        "codec:            " + codec_text(row['transfer_syntax_uid'], row.get('path'), executor),
    ]
    if not row["is_image"]:
        return lines
    frames = row["number_of_frames"] or 1
    signed = {0: "unsigned", 1: "signed"}.get(row["pixel_representation"], "-")
    enhanced = ds is not None and "SharedFunctionalGroupsSequence" in ds
    src = " (functional groups)" if enhanced else ""
    im = image
    slope = im.rescale_slope if im is not None else row["rescale_slope"]
    intercept = im.rescale_intercept if im is not None else row["rescale_intercept"]
    has_rescale = (im is not None and (im.rescale_type is not None or slope != 1.0
                                       or intercept != 0.0)) or row["rescale_slope"] is not None
    spacing = im.pixel_spacing if im is not None else row["pixel_spacing"]
    position = im.positions[0] if im is not None and im.positions is not None \
        else row["image_position"]
    orient = im.orientations[0] if im is not None and im.orientations is not None \
        else row["image_orientation"]
    thickness = im.slice_thickness if im is not None else row["slice_thickness"]
    lines += [
        f"rows x columns:   {_num(row['rows'])} x {_num(row['columns'])}, "
        f"{frames} frame(s), {_num(row['samples_per_pixel'])} sample(s)/pixel"
        + (" (enhanced multi-frame)" if enhanced else ""),
        f"photometric:      {row['photometric_interpretation'] or '-'}",
        f"bits:             allocated {_num(row['bits_allocated'])}, stored "
        f"{_num(row['bits_stored'])}, {signed}" + _bits_note(row),
        f"rescale:          slope {_num(slope)}, intercept {_num(intercept)}"
        + (f", type {im.rescale_type}" if im is not None and im.rescale_type else "")
        + (src if has_rescale else " (none: stored values are used)"),
        *_lut_lines(ds),
        f"position (mm):    {_num(position)}{src if position is not None else ''}",
        f"orientation:      {_num(orient)}",
        f"pixel spacing:    {_num(spacing)} mm (row, column){src if spacing else ''}"
        + (" -- ZERO spacing: distances and --fov-mm are meaningless; fix (0028,0030)"
           if spacing and min(float(s) for s in spacing) <= 0 else ""),
        f"slice thickness:  {_num(thickness)} mm",
    ]
    return lines + _window_lines(image, ds)


def _read(path: str):
    import warnings

    import pydicom

    from dicomml.io.header import read_header

    from dicomml.io.guards import DEFER_SIZE

    row = read_header(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:  # large values stay unread (a 2.3 GB private element is never loaded)
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True,
                                 defer_size=DEFER_SIZE)
        except RecursionError:  # thousands of nested sequences
            from dicomml.io.guards import nesting_error

            raise nesting_error(path, None) from None
        except Exception as e:  # noqa: BLE001 - pydicom meets arbitrary bytes
            from dicomml.errors import InvalidDicomError
            from dicomml.io._read_dataset import describe_error

            raise InvalidDicomError(
                f"{path}: cannot parse the DICOM data set ({describe_error(e)}); the file is "
                "truncated or corrupt. Re-export or re-transfer it.") from None
    return row, ds


def _image(path: str, row: dict, executor):
    """The first frame as a read sees it (decoded in ``executor``'s child process), or
    ``(None, reason)`` when it cannot be read."""
    if not row.get("is_image"):
        return None, None
    from dicomml.errors import DicommlError
    from dicomml.io.isolated import read_image_isolated

    try:
        return read_image_isolated(path, frames=[0], executor=executor), None
    except (DicommlError, ValueError, RuntimeError, OSError) as e:
        return None, str(e)


#: Masked by ``--all`` besides every Person Name, the Patient group (0010,xxxx), dates and
#: times, and private attributes (PS3.15 Annex E identifying attributes that are not UIDs).
IDENTIFYING = frozenset((
    "AccessionNumber", "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName",
    "StationName", "DeviceSerialNumber", "StudyID", "RequestingService",
    "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers", "PerformedLocation", "ScheduledProcedureStepLocation",
    "OtherPatientIDsSequence", "RequestAttributesSequence", "ReferencedPatientSequence",
    "AdmittingDiagnosesDescription", "AdditionalPatientHistory", "ImageComments",
    "StudyComments", "ProtocolName", "PerformedProcedureStepDescription",
    "RequestedProcedureDescription", "ReasonForStudy", "DerivationDescription", "FrameComments",
    "AcquisitionComments", "PersonAddress", "PersonTelephoneNumbers", "ResponsiblePerson",
    "MilitaryRank", "CountryOfResidence", "RegionOfResidence", "InterpretationText",
    "ContentCreatorName", "PersonName", "PersonIdentificationCodeSequence",
))


def _identifying(el) -> bool:
    return (el.VR in ("PN", "DA", "DT", "TM") or el.tag.group == 0x0010 or el.tag.is_private
            or el.keyword in IDENTIFYING)


def header_dump(ds, indent: str = "") -> list[str]:
    """Every attribute of ``ds`` (nested sequences indented), identifying values masked.

    Masked at any depth: every Person Name (PN), the Patient group (0010,xxxx), dates and
    times (DA, DT, TM), private attributes and :data:`IDENTIFYING` (PS3.15 Table E.1-1
    attributes that are not UIDs). Bulk data shows its length only; a value larger than
    :data:`dicomml.io.guards.DEFER_SIZE` is not read; an element pydicom cannot convert (a
    corrupt value, an unknown VR, a sequence whose items do not parse) is one line saying
    so, and the dump goes on.
    """
    from pydicom.dataelem import RawDataElement
    from pydicom.datadict import keyword_for_tag

    lines = []
    for key in list(ds.keys()):
        tag = f"({key.group:04X},{key.element:04X})"
        raw = ds.get_item(key, keep_deferred=True)
        if isinstance(raw, RawDataElement) and raw.value is None and raw.length:
            lines.append(f"{indent}{tag} {keyword_for_tag(key) or 'Unknown'} {raw.VR}: "
                         f"<{raw.length} bytes, not read>")
            continue
        try:
            el = ds[key]
            str(el.value)  # a lazily parsed value (a sequence's items) parses here
        except Exception as e:  # noqa: BLE001 - pydicom meets arbitrary bytes
            lines.append(f"{indent}{tag} {keyword_for_tag(key) or 'Unknown'}: <cannot be "
                         f"parsed: {type(e).__name__}>")
            continue
        name = el.keyword or el.name
        if el.VR == "SQ":
            if _identifying(el):
                lines.append(f"{indent}{tag} {name} SQ: {MASK}")
                continue
            lines.append(f"{indent}{tag} {name} SQ: {len(el.value)} item(s)")
            for k, item in enumerate(el.value):
                lines.append(f"{indent}  item {k + 1}")
                lines += header_dump(item, indent + "    ")
            continue
        if _identifying(el):
            value = MASK if el.value not in (None, "") else ""
        elif el.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN") or el.tag == 0x7FE00010:
            value = f"<{len(el.value or b'')} bytes>"
        else:
            value = str(el.value)
            value = value if len(value) <= 120 else value[:117] + "..."
        lines.append(f"{indent}{tag} {name} {el.VR}: {value}")
    return lines


def _series_lines(index, target: str) -> tuple[list[str], str]:
    from dicomml.cli.series import header_issues
    from dicomml.errors import ConfigError, did_you_mean
    from dicomml.io.index import series_note

    series = index.series()
    keys = series["series_key"].astype(str).tolist()
    if target not in keys:
        hint = did_you_mean(target, keys)
        raise ConfigError(f"no series with key {target!r} in {index.db_path}: list the keys "
                          f"with 'dicomml series --db {index.db_path}'.{hint}")
    paths = index.series_files(target)
    inst = index.instances()
    rows = inst[inst["series_key"] == target]
    path = paths[0]
    lines = [f"series key:       {target}",
             f"instances:        {len(paths)}; first file {path}"]
    positions = [p for p in rows["image_position"] if p is not None]
    if positions:
        zs = sorted(p[2] for p in positions)
        lines.append(f"z range (mm):     {zs[0]:g} .. {zs[-1]:g}")
    desc = rows["series_description"].iloc[0] if len(rows) else None
    lines.append(f"description:      {desc or '-'}")
    note = series_note(series[series["series_key"].astype(str) == target].iloc[0])
    lines.append(f"structure:        {note or 'one 3-D volume (or 2-D images)'}")
    issues = header_issues(rows)
    lines.append("geometry:         " + ("; ".join(issues) if issues else
                                         "no duplicate positions, gaps or mixed sizes"))
    return lines, path


def run(args: argparse.Namespace) -> int:
    from dicomml.errors import ConfigError

    target = args.target
    header = []
    if os.path.isfile(target):
        path = os.path.abspath(target)
        header.append(f"file:             {path}")
    else:
        if os.path.isdir(target):
            raise ConfigError(f"{target} is a folder: show one file of it, or list its series "
                              f"with 'dicomml series {target}' and pass a key with --db")
        if args.db is None:
            raise ConfigError(f"{target} is not a file; to show a series key pass the Index "
                              "with --db FILE (list the keys with 'dicomml series --db FILE').")
        from dicomml.io.index import Index

        with Index(args.db) as idx:
            header, path = _series_lines(idx, target)
    from dicomml.parallel import get_executor

    # one child process decodes for the plugin trials and the first frame (a C decoder that
    # aborts on a corrupt stream kills that child, not this process)
    with get_executor("processes", workers=1, item_timeout=TRIAL_TIMEOUT) as ex:
        lines = header + summary(path, all_attributes=args.all, executor=ex)
    print("\n".join(lines))
    return 0


#: seconds a decoding trial or the first frame's read may take in the child process
TRIAL_TIMEOUT = 60.0


def summary(path: str, *, all_attributes: bool = False, executor=None) -> list[str]:
    """The lines ``dicomml show FILE`` prints for one file (without its ``file:`` line).

    Pixel data is decoded only in child processes: ``executor``, a process pool of
    :mod:`dicomml.parallel` kept open by the caller (many files, one pool), else a pool of
    one process per decoding step. A file that cannot be parsed raises
    :class:`~dicomml.errors.InvalidDicomError` naming it.
    """
    from dicomml.errors import InvalidDicomError
    from dicomml.io.header import Skip

    try:
        row, ds = _read(path)
    except Skip as e:
        raise InvalidDicomError(f"{path}: {e.reason}") from None
    row = dict(row, path=path)
    image, why = _image(path, row, executor)
    lines = describe(row, ds, image, executor)
    if why:
        lines.append(f"pixel data:       cannot be read: {why}")
    if all_attributes:
        lines += ["", "header (identifying attributes masked):"]
        lines += ["  " + ln for ln in header_dump(ds.file_meta)] if ds.file_meta else []
        lines += ["  " + ln for ln in header_dump(ds)]
    return lines
