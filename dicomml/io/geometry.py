"""Slice geometry: normals, ordering along the normal, spacing and stack consistency.

Pure functions on numpy arrays, used by :func:`dicomml.io.read_series`.

Conventions (PS3.3 C.7.6.2.1.1): (0020,0037) Image Orientation (Patient) holds the row
direction cosine (direction of increasing column index) and the column direction cosine
(direction of increasing row index); (0020,0032) Image Position (Patient) is the centre of
the first transmitted voxel, in LPS millimetres. The slice normal is row × column.
"""

from __future__ import annotations

import numpy as np

from dicomml.io.types import SeriesIssue

__all__ = [
    "slice_normal",
    "direction_matrix",
    "same_orientation",
    "order_along_normal",
    "analyse_gaps",
    "tilt_degrees",
]

#: Positions closer than this along the normal (mm) are the same position.
POSITION_TOL_MM = 1e-3
#: Relative tolerance on a gap before it is irregular (1 %, plus POSITION_TOL_MM).
GAP_RTOL = 0.01


def slice_normal(orientation) -> np.ndarray:
    """Unit normal ``row × column`` of a (0020,0037) Image Orientation (Patient).

    Examples
    --------
    >>> slice_normal([1, 0, 0, 0, 1, 0]).tolist()
    [0.0, 0.0, 1.0]
    """
    o = np.asarray(orientation, dtype=float).reshape(6)
    n = np.cross(o[:3], o[3:])
    norm = np.linalg.norm(n)
    return n / norm if norm > 0 else n


def direction_matrix(orientation) -> np.ndarray:
    """3×3 direction with columns (row cosine, column cosine, normal).

    This is ``np.reshape(sitk_image.GetDirection(), (3, 3))`` for the image SimpleITK's
    ImageSeriesReader builds from the same slices (the cosines are used as stored, the normal
    is their normalised cross product).
    """
    o = np.asarray(orientation, dtype=float).reshape(6)
    return np.column_stack([o[:3], o[3:], slice_normal(o)])


def same_orientation(a, b, tol: float = 1e-4) -> bool:
    """True when two Image Orientation (Patient) values agree within ``tol`` per cosine."""
    return bool(np.all(np.abs(np.asarray(a, float) - np.asarray(b, float)) <= tol))


def order_along_normal(positions: np.ndarray, normal: np.ndarray):
    """Return ``(order, distances)``: a stable ascending sort of the slices along ``normal``.

    ``distances`` are the signed distances ``position · normal`` in the sorted order. Ties keep
    the input order, so the caller decides the order of duplicates by the order it passes.
    Never Instance Number or file names: only geometry orders slices.
    """
    d = np.asarray(positions, float) @ np.asarray(normal, float)
    order = np.argsort(d, kind="stable")
    return order, d[order]


def analyse_gaps(distances: np.ndarray, *, where: list[str] | None = None):
    """Analyse sorted slice distances along the normal.

    Parameters
    ----------
    distances : array of float
        Sorted ascending (from :func:`order_along_normal`).
    where : list of str, optional
        A label per slice (file names) for the issue details.

    Returns
    -------
    keep : numpy.ndarray of bool
        False for the second and later slices at an already-seen position (duplicates).
    spacing : float or None
        Median of the gaps between distinct positions; None for a single position.
    issues : list of SeriesIssue
        ``duplicate_position`` (gap below 1e-3 mm), ``missing_slices`` (a gap that is k × the
        spacing, k ≥ 2, within 10 %), ``irregular_spacing`` (any other gap off the spacing by
        more than 1 % + 1e-3 mm).
    """
    d = np.asarray(distances, float)
    n = len(d)
    where = where or [f"slice {i}" for i in range(n)]
    keep = np.ones(n, dtype=bool)
    issues: list[SeriesIssue] = []
    if n < 2:
        return keep, None, issues
    gaps = np.diff(d)
    dup = gaps < POSITION_TOL_MM
    for i in np.flatnonzero(dup):
        keep[i + 1] = False
        issues.append(SeriesIssue(
            "duplicate_position",
            f"{where[i + 1]} left out: same position as {where[i]} "
            f"({d[i + 1]:.3f} mm along the normal)"))
    real = gaps[~dup]
    if real.size == 0:
        return keep, None, issues
    spacing = float(np.median(real))
    kept_d = d[keep]
    kept_where = [w for w, k in zip(where, keep) if k]
    for i, g in enumerate(np.diff(kept_d)):
        if abs(g - spacing) <= GAP_RTOL * spacing + POSITION_TOL_MM:
            continue
        k = g / spacing
        if round(k) >= 2 and abs(k - round(k)) <= 0.1:
            issues.append(SeriesIssue(
                "missing_slices",
                f"{int(round(k)) - 1} slice(s) missing between {kept_where[i]} and "
                f"{kept_where[i + 1]} (gap {g:.3f} mm, spacing {spacing:.3f} mm)"))
        else:
            issues.append(SeriesIssue(
                "irregular_spacing",
                f"gap of {g:.3f} mm between {kept_where[i]} and {kept_where[i + 1]} "
                f"(median spacing {spacing:.3f} mm)"))
    return keep, spacing, issues


def tilt_degrees(positions: np.ndarray, normal: np.ndarray) -> float:
    """Angle in degrees between the line through the first and last positions and the normal.

    Non-zero for a gantry-tilted acquisition ((0018,1120) Gantry/Detector Tilt), whose slices
    are stacked along a direction that is not perpendicular to them.
    """
    p = np.asarray(positions, float)
    if len(p) < 2:
        return 0.0
    v = p[-1] - p[0]
    norm = np.linalg.norm(v)
    if norm == 0:
        return 0.0
    c = abs(float(v @ np.asarray(normal, float))) / norm
    return float(np.degrees(np.arccos(min(1.0, c))))
