"""A PACS-like export: several patients, mixed modalities, a DICOMDIR, and some debris."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.fileset import FileSet
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from dicomml._atomic import atomic_write_bytes
from dicomml.errors import OutputError

from .ct import write_ct_series
from .enhanced import write_enhanced_ct
from .nonimage import write_key_object_selection, write_sr
from .other import write_mr_series, write_radiograph, write_secondary_capture
from .people import make_patient, make_study, uid_from
from .task import write_head_ct_task

__all__ = ["Export", "make_export"]


@dataclass
class Export:
    """What :func:`make_export` wrote (paths under ``root``).

    Attributes
    ----------
    root : Path
    dicomdir : Path
        The DICOMDIR (PS3.10 / PS3.3 F.2) referencing every file of ``instances``.
    instances : list of Path
        Valid DICOM files referenced by the DICOMDIR, in DICOMDIR order.
    broken : list of Path
        Truncated DICOM files (not referenced by the DICOMDIR).
    non_dicom : list of Path
        Files that are not DICOM at all.
    labels_csv : Path or None
        The learning task's labels (its files are not in the DICOMDIR).
    task_files : list of Path
        The learning task's DICOM files.
    """

    root: Path
    dicomdir: Path
    instances: list[Path] = field(default_factory=list)
    broken: list[Path] = field(default_factory=list)
    non_dicom: list[Path] = field(default_factory=list)
    labels_csv: Path | None = None
    task_files: list[Path] = field(default_factory=list)


def _stage_studies(stage: Path, seed: int, size: int) -> list[Path]:
    """Write the export's studies into ``stage``; return files in a fixed order."""
    files: list[Path] = []
    s = size
    # Patient 1: abdomen CT with a localizer in the series, SR and KO; later a chest CT
    # (oblique, JPEG-LS Lossless).
    p1 = make_patient(np.random.default_rng([seed, 1]))
    st1 = make_study(np.random.default_rng([seed, 1, 1]), description="CT ABDOMEN")
    ct1 = write_ct_series(stage / "p1s1", seed=np.random.default_rng([seed, 1, 2]),
                          n_slices=16, rows=s, columns=s, body="abdomen", localizer=True,
                          patient=p1, study=st1, series_number=2)
    files += ct1
    refs = [pydicom.dcmread(f, stop_before_pixels=True) for f in ct1]
    refs = [r for r in refs if "LOCALIZER" not in r.ImageType]
    files.append(write_sr(stage / "p1s1" / "SR", refs, seed=np.random.default_rng([seed, 1, 3]),
                          finding="normal"))
    files.append(write_key_object_selection(stage / "p1s1" / "KO", refs[5:8],
                                            seed=np.random.default_rng([seed, 1, 4])))
    st1b = make_study(np.random.default_rng([seed, 1, 5]), description="CT CHEST")
    files += write_ct_series(stage / "p1s2", seed=np.random.default_rng([seed, 1, 6]),
                             n_slices=12, rows=s, columns=s, body="chest", oblique=True,
                             patient=p1, study=st1b, series_number=3,
                             transfer_syntax=JPEGLSLossless, series_description="SYN CT OBLIQUE")
    # Patient 2: chest CT, RLE Lossless with a missing slice; Enhanced CT in the same study.
    p2 = make_patient(np.random.default_rng([seed, 2]))
    st2 = make_study(np.random.default_rng([seed, 2, 1]), description="CT CHEST")
    files += write_ct_series(stage / "p2s1", seed=np.random.default_rng([seed, 2, 2]),
                             n_slices=12, rows=s, columns=s, body="chest", missing_slice=6,
                             patient=p2, study=st2, series_number=2,
                             transfer_syntax=RLELossless,
                             series_description="SYN CT CHEST MISSING SLICE")
    files.append(write_enhanced_ct(stage / "p2s1" / "ECT", seed=np.random.default_rng([seed, 2, 3]),
                                   n_frames=12, rows=s, columns=s, body="chest", patient=p2,
                                   study=st2, series_number=5, transfer_syntax=JPEGLSLossless))
    # Patient 3: MR head T1 and T2.
    p3 = make_patient(np.random.default_rng([seed, 3]))
    st3 = make_study(np.random.default_rng([seed, 3, 1]), description="MR HEAD")
    files += write_mr_series(stage / "p3s1", seed=np.random.default_rng([seed, 3, 2]),
                             n_slices=10, rows=s, columns=s, weighting="T1", patient=p3,
                             study=st3, series_number=3)
    files += write_mr_series(stage / "p3s2", seed=np.random.default_rng([seed, 3, 3]),
                             n_slices=10, rows=s, columns=s, weighting="T2", patient=p3,
                             study=st3, series_number=4, transfer_syntax=JPEGLSLossless)
    # Patient 4: CR MONOCHROME1 with a VOI LUT, DX MONOCHROME2 (JPEG 2000 Lossless).
    p4 = make_patient(np.random.default_rng([seed, 4]))
    st4 = make_study(np.random.default_rng([seed, 4, 1]), description="XR CHEST")
    files.append(write_radiograph(stage / "p4" / "CR", seed=np.random.default_rng([seed, 4, 2]),
                                  modality="CR", rows=2 * s, columns=2 * s, spacing=0.35 * 512 / s,
                                  monochrome1=True, voi_lut=True, patient=p4, study=st4,
                                  series_number=1, transfer_syntax=JPEGLSLossless))
    st4b = make_study(np.random.default_rng([seed, 4, 3]), description="XR CHEST")
    files.append(write_radiograph(stage / "p4" / "DX", seed=np.random.default_rng([seed, 4, 4]),
                                  modality="DX", rows=2 * s, columns=2 * s, spacing=0.35 * 512 / s,
                                  patient=p4, study=st4b, series_number=1,
                                  transfer_syntax=JPEG2000Lossless))
    # Patient 5: head CT with gantry tilt and signed storage with pixel padding; an RGB SC.
    p5 = make_patient(np.random.default_rng([seed, 5]))
    st5 = make_study(np.random.default_rng([seed, 5, 1]), description="CT HEAD")
    files += write_ct_series(stage / "p5s1", seed=np.random.default_rng([seed, 5, 2]),
                             n_slices=12, rows=s, columns=s, body="head", gantry_tilt=12.0,
                             padding=True, signed=True, patient=p5, study=st5,
                             series_number=2, transfer_syntax=RLELossless)
    files.append(write_secondary_capture(stage / "p5s1" / "SC",
                                         seed=np.random.default_rng([seed, 5, 3]),
                                         rows=s, columns=s, patient=p5, study=st5))
    return files


