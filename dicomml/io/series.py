"""Series keys: group instances into consistent image series, like dcm2niix does.

The rule (:func:`series_keys`)
------------------------------
1. Image instances (``object_kind == "image"``) are grouped by (0020,000E) Series Instance
   UID. Within one Series Instance UID they are split into *consistent groups*: same
   (0020,000D) Study Instance UID, same (0028,0010) Rows and (0028,0011) Columns, and an
   (0020,0037) Image Orientation (Patient) whose six direction cosines differ by at most
   :data:`ORIENTATION_TOLERANCE` from the group's first instance (an instance without
   orientation only joins a group without orientation). Instances are visited in order of
   (0020,0013) Instance Number (missing last), then path; each joins the first group it
   fits, or starts a new one. So a localizer (another orientation) or a reconstruction of
   another size inside an axial series gets its own group, and so do acquisitions that differ
   in geometry.
2. The largest group keeps the plain key ``<SeriesInstanceUID>``; the others get
   ``<SeriesInstanceUID>.<n>`` with n = 1, 2... by decreasing size (ties: the group whose
   first instance comes first).
3. Non-image objects (SR, RTSTRUCT, RTPLAN, RTDOSE, PR, KO, waveforms, DICOMDIR, other)
   never join an image series: their key is ``<SeriesInstanceUID>:<kind>`` (for example
   ``1.2.3:sr``).
4. An instance without Series Instance UID is a series of its own:
   ``sop:<SOPInstanceUID>``.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

__all__ = ["ORIENTATION_TOLERANCE", "series_keys", "same_orientation"]

#: Largest difference of one direction cosine of (0020,0037) within one series (≈ 0.06°).
ORIENTATION_TOLERANCE = 1e-3


def same_orientation(a: Sequence[float] | None, b: Sequence[float] | None,
                     tol: float = ORIENTATION_TOLERANCE) -> bool:
    """True when two (0020,0037) values agree within ``tol`` (both missing also agree)."""
    if a is None or b is None:
        return a is None and b is None
    if len(a) != len(b):
        return False
    return all(abs(x - y) <= tol for x, y in zip(a, b))


def _order(row: Mapping) -> tuple:
    n = row.get("instance_number")
    return (math.inf if n is None else n, row["path"])


def series_keys(rows: Iterable[Mapping], tol: float = ORIENTATION_TOLERANCE) -> dict[str, str]:
    """Compute the series key of every instance (see the module docstring for the rule).

    Parameters
    ----------
    rows : iterable of mapping
        Instances with at least ``path``, ``sop_instance_uid``, ``series_instance_uid``,
        ``study_instance_uid``, ``object_kind``, ``rows``, ``columns``,
        ``image_orientation`` (tuple of 6 floats or None) and ``instance_number``.
        All instances of a Series Instance UID must be given together.
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
        groups: list[tuple[tuple, list[Mapping]]] = []
        for row in sorted(members, key=_order):
            ident = (row.get("study_instance_uid"), row.get("rows"), row.get("columns"))
            orient = row.get("image_orientation")
            for ref, group in groups:
                if ref[0] == ident and same_orientation(ref[1], orient, tol):
                    group.append(row)
                    break
            else:
                groups.append(((ident, orient), [row]))
        ranked = sorted(range(len(groups)), key=lambda i: (-len(groups[i][1]), i))
        for rank, i in enumerate(ranked):
            key = uid if rank == 0 else f"{uid}.{rank}"
            for row in groups[i][1]:
                keys[row["path"]] = key
    return keys
