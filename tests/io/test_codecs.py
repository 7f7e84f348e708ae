"""Transfer syntax table, decoder availability, and the typed errors of broken files."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicomml.errors import (
    DecodeError,
    InvalidDicomError,
    NoPixelDataError,
    NotDicomError,
    UnsupportedTransferSyntaxError,
)
from dicomml.io import read_image
from dicomml.io import codecs
from tests.conftest import testdata as sample  # 'testdata' itself would be collected


def test_table_names_match_pydicom_uid_dictionary():
    from pydicom.uid import UID

    for uid, info in codecs.TRANSFER_SYNTAXES.items():
        name = UID(uid).name
        if name != uid:  # pydicom knows it
            assert info.name.split(" (")[0].split(",")[0] in name, uid


def test_decoder_status_agrees_with_pydicom():
    from pydicom.pixels import get_decoder

    for uid in ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.5"):
        available, missing = codecs.decoder_status(uid)
        assert available == get_decoder(uid).is_available
        assert missing == get_decoder(uid).missing_dependencies
    assert codecs.decoder_status("1.2.840.10008.1.2.4.100") == (False, [])


@pytest.mark.parametrize("name,uid,package", [
    ("JPEG2000.dcm", "1.2.840.10008.1.2.4.91", "pylibjpeg-openjpeg"),
    ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80", "pyjpegls"),
    ("SC_rgb_jpeg_dcmtk.dcm", "1.2.840.10008.1.2.4.50", "pylibjpeg-libjpeg"),
])
def test_missing_plugin_names_syntax_and_package(monkeypatch, name, uid, package):
    """Simulate a machine without the plugins: the message names the syntax and the package."""
    path = sample(name)
    monkeypatch.setattr(codecs, "decoder_status",
                        lambda u: (False, ["gdcm - requires gdcm", "pylibjpeg - requires x"]))
    with pytest.raises(UnsupportedTransferSyntaxError) as err:
        read_image(path)
    msg = str(err.value)
    assert uid in msg and codecs.transfer_syntax_name(uid) in msg
    assert package in msg and path in msg and "(0002,0010)" in msg


def test_syntax_without_any_decoder(tmp_path):
    src = sample("MR_small_RLE.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(src)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.102"  # MPEG-4 AVC/H.264
    path = tmp_path / "video.dcm"
    ds.save_as(path)
    with pytest.raises(UnsupportedTransferSyntaxError, match=r"1\.2\.840\.10008\.1\.2\.4\.102"
                       r".*(video|ffmpeg)|video.*1\.2\.840"):
        read_image(path)


def test_check_decodable_passes_for_native_and_installed():
    codecs.check_decodable("1.2.840.10008.1.2.1")
    codecs.check_decodable("1.2.840.10008.1.2.5")  # pydicom's own RLE decoder


# ----------------------------------------------------------------------------- broken files
def test_empty_file(tmp_path):
    p = tmp_path / "empty.dcm"
    p.write_bytes(b"")
    with pytest.raises(NotDicomError, match="empty"):
        read_image(p)


def test_not_dicom(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_bytes(b"this is not a DICOM file\n" * 20)
    with pytest.raises(NotDicomError, match=str(p)):
        read_image(p)


def test_no_pixel_data():
    path = sample("rtplan.dcm")
    with pytest.raises(NoPixelDataError, match=r"\(7FE0,0010\)"):
        read_image(path)


def test_truncated_pixel_data_message(tmp_path):
    src = Path(sample("CT_small.dcm"))
    data = src.read_bytes()
    p = tmp_path / "cut.dcm"
    p.write_bytes(data[:-1000])  # cut inside the pixel data value
    with pytest.raises(InvalidDicomError) as err:
        read_image(p)
    msg = str(err.value)
    assert "(7FE0,0010)" in msg and "truncated" in msg and str(p) in msg
    assert f"expected {128 * 128 * 2}" in msg and "128×128×1×16" in msg


def test_truncated_pixel_data_pydicom_path(tmp_path):
    """Big endian goes through pydicom: the same typed error."""
    data = Path(sample("MR_small_bigendian.dcm")).read_bytes()
    p = tmp_path / "cut_be.dcm"
    p.write_bytes(data[:-500])
    with pytest.raises(InvalidDicomError, match="truncated"):
        read_image(p)


def test_truncated_header(tmp_path):
    data = Path(sample("CT_small.dcm")).read_bytes()
    p = tmp_path / "head.dcm"
    p.write_bytes(data[:300])
    with pytest.raises((InvalidDicomError, NoPixelDataError)) as err:
        read_image(p)
    assert str(p) in str(err.value)


def test_corrupt_compressed_stream(tmp_path):
    src = sample("MR_small_jp2klossless.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(src)
    from pydicom.encaps import encapsulate, generate_frames

    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    rng = np.random.default_rng(0)
    garbage = frame[:20] + rng.integers(0, 256, size=len(frame) - 20, dtype=np.uint8).tobytes()
    ds.PixelData = encapsulate([garbage[: len(garbage) // 3]])
    p = tmp_path / "bad_j2k.dcm"
    ds.save_as(p)
    with pytest.raises(DecodeError) as err:
        read_image(p)
    assert str(p) in str(err.value) and "(7FE0,0010)" in str(err.value)


def test_source_file_is_opened_read_only(tmp_path):
    src = tmp_path / "ro.dcm"
    shutil.copy(sample("CT_small.dcm"), src)
    src.chmod(0o444)
    try:
        assert read_image(src).pixels.shape == (1, 128, 128)
    finally:
        src.chmod(0o644)
