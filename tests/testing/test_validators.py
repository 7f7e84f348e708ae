"""dicom3tools (dciodvfy) and dcmtk accept the generated objects."""

from __future__ import annotations

import subprocess

import pydicom
import pytest

from dicomml.testing import (
    write_ct_series, write_enhanced_ct, write_key_object_selection, write_mr_series,
    write_radiograph, write_secondary_capture, write_sr,
)
from pydicom.uid import JPEGLSLossless
from tests.conftest import require_tool


def _errors(path) -> list[str]:
    exe = require_tool("dciodvfy")
    out = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=120)
    lines = (out.stdout + out.stderr).splitlines()
    return [ln for ln in lines if ln.startswith("Error")]


def _write(kind, tmp_path):
    if kind == "ct":
        return write_ct_series(tmp_path, seed=0, n_slices=2, rows=64, columns=64)[0]
    if kind == "ct-oblique-padded-signed":
        return write_ct_series(tmp_path, seed=0, n_slices=2, rows=64, columns=64, oblique=True,
                               padding=True, signed=True)[0]
    if kind == "ct-tilt-jpegls":
        return write_ct_series(tmp_path, seed=0, n_slices=2, rows=64, columns=64,
                               gantry_tilt=10.0, transfer_syntax=JPEGLSLossless,
                               localizer=True)[-1]
    if kind == "mr":
        return write_mr_series(tmp_path, seed=0, n_slices=1, rows=64, columns=64)[0]
    if kind == "cr":
        return write_radiograph(tmp_path / "cr", seed=0, rows=64, columns=64,
                                monochrome1=True, voi_lut=True)
    if kind == "dx":
        return write_radiograph(tmp_path / "dx", seed=0, modality="DX", rows=64, columns=64)
    if kind == "enhanced-ct":
        return write_enhanced_ct(tmp_path / "ect", seed=0, n_frames=3, rows=32, columns=32)
    if kind == "sc":
        return write_secondary_capture(tmp_path / "sc", seed=0, rows=32, columns=32)
    refs = [pydicom.dcmread(p, stop_before_pixels=True)
            for p in write_ct_series(tmp_path / "ct", seed=0, n_slices=2, rows=32, columns=32)]
    if kind == "sr":
        return write_sr(tmp_path / "sr", refs, seed=0)
    return write_key_object_selection(tmp_path / "ko", refs, seed=0)


@pytest.mark.tool
@pytest.mark.parametrize("kind", ["ct", "ct-oblique-padded-signed", "ct-tilt-jpegls", "mr",
                                  "cr", "dx", "enhanced-ct", "sc", "sr", "ko"])
def test_dciodvfy_reports_no_error(tmp_path, kind):
    path = _write(kind, tmp_path)
    assert _errors(path) == []


@pytest.mark.tool
def test_dcmtk_reads_generated_files(tmp_path):
    dcmdump = require_tool("dcmdump")
    dsrdump = require_tool("dsrdump")
    ct = _write("ct", tmp_path)
    out = subprocess.run([dcmdump, "+L", str(ct)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "(0028,1052)" in out.stdout
    sr = _write("sr", tmp_path)
    out = subprocess.run([dsrdump, str(sr)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Imaging Measurement Report" in out.stdout
