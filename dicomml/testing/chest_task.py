"""A study-level learning task: chest CT with a small lung nodule on a minority of slices.

Every study is one axial chest CT series of ``slices`` (default 24) contiguous 2.5 mm
slices. The lungs hold vessel-like distractors: 40-80 tubular segments per lung, 1.5-5 mm
across, running mostly cranio-caudally (bright dots that move a little from slice to slice,
some ending inside the stack). Half the patients carry one nodule: a slightly irregular
sphere of 7.5-17.5 mm (solid, 10-60 HU) inside a lung, so it is visible on 3-7 of the 24
slices; the label is per study. Body size and shape, lung shape, the vessels, noise and
everything else are drawn from the same distributions in both classes: no global cue
separates them, only the nodule (rounder and larger than any vessel cross-section, and
present on a few neighbouring slices only).

The lesion mask of every slice is saved (``masks.npz``: SOP Instance UID → bool
(rows, columns)) with the per-slice labels (``slice_labels.csv``: ``SOPInstanceUID,label``)
so that tests can check where a model looks and train with slice labels.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from pydicom.uid import ExplicitVRLittleEndian
from scipy.ndimage import gaussian_filter

from dicomml.errors import ConfigError

from ._common import (check_transfer_syntax, draw_labels, name_files, set_pixels,
                      write_dataset, write_labels_csv, write_lesion_truth)
from .ct import CT_WINDOWS, SliceGeometry, ct_dataset, r6
from .people import make_patient, make_study, uid_from

__all__ = ["write_chest_nodule_task", "CHEST_LABELS", "NODULE_DIAMETER", "read_task_masks"]

#: The two values of the ``label`` column (study and slice labels).
CHEST_LABELS = ("nodule", "normal")
#: Range of the nodule diameter (mm); with 2.5 mm slices it is on 3-7 slices.
NODULE_DIAMETER = (7.5, 17.5)
SPACING = 2.5  # mm between slices (and slice thickness)


def _anatomy(rng: np.random.Generator, n_slices: int) -> dict:
    """One patient's thorax: body, lungs, mediastinum, spine and lung vessels."""
    a = float(rng.uniform(125, 160))           # body half-width (mm)
    b = float(rng.uniform(0.62, 0.74)) * a     # body half-depth
    fat = float(rng.uniform(6, 18))
    lungs = []
    for side in (-1, 1):
        lungs.append((side * float(rng.uniform(0.40, 0.48)) * a,   # centre x
                      float(rng.uniform(-0.08, 0.02)) * b,          # centre y
                      float(rng.uniform(0.30, 0.36)) * a,           # half-width
                      float(rng.uniform(0.70, 0.80)) * b))          # half-depth
    z_top = (n_slices - 1) / 2 * SPACING
    vessels = []  # (x0, y0, z0, dx/dz, dy/dz, radius, z half-length, HU)
    for lx, ly, la, lb in lungs:
        for _ in range(int(rng.integers(40, 81))):
            while True:
                u, v = rng.uniform(-1, 1, 2)
                if u * u + v * v < 0.85:
                    break
            vessels.append((lx + u * la, ly + v * lb, float(rng.uniform(-z_top, z_top)),
                            float(rng.normal(0, 0.35)), float(rng.normal(0, 0.35)),
                            float(rng.uniform(0.75, 2.5)), float(rng.uniform(8, 60)),
                            float(rng.uniform(20, 70))))
    return {"a": a, "b": b, "fat": fat, "lungs": lungs, "vessels": vessels,
            "heart": (float(rng.uniform(-0.1, 0.05)) * a, float(rng.uniform(0.05, 0.2)) * b,
                      float(rng.uniform(0.18, 0.24)) * a, float(rng.uniform(0.3, 0.4)) * b),
            "spine_r": float(rng.uniform(14, 20))}


