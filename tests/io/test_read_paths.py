"""read_image's direct path (header from the first bytes, pixel data read at its offset into a
per-thread buffer: :mod:`dicomml.io.in_process`) gives the Image of the general path
(the whole file, pixels decoded by pydicom) bit for bit, and the same errors.

On pydicom's sample files (``get_testdata_file(name)``) and on copies of them changed in one
attribute. ``direct_read.HEAD`` is lowered so that the direct path also applies to these
small files (it applies to files larger than ``HEAD`` whose header lies in the first
``HEAD`` bytes): to one byte less than the file. Each test says whether the direct path was
taken.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut

from dicomml.errors import DicommlError, InvalidDicomError
from dicomml.io import direct_read, in_process, read_image
from dicomml.io._read_dataset import load_dataset, quiet_pydicom
from dicomml.io.pixels import image_from_dataset

def _direct_for(monkeypatch, path: Path) -> Path:
    """Let the direct path apply to ``path`` (and files at least as large)."""
    monkeypatch.setattr(direct_read, "HEAD", path.stat().st_size - 1)
    return path


def _sample(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    if path is None:  # pragma: no cover - pydicom-data is a test dependency
        pytest.skip(f"{name} is not installed")
    return Path(path)


def _general(path, **kw):
    """The general path: pydicom parses the whole file and decodes the pixels."""
    with quiet_pydicom():
        ds, _ = load_dataset(path, fast=False)
        return image_from_dataset(ds, str(path), **kw)


def _pydicom_pixels(path) -> np.ndarray:
    """Independent reference: pydicom's pixel_array + apply_modality_lut, as float32."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        arr = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
    return arr.reshape(int(ds.get("NumberOfFrames") or 1), ds.Rows, ds.Columns)


def _assert_same_image(a, b):
    for field in dataclasses.fields(a):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            assert x is not None and y is not None, field.name
            assert x.dtype == y.dtype and x.shape == y.shape, field.name
            assert x.tobytes() == y.tobytes(), field.name  # bit for bit (-0.0, NaN)
        elif field.name == "extra":
            assert x.keys() == y.keys()
            for k in x:
                assert np.array_equal(x[k], y[k]), k
        else:
            assert x == y, field.name


def _write_variant(tmp_path, name: str, **changes) -> Path:
    """A copy of the sample ``name`` with attributes changed (``pixels``: new stored values)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(_sample(name))
    pixels = changes.pop("pixels", None)
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    if pixels is not None:
        ds.PixelData = pixels.tobytes()
    out = tmp_path / f"{Path(name).stem}-variant.dcm"
    ds.save_as(out, enforce_file_format=True)
    return out


# ----------------------------------------------------------------------------- same Image
@pytest.mark.parametrize("name,direct", [
    ("CT_small.dcm", True),            # Explicit VR Little Endian, signed, rescale, padding
    ("MR_small.dcm", True),            # Explicit VR Little Endian, signed, no rescale
    ("MR_small_implicit.dcm", True),   # Implicit VR Little Endian
    ("MR_small_padded.dcm", True),     # trailing padding after the pixel data
    ("examples_overlay.dcm", True),    # unsigned, Bits Stored 12 of 16, overlay before pixels
    ("rtdose_1frame.dcm", True),       # Implicit VR, unsigned 32-bit
    ("MR_small_bigendian.dcm", False),  # Explicit VR Big Endian: pydicom decodes
    ("MR_small_expb.dcm", False),
    ("rtdose.dcm", False),             # multi-frame (15 frames, 32-bit)
    ("emri_small.dcm", False),         # multi-frame MR
    ("MR_small_RLE.dcm", False),       # RLE Lossless: pydicom's decoder
    ("MR_small_jpeg_ls_lossless.dcm", False),  # JPEG-LS Lossless: a plugin
    ("JPEGLSNearLossless_16.dcm", False),
])
def test_direct_path_equals_the_general_path(monkeypatch, name, direct):
    path = _direct_for(monkeypatch, _sample(name))
    assert (direct_read.load_head(str(path)) is not None) == direct
    img = read_image(path)
    _assert_same_image(img, _general(path))
    assert img.pixels.tobytes() == _pydicom_pixels(path).tobytes()


@pytest.mark.parametrize("frames", [[0], [-1], [2, 3, 4], [4, 2], 7])
def test_frames_selection_equals_the_general_path(frames):
    path = _sample("rtdose.dcm")
    img = read_image(path, frames=frames)
    _assert_same_image(img, _general(path, frames=frames))
    index = [frames] if isinstance(frames, int) else frames
    assert img.pixels.tobytes() == _pydicom_pixels(path)[index].tobytes()


@pytest.mark.parametrize("modality_lut", [None, False])
def test_modality_lut_options_on_the_direct_path(monkeypatch, modality_lut):
    path = _direct_for(monkeypatch, _sample("CT_small.dcm"))
    assert direct_read.load_head(str(path)) is not None
    _assert_same_image(read_image(path, modality_lut=modality_lut),
                       _general(path, modality_lut=modality_lut))


def test_sign_extension_of_bits_stored_below_bits_allocated(monkeypatch, tmp_path):
    """Pixel Representation 1, Bits Stored 12 of 16, garbage in the high bits (PS3.5 8.1.1):
    the direct path sign-extends in its buffer as pydicom does."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pydicom.dcmread(_sample("CT_small.dcm"))
    stored = ref.pixel_array.astype(np.int16)
    values = np.clip(stored, -2048, 2047)
    raw = (values.view(np.uint16) & 0x0FFF) | 0xA000  # high bits: 1010, not the sign
    path = _write_variant(tmp_path, "CT_small.dcm", BitsStored=12, HighBit=11,
                          pixels=raw.astype("<u2"))
    _direct_for(monkeypatch, _sample("MR_small.dcm"))  # the smaller of the two files read
    assert direct_read.load_head(str(path)) is not None
    img = read_image(path)
    _assert_same_image(img, _general(path))
    assert img.pixels.tobytes() == _pydicom_pixels(path).tobytes()
    np.testing.assert_array_equal(img.pixels[0], values.astype(np.float32) - 1024)
    # A second read in this thread reuses the buffer: the first Image keeps its values.
    again = read_image(_sample("MR_small.dcm"))
    np.testing.assert_array_equal(img.pixels[0], values.astype(np.float32) - 1024)
    assert again.pixels.shape == (1, 64, 64)


def test_monochrome1_is_kept_for_the_voi_step(monkeypatch, tmp_path):
    path = _write_variant(tmp_path, "MR_small.dcm", PhotometricInterpretation="MONOCHROME1")
    _direct_for(monkeypatch, path)
    assert direct_read.load_head(str(path)) is not None
    img = read_image(path)
    assert img.photometric_interpretation == "MONOCHROME1"
    _assert_same_image(img, _general(path))


def test_unsigned_eight_bit(monkeypatch, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pydicom.dcmread(_sample("MR_small.dcm"))
    raw = (ref.pixel_array.astype(np.int64) % 256).astype(np.uint8)
    path = _write_variant(tmp_path, "MR_small.dcm", BitsAllocated=8, BitsStored=8, HighBit=7,
                          PixelRepresentation=0, pixels=raw)
    _direct_for(monkeypatch, path)
    assert direct_read.load_head(str(path)) is not None
    img = read_image(path)
    _assert_same_image(img, _general(path))
    assert img.pixels.tobytes() == raw.astype(np.float32)[None].tobytes()


# ----------------------------------------------------------------------------- same errors
def _error(fn, kind=InvalidDicomError):
    with pytest.raises(kind) as err:
        fn()
    return str(err.value)


def test_truncated_file_same_error(tmp_path, monkeypatch):
    """Pixel data shorter than declared: the direct path declines and the general path's
    error (naming the file, the sizes and what to do) is raised, as before."""
    data = _sample("CT_small.dcm").read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[:-5000])
    monkeypatch.setattr(direct_read, "HEAD", 8192)  # below the file's size: considered
    assert direct_read.load_head(str(path)) is None
    msg = _error(lambda: read_image(path))
    assert str(path) in msg and "truncated" in msg and "Re-export" in msg
    with monkeypatch.context() as m:  # the whole-file path only, as before this path existed
        m.setattr(in_process, "load_head", lambda path, f=None: None)
        assert _error(lambda: read_image(path)) == msg
    assert _error(lambda: _general(path)) == msg


def test_pydicom_truncated_sample_same_error():
    path = _sample("MR_truncated.dcm")
    msg = _error(lambda: read_image(path))
    assert "truncated" in msg and _error(lambda: _general(path)) == msg


def test_file_cut_inside_the_header_is_reported(tmp_path, monkeypatch):
    path = tmp_path / "cut-header.dcm"
    path.write_bytes(_sample("CT_small.dcm").read_bytes()[:3000])
    monkeypatch.setattr(direct_read, "HEAD", 2048)
    msg = _error(lambda: read_image(path), DicommlError)  # pydicom stops: no pixel data
    assert str(path) in msg
    with monkeypatch.context() as m:
        m.setattr(in_process, "load_head", lambda path, f=None: None)
        assert _error(lambda: read_image(path), DicommlError) == msg
