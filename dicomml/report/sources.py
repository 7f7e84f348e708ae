"""Clean header views of real source instances, for writing result objects that reference them.

highdicom validates what it writes, so a real file's small deviations -- an enhanced
multi-frame image's geometry inside its functional groups, a Patient Orientation such as
``L\\PF``, an element read as UN, a malformed optional attribute such as a Patient's Birth
Date of ``19XX0101`` -- make it raise while building an SR. The rule here is highdicom's
own: **tolerate on read, validate on write**. :func:`source_view` copies from a source
only what a result object needs (patient, study and series identification, the image
library's descriptors) and checks every value against its VR (PS3.5 6.2):

* Type 1 UIDs ((0020,000D), (0020,000E), (0008,0016), (0008,0018)) must be present:
  without them nothing can be referenced, so a :class:`~dicomml.errors.InvalidDicomError`
  names the attribute; an invalid one is referenced as it is (that is how the PACS knows
  the instance), with a note;
* Type 2 patient / study attributes that are malformed are written empty, and a note says
  which attribute was dropped and why (never its value); a one-component person name gets
  its trailing caret (``DOE`` → ``DOE^``, the same name, PS3.5 6.2.1.2);
* geometry comes from the top level, else from the (5200,9229) Shared or (5200,9230)
  Per-Frame Functional Groups (PS3.3 C.7.6.16); when it is incomplete the image library
  entry has no geometry descriptors (TID 1602 without TID 1604), and a note says so.

The source datasets are never modified.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID

from dicomml.errors import InvalidDicomError

__all__ = ["SourceView", "source_view", "source_views", "geometry"]

#: (keyword, tag, VR, maximum length) of the Type 2 attributes an SR copies from a source.
PATIENT_STUDY = (
    ("PatientName", "(0010,0010)", "PN", 64 * 5),
    ("PatientID", "(0010,0020)", "LO", 64),
    ("PatientBirthDate", "(0010,0030)", "DA", 8),
    ("PatientSex", "(0010,0040)", "CS", 16),
    ("AccessionNumber", "(0008,0050)", "SH", 16),
    ("StudyID", "(0020,0010)", "SH", 16),
    ("StudyDate", "(0008,0020)", "DA", 8),
    ("StudyTime", "(0008,0030)", "TM", 16),
    ("ReferringPhysicianName", "(0008,0090)", "PN", 64 * 5),
)
_UIDS = (("StudyInstanceUID", "(0020,000D)"), ("SeriesInstanceUID", "(0020,000E)"),
         ("SOPClassUID", "(0008,0016)"), ("SOPInstanceUID", "(0008,0018)"))
_CROSS_SECTIONAL = ("CT", "MR", "PT")
_TEXT_VRS = ("AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC",
             "UI", "UR", "UT")
_PROJECTION = ("CR", "DX", "IO", "MG", "PX", "RF", "RG", "XA")


@dataclass(frozen=True)
class SourceView:
    """A clean copy of what a result object needs from one source, and what was dropped."""

    dataset: Dataset
    #: Human-readable notes: attribute (tag), the value's problem, what was done.
    notes: tuple[str, ...] = ()


def _values(ds: Dataset, kw: str) -> list | None:
    """The values of ``kw`` (a list), or None when absent / unreadable.

    A value still raw from the file (or read as UN) is decoded here as text, without
    pydicom's value conversion: that would warn and log a malformed value (e.g. a birth
    date), and a log line must never hold a patient's data.
    """
    tag = tag_for_keyword(kw)
    try:
        elem = ds.get_item(tag) if tag is not None and tag in ds else None
    except Exception:  # noqa: BLE001 - an element pydicom cannot even find is unreadable
        return None
    if elem is None:
        return None
    v = elem.value
    if isinstance(elem, RawDataElement):
        vr = dictionary_VR(tag) if elem.VR in (None, "UN") else elem.VR
        if vr in _TEXT_VRS and isinstance(v, bytes):
            v = _decode(ds, v, vr)
        else:  # binary numbers, sequences: pydicom's conversion (no text to leak)
            try:
                v = ds.get(kw)
            except Exception:  # noqa: BLE001 - an unconvertible value is unreadable
                return None
    if v is None:
        return None
    if isinstance(v, bytes):
        try:
            v = v.decode("ascii")
        except UnicodeDecodeError:
            return None
    if isinstance(v, str):
        v = v.strip(" \x00").split("\\") if v.strip(" \x00") else []
        if not v:
            return None
    return list(v) if isinstance(v, (list, tuple, MultiValue)) else [v]


def _decode(ds: Dataset, raw: bytes, vr: str) -> str:
    """Text of a raw value: (0008,0005) Specific Character Set for the VRs it applies to
    (PS3.5 6.1.2.3), else ASCII; never pydicom's validation (which logs the value)."""
    if vr in ("PN", "LO", "SH", "LT", "ST", "UC", "UT"):
        from pydicom.charset import convert_encodings, decode_bytes

        try:
            enc = convert_encodings(ds.get("SpecificCharacterSet") or "ISO_IR 6")
            return decode_bytes(raw, enc, {0x5C, 0x3D, 0x5E} if vr == "PN" else {0x5C})
        except Exception:  # noqa: BLE001 - an unknown character set: bytes as Latin-1
            pass
    return raw.decode("latin-1")


