"""A learnable head-CT classification task: haemorrhage-like hyperdensity versus normal.

Each study is a few axial slices of one patient's head. Half of the patients carry a
haemorrhage-like blob (70-90 HU, 10-30 mm, irregular, inside the brain parenchyma) that every
slice of the study cuts (its extent varies from slice to slice). Everything that is not the
lesion - head size, shape, rotation, skull thickness, ventricles, noise, slice spacing, number
of slices, matrix - is drawn from the same distributions for both classes, so no global cue
separates them.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
from pydicom.uid import ExplicitVRLittleEndian

from dicomml.errors import ConfigError

from ._common import (check_transfer_syntax, draw_labels, name_files, set_pixels,
                      write_dataset, write_labels_csv, write_lesion_truth)
from .ct import SliceGeometry, ct_dataset, r6, render_plane
from .people import make_patient, make_study, uid_from
from .phantom import HU, HeadAnatomy, Lesion, Tissue, random_anatomy

__all__ = ["write_head_ct_task", "HEAD_TASK_WINDOWS", "LABELS"]

#: Windows written into (0028,1050)/(0028,1051)/(0028,1055) of every task slice.
HEAD_TASK_WINDOWS = ((40.0, 80.0, "BRAIN"), (80.0, 200.0, "SUBDURAL"),
                     (600.0, 2800.0, "BONE"))
#: The two values of the ``label`` column.
LABELS = ("haemorrhage", "normal")
#: Range of the lesion diameter (mm) and of its attenuation (HU), drawn per patient.
LESION_DIAMETER = (10.0, 30.0)
LESION_HU = (70.0, 90.0)


def _lesion(rng: np.random.Generator, a: HeadAnatomy, diameter: float) -> Lesion:
    r = diameter / 2.0
    radii = (r * float(rng.uniform(0.75, 1.25)), r * float(rng.uniform(0.75, 1.25)),
             r * float(rng.uniform(0.7, 1.0)))
    # Centre inside the parenchyma: within 55 % of the inner skull, in the cerebral levels.
    inner_a = a.a - a.skin - a.skull - 4.0
    inner_b = a.b - a.skin - a.skull - 4.0
    vs = a.ventricle
    while True:
        u, v = rng.uniform(-1, 1, 2)
        cx = float(u) * (0.6 * inner_a - radii[0])
        cy = float(v) * (0.6 * inner_b - radii[1])
        cz = float(rng.uniform(-5.0, 45.0))
        # Not inside (or hidden by) a lateral ventricle or the third ventricle.
        in_ventricle = any(
            ((cx - side * 8.0 * vs) / (6.0 * vs + 3)) ** 2 + ((cy + 8.0) / (28.0 * vs + 3)) ** 2
            + ((cz - 10.0) / (12.0 * vs + 3)) ** 2 < 1.0 for side in (-1, 1))
        in_ventricle |= (cx / 5.0) ** 2 + ((cy - 8.0) / (10 * vs + 3)) ** 2 \
            + ((cz + 2.0) / 11.0) ** 2 < 1.0
        if u * u + v * v <= 1.0 and not in_ventricle:
            break
    k = 4
    return Lesion(center=(cx, cy, cz), radii=radii,
                  harmonics=tuple(float(h) for h in rng.uniform(-0.12, 0.12, k)),
                  phases=tuple(float(p) for p in rng.uniform(0, 2 * np.pi, k)))


def write_head_ct_task(
    out_dir: str | os.PathLike, *, n_patients: int = 48,
    seed: int | np.random.Generator = 0,
    slices: tuple[int, int] = (5, 8), rows: int = 256, columns: int = 256,
    noise: tuple[float, float] = (6.0, 12.0), positive_fraction: float = 0.5,
    transfer_syntax=ExplicitVRLittleEndian, folder_format: str = "P%03d",
    labels_name: str = "labels.csv", lesion_masks: bool = False,
) -> Path:
    """Write the head-CT learning task into ``out_dir`` and return the labels CSV path.

    Layout: ``out_dir/<folder_format % k>/IMnnnn`` (one folder, patient, study and series
    per patient; file names shuffled against the slice order) and ``out_dir/labels.csv``
    with columns ``StudyInstanceUID,label`` (``label`` in :data:`LABELS`), sorted by UID.

    Each study has ``slices`` (inclusive range) axial slices over a 240 mm field of view,
    stored like :func:`write_ct_series` (``uint16``, HU + 1024, Rescale Intercept -1024) with
    the windows :data:`HEAD_TASK_WINDOWS`. For every patient a lesion diameter
    (:data:`LESION_DIAMETER`, 10-30 mm) is drawn; slices are spread over the central 75 % of
    that lesion's height, so slice spacing has the same distribution in both classes and, for
    positives, every slice cuts the lesion. Positives get the lesion (:data:`LESION_HU`,
    70-90 HU, irregular ellipsoid, restricted to grey and white matter); negatives get the
    same geometry without it. Acute intraparenchymal blood is 50-100 HU against 20-45 HU for
    brain; the range is kept clear of the brain so that a 34-patient training split suffices.

    Parameters
    ----------
    n_patients : int
        Number of patients (= studies), at least 2.
    seed : int or numpy.random.Generator
        Same seed, same bytes. Each patient's anatomy, UIDs and noise derive from ``seed``
        and the patient's index.
    noise : (float, float)
        Range of the per-study Gaussian noise standard deviation in HU (drawn for every
        patient, whatever its class).
    positive_fraction : float
        Fraction of haemorrhage studies (rounded; the labels are shuffled).
    lesion_masks : bool
        Also write ``slice_labels.csv`` (``SOPInstanceUID,label``) and ``masks.npz`` (SOP
        Instance UID → bool lesion mask of each slice that cuts the haemorrhage;
        :func:`dicomml.testing.read_task_masks`) as the chest task does. Off by default,
        so that the bundled ``sample_dicom/head_ct_task`` stays DICOM and labels only; the
        DICOM files are the same bytes either way.
    """
    if n_patients < 2:
        raise ConfigError(f"n_patients must be at least 2. Received: n_patients={n_patients}")
    rng, is_pos = draw_labels(n_patients, positive_fraction, seed)
    ts = check_transfer_syntax(transfer_syntax)
    out_dir = Path(out_dir)
    fov = 240.0
    ps = fov / columns
    rows_csv, slice_rows, masks = [], [], {}
    for k in range(n_patients):
        prng = np.random.default_rng([seed, k, 7919])
        patient = make_patient(prng)
        study = make_study(prng, description="CT HEAD WITHOUT CONTRAST")
        anatomy = random_anatomy("head", prng)
        diameter = float(prng.uniform(*LESION_DIAMETER))
        lesion = _lesion(prng, anatomy, diameter)
        value = float(prng.uniform(*LESION_HU))
        sigma = float(prng.uniform(*noise))
        n_slices = int(prng.integers(slices[0], slices[1] + 1))
        if is_pos[k]:
            anatomy = replace(anatomy, lesions=(lesion,))
        lut = HU.copy()
        lut[Tissue.LESION] = value
        # Slice positions: spread over +-37.5 % of the lesion height, in head-local z.
        half = 0.75 * lesion.radii[2]
        zs = lesion.center[2] + anatomy.cz + np.linspace(half, -half, n_slices)
        spacing = float(2 * half / max(n_slices - 1, 1))
        series_uid = uid_from(prng, "task-series")
        frame_uid = uid_from(prng, "task-frame")
        uids = [uid_from(prng, "task-instance", i) for i in range(n_slices)]
        names = name_files(n_slices, prng, shuffle=True, pattern="IM%04d", uids=uids)
        folder = out_dir / (folder_format % (k + 1))
        for i, (z, uid, name) in enumerate(zip(zs, uids, names)):
            g = SliceGeometry(r6((-(columns - 1) / 2 * ps, -(rows - 1) / 2 * ps, z)),
                              (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (ps, ps))
            labels: list = []
            hu = np.rint(render_plane(g, rows, columns, anatomy, prng, noise=sigma, lut=lut,
                                      labels_out=labels))
            lesion = labels[0] == Tissue.LESION
            slice_rows.append((uid, LABELS[0] if lesion.any() else LABELS[1]))
            if lesion.any():
                masks[uid] = lesion
            stored = np.clip(hu + 1024, 0, 4095).astype(np.uint16)
            ds = ct_dataset(patient=patient, study=study, series_uid=series_uid,
                             sop_uid=uid, series_number=2, description="HEAD AXIAL",
                             body="head", instance_number=i + 1, frame_uid=frame_uid, geom=g,
                             thickness=max(spacing, 0.5), spacing_between=spacing, tilt=0.0,
                             image_type=("ORIGINAL", "PRIMARY", "AXIAL"), fov=fov)
            ds.RescaleIntercept = -1024
            ds.RescaleSlope = 1
            ds.RescaleType = "HU"
            ds.WindowCenter = [w[0] for w in HEAD_TASK_WINDOWS]
            ds.WindowWidth = [w[1] for w in HEAD_TASK_WINDOWS]
            ds.WindowCenterWidthExplanation = [w[2] for w in HEAD_TASK_WINDOWS]
            set_pixels(ds, stored, bits_stored=12, signed=False)
            write_dataset(folder / name, ds, ts)
        rows_csv.append((study.study_instance_uid, LABELS[0] if is_pos[k] else LABELS[1]))
    path = write_labels_csv(out_dir / labels_name, "StudyInstanceUID", rows_csv)
    if lesion_masks:
        write_lesion_truth(out_dir, slice_rows, masks)
    return path