def _nodule(rng: np.random.Generator, anat: dict, n_slices: int) -> dict:
    d = float(rng.uniform(*NODULE_DIAMETER))
    r = d / 2.0
    lx, ly, la, lb = anat["lungs"][int(rng.integers(2))]
    while True:
        u, v = rng.uniform(-1, 1, 2)
        x, y = lx + u * (la - r - 4), ly + v * (lb - r - 4)
        if ((x - lx) / (la - r - 2)) ** 2 + ((y - ly) / (lb - r - 2)) ** 2 < 0.8:
            break
    z_top = (n_slices - 1) / 2 * SPACING
    z = float(rng.uniform(-z_top + r + SPACING, z_top - r - SPACING))
    k = 3
    return {"center": (float(x), float(y), z), "radius": r, "hu": float(rng.uniform(10, 60)),
            "harm": rng.uniform(-0.1, 0.1, k), "phase": rng.uniform(0, 2 * np.pi, k)}


def _render(anat: dict, nodule: dict | None, z: float, X: np.ndarray, Y: np.ndarray,
            rng: np.random.Generator, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """HU plane at height ``z`` and the nodule mask."""
    a, b = anat["a"], anat["b"]
    img = np.full(X.shape, -1000.0, np.float32)                      # air
    body = (X / a) ** 2 + (Y / b) ** 2 < 1
    img[body] = -100.0                                               # subcutaneous fat
    inner = (X / (a - anat["fat"])) ** 2 + (Y / (b - anat["fat"])) ** 2 < 1
    img[inner] = 45.0                                                # muscle / mediastinum
    lung_mask = np.zeros(X.shape, bool)
    scale = 1.0 - 0.15 * (z / 40.0) ** 2                             # lungs taper
    for lx, ly, la, lb in anat["lungs"]:
        lung_mask |= ((X - lx) / (la * scale)) ** 2 + ((Y - ly) / (lb * scale)) ** 2 < 1
    img[lung_mask] = -860.0
    hx, hy, ha, hb = anat["heart"]
    img[((X - hx) / ha) ** 2 + ((Y - hy) / hb) ** 2 < 1] = 40.0
    spine = (X ** 2 + (Y - 0.78 * b) ** 2) < anat["spine_r"] ** 2
    img[spine] = 500.0
    for x0, y0, z0, dx, dy, rad, half, hu in anat["vessels"]:
        if abs(z - z0) > half:
            continue
        cx, cy = x0 + dx * (z - z0), y0 + dy * (z - z0)
        m = ((X - cx) ** 2 + (Y - cy) ** 2 < rad ** 2) & lung_mask
        img[m] = hu
    mask = np.zeros(X.shape, bool)
    if nodule is not None:
        cx, cy, cz = nodule["center"]
        dz = z - cz
        R = nodule["radius"]
        if abs(dz) < R:
            th = np.arctan2(Y - cy, X - cx)
            rr = np.sqrt(R * R - dz * dz) * (1 + sum(
                h * np.cos((i + 2) * th + p) for i, (h, p) in
                enumerate(zip(nodule["harm"], nodule["phase"]))))
            mask = (X - cx) ** 2 + (Y - cy) ** 2 < rr ** 2
            img[mask] = nodule["hu"]
    img = gaussian_filter(img, 0.7, mode="nearest")
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma)
    return img, mask