def _str(ds: Dataset, kw: str) -> str | None:
    """The value of ``kw`` as text (several values joined by a backslash), or None."""
    v = _values(ds, kw)
    if v is None:
        return None
    return "\\".join(str(x) for x in v).strip(" \x00")


def _numbers(ds: Dataset | None, kw: str, n: int) -> list[float] | None:
    v = _values(ds, kw) if ds is not None else None
    if v is None:
        return None
    try:
        vals = [float(x) for x in v]
    except (TypeError, ValueError):
        return None
    if len(vals) != n or not all(math.isfinite(x) for x in vals):
        return None
    return vals


def _item(ds: Dataset | None, seq: str) -> Dataset | None:
    try:
        s = ds.get(seq) if ds is not None else None
        return s[0] if s else None
    except (TypeError, IndexError, AttributeError):
        return None


def geometry(ds: Dataset, frame: int = 0) -> dict:
    """Pixel spacing, slice thickness, orientation, position and spacing between slices
    of ``frame`` (0-based).

    Top-level (0028,0030), (0018,0050), (0020,0037), (0020,0032), (0018,0088), else the functional
    groups of an enhanced multi-frame image: (0028,9110) Pixel Measures, (0020,9116) Plane
    Orientation, (0020,9113) Plane Position, per frame first, then shared (PS3.3 C.7.6.16).
    Keys that cannot be found (or are not numbers) are missing from the result.
    """
    groups = []
    per = ds.get("PerFrameFunctionalGroupsSequence")
    if per is not None and 0 <= frame < len(per):
        groups.append(per[frame])
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    if shared is not None:
        groups.append(shared)
    out = {}
    for key, kw, n, seq in (("PixelSpacing", "PixelSpacing", 2, "PixelMeasuresSequence"),
                            ("SliceThickness", "SliceThickness", 1, "PixelMeasuresSequence"),
                            ("ImageOrientationPatient", "ImageOrientationPatient", 6,
                             "PlaneOrientationSequence"),
                            ("ImagePositionPatient", "ImagePositionPatient", 3,
                             "PlanePositionSequence"),
                            ("SpacingBetweenSlices", "SpacingBetweenSlices", 1,
                             "PixelMeasuresSequence")):
        v = _numbers(ds, kw, n)
        for g in groups:
            if v is not None:
                break
            v = _numbers(_item(g, seq), kw, n)
        if v is not None:
            out[key] = v if n > 1 else v[0]
    return out


def _valid(vr: str, value: str, max_len: int) -> str | None:
    """None when ``value`` is a valid ``vr`` value, else why it is not."""
    if len(value) > max_len:
        return f"is {len(value)} characters long (at most {max_len})"
    if vr == "DA":
        from pydicom.valuerep import DA

        try:
            DA(value)
        except ValueError:
            return "is not a DICOM date (YYYYMMDD)"
        if len(value) != 8 or not value.isdigit():
            return "is not a DICOM date (YYYYMMDD)"
    elif vr == "TM":
        from pydicom.valuerep import TM

        try:
            TM(value)
        except ValueError:
            return "is not a DICOM time (HHMMSS.FFFFFF)"
    elif vr == "CS" and value not in ("M", "F", "O"):
        return "is not M, F or O"
    elif vr in ("PN", "LO", "SH") and any(ord(c) < 32 and c != "\x1b" for c in value):
        return "holds control characters"
    return None