def make_export(out_dir: str | os.PathLike, *, seed: int = 0, size: int = 256,
                task: bool = True, task_patients: int = 56, task_size: int = 224) -> Export:
    """Write a PACS-like export into the empty (or new) folder ``out_dir``.

    Contents: five patients with CT (abdomen with a localizer in the series, oblique chest
    in JPEG-LS Lossless, chest in RLE Lossless with a missing slice, head with gantry tilt,
    signed storage and pixel padding), an Enhanced CT, MR T1/T2, a CR (MONOCHROME1, VOI LUT
    Sequence), a DX (JPEG 2000 Lossless), an RGB Secondary Capture, a Comprehensive 3D SR and
    a Key Object Selection document. pydicom's :class:`~pydicom.fileset.FileSet` lays them
    out as ``PTxxxxxx/STxxxxxx/SExxxxxx/IMxxxxxx`` (no extensions) and writes the DICOMDIR.
    Outside the DICOMDIR: a truncated DICOM file, a non-DICOM ``Thumbs.db``, and (``task``)
    the head-CT learning task in ``head_ct_task/`` with its ``labels.csv``.

    Deterministic: the same arguments write byte-identical files.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise OutputError(f"{out_dir} is not empty; make_export writes into an empty or new "
                          "folder. Remove it or choose another folder.")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".stage-", dir=out_dir.parent) as tmp:
        files = _stage_studies(Path(tmp), seed, size)
        fs = FileSet()
        fs.UID = uid_from(np.random.default_rng([seed, 99]), "fileset")
        fs.ID = "DICOMML"
        try:
            for f in files:
                fs.add(f)
            fs.write(out_dir)
        finally:
            # FileSet keeps a private staging TemporaryDirectory; remove it now rather than
            # at interpreter exit (which emits a ResourceWarning).
            stage = getattr(fs, "_stage", {}).get("t")
            if stage is not None:
                stage.cleanup()
    dicomdir = out_dir / "DICOMDIR"
    instances = [out_dir / Path(*inst.FileID.split("\\")) for inst in fs]
    exp = Export(root=out_dir, dicomdir=dicomdir, instances=instances)
    # A truncated copy of a CT slice, beside its series (as an interrupted transfer leaves).
    src = instances[3]
    data = src.read_bytes()
    broken = src.parent / "IM9TRUNC"
    atomic_write_bytes(broken, data[: len(data) * 3 // 5])
    exp.broken.append(broken)
    thumbs = src.parent / "Thumbs.db"
    rng = np.random.default_rng([seed, 98])
    atomic_write_bytes(thumbs, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + rng.bytes(1016))
    exp.non_dicom.append(thumbs)
    if task:
        exp.labels_csv = write_head_ct_task(
            out_dir / "head_ct_task", n_patients=task_patients, seed=seed, rows=task_size,
            columns=task_size, transfer_syntax=JPEGLSLossless)
        exp.task_files = sorted(p for p in (out_dir / "head_ct_task").rglob("*")
                                if p.is_file() and p.name != "labels.csv")
    return exp
