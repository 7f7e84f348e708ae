"""The Index row of one DICOM file: its columns, how values are normalized, why a file is skipped.

The bottom layer of the header readers (:mod:`dicomml.io.walker` walks the bytes,
:mod:`dicomml.io._scan_fast` and :func:`dicomml.io.header.read_header_pydicom` read a row):
:data:`FIELDS` (column, tag, kind), the normalization of raw strings
(:func:`normalize_strings`) and of pydicom values (:func:`normalize_pydicom`) to one
representation, :func:`row_from_values` (a row from the normalized values), the
functional-group values of enhanced objects, :func:`object_kind` and :class:`Skip` (the
reasons a file is not indexed). See :mod:`dicomml.io.header` for the row representation.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from typing import Any

from dicomml.io.functional_groups import (
    PARSE_ERRORS,
    FrameGroups,
    Item,
    groups_of_file,
    per_frame_groups,
    shared_groups,
)
from dicomml.io.ge import b_value as ge_b_value

__all__ = [
    "FIELDS",
    "ROW_COLUMNS",
    "OBJECT_KINDS",
    "HeaderRow",
    "Skip",
    "object_kind",
    "row_from_values",
    "normalize_strings",
    "normalize_pydicom",
    "private_text",
    "TAGS",
    "RAW_TAGS",
    "PRIVATE",
    "CREATOR_TAGS",
    "DERIVED_COLUMNS",
    "MAX_TAG",
    "FUNCTIONAL_GROUP_CLASSES",
    "is_mosaic",
    "functional_group_values",
    "dataset_values",
    "with_frame_values",
]

#: (column, tag, kind). ``kind`` says how a value is normalized: "ui" (UID), "text"
#: (string, multiple values joined by backslash), "ds" (first value as float), "floats"
#: (all values as a tuple of floats), "int" (first value of IS, US, SS, UL as int), "fd"
#: (first value of a binary FD as float; non-finite values are None).
FIELDS: tuple[tuple[str, int, str], ...] = (
    ("image_type", 0x00080008, "text"),
    ("sop_class_uid", 0x00080016, "ui"),
    ("sop_instance_uid", 0x00080018, "ui"),
    ("study_date", 0x00080020, "text"),
    ("modality", 0x00080060, "text"),
    ("series_description", 0x0008103E, "text"),
    ("complex_image_component", 0x00089208, "text"),
    ("patient_id", 0x00100020, "text"),
    ("body_part_examined", 0x00180015, "text"),
    ("slice_thickness", 0x00180050, "ds"),
    ("echo_time", 0x00180081, "ds"),
    ("echo_number", 0x00180086, "int"),
    ("diffusion_bvalue", 0x00189087, "fd"),
    ("study_instance_uid", 0x0020000D, "ui"),
    ("series_instance_uid", 0x0020000E, "ui"),
    ("series_number", 0x00200011, "int"),
    ("acquisition_number", 0x00200012, "int"),
    ("instance_number", 0x00200013, "int"),
    ("image_position", 0x00200032, "floats"),
    ("image_orientation", 0x00200037, "floats"),
    ("frame_of_reference_uid", 0x00200052, "ui"),
    ("temporal_position", 0x00200100, "int"),
    ("stack_id", 0x00209056, "text"),
    ("in_stack_position", 0x00209057, "int"),
    ("samples_per_pixel", 0x00280002, "int"),
    ("photometric_interpretation", 0x00280004, "text"),
    ("number_of_frames", 0x00280008, "int"),
    ("rows", 0x00280010, "int"),
    ("columns", 0x00280011, "int"),
    ("pixel_spacing", 0x00280030, "floats"),
    ("bits_allocated", 0x00280100, "int"),
    ("bits_stored", 0x00280101, "int"),
    ("pixel_representation", 0x00280103, "int"),
    ("pixel_padding_value", 0x00280120, "int"),
    ("window_center", 0x00281050, "floats"),
    ("window_width", 0x00281051, "floats"),
    ("rescale_intercept", 0x00281052, "ds"),
    ("rescale_slope", 0x00281053, "ds"),
)

TAGS: dict[int, tuple[str, str]] = {tag: (name, kind) for name, tag, kind in FIELDS}
_FIELD_NAMES = tuple(name for name, _tag, _kind in FIELDS)

#: Private values read for the derived columns: tag -> (name, kind, private creator tag,
#: creator). Only the first private block (gggg,0010) / (gggg,10xx) is looked at; "bytes"
#: is the raw value (the CSA header is read only for MOSAIC images).
PRIVATE: dict[int, tuple[str, str, int, str]] = {
    0x0019100C: ("siemens_bvalue", "int", 0x00190010, "SIEMENS MR HEADER"),
    0x00431039: ("ge_bvalue", "int", 0x00430010, "GEMS_PARM_01"),
    0x00291010: ("csa_image", "bytes", 0x00290010, "SIEMENS CSA HEADER"),
}
#: Their private creators, (LO) text.
CREATOR_TAGS: dict[int, tuple[str, str]] = {
    creator: (f"creator_{tag >> 16:04x}", "text") for tag, (_n, _k, creator, _c) in PRIVATE.items()
}
#: Every tag a header walk keeps: the columns, the private values and their creators.
RAW_TAGS: dict[int, tuple[str, str]] = dict(sorted(
    {**TAGS, **CREATOR_TAGS, **{t: (n, k) for t, (n, k, _t, _c) in PRIVATE.items()}}.items()))
#: The last tag the Index reads: a header walk stops after it.
MAX_TAG = max(RAW_TAGS)

#: Columns computed from other values (see :func:`row_from_values`): ``mosaic_images``
#: (Siemens NumberOfImagesInMosaic from the CSA header when (0008,0008) holds MOSAIC, else
#: 0) and ``frames_per_position`` (enhanced multi-frame objects: frames / distinct
#: (0020,0032) of the frames, else None).
DERIVED_COLUMNS = ("mosaic_images", "frames_per_position")

#: Every column of an Index row, in table order.
ROW_COLUMNS: tuple[str, ...] = (
    "path", "size", "mtime", "transfer_syntax_uid", *[f[0] for f in FIELDS],
    "object_kind", "is_image", *DERIVED_COLUMNS,
)

OBJECT_KINDS = ("image", "sr", "rtstruct", "rtplan", "rtdose", "pr", "ko", "waveform",
                "dicomdir", "other")

_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"

HeaderRow = dict  # a plain dict keyed by ROW_COLUMNS: cheap to pickle between processes


class Skip(Exception):
    """The file cannot be indexed; ``category`` groups reasons, ``reason`` explains.

    Categories: "empty file", "not DICOM", "bare preamble", "truncated header" (cut
    before the last attribute the Index reads), "truncated data" (cut later, e.g. in
    (7FE0,0010) Pixel Data; not checked for big endian or deflated files), "no SOP
    Instance UID", "duplicate copy" (decided by the scan, see
    :mod:`dicomml.io._scan_store`), "invalid DICOM", "unreadable",
    "scan failed" (a worker failed: read again by the next scan).
    """

    def __init__(self, category: str, reason: str):
        super().__init__(reason)
        self.category = category
        self.reason = reason


def object_kind(sop_class_uid: str | None, rows: Any, columns: Any) -> str:
    """Classify an object by (0008,0016) SOP Class UID (PS3.4 Annex B, PS3.6 Annex A).

    Returns one of :data:`OBJECT_KINDS`. Key Object Selection (…88.59) is "ko", other
    Structured Report classes (…88.*) "sr", Grayscale/Color/... Presentation States
    (…11.*) "pr", waveforms (…9.*) "waveform", RT Structure Set / Plan / Ion Plan / Dose
    "rtstruct" / "rtplan" / "rtdose", the Media Storage Directory (1.2.840.10008.1.3.10)
    "dicomdir". Any other class with (0028,0010) Rows and (0028,0011) Columns is an
    "image", the rest "other" (encapsulated PDF, raw data...).
    """
    uid = sop_class_uid or ""
    if uid == _DICOMDIR_CLASS:
        return "dicomdir"
    if uid.startswith("1.2.840.10008.5.1.4.1.1."):
        rest = uid[len("1.2.840.10008.5.1.4.1.1."):]
        if rest == "88.59":
            return "ko"
        if rest.startswith("88."):
            return "sr"
        if rest.startswith("11."):
            return "pr"
        if rest.startswith("9."):
            return "waveform"
        if rest == "481.3":
            return "rtstruct"
        if rest in ("481.5", "481.8"):
            return "rtplan"
        if rest == "481.2":
            return "rtdose"
    if rows and columns:
        return "image"
    return "other"


# -- normalization shared by both readers ---------------------------------------------------
_STRIP = " \x00\t\r\n"


def _to_int(s: str) -> int | None:
    try:
        return int(s)
    except ValueError:
        try:
            f = float(s)
        except ValueError:
            return None
        return int(f) if f.is_integer() else None


def _to_float(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:
        return None


def normalize_strings(kind: str, parts: list[str]) -> Any:
    """Normalize the backslash-separated components of a text value to its row value."""
    if len(parts) == 1:  # the common case, kept short
        p = parts[0].strip(_STRIP)
        if not p:
            return None
        if kind == "ui" or kind == "text":
            return p
        if kind == "ds":
            return _to_float(p)
        if kind == "int":
            return _to_int(p)
        f = _to_float(p)
        return None if f is None else (f,)
    parts = [p.strip(_STRIP) for p in parts]
    if not any(parts):
        return None
    if kind in ("ui", "text"):
        return "\\".join(parts) if len(parts) > 1 else parts[0]
    if kind == "ds":
        return _to_float(parts[0]) if parts[0] else None
    if kind == "int":
        return _to_int(parts[0]) if parts[0] else None
    # floats
    out = []
    for p in parts:
        f = _to_float(p) if p else None
        if f is None:
            return None
        out.append(f)
    return tuple(out)


def private_text(kind: str, raw: bytes) -> Any:
    """A private text value read as raw bytes (implicit VR): normalized, None if not ASCII."""
    if not raw.isascii():
        return None
    return normalize_strings(kind, raw.decode("ascii").split("\\"))


def normalize_pydicom(kind: str, value: Any) -> Any:
    """Normalize a value as pydicom returns it (str, DSfloat, IS, int, MultiValue, bytes)."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        return None
    seq = list(value) if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" \
        else [value]
    if not seq:
        return None
    if kind == "bytes":
        return None
    if kind == "fd":
        v = seq[0]
        return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None
    if kind == "int" and isinstance(seq[0], int):
        return int(seq[0])
    if kind in ("ds", "floats") and all(isinstance(v, (int, float)) for v in seq):
        return float(seq[0]) if kind == "ds" else tuple(float(v) for v in seq)
    return normalize_strings(kind, ["" if v is None else str(v) for v in seq])


def row_from_values(path: str, size: int, mtime: float, transfer_syntax_uid: str | None,
                    values: dict[str, Any], meta_sop_class: str | None,
                    meta_sop_instance: str | None,
                    frame_values: dict[str, Any] | None = None) -> HeaderRow:
    """Assemble an Index row from normalized values; raise :class:`Skip` when unusable.

    ``frame_values``: :func:`functional_group_values` of an enhanced object when the caller
    already parsed its functional groups (else they are read from ``path``).
    """
    row: dict[str, Any] = {"path": path, "size": size, "mtime": mtime,
                           "transfer_syntax_uid": transfer_syntax_uid}
    get = values.get
    for name in _FIELD_NAMES:
        row[name] = get(name)
    if row["sop_class_uid"] is None:
        row["sop_class_uid"] = meta_sop_class
    kind = object_kind(row["sop_class_uid"], row["rows"], row["columns"])
    if row["sop_instance_uid"] is None and kind == "dicomdir":
        row["sop_instance_uid"] = meta_sop_instance
    if row["sop_instance_uid"] is None:
        raise Skip("no SOP Instance UID", "no SOP Instance UID (0008,0018)")
    row["object_kind"] = kind
    row["is_image"] = kind == "image"
    if row["diffusion_bvalue"] is None and values.get("siemens_bvalue") is not None \
            and _creator(values, 0x0019100C):
        row["diffusion_bvalue"] = float(values["siemens_bvalue"])
    if row["diffusion_bvalue"] is None and values.get("ge_bvalue") is not None \
            and _creator(values, 0x00431039):
        row["diffusion_bvalue"] = ge_b_value(values["ge_bvalue"])
    row["mosaic_images"] = 0
    image_type = row["image_type"]
    if image_type and "MOSAIC" in image_type and is_mosaic(image_type) \
            and _creator(values, 0x00291010):
        from dicomml.io.csa import number_of_images_in_mosaic

        row["mosaic_images"] = number_of_images_in_mosaic(values.get("csa_image")) or 0
    row["frames_per_position"] = None
    if kind == "image" and row["sop_class_uid"] in FUNCTIONAL_GROUP_CLASSES:
        if frame_values is None:
            frame_values = functional_group_values(path)
        for name, value in frame_values.items():
            if name == "frames_per_position" or row.get(name) is None:
                row[name] = value
    return row