def source_view(ds: Dataset, *, frame: int = 0, where: str = "") -> SourceView:
    """The clean header of one source (see the module docstring).

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The source's header (pixel data not needed); never modified.
    frame : int
        The frame whose geometry describes the instance (0-based).
    where : str
        How messages name the source (e.g. a pseudonymous study key); never a patient name.

    Raises
    ------
    InvalidDicomError
        A Type 1 UID is missing (the message names it).
    """
    out = Dataset()
    notes = []
    name = where or "source"
    for kw, tag in _UIDS:
        v = _str(ds, kw)
        if not v:
            raise InvalidDicomError(
                f"{name}: {kw} {tag} is missing; a result object can only reference "
                "instances that have it. Fix the source or leave it out")
        if not UID(v).is_valid:  # referenced as the PACS knows it, and said so
            notes.append(f"{name}: {kw} {tag} is not a valid UID (PS3.5 9.1); the result "
                         "references it as it is")
        setattr(out, kw, v)
    po = _values(ds, "PatientOrientation") or []
    if len(po) == 2 and all(str(v).strip() for v in po):  # e.g. L\\PF, as real files write
        out.PatientOrientation = [str(v).strip() for v in po]
    charset = ds.get("SpecificCharacterSet")
    if charset:
        out.SpecificCharacterSet = charset
    for kw, tag, vr, max_len in PATIENT_STUDY:
        v = _str(ds, kw)
        why = None if not v else _valid(vr, v, max_len)
        if why is not None:
            notes.append(f"{name}: {kw} {tag} {why}; written empty")
            v = None
        if v and vr == "PN" and "^" not in v and "=" not in v:
            # one component: the family name; the caret says so (PS3.5 6.2.1.2), and
            # spares a warning that would print the name
            v += "^"
        setattr(out, kw, v or None)
    modality = _str(ds, "Modality") or ""
    for kw in ("Rows", "Columns"):
        v = _numbers(ds, kw, 1)
        if v is not None:
            setattr(out, kw, int(v[0]))
    frame_uid = _str(ds, "FrameOfReferenceUID")
    if frame_uid and UID(frame_uid).is_valid:
        out.FrameOfReferenceUID = frame_uid
    described = ""  # Modality as highdicom's image library sees it: "" → no descriptors
    if modality in _CROSS_SECTIONAL:
        g = geometry(ds, frame)
        missing = [k for k in ("PixelSpacing", "SliceThickness", "ImageOrientationPatient",
                               "ImagePositionPatient") if k not in g]
        if missing:
            notes.append(f"{name}: {', '.join(missing)} missing or not numbers (also in the "
                         "functional groups); image library entry without geometry")
        else:
            for k, v in g.items():
                setattr(out, k, v)
            described = modality
    elif modality in _PROJECTION:
        orient = _str(ds, "PatientOrientation")
        parts = orient.split("\\") if orient else []
        spacing = _numbers(ds, "ImagerPixelSpacing", 2)
        if len(parts) == 2 and all(parts) and spacing is not None:
            out.PatientOrientation = parts
            out.ImagerPixelSpacing = spacing
            described = modality
        else:
            notes.append(f"{name}: (0020,0020) Patient Orientation or (0018,1164) Imager "
                         "Pixel Spacing missing or malformed; image library entry without "
                         "them")
    out.Modality = described or "OT"
    return SourceView(out, tuple(notes))


def source_views(datasets: Sequence[Dataset], *, where: str = "",
                 frames: Sequence[int] | None = None) -> tuple[list[Dataset], list[str]]:
    """:func:`source_view` of each dataset: ``(views, notes)``."""
    views, notes = [], []
    for i, ds in enumerate(datasets):
        v = source_view(ds, frame=int(frames[i]) if frames is not None else 0, where=where)
        views.append(v.dataset)
        notes.extend(v.notes)
    return views, notes
