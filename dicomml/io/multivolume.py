"""Series of several volumes (fMRI, diffusion, multi-phase): acquisition order and the split.

A series is 4-D when its slices repeat the same positions: every position along the slice
normal holds one slice per volume. :func:`split_volumes` groups the slices by position
(within :data:`~dicomml.io.geometry.POSITION_TOL_MM`), orders the slices of each position by
their acquisition key (:func:`acquisition`) and takes the k-th slice of every position as
volume k. The acquisition key is numeric, never a string:

1. for Enhanced multi-frame objects, the frame's (0020,9157) Dimension Index Values without
   the spatial dimensions ((0020,9056) Stack ID, (0020,9057) In-Stack Position Number,
   (0020,0032) Image Position), in the order of (0020,9222) Dimension Index Sequence
   (PS3.3 C.7.6.17), e.g. the (0020,9128) Temporal Position Index or the b-value index;
2. (0020,0100) Temporal Position Identifier;
3. (0020,0013) Instance Number (a Siemens mosaic is one volume per instance);
4. the frame number.

Per-volume attributes (:class:`~dicomml.io.types.VolumeInfo`) come from the standard
attributes of the frame or instance (PS3.3 C.8.13.5 MR functional groups, C.8.3.1 MR Image)
and, for Siemens, the CSA image header (``B_value``, ``DiffusionGradientDirection``), for GE
the private b-value (0043,1039) (:mod:`dicomml.io.ge`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dicomml.io.csa import CSA_IMAGE, CSAError, csa_header, csa_value
from dicomml.io.functional_groups import per_frame_groups, shared_groups
from dicomml.io.ge import b_value_of as ge_b_value_of
from dicomml.io.geometry import POSITION_TOL_MM
from dicomml.io.types import SeriesIssue, VolumeInfo

__all__ = ["Acquisition", "acquisition", "split_volumes", "dimension_issues", "volume_info"]

#: Dimension Index Pointers that say where a frame is in space, not when or how.
SPATIAL_POINTERS = frozenset({0x00209056, 0x00209057, 0x00200032})


@dataclass(frozen=True)
class Acquisition:
    """What orders one slice among the slices at its position.

    ``order`` is the numeric sort key (see the module docs); ``dims`` the non-spatial
    Dimension Index Values (empty for classic objects); ``in_stack`` the (0020,9057)
    In-Stack Position Number; ``info`` the :class:`VolumeInfo` fields of the slice.
    """

    order: tuple
    dims: tuple = ()
    in_stack: int | None = None
    info: dict = field(default_factory=dict)


def _num(value, kind=float):
    if value is None or value == "":
        return None
    try:
        v = kind(value)
    except (TypeError, ValueError):
        return None
    return v if kind is not float or math.isfinite(v) else None


def _vector(value) -> tuple[float, float, float] | None:
    try:
        v = tuple(float(x) for x in value)
    except (TypeError, ValueError):
        return None
    return v if len(v) == 3 and all(map(math.isfinite, v)) else None


def _item(group, keyword):
    if group is None:
        return None
    seq = group.get(keyword)
    return seq[0] if seq else None


def _classic_info(ds) -> dict:
    info = {
        "temporal_position": _num(ds.get("TemporalPositionIdentifier"), int),
        "b_value": _num(ds.get("DiffusionBValue")),
        "gradient": _vector(ds.get("DiffusionGradientOrientation")),
        "echo_time": _num(ds.get("EchoTime")),
        "echo_number": _num(_first(ds.get("EchoNumbers")), int),
        "trigger_time": _num(ds.get("TriggerTime")),
        "acquisition_time": _str(ds.get("AcquisitionTime")),
        "acquisition_number": _num(ds.get("AcquisitionNumber"), int),
    }
    if info["b_value"] is None and (0x0029, 0x0010) in ds:
        try:
            head = csa_header(ds, CSA_IMAGE)
        except CSAError:
            head = None
        info["b_value"] = _num(csa_value(head, "B_value"))
        if head:
            info["gradient"] = _vector(head.get("DiffusionGradientDirection") or ())
    if info["b_value"] is None:
        info["b_value"] = ge_b_value_of(ds)
    return info


def _first(value):
    if value is None or isinstance(value, (str, bytes, int, float)):
        return value
    try:
        return value[0]
    except (TypeError, IndexError):
        return None


def _str(value) -> str | None:
    return None if value in (None, "") else str(value)


def _frame_info(frame, shared: tuple, base: dict) -> tuple[dict, tuple, int | None]:
    """``(info, dimension index values, in-stack position)`` of one frame; ``shared`` the
    (MR Diffusion, MR Echo) items of the shared functional groups (None where absent)."""
    content = _item(frame, "FrameContentSequence")
    diff = _item(frame, "MRDiffusionSequence") or shared[0]
    echo = _item(frame, "MREchoSequence") or shared[1]
    cardiac = _item(frame, "CardiacSynchronizationSequence")
    info = dict(base)
    if content is not None:
        info["temporal_position"] = _num(content.get("TemporalPositionIndex"), int) \
            or info["temporal_position"]
        info["acquisition_time"] = _str(content.get("FrameAcquisitionDateTime")) \
            or info["acquisition_time"]
    if diff is not None:
        info["b_value"] = _num(diff.get("DiffusionBValue"))
        direction = _item(diff, "DiffusionGradientDirectionSequence")
        info["gradient"] = None if direction is None else _vector(
            direction.get("DiffusionGradientOrientation"))
    if echo is not None:
        info["echo_time"] = _num(echo.get("EffectiveEchoTime")) or info["echo_time"]
    if cardiac is not None:
        info["trigger_time"] = _num(cardiac.get("NominalCardiacTriggerDelayTime"))
    values = content.get("DimensionIndexValues") if content is not None else None
    values = [] if values is None else [values] if isinstance(values, int) else list(values)
    in_stack = _num(content.get("InStackPositionNumber"), int) if content is not None else None
    return info, tuple(values), in_stack


def acquisition(ds, n: int) -> list[Acquisition]:
    """The :class:`Acquisition` of each of the ``n`` slices a dataset gives (frames or tiles).

    Mosaic tiles and frames of a classic object share the instance's attributes; frames of
    an Enhanced object have their own (per-frame functional groups).
    """
    base = _classic_info(ds)
    instance = _num(ds.get("InstanceNumber"), int) or 0
    temporal = base["temporal_position"] or 0
    per = per_frame_groups(ds)
    if not per or len(per) < n:
        return [Acquisition(order=(temporal, instance, f), info=base) for f in range(n)]
    groups = shared_groups(ds)
    group = groups[0] if groups else None
    shared = (_item(group, "MRDiffusionSequence"), _item(group, "MREchoSequence"))
    pointers = [int(item.get("DimensionIndexPointer") or 0)
                for item in (ds.get("DimensionIndexSequence") or [])]
    temporal_dims = [k for k, p in enumerate(pointers) if p not in SPATIAL_POINTERS]
    out = []
    for f in range(n):
        info, values, in_stack = _frame_info(per[f], shared, base)
        if len(values) == len(pointers):
            dims = tuple([int(values[k]) for k in temporal_dims])
        else:
            dims = ()
        t = info["temporal_position"] or 0
        out.append(Acquisition(order=(dims, t, instance, f), dims=dims, in_stack=in_stack,
                               info=info))
    return out


def volume_info(index: int, acq: Acquisition) -> VolumeInfo:
    """The :class:`VolumeInfo` of volume ``index`` from the acquisition of one of its slices."""
    return VolumeInfo(index=index, **acq.info)


def dimension_issues(volumes: list[list[int]], acqs: list[Acquisition]) -> list[SeriesIssue]:
    """``dimension_conflict`` issues of volumes (slice indices ordered along the normal):
    one volume with frames of several non-spatial Dimension Index Values, or (0020,9057)
    In-Stack Position Numbers that do not follow the positions."""
    issues = []
    for v, members in enumerate(volumes):
        dims = {acqs[i].dims for i in members if acqs[i].dims}
        if len(dims) > 1:
            issues.append(SeriesIssue(
                "dimension_conflict",
                f"volume {v} holds frames of {len(dims)} different (0020,9157) Dimension "
                f"Index Values {sorted(dims)[:3]} at its {len(members)} positions; the "
                "frames are grouped by position and acquisition order, not by the indices"))
        stack = [acqs[i].in_stack for i in members]
        if all(s is not None for s in stack) and len(stack) > 1:
            steps = np.diff(np.asarray(stack, float))
            if not (np.all(steps > 0) or np.all(steps < 0)):
                issues.append(SeriesIssue(
                    "dimension_conflict",
                    f"volume {v}: (0020,9057) In-Stack Position Numbers {stack[:6]}... do not "
                    "follow the (0020,0032) positions along the normal; ordered by position"))
    return issues


def split_volumes(distances, acqs: list[Acquisition], labels: list[str]):
    """Split slices into volumes when their positions repeat.

    Parameters
    ----------
    distances : array of float
        Position of every slice along the slice normal (mm), in any order.
    acqs : list of Acquisition
        One per slice.
    labels : list of str
        One per slice (file name, frame) for the issue details.

    Returns
    -------
    volumes : list of list of int or None
        None when the series is 3-D (every position once, or some positions only once: those
        are duplicates, not volumes). Otherwise the slice indices of every complete volume
        in acquisition order, each list ordered along the normal.
    issues : list of SeriesIssue
        ``incomplete_volume`` for slices beyond the last complete volume (left out);
        ``dimension_conflict`` when the dimension indices of an Enhanced object contradict
        the positions (one volume with frames of several non-spatial indices, or In-Stack
        Position Numbers that do not follow the positions).
    """
    d = np.asarray(distances, float)
    order = np.argsort(d, kind="stable")
    groups: list[list[int]] = []
    for i in order:
        if groups and d[i] - d[groups[-1][0]] < POSITION_TOL_MM:
            groups[-1].append(int(i))
        else:
            groups.append([int(i)])
    counts = [len(g) for g in groups]
    if max(counts) < 2 or min(counts) < 2:
        return None, []
    for g in groups:
        g.sort(key=lambda i: acqs[i].order)
    n_vol = min(counts)
    volumes = [[g[v] for g in groups] for v in range(n_vol)]
    issues: list[SeriesIssue] = []
    extra = [i for g in groups for i in g[n_vol:]]
    if extra:
        n_extra = max(counts) - n_vol
        issues.append(SeriesIssue(
            "incomplete_volume",
            f"{len(extra)} slice(s) beyond the {n_vol} complete volume(s) of {len(groups)} "
            f"positions are left out ({n_extra} incomplete volume(s), e.g. "
            f"{', '.join(labels[i] for i in extra[:3])}); the series looks cut short"))
    issues += dimension_issues(volumes, acqs)
    return volumes, issues