def write_chest_nodule_task(
    out_dir: str | os.PathLike, *, n_patients: int = 40,
    seed: int | np.random.Generator = 0, slices: int = 24, rows: int = 160,
    fov: float = 340.0, noise: tuple[float, float] = (10.0, 25.0),
    positive_fraction: float = 0.5, transfer_syntax=ExplicitVRLittleEndian,
    folder_format: str = "C%03d", labels_name: str = "labels.csv",
) -> Path:
    """Write the chest-nodule task into ``out_dir`` and return the study labels CSV path.

    Layout: ``out_dir/<folder_format % k>/IMnnnn`` (one patient, study and series per
    folder; file names shuffled against the slice order), ``out_dir/labels.csv``
    (``StudyInstanceUID,label``, label in :data:`CHEST_LABELS`), ``out_dir/slice_labels.csv``
    (``SOPInstanceUID,label``: "nodule" where the slice cuts the nodule) and
    ``out_dir/masks.npz`` (SOP Instance UID → bool lesion mask, rows × rows, for slices
    with a nodule; :func:`read_task_masks`). Slices are ``uint16`` HU + 1024 (Rescale
    Intercept -1024) with the chest windows (lung, mediastinum) in the header.

    Parameters
    ----------
    n_patients : int
        Patients (= studies), at least 2.
    seed : int or numpy.random.Generator
        Same seed, same bytes.
    slices, rows : int
        Slices per study and the square matrix size.
    fov : float
        Display field of view (mm).
    noise : (float, float)
        Range of the per-study noise standard deviation (HU).
    positive_fraction : float
        Fraction of studies with a nodule (rounded; shuffled).
    """
    if n_patients < 2:
        raise ConfigError(f"n_patients must be at least 2. Received: n_patients={n_patients}")
    if slices < 12:
        raise ConfigError(f"slices must be at least 12 (the nodule spans up to 7). "
                          f"Received: slices={slices}")
    rng, is_pos = draw_labels(n_patients, positive_fraction, seed)
    ts = check_transfer_syntax(transfer_syntax)
    out_dir = Path(out_dir)
    ps = fov / rows
    coords = (np.arange(rows) - (rows - 1) / 2) * ps
    X, Y = np.meshgrid(coords, coords)
    study_rows, slice_rows, masks = [], [], {}
    for k in range(n_patients):
        prng = np.random.default_rng([seed, k, 4231])
        patient = make_patient(prng)
        study = make_study(prng, description="CT CHEST WITHOUT CONTRAST")
        anat = _anatomy(prng, slices)
        nod = _nodule(prng, anat, slices)  # drawn for every patient: same random stream
        sigma = float(prng.uniform(*noise))
        series_uid = uid_from(prng, "chest-series")
        frame_uid = uid_from(prng, "chest-frame")
        uids = [uid_from(prng, "chest-instance", i) for i in range(slices)]
        names = name_files(slices, prng, shuffle=True, pattern="IM%04d", uids=uids)
        folder = out_dir / (folder_format % (k + 1))
        for i, (uid, name) in enumerate(zip(uids, names)):
            z = ((slices - 1) / 2 - i) * SPACING
            hu, mask = _render(anat, nod if is_pos[k] else None, z, X, Y, prng, sigma)
            g = SliceGeometry(r6((-(rows - 1) / 2 * ps, -(rows - 1) / 2 * ps, z)),
                              (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (ps, ps))
            stored = np.clip(np.rint(hu) + 1024, 0, 4095).astype(np.uint16)
            ds = ct_dataset(patient=patient, study=study, series_uid=series_uid,
                            sop_uid=uid, series_number=3, description="CHEST AXIAL 2.5MM",
                            body="chest", instance_number=i + 1, frame_uid=frame_uid,
                            geom=g, thickness=SPACING, spacing_between=SPACING, tilt=0.0,
                            image_type=("ORIGINAL", "PRIMARY", "AXIAL"), fov=fov)
            ds.RescaleIntercept = -1024
            ds.RescaleSlope = 1
            ds.RescaleType = "HU"
            ds.WindowCenter = [w[0] for w in CT_WINDOWS["chest"]]
            ds.WindowWidth = [w[1] for w in CT_WINDOWS["chest"]]
            ds.WindowCenterWidthExplanation = [w[2] for w in CT_WINDOWS["chest"]]
            set_pixels(ds, stored, bits_stored=12, signed=False)
            write_dataset(folder / name, ds, ts)
            slice_rows.append((uid, CHEST_LABELS[0] if mask.any() else CHEST_LABELS[1]))
            if mask.any():
                masks[uid] = mask
        study_rows.append((study.study_instance_uid,
                           CHEST_LABELS[0] if is_pos[k] else CHEST_LABELS[1]))
    write_labels_csv(out_dir / labels_name, "StudyInstanceUID", study_rows)
    write_lesion_truth(out_dir, slice_rows, masks)
    return out_dir / labels_name


def read_task_masks(out_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """The lesion masks of a task folder: SOP Instance UID → bool (rows, columns)."""
    with np.load(Path(out_dir) / "masks.npz") as z:
        return {k: z[k].astype(bool) for k in z.files}
