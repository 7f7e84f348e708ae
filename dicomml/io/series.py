"""Series keys: the one rule that groups instances into consistent image series, like dcm2niix.

The same-series predicate (:func:`same_series`)
-----------------------------------------------
Two image instances of one (0020,000E) Series Instance UID belong to the same series (one
NIfTI file for dcm2niix, one volume or 4-D volume for dicomml) when they have

* the same (0020,000D) Study Instance UID and (0020,0011) Series Number;
* the same (0028,0010) Rows and (0028,0011) Columns, (0028,0030) Pixel Spacing within
  :data:`SPACING_TOLERANCE` mm, and an (0020,0037) Image Orientation (Patient) whose six
  direction cosines differ by at most :data:`ORIENTATION_TOLERANCE` (a localizer, a
  reconstruction of another size, an acquisition of another geometry split off);
* the same echo: (0018,0086) Echo Numbers equal and (0018,0081) Echo Time (for enhanced
  objects the Effective Echo Time of the frames) within :data:`ECHO_TIME_TOLERANCE` ms;
* the same part of complex data (:func:`image_part`): magnitude, phase, real or imaginary
  from (0008,0008) Image Type (values M / P / R / I, MAGNITUDE / PHASE / REAL /
  IMAGINARY, Philips' M_FFE, P_SE...) or (0008,9208) Complex Image Component;
* the same duplicate rank: a conflicting duplicate (same SOP Instance UID, other content;
  see :mod:`dicomml.io._scan_store`) never joins the instance it conflicts with.

A missing value only matches a missing value. Repetitions of the same position (fMRI,
diffusion, several acquisitions of the same geometry) stay in one series: a 4-D series.

Series keys (:func:`series_keys`)
---------------------------------
1. Image instances (``object_kind == "image"``) of one Series Instance UID are visited in
   order of (0020,0013) Instance Number (missing last), then path; each joins the first
   group whose first instance it matches (:func:`same_series`), or starts a new group
   (:func:`group_instances`).
2. The largest group keeps the plain key ``<SeriesInstanceUID>``; the others get
   ``<SeriesInstanceUID>.<n>`` with n = 1, 2... by decreasing size (ties: the group whose
   first instance comes first). A series that does not split keeps its plain key.
3. Non-image objects (SR, RTSTRUCT, RTPLAN, RTDOSE, PR, KO, waveforms, DICOMDIR, other)
   never join an image series: their key is ``<SeriesInstanceUID>:<kind>`` (for example
   ``1.2.3:sr``).
4. An instance without Series Instance UID is a series of its own:
   ``sop:<SOPInstanceUID>``.

:func:`read_series <dicomml.io.volume.read_series>` uses the same predicate for the
instances it is given, so that a series key reads as one volume.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Mapping, Sequence, TypeVar

__all__ = [
    "ORIENTATION_TOLERANCE",
    "ECHO_TIME_TOLERANCE",
    "SPACING_TOLERANCE",
    "SPLIT_COLUMNS",
    "series_keys",
    "same_series",
    "same_orientation",
    "image_part",
    "group_instances",
    "first_fit_groups",
]

#: Largest difference of one direction cosine of (0020,0037) within one series (≈ 0.06°).
ORIENTATION_TOLERANCE = 1e-3
#: Largest difference of (0018,0081) Echo Time within one series, in ms.
ECHO_TIME_TOLERANCE = 0.01
#: Largest difference of (0028,0030) Pixel Spacing within one series, in mm.
SPACING_TOLERANCE = 1e-3

#: The Index columns :func:`same_series` reads (``duplicate_rank`` is given by the scan).
SPLIT_COLUMNS = ("study_instance_uid", "series_number", "rows", "columns", "pixel_spacing",
                 "image_orientation", "echo_number", "echo_time", "image_type",
                 "complex_image_component")

T = TypeVar("T")


def same_orientation(a: Sequence[float] | None, b: Sequence[float] | None,
                     tol: float = ORIENTATION_TOLERANCE) -> bool:
    """True when two (0020,0037) values agree within ``tol`` (both missing also agree)."""
    return _close(a, b, tol)


def _close(a: Sequence[float] | float | None, b: Sequence[float] | float | None,
           tol: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    a = tuple(a) if isinstance(a, (list, tuple)) else (a,)
    b = tuple(b) if isinstance(b, (list, tuple)) else (b,)
    return len(a) == len(b) and all(abs(float(x) - float(y)) <= tol for x, y in zip(a, b))


_PARTS = {"M": "M", "MAGNITUDE": "M", "P": "P", "PHASE": "P", "R": "R", "REAL": "R",
          "I": "I", "IMAGINARY": "I"}


def image_part(image_type: str | None, complex_image_component: str | None = None
               ) -> str | None:
    """The part of complex MR data an image holds: "M", "P", "R", "I" or None.

    From (0008,9208) Complex Image Component when present (MAGNITUDE, PHASE, REAL,
    IMAGINARY; MIXED is None), else from the values of (0008,0008) Image Type after the
    first two (PS3.3 C.8.3.1.1.1 and vendor practice: Siemens "M" / "P" / "R" / "I", GE
    and XA "MAGNITUDE" / "PHASE", Philips "M_FFE" / "P_SE" / "R_IR"...). The first of them
    that names a part wins.

    >>> image_part("ORIGINAL\\\\PRIMARY\\\\P\\\\ND")
    'P'
    >>> image_part("ORIGINAL\\\\PRIMARY\\\\M_FFE\\\\M\\\\FFE")
    'M'
    >>> image_part("DERIVED\\\\PRIMARY\\\\AXIAL") is None
    True
    """
    if complex_image_component:
        part = _PARTS.get(complex_image_component.strip().upper())
        if part is not None:
            return part
    if not image_type:
        return None
    for value in image_type.upper().split("\\")[2:]:
        value = value.strip()
        part = _PARTS.get(value) or _PARTS.get(value.split("_", 1)[0])
        if part is None and "PHASE" in value.split():
            part = "P"
        if part is not None:
            return part
    return None


def same_series(a: Mapping, b: Mapping, *, tol: float = ORIENTATION_TOLERANCE) -> bool:
    """True when two image instances belong to one series (see the module docstring).

    Parameters
    ----------
    a, b : mapping
        Index rows (or any mapping with the :data:`SPLIT_COLUMNS` keys; a missing key is
        a missing value). ``duplicate_rank`` (0 when absent) separates conflicting
        duplicates.
    tol : float
        Orientation tolerance, see :data:`ORIENTATION_TOLERANCE`.
    """
    g = a.get
    h = b.get
    for col in ("study_instance_uid", "series_number", "rows", "columns", "echo_number"):
        if g(col) != h(col):
            return False
    if (g("duplicate_rank") or 0) != (h("duplicate_rank") or 0):
        return False
    if image_part(g("image_type"), g("complex_image_component")) != \
            image_part(h("image_type"), h("complex_image_component")):
        return False
    return (_close(g("echo_time"), h("echo_time"), ECHO_TIME_TOLERANCE)
            and _close(g("pixel_spacing"), h("pixel_spacing"), SPACING_TOLERANCE)
            and same_orientation(g("image_orientation"), h("image_orientation"), tol))


def first_fit_groups(items: Iterable[T], same: Callable[[T, T], bool]) -> list[list[T]]:
    """Group ``items`` in order: each joins the first group whose first item it matches.

    The groups are returned by decreasing size (ties: the group started first). Used by
    :func:`group_instances`; also for other attributes of one series (e.g. the
    orientations of the slices :func:`~dicomml.io.volume.read_series` is given).
    """
    groups: list[list[T]] = []
    for item in items:
        for group in groups:
            if same(group[0], item):
                group.append(item)
                break
        else:
            groups.append([item])
    order = sorted(range(len(groups)), key=lambda i: (-len(groups[i]), i))
    return [groups[i] for i in order]


def _order(row: Mapping) -> tuple:
    n = row.get("instance_number")
    return (math.inf if n is None else n, row["path"])


def group_instances(rows: Iterable[Mapping], *, tol: float = ORIENTATION_TOLERANCE
                    ) -> list[list[Mapping]]:
    """Split the image instances of one Series Instance UID into series (largest first).

    Instances are visited by (0020,0013) Instance Number (missing last), then ``path``,
    and grouped with :func:`same_series` by :func:`first_fit_groups`.
    """
    return first_fit_groups(sorted(rows, key=_order),
                            lambda a, b: same_series(a, b, tol=tol))


def series_keys(rows: Iterable[Mapping], tol: float = ORIENTATION_TOLERANCE) -> dict[str, str]:
    """Compute the series key of every instance (see the module docstring for the rule).

    Parameters
    ----------
    rows : iterable of mapping
        Instances with at least ``path``, ``sop_instance_uid``, ``series_instance_uid``,
        ``object_kind``, ``instance_number`` and the :data:`SPLIT_COLUMNS` (a missing
        column is a missing value; arrays as tuples of float). All instances of a Series
        Instance UID must be given together.
    tol : float
        Orientation tolerance, see :data:`ORIENTATION_TOLERANCE`.

    Returns
    -------
    dict
        ``path -> series_key``.
    """
    keys: dict[str, str] = {}
    by_uid: dict[str, list[Mapping]] = {}
    for row in rows:
        uid = row.get("series_instance_uid")
        if uid is None:
            keys[row["path"]] = f"sop:{row['sop_instance_uid']}"
        elif row.get("object_kind") != "image":
            keys[row["path"]] = f"{uid}:{row.get('object_kind') or 'other'}"
        else:
            by_uid.setdefault(uid, []).append(row)
    for uid, members in by_uid.items():
        for rank, group in enumerate(group_instances(members, tol=tol)):
            key = uid if rank == 0 else f"{uid}.{rank}"
            for row in group:
                keys[row["path"]] = key
    return keys
