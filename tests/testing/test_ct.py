"""CT series generator: determinism, decoding by independent readers, HU values, geometry."""

from __future__ import annotations

import hashlib

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.pixels import apply_rescale
from pydicom.uid import (
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit,
    JPEGLSLossless, RLELossless,
)
from scipy.ndimage import binary_erosion

from dicomml.errors import ConfigError
from dicomml.testing import Tissue, make_patient, make_study, write_ct_series
from dicomml.testing.ct import render_plane, series_geometry
from dicomml.testing.phantom import plane_coordinates, random_anatomy, render_labels


def _digest(paths):
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def _read(paths):
    return [pydicom.dcmread(p) for p in paths]


def _hu(ds):
    return apply_rescale(ds.pixel_array, ds).astype(np.float64)


def test_same_seed_same_bytes(tmp_path):
    kw = dict(n_slices=3, rows=48, columns=48, localizer=True, duplicate_position=1)
    a = write_ct_series(tmp_path / "a", seed=7, **kw)
    b = write_ct_series(tmp_path / "b", seed=7, **kw)
    c = write_ct_series(tmp_path / "c", seed=8, **kw)
    assert [p.name for p in a] == [p.name for p in b]
    assert _digest(a) == _digest(b)
    assert set(_digest(a)).isdisjoint(_digest(c))


def test_generator_argument_is_deterministic(tmp_path):
    a = write_ct_series(tmp_path / "a", seed=np.random.default_rng(3), n_slices=2, rows=32,
                        columns=32)
    b = write_ct_series(tmp_path / "b", seed=np.random.default_rng(3), n_slices=2, rows=32,
                        columns=32)
    assert _digest(a) == _digest(b)


def test_patient_and_study_are_shared(tmp_path):
    patient, study = make_patient(5), make_study(5)
    a = _read(write_ct_series(tmp_path / "a", seed=1, n_slices=2, rows=32, columns=32,
                              patient=patient, study=study))
    b = _read(write_ct_series(tmp_path / "b", seed=2, n_slices=2, rows=32, columns=32,
                              body="chest", patient=patient, study=study, series_number=3))
    assert {d.StudyInstanceUID for d in a + b} == {study.study_instance_uid}
    assert {str(d.PatientName) for d in a + b} == {patient.name}
    assert {d.PatientBirthDate for d in a + b} == {patient.birth_date}
    assert a[0].SeriesInstanceUID != b[0].SeriesInstanceUID
    assert a[0].FrameOfReferenceUID != b[0].FrameOfReferenceUID
    assert len({d.SOPInstanceUID for d in a + b}) == 4
    for d in a + b:
        # 2.25 UIDs (PS3.5 B.2): at most 64 characters, digits only after the root.
        for uid in (d.SOPInstanceUID, d.SeriesInstanceUID, d.StudyInstanceUID):
            assert uid.startswith("2.25.") and len(uid) <= 64 and uid[5:].isdigit()
        assert d.file_meta.MediaStorageSOPInstanceUID == d.SOPInstanceUID


def test_file_names_and_shuffle(tmp_path):
    paths = write_ct_series(tmp_path / "s", seed=0, n_slices=6, rows=32, columns=32)
    names = [p.name for p in paths]
    assert sorted(names) == [f"IM{k:04d}" for k in range(1, 7)]
    assert names != sorted(names)                      # shuffled against instance order
    assert [int(d.InstanceNumber) for d in _read(paths)] == list(range(1, 7))
    plain = write_ct_series(tmp_path / "p", seed=0, n_slices=3, rows=32, columns=32,
                            shuffle_names=False)
    assert [p.name for p in plain] == ["IM0001", "IM0002", "IM0003"]
    uid_named = write_ct_series(tmp_path / "u", seed=0, n_slices=2, rows=32, columns=32,
                                file_names=None)
    for p, d in zip(uid_named, _read(uid_named)):
        assert p.name == f"{d.SOPInstanceUID}.dcm"


@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless,
                                JPEG2000Lossless, JPEGLSLossless])
