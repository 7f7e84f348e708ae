"""4-D reads, mosaics, enhanced ordering and bad input of read_series (real files, edited)."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest

from dicomml.errors import ConfigError, InvalidDicomError, SeriesError
from dicomml.io import Volume, read_series
from dicomml.io.volume import from_sitk, to_sitk
from dicomml.testing import write_ct_series
from dicomml.testing.enhanced import write_enhanced_ct
from tests.io.realdata import dataset


def _copy(src, dst):
    dst.mkdir(parents=True, exist_ok=True)
    for p in sorted(src.glob("*.dcm")):
        shutil.copy(p, dst / p.name)
    return sorted(dst.glob("*.dcm"))


# ----------------------------------------------------------------------------- mosaics
def test_mosaic_without_csa_header_is_an_issue(tmp_path):
    path = tmp_path / "1.dcm"
    ds = pydicom.dcmread(dataset("dcm_qa_ts") / "In" / "1.dcm")
    del ds[0x0029, 0x1010]
    ds.save_as(path)
    vol = read_series(path)
    assert [i.kind for i in vol.issues] == ["mosaic"]
    detail = vol.issues[0].detail
    assert str(path) in detail and "(0029,1010)" in detail and "NumberOfImagesInMosaic" in detail
    assert "assumed one 384×384 image" in detail
    assert vol.pixels.shape == (1, 384, 384)
    with pytest.raises(InvalidDicomError, match="MOSAIC"):
        read_series(path, strict=True)


def test_corrupt_csa_header_is_an_issue(tmp_path):
    path = tmp_path / "1.dcm"
    ds = pydicom.dcmread(dataset("dcm_qa_ts") / "In" / "1.dcm")
    ds[0x0029, 0x1010].value = ds[0x0029, 0x1010].value[:200]
    ds.save_as(path)
    vol = read_series(path)
    assert [i.kind for i in vol.issues] == ["mosaic"]
    assert "cannot be read" in vol.issues[0].detail


def _mosaic_with_vr(tmp_path, tag: int, vr: bytes):
    """dcm_qa_ts's mosaic (Explicit VR Little Endian) with the VR of one 2-byte element
    changed in place to ``vr``, whose values are 4 bytes: pydicom cannot convert it."""
    src = dataset("dcm_qa_ts") / "In" / "1.dcm"
    elem = pydicom.dcmread(src, stop_before_pixels=True).get_item(tag)
    assert elem.length == 2 and elem.VR in ("US", "SS")
    data = bytearray(src.read_bytes())
    at = elem.value_tell - 4  # explicit VR, 16-bit length: tag, VR, length, value
    assert data[at:at + 2] == elem.VR.encode()
    data[at:at + 2] = vr
    path = tmp_path / "1.dcm"
    path.write_bytes(bytes(data))
    return path


def test_an_unread_corrupt_value_of_the_full_header_does_not_stop_the_mosaic(tmp_path):
    """The full header of a mosaic (read for its CSA header) converts only what is read:
    a private (0019,100A) value of 2 bytes as UL, which no reader of dicomml asks for,
    leaves the mosaic readable and cut as the original (before, the whole header was
    converted and the file was unreadable)."""
    ref = read_series(dataset("dcm_qa_ts") / "In" / "1.dcm")
    path = _mosaic_with_vr(tmp_path, 0x0019100A, b"UL")
    with pytest.raises(Exception, match=r"\(0019,100A\)"):  # what pydicom makes of it
        pydicom.dcmread(path)[0x0019, 0x100A].value
    vol = read_series(path)
    assert vol.issues == ref.issues
    assert vol.pixels.shape == ref.pixels.shape == (35, 64, 64)
    assert vol.pixels.tobytes() == ref.pixels.tobytes()
    assert np.array_equal(vol.origin, ref.origin)
    assert np.array_equal(vol.direction, ref.direction)


def test_a_corrupt_value_read_from_the_full_header_is_reported(tmp_path):
    """A value that cutting the mosaic reads and pydicom cannot convert ((0028,0010) Rows
    as a 2-byte UL) makes the slice unreadable, with an error naming the file."""
    path = _mosaic_with_vr(tmp_path, 0x00280010, b"UL")
    with pytest.raises(InvalidDicomError, match="cannot parse the DICOM data set") as e:
        read_series(path, strict=True)
    assert str(path) in str(e.value)


# ----------------------------------------------------------------------------- 4-D
def test_incomplete_last_volume(tmp_path):
    files = _copy(dataset("dcm_qa_nih") / "In" / "20180918GE" / "mr_0004", tmp_path)
    for p in files[-4:]:  # 4 of the 15 slices of volume 10
        p.unlink()
    vol = read_series(tmp_path)
    assert vol.pixels.shape == (9, 15, 64, 64)
    assert [i.kind for i in vol.issues] == ["incomplete_volume"]
    assert "11 slice(s) beyond the 9 complete volume(s) of 15 positions" in vol.issues[0].detail
    assert files[-5].name in vol.issues[0].detail or "e.g." in vol.issues[0].detail
    with pytest.raises(SeriesError, match="incomplete_volume"):
        read_series(tmp_path, strict=True)


def test_4d_to_sitk_and_back(tmp_path):
    import SimpleITK  # noqa: F401 - a hard dependency: a broken install fails
    vol = read_series(dataset("dcm_qa_nih") / "In" / "20180918Si" / "mr_0003")
    assert vol.pixels.shape == (2, 5, 72, 72)
    img = to_sitk(vol)
    assert img.GetDimension() == 4 and img.GetSize() == (72, 72, 5, 2)
    assert img.GetSpacing()[:3] == tuple(reversed(vol.spacing))
    assert np.allclose(np.reshape(img.GetDirection(), (4, 4))[:3, :3], vol.direction)
    back = from_sitk(img)
    np.testing.assert_array_equal(back.pixels, vol.pixels)
    assert back.origin == vol.origin and back.spacing == vol.spacing
    first = to_sitk(vol.volume(0))
    assert first.GetDimension() == 3
    assert np.allclose(first.GetOrigin(), vol.origin)


def test_volume_argument_is_checked():
    folder = dataset("dcm_qa_nih") / "In" / "20180918Si" / "mr_0003"
    with pytest.raises(ConfigError, match="out of range"):
        read_series(folder, volume=2)
    three = read_series(dataset("dcm_qa_ts") / "In" / "1.dcm", volume=0)
    assert three.pixels.shape == (35, 64, 64)


# ----------------------------------------------------------------------------- enhanced
def test_frame_100_vs_frame_20_is_numeric(tmp_path):
    """A duplicate position keeps the lower frame number (numerically: 20, not "100")."""
    path = write_enhanced_ct(tmp_path / "e.dcm", seed=3, n_frames=120, rows=8, columns=8,
                             spacing=1.0)
    ds = pydicom.dcmread(path)
    per = ds.PerFrameFunctionalGroupsSequence
    per[100].PlanePositionSequence[0].ImagePositionPatient = \
        per[20].PlanePositionSequence[0].ImagePositionPatient
    ds.save_as(path)
    vol = read_series(path)
    assert 20 in vol.frames and 100 not in vol.frames
    dup = [i for i in vol.issues if i.kind == "duplicate_position"]
    assert len(dup) == 1 and "e.dcm[frame 100] left out" in dup[0].detail


def test_dimension_indices_contradicting_positions(tmp_path):
    files = _copy(dataset("dcm_qa_xa30") / "In" / "25_asl_2d_tra", tmp_path)
    ds = pydicom.dcmread(files[3])
    per = ds.PerFrameFunctionalGroupsSequence
    stack = [int(f.FrameContentSequence[0].InStackPositionNumber) for f in per]
    rng = np.random.default_rng(0)
    for f, n in zip(per, rng.permutation(stack)):
        f.FrameContentSequence[0].InStackPositionNumber = int(n)
    ds.save_as(files[3])
    vol = read_series(tmp_path)
    assert vol.pixels.shape == (7, 12, 64, 64)
    kinds = [i.kind for i in vol.issues]
    assert kinds == ["dimension_conflict"]
    assert "volume 3" in vol.issues[0].detail and "(0020,9057)" in vol.issues[0].detail
    with pytest.raises(SeriesError, match="dimension_conflict"):
        read_series(tmp_path, strict=True)


def test_xa30_bold_volumes_in_acquisition_time_order():
    vol = read_series(dataset("dcm_qa_xa30") / "In" / "7_func-bold_task-fa_run-1")
    assert vol.pixels.shape == (20, 33, 64, 64)
    times = [v.acquisition_time for v in vol.volumes]
    assert times == sorted(times) and len(set(times)) == 20
    assert [v.temporal_position for v in vol.volumes] == list(range(1, 21))


# ----------------------------------------------------------------------------- issue 14.6
def _edit(path, fn):
    ds = pydicom.dcmread(path)
    fn(ds)
    ds.save_as(path)


@pytest.mark.parametrize("corrupt", ["modality_lut", "rescale_multi", "voi_lut"])
@pytest.mark.parametrize("workers", [None, 1, 3])
def test_malformed_slice_is_an_issue_naming_the_file(tmp_path, corrupt, workers):
    files = write_ct_series(tmp_path, seed=11, n_slices=5, rows=16, columns=16)
    # the first slice along z for the VOI LUT (its VOI LUT is the volume's), else the last
    # (in the last thread's run of the pixel pass); leaving either out opens no gap
    z = lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2])  # noqa: E731
    bad = min(files, key=z) if corrupt == "voi_lut" else max(files, key=z)

    def modality_lut(ds):
        item = pydicom.Dataset()
        item.LUTDescriptor = [4096, 0]  # two values instead of three
        item.ModalityLUTType = "HU"
        item.LUTData = b"\x00\x01" * 3
        ds.ModalityLUTSequence = [item]

    def rescale_multi(ds):
        ds.RescaleSlope = ["1", "2"]

    def voi_lut(ds):
        item = pydicom.Dataset()
        item.add_new(0x00283002, "US", [16, 0])  # LUT Descriptor: two values, not three
        item.add_new(0x00283006, "US", [0, 1])
        ds.VOILUTSequence = [item]

    _edit(bad, {"modality_lut": modality_lut, "rescale_multi": rescale_multi,
                "voi_lut": voi_lut}[corrupt])
    vol = read_series(tmp_path, workers=workers)
    assert [i.kind for i in vol.issues] == ["unreadable"]
    assert str(bad) in vol.issues[0].detail
    assert vol.pixels.shape[0] == (5 if corrupt == "voi_lut" else 4)
    assert str(bad) not in vol.paths or corrupt == "voi_lut"
    with pytest.raises(InvalidDicomError, match=bad.name):
        read_series(tmp_path, strict=True, workers=workers)


# ----------------------------------------------------------------------------- Philips
def test_philips_scale_slope_precise_float(tmp_path):
    files = write_ct_series(tmp_path, seed=12, n_slices=3, rows=8, columns=8)

    def philips(ds):
        ds.Modality, ds.Manufacturer = "MR", "Philips Medical Systems"
        ds.RescaleSlope, ds.RescaleIntercept = 2.5, -100.0
        block = ds.private_block(0x2005, "Philips MR Imaging DD 001", create=True)
        block.add_new(0x0E, "FL", 0.125)

    for p in files:
        _edit(p, philips)
    display = read_series(tmp_path)
    precise = read_series(tmp_path, philips_precise=True)
    stored = np.stack([pydicom.dcmread(p).pixel_array for p in display.paths]).astype(float)
    np.testing.assert_allclose(display.pixels, stored * 2.5 - 100.0, rtol=1e-6)
    np.testing.assert_allclose(precise.pixels, (stored * 2.5 - 100.0) / (2.5 * 0.125),
                               rtol=1e-6)
    assert precise.extra["philips_scale_slope"] == 0.125
    assert display.extra["philips_scale_slope"] == 0.125
    assert precise.extra["philips_precise"] is True and display.extra["philips_precise"] is False


def test_volume_type_defaults():
    v = Volume(pixels=np.zeros((2, 3, 4), np.float32), spacing=(1.0, 1.0, 1.0),
               origin=(0.0, 0.0, 0.0), direction=np.eye(3))
    assert v.n_volumes == 1 and v.volume(0) is v


def test_in_stack_positions_contradicting_a_3d_stack(tmp_path):
    path = write_enhanced_ct(tmp_path / "e.dcm", seed=4, n_frames=6, rows=8, columns=8,
                             spacing=2.0)
    assert read_series(path).issues == ()
    ds = pydicom.dcmread(path)
    content = [f.FrameContentSequence[0] for f in ds.PerFrameFunctionalGroupsSequence]
    content[0].InStackPositionNumber, content[3].InStackPositionNumber = \
        content[3].InStackPositionNumber, content[0].InStackPositionNumber
    ds.save_as(path)
    vol = read_series(path)
    assert [i.kind for i in vol.issues] == ["dimension_conflict"]


def test_preprocessing_a_4d_volume_asks_for_one_volume():
    from dicomml.preprocess.pipeline import to_tensor

    vol = read_series(dataset("dcm_qa_nih") / "In" / "20180918Si" / "mr_0003")
    with pytest.raises(ConfigError, match="2 volumes"):
        to_tensor(vol, 0)
    assert to_tensor(vol.volume(1), 2).shape == (224, 224, 3)
