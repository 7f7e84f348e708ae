"""Colour (RGB) series: a trailing axis of 3 samples, 3-D and 4-D, on real XA30 FA maps.

The equality with dcm2niix's RGB NIfTI references is in ``test_realdata_volumes``; here the
4-D case (edited copies of the FA map, written to ``tmp_path``), ``Volume.volume(k)``,
``to_sitk`` and a series that mixes colour and grayscale images.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from dicomml.errors import SeriesError
from dicomml.io import read_series
from tests.io.realdata import dataset


@pytest.fixture(scope="module")
def fa_map():
    files = sorted((dataset("dcm_qa_xa30") / "In" / "14_DWI_dir80_PA").iterdir())
    assert len(files) == 1
    return files[0]


def _copy(src, dst, *, number: int, edit=None):
    ds = pydicom.dcmread(src)
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceNumber = number
    if edit is not None:
        edit(ds)
    ds.save_as(dst, enforce_file_format=True)
    return str(dst)


def test_colour_volume_3d(fa_map):
    vol = read_series([str(fa_map)])
    ref = pydicom.dcmread(fa_map).pixel_array  # (frames, rows, columns, 3) uint8
    assert vol.is_color and vol.pixels.shape == (39, 72, 72, 3)
    assert vol.pixels.dtype == np.float32 and vol.n_volumes == 1 and vol.volumes == ()
    # ordered along the normal: the frames of this object are already in that order
    np.testing.assert_array_equal(vol.pixels, ref[list(vol.frames)].astype(np.float32))
    assert vol.volume(0) is vol
    img = vol.to_sitk()
    assert img.GetSize() == (72, 72, 39) and img.GetNumberOfComponentsPerPixel() == 3
    assert img.GetSpacing() == pytest.approx((3.0, 3.0, 3.0))
    back = np.asarray(__import__("SimpleITK").GetArrayFromImage(img))
    np.testing.assert_array_equal(back, vol.pixels)


def test_colour_volume_4d(fa_map, tmp_path):
    """Two instances at the same 39 positions: two colour volumes in Instance Number order."""
    def invert(ds):
        ds.PixelData = (255 - ds.pixel_array).astype(np.uint8).tobytes()

    files = [_copy(fa_map, tmp_path / "b.dcm", number=2, edit=invert),
             _copy(fa_map, tmp_path / "a.dcm", number=1)]
    vol = read_series(files)
    assert vol.issues == ()
    assert vol.is_color and vol.pixels.shape == (2, 39, 72, 72, 3) and vol.n_volumes == 2
    first = read_series([str(fa_map)]).pixels
    np.testing.assert_array_equal(vol.pixels[0], first)
    np.testing.assert_array_equal(vol.pixels[1], 255 - first)
    one = vol.volume(1)
    assert one.is_color and one.pixels.shape == (39, 72, 72, 3)
    np.testing.assert_array_equal(one.pixels, 255 - first)
    assert read_series(files, volume=1).pixels.shape == (39, 72, 72, 3)
    img = vol.to_sitk()
    assert img.GetDimension() == 4 and img.GetNumberOfComponentsPerPixel() == 3
    assert img.GetSize() == (72, 72, 39, 2)


def test_colour_and_grayscale_mixed_is_refused(fa_map, tmp_path):
    def to_gray(ds):
        red = ds.pixel_array[..., 0]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        del ds.PlanarConfiguration
        ds.PixelData = red.astype(np.uint8).tobytes()

    files = [str(fa_map), _copy(fa_map, tmp_path / "gray.dcm", number=2, edit=to_gray)]
    with pytest.raises(SeriesError, match="mixes 1 colour image.*1 grayscale image"):
        read_series(files)


def test_preprocess_refuses_a_colour_volume(fa_map):
    from dicomml.errors import ConfigError
    from dicomml.preprocess import to_tensor

    with pytest.raises(ConfigError, match="colour \\(RGB\\) volume"):
        to_tensor(read_series([str(fa_map)]))