@pytest.mark.parametrize("signed", [False, True])
def test_decodes_identically_with_simpleitk(tmp_path, ts, signed):
    paths = write_ct_series(tmp_path, seed=1, n_slices=2, rows=64, columns=64,
                            transfer_syntax=ts, signed=signed, body="head")
    for p in paths:
        ds = pydicom.dcmread(p)
        assert ds.file_meta.TransferSyntaxUID == ts
        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(p)))[0]   # GDCM, rescale applied
        np.testing.assert_array_equal(_hu(ds), ref.astype(np.float64))


def test_unsigned_and_signed_storage(tmp_path):
    u = pydicom.dcmread(write_ct_series(tmp_path / "u", seed=4, n_slices=1, rows=64,
                                        columns=64)[0])
    s = pydicom.dcmread(write_ct_series(tmp_path / "s", seed=4, n_slices=1, rows=64,
                                        columns=64, signed=True)[0])
    assert (u.PixelRepresentation, u.BitsStored, u.HighBit) == (0, 12, 11)
    assert (float(u.RescaleIntercept), float(u.RescaleSlope)) == (-1024.0, 1.0)
    assert u.pixel_array.dtype == np.uint16
    assert 0 <= u.pixel_array.min() and u.pixel_array.max() <= 4095
    assert (s.PixelRepresentation, s.BitsStored, s.HighBit) == (1, 16, 15)
    assert float(s.RescaleIntercept) == 0.0
    assert s.pixel_array.dtype == np.int16
    # Same seed, same anatomy and noise: identical HU whichever the storage.
    np.testing.assert_array_equal(_hu(u), _hu(s))
    assert s.pixel_array.min() < 0


def _labels_of(ds, anatomy):
    ipp = [float(v) for v in ds.ImagePositionPatient]
    iop = [float(v) for v in ds.ImageOrientationPatient]
    ps = [float(v) for v in ds.PixelSpacing]
    X, Y, Z = plane_coordinates(ipp, iop[:3], iop[3:], ds.Rows, ds.Columns, ps[0], ps[1])
    return render_labels(X, Y, Z, anatomy)


# Expected values are the task's specification, written by hand (not read from the code).
@pytest.mark.parametrize("body,tissue,expected", [
    ("abdomen", Tissue.CORTICAL, 1000.0),
    ("abdomen", Tissue.CANCELLOUS, 300.0),
    ("abdomen", Tissue.LIVER, 60.0),
    ("abdomen", Tissue.SPLEEN, 45.0),
    ("abdomen", Tissue.KIDNEY, 30.0),
    ("abdomen", Tissue.FAT, -100.0),
    ("abdomen", Tissue.MUSCLE, 50.0),
    ("chest", Tissue.LUNG, -850.0),
    ("head", Tissue.GREY, 40.0),
    ("head", Tissue.WHITE, 30.0),
    ("head", Tissue.CSF, 5.0),
])
def test_tissue_hu(tmp_path, body, tissue, expected):
    """Mean HU inside an eroded tissue mask is the tissue's value; the noise sigma is 12."""
    anatomy = random_anatomy(body, np.random.default_rng(21))
    z = {"abdomen": 20.0, "chest": 0.0, "head": 0.0}[body]
    paths = write_ct_series(tmp_path, seed=11, n_slices=4, rows=256, columns=256, body=body,
                            noise=12.0, spacing=8.0, anatomy=anatomy, z_center=z)
    values = []
    for ds in _read(paths):
        core = binary_erosion(_labels_of(ds, anatomy) == tissue, iterations=2)
        values.append(_hu(ds)[core])
    v = np.concatenate(values)
    assert v.size > 30
    # The mean is within 4 standard errors (at least 1 HU) of the tissue value.
    assert abs(v.mean() - expected) < max(1.0, 4 * 12.0 / np.sqrt(v.size))
    if v.size > 2000:
        assert 11.4 < v.std() < 12.6


