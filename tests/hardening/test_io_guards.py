"""The guards added to dicomml.io for hostile input, one by one (fuzz findings as unit tests)."""

from __future__ import annotations

import io
import logging
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from dicomml.errors import DecodeError, InvalidDicomError
from dicomml.io import read_image, read_images, scan
from dicomml.io._read_dataset import describe_error, quiet_pydicom, shown_cs, shown_uid
from dicomml.io.pixels import _codestream_size, plugin_order


def _raw(name: str) -> bytes:
    return Path(get_testdata_file(name, download=False)).read_bytes()


@pytest.mark.parametrize("name", ["SC_rgb_jpeg_dcmtk.dcm", "JPEG2000.dcm",
                                  "MR_small_jpeg_ls_lossless.dcm", "JPEG-lossy.dcm"])
def test_codestream_size_matches_the_header(name):
    from pydicom.encaps import generate_fragments

    ds = pydicom.dcmread(io.BytesIO(_raw(name)))
    first = list(generate_fragments(ds.PixelData))[1]
    assert _codestream_size(first) == (ds.Rows, ds.Columns)


def test_j2k_declaring_huge_size_is_refused_without_allocating(tmp_path):
    raw = bytearray(_raw("JPEG2000.dcm"))
    siz = raw.find(b"\xff\x4f\xff\x51")
    raw[siz + 8:siz + 16] = (60000).to_bytes(4, "big") + (60000).to_bytes(4, "big")
    path = tmp_path / "huge_j2k.dcm"
    path.write_bytes(bytes(raw))
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match="60000×60000") as info:
            read_image(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(path) in str(info.value) and "(0028,0010)" in str(info.value)
    assert peak < 32 * 2 ** 20


def test_more_frames_than_fragments_is_refused(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm", download=False))
    ds.NumberOfFrames = 5000
    path = tmp_path / "frames.dcm"
    ds.save_as(path)
    with pytest.raises(InvalidDicomError, match="Number of Frames is 5000") as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_huge_element_length_in_scan_does_not_allocate(tmp_path):
    """The fuzz finding: a chunk duplicated into the header of MR_small.dcm leaves a 4-byte
    length of about 1.2 GB; the header reader's pydicom fallback read(length) used to
    allocate it (BufferedReader.read(n) allocates n bytes first)."""
    from tests.hardening.test_fuzz import _layout, mutate

    raw = _raw("MR_small.dcm")
    raw = mutate(raw, _layout(raw), "duplicate", 6, 241, 6)
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "x.dcm").write_bytes(bytes(raw))
    tracemalloc.start()
    try:
        res = scan(folder, tmp_path / "i.sqlite", progress=False, workers=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert res.files_seen == 1
    assert peak < 32 * 2 ** 20, f"{peak / 2 ** 20:.0f} MiB"


def test_plugin_order(monkeypatch):
    monkeypatch.delenv("DICOMML_DECODERS", raising=False)
    assert plugin_order(["gdcm", "pillow", "pylibjpeg"]) == ["pillow", "pylibjpeg", "gdcm"]
    assert plugin_order(["gdcm", "pillow"], ["gdcm", "nope"]) == ["gdcm"]
    monkeypatch.setenv("DICOMML_DECODERS", "pylibjpeg, gdcm")
    assert plugin_order(["gdcm", "pillow", "pylibjpeg"]) == ["pylibjpeg", "gdcm"]
    assert plugin_order(["gdcm", "pillow"], "pillow") == ["pillow"]


def test_decoders_option_reads_the_same_pixels():
    path = get_testdata_file("SC_rgb_jpeg_dcmtk.dcm", download=False)
    a = read_image(path, decoders=["pylibjpeg"]).pixels
    b = read_image(path, decoders=["gdcm"]).pixels
    ref = pydicom.dcmread(path).pixel_array.astype(np.float32)
    np.testing.assert_allclose(a[0], ref, atol=2)  # JPEG decoders may differ by rounding
    np.testing.assert_allclose(b[0], ref, atol=2)


def test_messages_never_quote_values():
    e = ValueError("Invalid value for VR UI: 'Doe^John\x00' in \"ID123\" of (0010,0010)")
    text = describe_error(e)
    assert "Doe" not in text and "ID123" not in text and "(0010,0010)" in text
    assert text.startswith("ValueError: ")
    assert shown_uid("1.2.840.10008.5.1.4.1.1.2") == "1.2.840.10008.5.1.4.1.1.2"
    assert shown_uid("1.2.3Doe^John") == "(invalid UID)" and shown_uid(None) == "unknown"
    assert shown_cs("CT") == "CT" and shown_cs("Doe^John") == "(invalid code string)"
    assert shown_cs(["ORIGINAL", "PRIMARY"]) == "ORIGINAL\\PRIMARY"


def test_pydicom_log_records_are_dropped_only_while_reading(caplog):
    caplog.set_level(logging.DEBUG)
    logger = logging.getLogger("pydicom")
    with quiet_pydicom():
        logger.warning("Invalid value: 'Doe^John'")
    assert "Doe^John" not in caplog.text
    logger.warning("outside a read")  # the user's own pydicom logging is untouched
    assert "outside a read" in caplog.text
    assert not logger.filters


def test_read_images_in_process_equals_read_image():
    paths = [get_testdata_file(n, download=False) for n in ("CT_small.dcm", "MR_small.dcm")]
    got = dict(read_images(paths, isolate=False))
    for p in paths:
        np.testing.assert_array_equal(got[p].pixels, read_image(p).pixels)
