"""GE's private b-value (0043,1039), on edited copies of real GE files of ``dcm_qa_nih``.

The GE fMRI of dcm_qa_nih (DISCOVERY MR750, DV26) carries (0043,1039) ``0\\268435456\\0\\0``
in a ``GEMS_PARM_01`` block: b = 0, as dcm2niix reads it. Copies written to ``tmp_path``
(the sources are never modified) get diffusion values: the first value modulo 10⁹ is the
b-value (dcm2niix's rule, ``1000000750`` -> 750), in the Index (struct reader and pydicom
reader alike) and in the per-volume :class:`~dicomml.io.types.VolumeInfo`; another
private creator, or the standard (0018,9087), takes the value away from it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pydicom
import pytest

from dicomml.io import read_series
from dicomml.io._scan_fast import read_fast
from dicomml.io.ge import b_value
from dicomml.io.header import read_header_pydicom
from tests.io.realdata import dataset


@pytest.fixture(scope="module")
def ge_files() -> list[Path]:
    folder = dataset("dcm_qa_nih") / "In" / "20180918GE" / "mr_0004"
    files = sorted(p for p in folder.iterdir() if p.suffix != ".txt")
    assert len(files) == 150  # 10 volumes of 15 slices
    return files


def _edit(src: Path, dst: Path, *, slop: str | None = None, creator: str | None = None,
          standard: float | None = None, implicit: bool = False) -> str:
    ds = pydicom.dcmread(src)
    if slop is not None:
        ds[0x00431039].value = slop
    if creator is not None:
        ds[0x00430010].value = creator
    if standard is not None:
        ds.DiffusionBValue = standard
    if implicit:
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    ds.save_as(dst, enforce_file_format=True)
    return str(dst)


def _rows(path: str) -> tuple:
    size = os.path.getsize(path)
    return (read_fast(path, size, 0.0)["diffusion_bvalue"],
            read_header_pydicom(path, size, 0.0)["diffusion_bvalue"])


def test_rule_is_first_value_modulo_1e9():
    assert b_value(1000000750) == 750.0
    assert b_value(1500) == 1500.0
    assert b_value(0) == 0.0
    assert b_value(None) is None and b_value("x") is None


def test_source_files_read_b0(ge_files):
    assert _rows(str(ge_files[0])) == (0.0, 0.0)


@pytest.mark.parametrize("implicit", [False, True])
def test_index_takes_the_private_b_value(ge_files, tmp_path, implicit):
    src = ge_files[0]
    biased = _edit(src, tmp_path / "a.dcm", slop="1000000750\\8\\0\\0", implicit=implicit)
    plain = _edit(src, tmp_path / "b.dcm", slop="1500\\8\\0\\0", implicit=implicit)
    other = _edit(src, tmp_path / "c.dcm", slop="1500\\8\\0\\0", creator="NOT_GE_01",
                  implicit=implicit)
    standard = _edit(src, tmp_path / "d.dcm", slop="1500\\8\\0\\0", standard=800.0,
                     implicit=implicit)
    assert _rows(biased) == (750.0, 750.0)
    assert _rows(plain) == (1500.0, 1500.0)
    assert _rows(other) == (None, None)
    assert _rows(standard) == (800.0, 800.0)


def test_volumes_carry_the_private_b_value(ge_files, tmp_path):
    """The 10 volumes of the copies, b-values 0, 1000, 2000... (biased by 10⁹ on odd ones)."""
    order = read_series([str(p) for p in ge_files])
    assert len(order.volumes) == 10
    volume_of = {p: k // 15 for k, p in enumerate(order.paths)}
    files = []
    for p in ge_files:
        k = volume_of[str(p)]
        slop = f"{(k % 2) * 1_000_000_000 + 1000 * k}\\8\\0\\0"
        files.append(_edit(p, tmp_path / p.name, slop=slop))
    vol = read_series(files)
    assert vol.issues == ()
    assert [v.b_value for v in vol.volumes] == [1000.0 * k for k in range(10)]
    assert vol.pixels.shape == order.pixels.shape