def test_noise_free_values_are_exact(tmp_path):
    anatomy = random_anatomy("abdomen", np.random.default_rng(2))
    paths = write_ct_series(tmp_path, seed=2, n_slices=2, rows=128, columns=128, noise=0.0,
                            anatomy=anatomy)
    expected = {Tissue.CORTICAL: 1000, Tissue.LIVER: 60, Tissue.MUSCLE: 50, Tissue.AIR: -1000}
    for ds in _read(paths):
        labels = _labels_of(ds, anatomy)
        hu = _hu(ds)
        for t, value in expected.items():
            core = binary_erosion(labels == t, iterations=3)
            if core.sum() > 20:
                np.testing.assert_array_equal(hu[core], value)


def test_axial_geometry(tmp_path):
    paths = write_ct_series(tmp_path, seed=0, n_slices=5, rows=64, columns=80, spacing=2.5,
                            body="chest")
    dss = _read(paths)
    ipp = np.array([[float(v) for v in d.ImagePositionPatient] for d in dss])
    assert [float(v) for v in dss[0].ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    np.testing.assert_allclose(np.diff(ipp[:, 2]), -2.5)   # head to feet
    np.testing.assert_allclose(ipp[:, :2], ipp[:1, :2].repeat(5, 0))
    for d in dss:
        assert (d.Rows, d.Columns) == (64, 80)
        assert float(d.SliceThickness) == 2.5 and float(d.SpacingBetweenSlices) == 2.5
        assert float(d.SliceLocation) == float(d.ImagePositionPatient[2])
        assert float(d.PixelSpacing[0]) == pytest.approx(400.0 / 80)
        assert d.Modality == "CT" and d.BodyPartExamined == "CHEST"
        assert list(d.WindowCenterWidthExplanation) == ["LUNG", "MEDIASTINUM"]
        assert len(d.WindowCenter) == len(d.WindowWidth) == 2


def test_oblique_positions_follow_normal_and_simpleitk_agrees(tmp_path):
    paths = write_ct_series(tmp_path, seed=0, n_slices=6, rows=48, columns=48, spacing=3.0,
                            oblique=True)
    dss = _read(paths)
    iop = np.array([float(v) for v in dss[0].ImageOrientationPatient])
    row, col = iop[:3], iop[3:]
    assert abs(np.dot(row, col)) < 1e-6
    assert np.linalg.norm(row) == pytest.approx(1.0, abs=1e-6)
    assert not np.allclose(iop, [1, 0, 0, 0, 1, 0])
    normal = np.cross(row, col)
    ipp = np.array([[float(v) for v in d.ImagePositionPatient] for d in dss])
    steps = np.diff(ipp, axis=0)
    for s in steps:
        np.testing.assert_allclose(np.cross(s, normal), 0, atol=1e-5)
        assert np.linalg.norm(s) == pytest.approx(3.0, abs=1e-5)
    reader = sitk.ImageSeriesReader()
    names = reader.GetGDCMSeriesFileNames(str(tmp_path))
    reader.SetFileNames(names)
    img = reader.Execute()
    assert img.GetSize() == (48, 48, 6)
    assert img.GetSpacing()[2] == pytest.approx(3.0, abs=1e-4)
    d = np.array(img.GetDirection()).reshape(3, 3)
    np.testing.assert_allclose(d[:, 0], row, atol=1e-6)
    np.testing.assert_allclose(d[:, 1], col, atol=1e-6)
    np.testing.assert_allclose(np.abs(d[:, 2]), np.abs(normal), atol=1e-6)


def test_gantry_tilt(tmp_path):
    tilt = 15.0
    paths = write_ct_series(tmp_path, seed=0, n_slices=5, rows=48, columns=48, spacing=4.0,
                            gantry_tilt=tilt)
    dss = _read(paths)
    t = np.radians(tilt)
    for d in dss:
        assert float(d.GantryDetectorTilt) == tilt
        np.testing.assert_allclose([float(v) for v in d.ImageOrientationPatient],
                                   [1, 0, 0, 0, np.cos(t), -np.sin(t)], atol=1e-6)
    ipp = np.array([[float(v) for v in d.ImagePositionPatient] for d in dss])
    steps = np.diff(ipp, axis=0)
    np.testing.assert_allclose(steps[:, :2], 0, atol=1e-6)      # table moves along z only
    np.testing.assert_allclose(steps[:, 2], -4.0, atol=1e-6)
    assert float(dss[0].SpacingBetweenSlices) == pytest.approx(4.0 * np.cos(t), abs=1e-5)
    # GDCM / SimpleITK read the sheared stack.
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path)))
    img = reader.Execute()
    assert img.GetSize() == (48, 48, 5)


