"""read_series reads native slices header first, pixels straight into the volume
(:mod:`dicomml.io.direct_read`): same values as the whole-file path and as pydicom."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut

from dicomml.errors import InvalidDicomError
from dicomml.io import direct_read, read_series
from dicomml.io import volume as volume_mod
from dicomml.testing import write_ct_series

SIZE = 192  # 192² × 2 bytes = 72 KiB > direct_read.HEAD: the direct path applies


def _whole_file(monkeypatch, *args, **kwargs):
    """read_series with the direct path off (every file read whole, as before)."""
    with monkeypatch.context() as m:
        m.setattr(volume_mod, "load_head", lambda path: None)
        return read_series(*args, **kwargs)


def _pydicom_volume(paths):
    """Independent reference: pydicom per file, ordered along z (the series is axial)."""
    dss = [pydicom.dcmread(p) for p in paths]
    dss.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    return np.stack([apply_modality_lut(d.pixel_array, d).astype(np.float32) for d in dss])


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("workers", [1, 2, 3, None])
@pytest.mark.parametrize("threads_from", [0, volume_mod.PIXEL_THREADS_FROM])
def test_direct_path_equals_whole_file_and_pydicom(tmp_path, monkeypatch, signed, workers,
                                                   threads_from):
    """Every pixel pass (threads from 0 voxels: this small series on ``workers`` threads;
    the default threshold: in one thread) gives the whole-file read's and pydicom's values."""
    monkeypatch.setattr(volume_mod, "PIXEL_THREADS_FROM", threads_from)
    paths = write_ct_series(tmp_path, seed=3, n_slices=6, rows=SIZE, columns=SIZE,
                            signed=signed)
    assert direct_read.load_head(str(paths[0])) is not None  # the path under test is taken
    vol = read_series(tmp_path, workers=workers)
    ref = _whole_file(monkeypatch, tmp_path, workers=workers)
    assert vol.pixels.dtype == np.float32 and vol.pixels.flags.c_contiguous
    np.testing.assert_array_equal(vol.pixels, ref.pixels)
    assert vol.pixels.tobytes() == ref.pixels.tobytes()  # bit-identical (-0.0, NaN)
    assert vol.sop_instance_uids == ref.sop_instance_uids and vol.paths == ref.paths
    assert vol.spacing == ref.spacing and vol.issues == ref.issues
    np.testing.assert_array_equal(vol.pixels, _pydicom_volume(paths))


def test_padding_mask_from_the_direct_path(tmp_path, monkeypatch):
    write_ct_series(tmp_path, seed=4, n_slices=4, rows=SIZE, columns=SIZE, padding=True)
    vol = read_series(tmp_path)
    ref = _whole_file(monkeypatch, tmp_path)
    assert vol.padding_mask is not None and vol.padding_mask.any()
    np.testing.assert_array_equal(vol.padding_mask, ref.padding_mask)
    np.testing.assert_array_equal(vol.pixels, ref.pixels)


def test_unused_high_bits_are_cleared_as_pydicom_does(tmp_path, monkeypatch):
    paths = write_ct_series(tmp_path, seed=5, n_slices=3, rows=SIZE, columns=SIZE)
    for p in paths:  # garbage in the 4 bits above (0028,0101) Bits Stored 12
        ds = pydicom.dcmread(p)
        arr = ds.pixel_array.astype(np.uint16)
        arr[::7] |= 0xB000
        ds.PixelData = arr.tobytes()
        ds.save_as(p)
    ref = _pydicom_volume(paths)
    assert ref.max() < 4096 - 1024  # pydicom masks them
    np.testing.assert_array_equal(read_series(tmp_path).pixels, ref)
    np.testing.assert_array_equal(_whole_file(monkeypatch, tmp_path).pixels, ref)


def test_modality_lut_false_reads_stored_values(tmp_path, monkeypatch):
    write_ct_series(tmp_path, seed=6, n_slices=3, rows=SIZE, columns=SIZE)
    vol = read_series(tmp_path, modality_lut=False)
    np.testing.assert_array_equal(vol.pixels,
                                  _whole_file(monkeypatch, tmp_path, modality_lut=False).pixels)
    assert vol.pixels.min() >= 0  # stored values, not HU


def test_truncated_pixel_data_falls_back_and_is_reported(tmp_path):
    paths = write_ct_series(tmp_path, seed=7, n_slices=4, rows=SIZE, columns=SIZE)
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[:-1000])
    assert direct_read.load_head(str(paths[1])) is None  # the full reader reports it
    vol = read_series(tmp_path)
    assert vol.pixels.shape[0] == 3
    assert [i.kind for i in vol.issues].count("unreadable") == 1
    assert "truncated" in next(i.detail for i in vol.issues if i.kind == "unreadable")


def test_file_truncated_after_its_header_was_read(tmp_path):
    paths = write_ct_series(tmp_path, seed=8, n_slices=2, rows=SIZE, columns=SIZE)
    ds, ref = direct_read.load_head(str(paths[0]))
    assert ref.shape == (1, SIZE, SIZE) and ds.Rows == SIZE
    np.testing.assert_array_equal(ref.read(), pydicom.dcmread(paths[0]).pixel_array)
    paths[0].write_bytes(paths[0].read_bytes()[:-10])
    with pytest.raises(InvalidDicomError, match="changed or was truncated"):
        ref.read()


def test_file_changed_between_header_and_pixels(tmp_path, monkeypatch):
    lenient = write_ct_series(tmp_path / "a", seed=9, n_slices=3, rows=SIZE, columns=SIZE)
    strict = write_ct_series(tmp_path / "b", seed=9, n_slices=3, rows=SIZE, columns=SIZE)
    victims = {str(lenient[2]), str(strict[2])}
    real = direct_read.PixelRef.read

    def shrink_then_read(self):
        if self.path in victims:
            Path(self.path).write_bytes(Path(self.path).read_bytes()[:-10])
        return real(self)

    monkeypatch.setattr(direct_read.PixelRef, "read", shrink_then_read)
    vol = read_series(tmp_path / "a")  # lenient: the slice is left out, the geometry without it
    assert vol.pixels.shape[0] == 2 and str(lenient[2]) not in vol.paths
    assert any("changed or was truncated" in i.detail for i in vol.issues)
    with pytest.raises(InvalidDicomError, match="changed or was truncated"):
        read_series(tmp_path / "b", strict=True)


def test_small_and_multiframe_files_take_the_whole_file_path(tmp_path):
    small = write_ct_series(tmp_path / "s", seed=1, n_slices=2, rows=64, columns=64)
    assert direct_read.load_head(str(small[0])) is None  # smaller than HEAD
    mf = pydicom.data.get_testdata_file("emri_small.dcm")  # 10 frames
    assert direct_read.load_head(mf) is None


def test_an_enhanced_object_is_declined_at_its_file_meta(tmp_path, monkeypatch):
    """load_head leaves an enhanced object (named by (0002,0002)) to the whole-file read
    without walking its header; a classic file whose (0002,0002) wrongly names an enhanced
    class is read whole too, with the same values."""
    from dicomml.io import read_image
    from dicomml.io._read_fast import parse_light
    from dicomml.io.fields import FUNCTIONAL_GROUP_CLASSES
    from dicomml.testing.enhanced import write_enhanced_ct

    ect = write_enhanced_ct(tmp_path / "ect.dcm", n_frames=40, rows=64, columns=64)
    head = ect.read_bytes()[:direct_read.HEAD]
    walked: list = []
    assert parse_light(head, walked) is None and walked  # walked to its functional groups
    assert parse_light(head, walked := [], decline_classes=FUNCTIONAL_GROUP_CLASSES) is None
    assert walked == []  # declined before
    assert direct_read.load_head(str(ect)) is None

    (path,) = write_ct_series(tmp_path / "ct", seed=2, n_slices=1, rows=256, columns=256)
    ds = pydicom.dcmread(path)
    ref = read_image(path)
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT
    del ds.file_meta.FileMetaInformationGroupLength  # written anew, the meta as it is
    ds.save_as(path, enforce_file_format=False)
    assert pydicom.dcmread(path).file_meta.MediaStorageSOPClassUID.endswith(".2.1")
    assert direct_read.load_head(str(path)) is None
    assert parse_light(Path(path).read_bytes()) is not None  # the whole-file light read
    got = read_image(path)
    assert got.pixels.tobytes() == ref.pixels.tobytes()
