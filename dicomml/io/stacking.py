"""From decoded files to ordered slices: mosaics, the series rule, 3-D / 4-D ordering.

The steps of :func:`dicomml.io.read_series` between decoding and pixel conversion (see the
docs of :mod:`dicomml.io.volume`): :func:`one_series` applies the Index's same-series rule
to the instances, :func:`slices_of` makes the slices of one file (frames, or the tiles of a
Siemens mosaic), :func:`order_slices` orders them along the normal and splits a 4-D series
into volumes.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections import Counter
from dataclasses import dataclass, replace

import numpy as np

from dicomml.errors import DicommlError, InvalidDicomError
from dicomml.io import geometry as geo
from dicomml.io._read_dataset import load_dataset, parse_error, shown_cs
from dicomml.io._read_fast import NEEDED
from dicomml.io.csa import image_type_values
from dicomml.io.functional_groups import has_attached_groups
from dicomml.io.ge import b_value_of_file as ge_b_value_of_file
from dicomml.io.mosaic import cut_tiles, is_mosaic, mosaic_layout
from dicomml.io.multivolume import (
    Acquisition,
    acquisition,
    dimension_issues,
    split_volumes,
    volume_info,
)
from dicomml.io.philips import scale_slope as philips_scale_slope
from dicomml.io.pixels import frame_geometry, frame_rescale
from dicomml.io.series import SPLIT_COLUMNS, first_fit_groups, group_instances, same_orientation

__all__ = ["Slice", "slices_of", "order_slices", "one_series", "majority", "full_header",
           "header_values",
           "philips_scale", "short_list", "int_or"]


@dataclass
class Slice:
    file: int            # index into the loaded files
    frame: int           # frame index in that file
    position: np.ndarray | None
    orientation: np.ndarray | None
    size: tuple[int, int]
    slope: float | None
    intercept: float | None
    label: str
    acq: Acquisition



def full_header(ds, path: str):
    """``ds`` itself when pydicom parsed it, else the file's header parsed by pydicom (the
    fast parser keeps only the attributes that most files need: no private elements).

    Of its several hundred values, the top-level attributes that the reader reads
    (:data:`~dicomml.io._read_fast.NEEDED`, the light parser's table) are converted here,
    the others when read (``check_values=False``: the CSA header, vendor values); wrap what
    reads those in :func:`header_values`. A value pydicom cannot convert is an
    :class:`~dicomml.errors.InvalidDicomError` naming the file."""
    if hasattr(ds, "private_block"):
        return ds
    full = load_dataset(path, stop_before_pixels=True, check_values=False)[0]
    with header_values(path):
        for tag in NEEDED:
            if tag in full:
                full[tag]
    return full


@contextlib.contextmanager
def header_values(path: str):
    """Reading values of a :func:`full_header`: an unexpected failure (a value pydicom
    cannot convert) becomes the :class:`~dicomml.errors.InvalidDicomError` of
    :func:`~dicomml.io._read_dataset.parse_error`."""
    try:
        yield
    except DicommlError:
        raise
    except Exception as e:  # noqa: BLE001 - pydicom's conversions raise many kinds
        raise parse_error(path, e) from e


def philips_scale(ds, path: str) -> float | None:
    """The private Philips Scale Slope (2005,xx0E) of a Philips MR file, else None."""
    if "PHILIPS" not in str(ds.get("Manufacturer") or "").upper():
        return None
    with header_values(path):
        return philips_scale_slope(full_header(ds, path))


def slices_of(i: int, ds, path: str, stored: np.ndarray, n_frames: int,
              philips_precise: bool, fail_or_record):
    """``(stored values per slice, [Slice], dataset, is_mosaic)`` of one decoded file (the
    dataset is the full header when the fast parser's one lacked what was needed)."""
    name = os.path.basename(path)
    layout = None
    if is_mosaic(ds) and stored.shape[0] == 1:
        with header_values(path):  # a value pydicom cannot convert: unreadable
            ds = full_header(ds, path)  # the CSA header is a private element
            try:
                layout = mosaic_layout(ds)
            except InvalidDicomError as e:
                detail = (f"{path}: (0008,0008) Image Type says MOSAIC but {e}; assumed one "
                          f"{int(ds.Rows)}×{int(ds.Columns)} image, not cut into slices")
                fail_or_record("mosaic", detail, InvalidDicomError(detail))
    if layout is not None:
        stored = cut_tiles(stored, layout)
        n = layout.n
        pos = layout.positions
        ori = frame_geometry(ds, [0])[1]
        ori = None if ori is None else np.repeat(ori, n, axis=0)
        resc = frame_rescale(ds, [0])
        if resc is not None:
            resc = (np.repeat(resc[0], n), np.repeat(resc[1], n), resc[2])
        size = (layout.rows, layout.columns)
    else:
        n = n_frames
        pos, ori, _, _ = frame_geometry(ds, range(n))
        resc = frame_rescale(ds, range(n))
        size = (int(ds.Rows), int(ds.Columns))
    scale = philips_scale(ds, path) if philips_precise else None
    acqs = acquisition(ds, n)
    what = "tile" if layout is not None else "frame"
    slopes, intercepts = (None, None) if resc is None else (
        np.asarray(resc[0], float).tolist(), np.asarray(resc[1], float).tolist())
    out = []
    for f in range(n):
        slope = None if slopes is None else slopes[f]
        intercept = None if intercepts is None else intercepts[f]
        if scale is not None:
            # dcm2niix's "precise float": (stored × RS + RI) / (RS × SS)
            rs = 1.0 if slope is None else slope
            slope, intercept = 1.0 / scale, (intercept or 0.0) / (rs * scale)
        out.append(Slice(
            file=i, frame=f,
            position=None if pos is None else pos[f],
            orientation=None if ori is None else ori[f],
            size=size, slope=slope, intercept=intercept,
            label=name if n == 1 else f"{name}[{what} {f}]", acq=acqs[f]))
    return stored, out, ds, layout is not None


def order_slices(slices: list[Slice], datasets, files, extra: dict, fail_or_record):
    """``(layers, infos, (slice spacing, origin, direction))``: the slices of every volume
    ordered along the normal (one layer for a 3-D series) and the per-volume attributes."""
    if any(s.position is None or s.orientation is None for s in slices):  # no geometry
        return [slices], (), (1.0, (0.0, 0.0, 0.0), np.eye(3))
    orientations = np.stack([s.orientation for s in slices])
    if (orientations == orientations[0]).all():  # the usual case: one group (NaN: unequal)
        groups = [slices]
    else:
        groups = first_fit_groups(slices, lambda a, b: same_orientation(
            tuple(a.orientation), tuple(b.orientation)))
    if len(groups) > 1:  # frames of Enhanced objects (instances: see one_series)
        dropped = [s for g in groups[1:] for s in g]
        fail_or_record("mixed_orientation", f"{len(dropped)} slice(s) differ from the other "
                       f"{len(groups[0])} and are left out: " + short_list(
                           [f"{s.label} ({image_type_text(datasets[s.file])})" for s in dropped]))
        slices = groups[0]
    orientation = slices[0].orientation
    normal = geo.slice_normal(orientation)
    positions = np.stack([s.position for s in slices])
    labels = [s.label for s in slices]
    volumes, split_issues = split_volumes(positions @ normal, [s.acq for s in slices], labels)
    for iss in split_issues:
        fail_or_record(iss.kind, iss.detail)
    if volumes is None:
        order, dist = geo.order_along_normal(positions, normal)
        ordered = [slices[k] for k in order]
        keep, _, gap_issues = geo.analyse_gaps(dist, where=[s.label for s in ordered])
        layers = [[s for s, k in zip(ordered, keep) if k]]
        infos: tuple = ()
        kept = [int(k) for k, ok in zip(order, keep) if ok]
        split_issues = dimension_issues([kept], [s.acq for s in slices])
        for iss in split_issues:
            fail_or_record(iss.kind, iss.detail)
    else:
        layers = [[slices[k] for k in members] for members in volumes]
        dist = positions[volumes[0]] @ normal
        _, _, gap_issues = geo.analyse_gaps(dist, where=[s.label for s in layers[0]])
        infos = tuple(layer_info(v, layer[0], datasets, files)
                      for v, layer in enumerate(layers))
        extra["n_volumes"] = len(layers)
    for iss in gap_issues:
        fail_or_record(iss.kind, iss.detail)
    first = np.stack([s.position for s in layers[0]])
    steps = np.linalg.norm(np.diff(first, axis=0), axis=1)
    ds0 = datasets[layers[0][0].file]
    slice_spacing = float(np.median(steps)) if len(steps) else (
        float_or(ds0.get("SpacingBetweenSlices")) or float_or(ds0.get("SliceThickness"))
        or 1.0)
    extra["tilt_degrees"] = geo.tilt_degrees(first, normal)
    if len(first) > 1:
        v = first[-1] - first[0]
        extra["slice_direction"] = tuple(float(c) for c in v / np.linalg.norm(v))
    return layers, infos, (slice_spacing, tuple(float(v) for v in first[0]),
                           geo.direction_matrix(orientation))


def layer_info(v: int, s: Slice, datasets, files):
    """Attributes of volume ``v`` from its first slice (Siemens and diffusion files: from
    the full header, a Siemens b-value is in the private CSA header; GE: (0043,1039) read
    by :func:`dicomml.io.ge.b_value_of_file` when the fast parser left it out)."""
    ds = datasets[s.file]
    maker = str(ds.get("Manufacturer") or "").upper()
    # The fast parser's dataset of a classic file lacks the private blocks: read the full
    # header. It takes an enhanced object (groups attached) only without the (0029,0010)
    # CSA and (0043,0010) GE blocks, so there the full header would add nothing.
    partial = not hasattr(ds, "private_block") and not has_attached_groups(ds)
    with header_values(files[s.file]):
        if partial and ("SIEMENS" in maker
                        or {"DIFFUSION", "DWI", "TRACEW"} & set(image_type_values(ds))):
            ds = full_header(ds, files[s.file])  # b-value: CSA header or (0018,9087) FD
        info = volume_info(v, acquisition(ds, s.frame + 1)[s.frame])
    if info.b_value is None and maker.startswith("GE") and partial:
        info = replace(info, b_value=ge_b_value_of_file(files[s.file]))
    return info



def series_row(ds, path: str) -> dict:
    """The values :func:`dicomml.io.series.same_series` compares, as the Index holds them
    (:func:`dicomml.io.header.dataset_values`; the fast parser's datasets are looked up by
    keyword: they hold top-level attributes only, never functional groups)."""
    from pydicom.datadict import keyword_for_tag

    from dicomml.io import header

    row = {"path": path, "instance_number": header.normalize_pydicom(
        "int", ds.get("InstanceNumber"))}
    if hasattr(ds, "private_block"):
        row.update(header.dataset_values(ds, SPLIT_COLUMNS))
        return row
    values = {name: header.normalize_pydicom(kind, ds.get(keyword))
              for name, keyword, kind in _split_fields(keyword_for_tag)}
    row.update(header.with_frame_values(
        values, ds, header.normalize_pydicom("ui", ds.get("SOPClassUID"))))
    return row


@functools.lru_cache(maxsize=1)
def _split_fields(keyword_for_tag) -> tuple:
    """(column, pydicom keyword, kind) of the Index fields the same-series rule compares."""
    from dicomml.io import header

    return tuple((name, keyword_for_tag(tag), kind) for name, tag, kind in header.FIELDS
                 if name in SPLIT_COLUMNS)


def one_series(indices: list[int], datasets, files, fail_or_record) -> list[int]:
    """Keep the instances (indices into ``datasets``) of the largest series by the one
    same-series rule of the Index (:func:`dicomml.io.series.group_instances`: echo,
    magnitude/phase, size, orientation...); the others are left out with an issue."""
    if len(indices) < 2:
        return indices
    by_path = {files[i]: i for i in indices}
    groups = group_instances([series_row(datasets[i], files[i]) for i in indices])
    if len(groups) == 1:
        return indices
    ref = groups[0][0]
    for group in groups[1:]:
        row = group[0]
        if (row["rows"], row["columns"]) != (ref["rows"], ref["columns"]):
            kind, why = "mixed_size", f"{row['rows']}×{row['columns']}"
        elif not same_orientation(row["image_orientation"], ref["image_orientation"]):
            kind, why = "mixed_orientation", image_type_text(datasets[by_path[row["path"]]])
        else:
            kind = "mixed_series"
            why = ", ".join(f"{c} {row.get(c)!r} vs {ref.get(c)!r}" for c in SPLIT_COLUMNS
                            if row.get(c) != ref.get(c)) or "duplicate"
        fail_or_record(kind, f"{len(group)} instance(s) of another series of this Series "
                       f"Instance UID ({why}) left out: "
                       + short_list([os.path.basename(r["path"]) for r in group])
                       + "; read them by their series key (dicomml scan)")
    return sorted(by_path[r["path"]] for r in groups[0])


def majority(slices, key, kind, describe, fail_or_record, datasets):
    counts = Counter(key(s) for s in slices)
    if len(counts) <= 1:
        return slices
    best = max(counts.items(), key=lambda kv: kv[1])[0]
    out = [s for s in slices if key(s) == best]
    dropped = [s for s in slices if key(s) != best]
    fail_or_record(kind, f"{len(dropped)} slice(s) differ from the other {len(out)} and are "
                   "left out: " + short_list([f"{s.label} ({describe(s)})" for s in dropped]))
    return out


def image_type_text(ds) -> str:
    it = ds.get("ImageType")
    return shown_cs(it, "orientation differs")



def short_list(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def float_or(v):
    try:
        return float(v) if v not in (None, "") else None
    except (TypeError, ValueError):
        return None


def int_or(v) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0