def test_missing_duplicate_localizer(tmp_path):
    paths = write_ct_series(tmp_path, seed=0, n_slices=6, rows=48, columns=48,
                            missing_slice=2, duplicate_position=4, localizer=True)
    dss = _read(paths)
    assert len(dss) == 6 - 1 + 1 + 1
    assert {d.SeriesInstanceUID for d in dss} == {dss[0].SeriesInstanceUID}
    numbers = [int(d.InstanceNumber) for d in dss]
    assert numbers == [1, 2, 4, 5, 6, 7, 8]
    axial = [d for d in dss if "LOCALIZER" not in d.ImageType]
    loc = [d for d in dss if "LOCALIZER" in d.ImageType]
    assert len(loc) == 1
    assert list(loc[0].ImageType) == ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    assert [float(v) for v in loc[0].ImageOrientationPatient] == [1, 0, 0, 0, 0, -1]
    z = [float(d.ImagePositionPatient[2]) for d in axial]
    assert len(z) == 6 and len(set(z)) == 5            # one duplicated position
    dup = [d for d in axial if int(d.InstanceNumber) == 7][0]
    same = [d for d in axial if int(d.InstanceNumber) == 5][0]
    assert dup.ImagePositionPatient == same.ImagePositionPatient
    assert dup.SOPInstanceUID != same.SOPInstanceUID
    assert not np.array_equal(dup.pixel_array, same.pixel_array)      # new noise
    gaps = np.diff(sorted(set(z)))
    assert sorted(np.round(gaps, 6).tolist()) == [5.0, 5.0, 5.0, 10.0]   # the missing slice


@pytest.mark.parametrize("signed,pad", [(False, 0), (True, -2000)])
def test_pixel_padding(tmp_path, signed, pad):
    d = pydicom.dcmread(write_ct_series(tmp_path, seed=0, n_slices=1, rows=64, columns=64,
                                        padding=True, signed=signed)[0])
    assert d.PixelPaddingValue == pad
    assert d["PixelPaddingValue"].VR == ("SS" if signed else "US")
    a = d.pixel_array
    yy, xx = np.mgrid[:64, :64]
    outside = (xx - 31.5) ** 2 + (yy - 31.5) ** 2 > 32 ** 2
    assert np.all(a[outside] == pad)
    assert not np.any(a[~outside] == pad)


def test_render_is_fast_enough():
    """A 512x512 slice renders in well under a second (benchmarks need 2,000+ slices)."""
    import time

    rng = np.random.default_rng(0)
    anatomy = random_anatomy("chest", rng)
    g = series_geometry(1, 512, 512, spacing=5.0, pixel_spacing=400 / 512)[0]
    t = time.perf_counter()
    for _ in range(3):
        img = render_plane(g, 512, 512, anatomy, rng)
    assert (time.perf_counter() - t) / 3 < 1.0
    assert img.shape == (512, 512) and img.dtype == np.float32


def test_invalid_options(tmp_path):
    with pytest.raises(ConfigError, match="body"):
        write_ct_series(tmp_path, body="knee")
    with pytest.raises(ConfigError, match="transfer syntax"):
        write_ct_series(tmp_path, transfer_syntax=JPEGBaseline8Bit)
    with pytest.raises(ConfigError, match="missing_slice"):
        write_ct_series(tmp_path, n_slices=3, missing_slice=3)
    with pytest.raises(ConfigError, match="oblique or gantry_tilt"):
        write_ct_series(tmp_path, oblique=True, gantry_tilt=10.0)
    assert not any(tmp_path.iterdir())
