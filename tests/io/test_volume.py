"""read_series against SimpleITK's ImageSeriesReader (ITK/GDCM) and hand-made broken series."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicomml.errors import DicommlError, SeriesError
from dicomml.io import read_series, resample
from dicomml.io.volume import from_sitk, to_sitk
from dicomml.testing import write_ct_series, write_enhanced_ct

import SimpleITK as sitk


def _dcm(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path)


def _sitk_series(folder):
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(names)
    return reader.Execute(), names


def _assert_same_as_sitk(vol, folder):
    ref, names = _sitk_series(folder)
    np.testing.assert_array_equal(vol.pixels, sitk.GetArrayFromImage(ref).astype(np.float32))
    img = to_sitk(vol)
    np.testing.assert_allclose(img.GetSpacing(), ref.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(img.GetOrigin(), ref.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(img.GetDirection(), ref.GetDirection(), atol=1e-6)
    # the same slices in the same order
    assert vol.sop_instance_uids == tuple(str(_dcm(n).SOPInstanceUID) for n in names)


def _shuffled_copy(files, dest: Path, seed: int) -> Path:
    dest.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(files))
    for k, i in enumerate(order):  # new names in shuffled order: names carry no order
        shutil.copy(files[i], dest / f"x{k:03d}")
    return dest


def test_real_ct_series_ct5n_shuffled(tmp_path):
    import pydicom.data

    folder = Path(pydicom.data.__file__).parent / "test_files" / "dicomdirtests" / "98892001" \
        / "CT5N"
    if not folder.is_dir():
        pytest.skip("pydicom's dicomdirtests not installed")
    files = sorted(folder.iterdir())
    copy = _shuffled_copy(files, tmp_path / "ct5n", seed=5)
    vol = read_series(copy)
    assert vol.pixels.shape == (len(files), 16, 16) and not vol.issues
    _assert_same_as_sitk(vol, copy)
    assert vol.modality == "CT"


CASES = {
    "axial": {},
    "oblique": {"oblique": True},
    "gantry_tilt": {"gantry_tilt": 12.0},
    "oblique_signed_padding": {"oblique": 20.0, "signed": True, "padding": True},
    "implicit_vr": {"transfer_syntax": "1.2.840.10008.1.2"},
    "rle": {"transfer_syntax": "1.2.840.10008.1.2.5"},
}


@pytest.mark.parametrize("case", list(CASES))
def test_generated_series_equals_simpleitk(tmp_path, case):
    files = write_ct_series(tmp_path / "src", seed=11, n_slices=9, rows=24, columns=20,
                            spacing=2.5, **CASES[case])
    copy = _shuffled_copy(files, tmp_path / "shuffled", seed=1)
    vol = read_series(copy)
    assert not vol.issues
    _assert_same_as_sitk(vol, copy)
    if case == "gantry_tilt":
        assert vol.extra["tilt_degrees"] == pytest.approx(12.0, abs=1e-3)
        normal = vol.direction[:, 2]
        assert abs(np.dot(vol.extra["slice_direction"], normal)) == pytest.approx(
            np.cos(np.radians(12.0)), abs=1e-5)
    if case == "oblique_signed_padding":
        stored = np.stack([_dcm(Path(p)).pixel_array for p in vol.paths])
        np.testing.assert_array_equal(vol.padding_mask, stored == -2000)


def test_input_forms_agree(tmp_path):
    import pandas as pd

    files = write_ct_series(tmp_path / "s", seed=2, n_slices=6, rows=16, columns=16)
    ref = read_series(tmp_path / "s")

    class FakeIndex:
        def series_files(self, key):
            assert key == "KEY"
            return [str(f) for f in files]

    variants = [
        read_series([str(f) for f in reversed(files)]),
        read_series(pd.DataFrame({"path": [str(f) for f in files]})),
        read_series(("KEY", FakeIndex())),
        read_series("KEY", index=FakeIndex()),
        read_series(pd.Series({"series_key": "KEY"}), index=FakeIndex()),
        read_series(tmp_path / "s", workers=2),
    ]
    for v in variants:
        np.testing.assert_array_equal(v.pixels, ref.pixels)
        assert v.sop_instance_uids == ref.sop_instance_uids
        assert v.origin == ref.origin and v.spacing == ref.spacing


def test_metadata(tmp_path):
    files = write_ct_series(tmp_path, seed=3, n_slices=4, rows=16, columns=12,
                            pixel_spacing=0.7, spacing=3.0)
    vol = read_series(tmp_path)
    ds = _dcm(files[0])
    assert vol.spacing == pytest.approx((3.0, 0.7, 0.7))
    assert vol.series_instance_uid == ds.SeriesInstanceUID
    assert vol.study_instance_uid == ds.StudyInstanceUID
    assert vol.frame_of_reference_uid == ds.FrameOfReferenceUID
    assert [w.explanation for w in vol.windows] == list(ds.WindowCenterWidthExplanation)
    assert vol.pixels.dtype == np.float32


def test_missing_slice(tmp_path):
    write_ct_series(tmp_path, seed=4, n_slices=8, rows=16, columns=16, missing_slice=4,
                    spacing=2.0)
    vol = read_series(tmp_path)
    assert [i.kind for i in vol.issues] == ["missing_slices"]
    assert "1 slice(s) missing" in vol.issues[0].detail
    assert vol.pixels.shape[0] == 7 and vol.spacing[0] == pytest.approx(2.0)
    with pytest.raises(SeriesError, match="missing_slices"):
        read_series(tmp_path, strict=True)


def test_duplicate_position_keeps_lowest_instance_number(tmp_path):
    files = write_ct_series(tmp_path, seed=5, n_slices=6, rows=16, columns=16,
                            duplicate_position=2)
    vol = read_series(tmp_path)
    assert [i.kind for i in vol.issues] == ["duplicate_position"]
    assert vol.pixels.shape[0] == 6
    dup = _dcm(files[-1])  # the extra instance (last Instance Number)
    assert str(dup.SOPInstanceUID) not in vol.sop_instance_uids
    assert str(_dcm(files[2]).SOPInstanceUID) in vol.sop_instance_uids
    with pytest.raises(SeriesError, match="duplicate_position"):
        read_series(tmp_path, strict=True)


def test_localizer_in_series_left_out(tmp_path):
    files = write_ct_series(tmp_path, seed=6, n_slices=5, rows=16, columns=16, localizer=True)
    vol = read_series(tmp_path)
    assert [i.kind for i in vol.issues] == ["mixed_orientation"]
    assert "LOCALIZER" in vol.issues[0].detail
    localizer = _dcm(files[-1])
    assert "LOCALIZER" in localizer.ImageType
    assert str(localizer.SOPInstanceUID) not in vol.sop_instance_uids
    assert vol.pixels.shape[0] == 5
    with pytest.raises(SeriesError, match="mixed_orientation"):
        read_series(tmp_path, strict=True)


def _rewrite(path, **changes):
    ds = _dcm(path)
    for k, v in changes.items():
        if v is None:
            delattr(ds, k)
        else:
            setattr(ds, k, v)
    ds.save_as(path)


def test_irregular_spacing(tmp_path):
    files = write_ct_series(tmp_path, seed=7, n_slices=6, rows=16, columns=16, spacing=2.0)
    ds = _dcm(files[3])
    pos = [float(v) for v in ds.ImagePositionPatient]
    _rewrite(files[3], ImagePositionPatient=[pos[0], pos[1], pos[2] + 0.7])
    vol = read_series(tmp_path)
    assert {i.kind for i in vol.issues} == {"irregular_spacing"}
    with pytest.raises(SeriesError):
        read_series(tmp_path, strict=True)


def test_mixed_size(tmp_path):
    files = write_ct_series(tmp_path / "a", seed=8, n_slices=5, rows=16, columns=16)
    other = write_ct_series(tmp_path / "b", seed=8, n_slices=1, rows=20, columns=16)
    ds = _dcm(other[0])
    ds.SeriesInstanceUID = _dcm(files[0]).SeriesInstanceUID
    ds.save_as(tmp_path / "a" / "odd")
    vol = read_series(tmp_path / "a")
    assert [i.kind for i in vol.issues] == ["mixed_size"]
    assert vol.pixels.shape == (5, 16, 16)


def test_no_position(tmp_path):
    files = write_ct_series(tmp_path, seed=9, n_slices=4, rows=16, columns=16)
    for f in files:
        _rewrite(f, ImagePositionPatient=None)
    vol = read_series(tmp_path)
    assert [i.kind for i in vol.issues] == ["no_position"]
    numbers = [int(_dcm(p).InstanceNumber) for p in vol.paths]
    assert numbers == sorted(numbers)
    with pytest.raises(SeriesError, match="no_position"):
        read_series(tmp_path, strict=True)


def test_unreadable_slice_lenient_and_strict(tmp_path):
    files = write_ct_series(tmp_path, seed=10, n_slices=6, rows=16, columns=16)
    bad = files[2]
    data = Path(bad).read_bytes()
    Path(bad).write_bytes(data[:-100])
    vol = read_series(tmp_path)
    kinds = [i.kind for i in vol.issues]
    assert "unreadable" in kinds and "missing_slices" in kinds
    assert any(str(bad) in i.detail for i in vol.issues if i.kind == "unreadable")
    assert vol.pixels.shape[0] == 5
    with pytest.raises(DicommlError, match="truncated"):
        read_series(tmp_path, strict=True)


def test_several_series_and_non_image_objects(tmp_path):
    from dicomml.testing import write_sr

    a = write_ct_series(tmp_path, seed=12, n_slices=3, rows=16, columns=16,
                        file_names="A%03d")
    write_ct_series(tmp_path, seed=13, n_slices=4, rows=16, columns=16, file_names="B%03d")
    uid_a = str(_dcm(a[0]).SeriesInstanceUID)
    with pytest.raises(SeriesError, match=uid_a):
        read_series(tmp_path)
    vol = read_series(tmp_path, series_uid=uid_a)
    assert vol.pixels.shape[0] == 3
    # non-image objects and other files are ignored
    only = tmp_path / "only"
    only.mkdir()
    for f in a:
        shutil.copy(f, only / Path(f).name)
    (only / "README.txt").write_text("not DICOM")
    write_sr(only / "sr.dcm", [_dcm(f) for f in a], seed=1)
    vol = read_series(only)
    assert vol.pixels.shape[0] == 3 and not vol.issues
    assert len(vol.extra["ignored"]) == 2
    assert any("(7FE0,0010)" in why for why in vol.extra["ignored"])


def test_enhanced_ct_one_file(tmp_path):
    path = write_enhanced_ct(tmp_path / "e.dcm", seed=14, n_frames=6, rows=20, columns=16,
                             spacing=2.5, oblique=True)
    vol = read_series(path)
    ds = _dcm(path)
    per = ds.PerFrameFunctionalGroupsSequence
    pos = np.array([[float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient]
                    for f in per])
    normal = vol.direction[:, 2]
    order = np.argsort(pos @ normal, kind="stable")
    assert vol.frames == tuple(int(i) for i in order)
    item = ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
    from pydicom.pixels import apply_modality_lut

    ref = apply_modality_lut(ds.pixel_array[order], item).astype(np.float32)
    np.testing.assert_array_equal(vol.pixels, ref)
    assert vol.spacing[0] == pytest.approx(2.5, abs=1e-4)
    np.testing.assert_allclose(vol.origin, pos[order[0]])


def test_sitk_round_trip_is_exact(tmp_path):
    write_ct_series(tmp_path, seed=15, n_slices=5, rows=16, columns=12, oblique=True)
    vol = read_series(tmp_path)
    back = from_sitk(to_sitk(vol))
    np.testing.assert_array_equal(back.pixels, vol.pixels)
    assert back.spacing == vol.spacing and back.origin == vol.origin
    np.testing.assert_array_equal(back.direction, vol.direction)


def test_resample_linear_ramp():
    """A linear ramp resampled linearly stays the same ramp (hand-computed reference)."""
    from dicomml.io.types import Volume

    z, y, x = np.meshgrid(np.arange(6), np.arange(8), np.arange(10), indexing="ij")
    spacing = (2.0, 1.0, 1.0)
    pixels = (3.0 * z * spacing[0] + 2.0 * y + 0.5 * x).astype(np.float32)
    vol = Volume(pixels=pixels, spacing=spacing, origin=(10.0, -5.0, 3.0), direction=np.eye(3))
    out = resample(vol, (1.0, 0.5, 0.5))
    assert out.spacing == (1.0, 0.5, 0.5)
    assert out.pixels.shape == (12, 16, 20)
    zz, yy, xx = np.meshgrid(np.arange(12) * 1.0, np.arange(16) * 0.5, np.arange(20) * 0.5,
                             indexing="ij")
    inside = (zz <= 10) & (yy <= 7) & (xx <= 9)
    expected = 3.0 * zz + 2.0 * yy + 0.5 * xx
    np.testing.assert_allclose(out.pixels[inside], expected[inside], atol=1e-4)
    with pytest.raises(DicommlError, match="Did you mean 'linear'"):
        resample(vol, 1.0, interpolator="linaer")


def test_series_from_the_index(tmp_path):
    """A series of a real Index (dicomml.io.scan): by key, by index rows, by series row."""
    from dicomml.io import Index, scan

    a = write_ct_series(tmp_path / "src", seed=16, n_slices=5, rows=16, columns=16)
    write_ct_series(tmp_path / "src", seed=17, n_slices=3, rows=16, columns=16,
                    file_names="B%03d")
    scan(tmp_path / "src", db=tmp_path / "index.db", workers=1, progress=False)
    ref = read_series(a)
    with Index(tmp_path / "index.db") as index:
        series = index.series()
        row = series[series.series_instance_uid == ref.series_instance_uid].iloc[0]
        key = row["series_key"]
        instances = index.instances()
        for vol in (read_series((key, index)), read_series(key, index=index),
                    read_series(row, index=index),
                    read_series(instances[instances.series_key == key])):
            np.testing.assert_array_equal(vol.pixels, ref.pixels)
            assert vol.sop_instance_uids == ref.sop_instance_uids


def test_reading_a_folder_does_not_import_pandas(tmp_path):
    """A DataFrame or Series of index rows can only be passed once pandas is imported, so
    reading a folder must not import it (half a second of CPU on a program's first read)."""
    import subprocess
    import sys

    write_ct_series(tmp_path / "ct", seed=3, n_slices=3, rows=16, columns=16)
    code = ("import sys; from dicomml.io import read_series; "
            f"v = read_series({str(tmp_path / 'ct')!r}); "
            "print(v.pixels.shape, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2]).stdout
    assert out.split() == ["(3,", "16,", "16)", "False"]
