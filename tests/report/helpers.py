"""Small real-looking DICOM series for the report and evaluate tests (written with pydicom)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.conftest import require_tool, testdata


def write_series(out_dir, n: int = 3, *, seed: int = 0, study_uid: str | None = None,
                 patient_id: str = "PAT-0001", square: tuple[int, int] | None = None) -> list[Path]:
    """Write ``n`` CT slices derived from pydicom's CT_small.dcm into ``out_dir``.

    Each slice gets new SOP/Series UIDs, its own position and seeded random pixels; when
    ``square`` is given a bright 16x16 square is drawn at that (row, col) on every slice.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    src = pydicom.dcmread(testdata("CT_small.dcm"))
    series_uid = generate_uid()
    study_uid = study_uid or generate_uid()
    paths = []
    for i in range(n):
        ds = src.copy()
        ds.file_meta = src.file_meta.copy()
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.PatientID = patient_id
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [-158.0, -179.0, -75.0 + 5.0 * i]
        px = rng.integers(0, 200, (int(ds.Rows), int(ds.Columns))).astype(np.int16)
        if square is not None:
            r, c = square
            px[r:r + 16, c:c + 16] = 1500
        ds.PixelData = px.tobytes()
        p = out_dir / f"slice{i:03d}.dcm"
        ds.save_as(p, enforce_file_format=True)
        paths.append(p)
    return paths


def dciodvfy_errors(path) -> list[str]:
    """Lines of dciodvfy's output that contain 'Error' (the CI gate), and all its output."""
    exe = require_tool("dciodvfy")
    proc = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    return [line for line in out.splitlines() if "Error" in line], out


def dsrdump_ok(path) -> str:
    exe = require_tool("dsrdump")
    proc = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout
