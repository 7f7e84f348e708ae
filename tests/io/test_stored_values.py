"""``read_image(..., stored_values=True)``: the stored integers kept only where they stand
for the modality values exactly in float32, and ``modality_values`` gives back, bit for bit,
what the default read returns. Files: pydicom's test data (direct and full readers,
compressed, multi-frame, Modality LUT, colour, a non-integer slope) and generated 512² CT.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from dicomml.io import modality_values, read_image
from dicomml.io.pixels import exact_in_float32
from dicomml.testing import write_ct_series


def _data(name: str) -> str:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.fail(f"pydicom's test file {name} is missing (pydicom installs it)")
    return path


@pytest.mark.parametrize("name,kept", [
    ("CT_small.dcm", True),        # int16, slope 1, intercept -1024 (full reader: < 64 KiB)
    ("MR_small.dcm", True),        # no rescale: the stored values are the modality values
    ("emri_small.dcm", True),      # 10 frames, uint16
    ("JPEG2000.dcm", True),        # decoded by a codec, no rescale
    ("MR_small_RLE.dcm", True),
    ("MR2_J2KI.dcm", False),       # slope 3.774114: not exact in float32
    ("mlut_18.dcm", False),        # (0028,3000) Modality LUT Sequence
    ("SC_rgb.dcm", False),         # colour
    ("rtdose.dcm", False),         # 32-bit stored values
])
def test_stored_values_only_where_exact_and_bit_for_bit_the_default(name, kept):
    path = _data(name)
    default = read_image(path)
    img = read_image(path, stored_values=True)
    assert img.stored_values is kept
    if kept:
        assert img.pixels.dtype.kind in "iu" and img.pixels.dtype.itemsize <= 2
        assert exact_in_float32(img.pixels.dtype, img.rescale_slope, img.rescale_intercept)
        ds = pydicom.dcmread(path)
        np.testing.assert_array_equal(img.pixels, ds.pixel_array.reshape(img.pixels.shape))
    else:
        assert img.pixels.dtype == np.float32
        assert img.pixels.tobytes() == default.pixels.tobytes()
    values = modality_values(img)
    assert values.dtype == default.pixels.dtype and values.shape == default.pixels.shape
    assert values.tobytes() == default.pixels.tobytes()
    assert modality_values(default) is default.pixels
    # everything else is the default read's
    for attr in ("windows", "pixel_spacing", "photometric_interpretation", "bits_stored",
                 "rescale_slope", "rescale_intercept", "sop_instance_uid"):
        assert getattr(img, attr) == getattr(default, attr), attr


def test_direct_reader_hands_out_its_own_array(tmp_path):
    """512² files go through the direct reader, which reads the stored values an Image keeps
    into an array of their own (and those it converts into a per-thread buffer): no later
    read, of either kind, may change the first Image."""
    paths = sorted(write_ct_series(tmp_path / "ct", seed=3, n_slices=3, rows=512,
                                   columns=512, body="head"))
    first = read_image(paths[0], stored_values=True)
    kept = first.pixels.copy()
    second = read_image(paths[1], stored_values=True)
    assert first.stored_values and second.stored_values
    assert first.pixels.dtype == np.uint16 and (first.rescale_slope,
                                                first.rescale_intercept) == (1.0, -1024.0)
    assert not np.array_equal(kept, second.pixels)
    assert not np.shares_memory(first.pixels, second.pixels)
    read_image(paths[1])                  # a float read: through the thread's buffer
    read_image(paths[2], stored_values=True)
    np.testing.assert_array_equal(first.pixels, kept)
    assert modality_values(first).tobytes() == read_image(paths[0]).pixels.tobytes()
    # frames= and isolation keep the option
    one = read_image(paths[2], frames=[0], stored_values=True, isolate=True)
    assert one.stored_values and one.pixels.dtype == np.uint16
    assert modality_values(one).tobytes() == read_image(paths[2]).pixels.tobytes()


@pytest.mark.parametrize("slope,intercept,kept", [
    (2.0, -2048.0, True), (-1.0, 0.0, True), (1.0, 0.0, True), (0.5, -1024.0, False),
    (1.0, -1024.5, False), (300.0, 0.0, False),   # 300 · 65535 ≥ 2**24: not exact
])
def test_rescale_variants(tmp_path, slope, intercept, kept):
    src = sorted(write_ct_series(tmp_path / "ct", seed=4, n_slices=1, rows=512, columns=512,
                                 body="head"))[0]
    ds = pydicom.dcmread(src)
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    path = tmp_path / "variant.dcm"
    ds.save_as(path, enforce_file_format=True)
    default = read_image(path)
    img = read_image(path, stored_values=True)
    assert img.stored_values is kept
    assert modality_values(img).tobytes() == default.pixels.tobytes()


def test_modality_lut_false_and_true():
    path = _data("MR_small.dcm")   # no rescale, no Modality LUT
    assert not read_image(path, stored_values=True, modality_lut=False).stored_values
    with pytest.raises(Exception, match="modality_lut=True"):
        read_image(path, stored_values=True, modality_lut=True)
    ct = _data("CT_small.dcm")
    img = read_image(ct, stored_values=True, modality_lut=True)
    assert img.stored_values
    assert modality_values(img).tobytes() == read_image(ct).pixels.tobytes()


@pytest.mark.parametrize("slope,intercept", [(1e38, 1e38), (-1e38, 0.0), (3e38, 1.0)])
def test_a_rescale_beyond_float32_is_an_error_naming_the_file(tmp_path, slope, intercept):
    """An absurd slope would give infinities: an InvalidDicomError naming the file and
    (0028,1053) instead, for one image (both readers) and as an issue of the series."""
    from dicomml.errors import InvalidDicomError
    from dicomml.io import read_series

    paths = sorted(write_ct_series(tmp_path / "ct", seed=7, n_slices=3, rows=128,
                                   columns=128))
    small = write_ct_series(tmp_path / "small", seed=7, n_slices=1, rows=16, columns=16)[0]
    for src in (paths[0], small):          # the direct reader (> 64 KiB) and the full one
        ds = pydicom.dcmread(src)
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.save_as(src, enforce_file_format=True)
        for stored_values in (False, True):
            with pytest.raises(InvalidDicomError, match=r"\(0028,1053\) Rescale Slope") as e:
                read_image(src, stored_values=stored_values)
            assert str(src) in str(e.value)
    vol = read_series(tmp_path / "ct")
    assert [i.kind for i in vol.issues] == ["unreadable"] and vol.pixels.shape[0] == 2
    assert str(paths[0]) in vol.issues[0].detail and "(0028,1053)" in vol.issues[0].detail
    assert np.isfinite(vol.pixels).all()