#: SOP Classes whose frames are described by functional groups (PS3.3 C.7.6.16): Enhanced
#: and Legacy Converted Enhanced CT / MR / PET, Enhanced MR Color, Enhanced XA / XRF,
#: Breast Tomosynthesis, Enhanced US Volume, Segmentation, Parametric Map.
FUNCTIONAL_GROUP_CLASSES = frozenset("1.2.840.10008.5.1.4.1.1." + s for s in (
    "2.1", "2.2", "4.1", "4.3", "4.4", "128.1", "130", "12.1.1", "12.2.1", "13.1.3", "6.2",
    "66.4", "30"))

#: (column, functional group sequence, item attribute) taken from the frames when constant.
_FRAME_VALUES = (
    ("echo_time", "MREchoSequence", "EffectiveEchoTime"),
    ("complex_image_component", "MRImageFrameTypeSequence", "ComplexImageComponent"),
    ("diffusion_bvalue", "MRDiffusionSequence", "DiffusionBValue"),
    ("temporal_position", "FrameContentSequence", "TemporalPositionIndex"),
    ("stack_id", "FrameContentSequence", "StackID"),
    ("image_orientation", "PlaneOrientationSequence", "ImageOrientationPatient"),
    ("pixel_spacing", "PixelMeasuresSequence", "PixelSpacing"),
)


def functional_group_values(source) -> dict[str, Any]:
    """Index values of an enhanced multi-frame object from its functional groups.

    Reads (5200,9229) Shared and (5200,9230) Per-Frame Functional Groups Sequence of
    ``source`` (a path, read by :mod:`dicomml.io.functional_groups`, or by pydicom without
    pixel data where that parser falls back; a pydicom Dataset; or a
    :class:`~dicomml.io.functional_groups.FrameGroups`) and returns the columns of :data:`_FRAME_VALUES` whose value
    is the same in every frame (shared, or per-frame and constant): (0018,9082) Effective
    Echo Time, (0008,9208) Complex Image Component, (0018,9087) Diffusion b-value,
    (0020,9128) Temporal Position Index, (0020,9056) Stack ID, (0020,0037) Image
    Orientation (Patient) and (0028,0030) Pixel Spacing. ``frames_per_position`` is
    the number of frames divided by the number of distinct (0020,0032) Image Position
    (Patient) of the Plane Position Sequence (rounded down; None without positions): the
    number of volumes in the object. A file that cannot be read gives ``{}`` (the
    top-level values stay).
    """
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if isinstance(source, (str, os.PathLike)):
                try:
                    source = groups_of_file(source)
                except PARSE_ERRORS:
                    source = pydicom.dcmread(source, stop_before_pixels=True,
                                             specific_tags=[0x52009229, 0x52009230])
            if isinstance(source, FrameGroups):
                shared, frames = [source.shared], source.per_frame
            else:
                shared = shared_groups(source) or [None]
                frames = per_frame_groups(source) or []
            memo = _frame_values_memo(shared[0], frames)
            if memo is not None:
                got = _FRAME_VALUES_MEMO.get(memo)
                if got is not None:
                    return dict(got[2])
            out: dict[str, Any] = {}
            groups = [g for g in [shared[0], *frames] if g is not None]
            for column, seq, attr in _FRAME_VALUES:
                kind = TAGS[next(t for n, t, _k in FIELDS if n == column)][1]
                # A group that repeats from frame to frame is one object (the fast parser
                # shares it): normalized once.
                distinct = {id(items): items for items in (g.get(seq) for g in groups)
                            if items}
                seen = {_first_value(items, attr, kind) for items in distinct.values()}
                if len(seen) == 1:
                    value = seen.pop()
                    if value is not None:
                        out[column] = value
            positions = set()
            planes = {id(items): items for items in (g.get("PlanePositionSequence")
                                                     for g in groups) if items}
            for items in planes.values():
                pos = _first_value(items, "ImagePositionPatient", "floats")
                if pos is not None:
                    positions.add(pos)
            if positions and frames:
                out["frames_per_position"] = max(1, len(frames) // len(positions))
            if memo is not None:
                with _FRAME_VALUES_LOCK:
                    _FRAME_VALUES_MEMO[memo] = (shared[0], frames, out)
                    while len(_FRAME_VALUES_MEMO) > _FRAME_VALUES_KEEP:
                        _FRAME_VALUES_MEMO.pop(next(iter(_FRAME_VALUES_MEMO)))
                return dict(out)
            return out
    except Exception:  # noqa: BLE001 - a broken functional group only loses these values
        return {}


#: :func:`functional_group_values` of the fast parser's groups most recently computed: the
#: scan of an enhanced file and the read of its series that follows take them from the
#: functional-group memo (the same item objects), so the second call is a look-up. Keyed by
#: the identity of the items, which each entry holds (an identity is not reused while its
#: object lives); the fast parser's items are read-only.
_FRAME_VALUES_MEMO: dict = {}
_FRAME_VALUES_KEEP = 256
_FRAME_VALUES_LOCK = threading.Lock()


def _frame_values_memo(shared, frames) -> tuple | None:
    """The memo key of groups built by the fast parser (lists of Item), else None."""
    if type(frames) is not list or not frames or type(frames[0]) is not Item \
            or (shared is not None and type(shared) is not Item):
        return None
    return id(shared), id(frames), len(frames)


def dataset_values(ds, names: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The Index values of a pydicom Dataset, normalized as the scan stores them.

    For callers that hold datasets rather than Index rows, e.g. to apply
    :func:`dicomml.io.series.same_series` to the files :func:`read_series
    <dicomml.io.volume.read_series>` reads. Top-level attributes of :data:`FIELDS`
    (``names``: only these columns), then for enhanced objects the constant
    functional-group values where the top level has none (:func:`functional_group_values`).
    """
    wanted = FIELDS if names is None else [f for f in FIELDS if f[0] in names]
    out: dict[str, Any] = {}
    for name, tag, kind in wanted:
        elem = ds.get(tag)
        out[name] = None if elem is None else normalize_pydicom(kind, elem.value)
    sop_class = out.get("sop_class_uid") or normalize_pydicom("ui", ds.get("SOPClassUID"))
    return with_frame_values(out, ds, sop_class)


def with_frame_values(values: dict[str, Any], ds, sop_class: str | None) -> dict[str, Any]:
    """``values`` (Index columns) with the ones that are None filled from the constant
    functional-group values of ``ds`` (:func:`functional_group_values`) when ``sop_class``
    is an enhanced one (:data:`FUNCTIONAL_GROUP_CLASSES`); in place, and returned."""
    if sop_class in FUNCTIONAL_GROUP_CLASSES:
        for name, value in functional_group_values(ds).items():
            if name in values and values[name] is None:
                values[name] = value
    return values


def _first_value(items, attr: str, kind: str) -> Any:
    """``attr`` of the first item of a functional group's sequence, normalized (None
    without items or the attribute)."""
    if not items:
        return None
    elem = items[0].get(attr)
    return None if elem is None else normalize_pydicom(kind, elem)


def _creator(values: dict[str, Any], tag: int) -> bool:
    """True when the private creator of ``tag``'s block is the one :data:`PRIVATE` expects."""
    _name, _kind, creator_tag, creator = PRIVATE[tag]
    return values.get(CREATOR_TAGS[creator_tag][0]) == creator


def is_mosaic(image_type: str | None) -> bool:
    """True when (0008,0008) Image Type holds the value MOSAIC (Siemens mosaic images)."""
    return bool(image_type) and "MOSAIC" in image_type.upper().split("\\")
