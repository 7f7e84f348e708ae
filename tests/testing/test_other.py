"""MR, radiographs, Enhanced CT, secondary capture, SR and KO writers."""

from __future__ import annotations

import hashlib

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.pixels import apply_voi_lut
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless
from scipy.ndimage import binary_erosion

from dicomml.errors import ConfigError
from dicomml.testing import (
    Tissue, make_patient, make_study, write_ct_series, write_enhanced_ct,
    write_key_object_selection, write_mr_series, write_radiograph, write_secondary_capture,
    write_sr,
)


def _sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _sitk_array(path):
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


@pytest.mark.parametrize("weighting", ["T1", "T2"])
def test_mr_series(tmp_path, weighting):
    paths = write_mr_series(tmp_path / "a", seed=3, n_slices=3, rows=96, columns=96,
                            weighting=weighting)
    again = write_mr_series(tmp_path / "b", seed=3, n_slices=3, rows=96, columns=96,
                            weighting=weighting)
    assert list(map(_sha, paths)) == list(map(_sha, again))
    for p in paths:
        ds = pydicom.dcmread(p)
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
        assert ds.PhotometricInterpretation == "MONOCHROME2"
        assert (ds.BitsStored, ds.PixelRepresentation) == (12, 0)
        assert "RescaleSlope" not in ds and "RescaleIntercept" not in ds
        a = ds.pixel_array
        assert a.dtype == np.uint16 and a.max() <= 4095
        np.testing.assert_array_equal(a, _sitk_array(p)[0])


def test_mr_contrast(tmp_path):
    """T1: white matter brighter than grey, CSF dark; T2: CSF brightest (same anatomy)."""
    from dicomml.testing.phantom import plane_coordinates, random_anatomy, render_labels

    means = {}
    for w in ("T1", "T2"):
        p = write_mr_series(tmp_path / w, seed=5, n_slices=1, rows=192, columns=192,
                            weighting=w, spacing=5.0)[0]
        ds = pydicom.dcmread(p)
        # Same seed: the anatomy is the third draw after the patient and the study.
        rng = np.random.default_rng(5)
        make_patient(rng)
        make_study(rng)
        anatomy = random_anatomy("head", rng)
        iop = [float(v) for v in ds.ImageOrientationPatient]
        ps = [float(v) for v in ds.PixelSpacing]
        X, Y, Z = plane_coordinates([float(v) for v in ds.ImagePositionPatient], iop[:3],
                                    iop[3:], ds.Rows, ds.Columns, ps[0], ps[1])
        labels = render_labels(X, Y, Z, anatomy)
        a = ds.pixel_array.astype(float)
        means[w] = {t: a[binary_erosion(labels == t, iterations=2)].mean()
                    for t in (Tissue.GREY, Tissue.WHITE, Tissue.CSF)}
    assert means["T1"][Tissue.WHITE] > means["T1"][Tissue.GREY] > means["T1"][Tissue.CSF]
    assert means["T2"][Tissue.CSF] > means["T2"][Tissue.GREY] > means["T2"][Tissue.WHITE]


@pytest.mark.parametrize("modality", ["CR", "DX"])
def test_radiograph_monochrome1_is_inverted(tmp_path, modality):
    m2 = pydicom.dcmread(write_radiograph(tmp_path / "m2", seed=4, modality=modality,
                                          rows=128, columns=128))
    m1 = pydicom.dcmread(write_radiograph(tmp_path / "m1", seed=4, modality=modality,
                                          rows=128, columns=128, monochrome1=True))
    assert m2.PhotometricInterpretation == "MONOCHROME2"
    assert m1.PhotometricInterpretation == "MONOCHROME1"
    assert (m1.BitsStored, m1.PixelRepresentation) == (12, 0)
    np.testing.assert_array_equal(m1.pixel_array.astype(int), 4095 - m2.pixel_array.astype(int))
    assert float(m1.WindowCenter) == 4095 - float(m2.WindowCenter)
    np.testing.assert_array_equal(m2.pixel_array, _sitk_array(tmp_path / "m2")[0])
    a = m2.pixel_array.astype(float)
    # Chest-like: the mediastinum/spine column (centre) is brighter than the lungs beside it.
    centre = a[40:90, 60:68].mean()
    lungs = (a[40:90, 30:40].mean() + a[40:90, 88:98].mean()) / 2
    assert centre > lungs + 100
    if modality == "DX":
        assert m1.PresentationLUTShape == "INVERSE" and m2.PresentationLUTShape == "IDENTITY"
        assert m2.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1.1"
    else:
        assert m2.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1"


def test_radiograph_voi_lut(tmp_path):
    ds = pydicom.dcmread(write_radiograph(tmp_path / "cr", seed=1, rows=64, columns=64,
                                          voi_lut=True, monochrome1=True))
    item = ds.VOILUTSequence[0]
    assert list(item.LUTDescriptor) == [4096, 0, 16]
    lut = np.frombuffer(item.LUTData, "<u2") if isinstance(item.LUTData, bytes) \
        else np.asarray(item.LUTData)
    assert lut.size == 4096 and np.all(np.diff(lut.astype(int)) >= 0)
    out = apply_voi_lut(ds.pixel_array, ds, prefer_lut=True)
    np.testing.assert_array_equal(out, lut[ds.pixel_array])


@pytest.mark.parametrize("ts", [JPEGLSLossless, JPEG2000Lossless])
def test_radiograph_compressed(tmp_path, ts):
    p = write_radiograph(tmp_path / "x", seed=2, rows=96, columns=96, transfer_syntax=ts)
    ds = pydicom.dcmread(p)
    assert ds.file_meta.TransferSyntaxUID == ts
    np.testing.assert_array_equal(ds.pixel_array, _sitk_array(p)[0])


def test_invalid_modality(tmp_path):
    with pytest.raises(ConfigError, match="modality"):
        write_radiograph(tmp_path / "x", modality="MG")
    with pytest.raises(ConfigError, match="weighting"):
        write_mr_series(tmp_path / "y", weighting="PD")


@pytest.mark.parametrize("shared", [True, False])
def test_enhanced_ct_functional_groups(tmp_path, shared):
    n = 5
    p = write_enhanced_ct(tmp_path / "e", seed=2, n_frames=n, rows=64, columns=64,
                          spacing=4.0, shared=shared, oblique=True)
    assert _sha(p) == _sha(write_enhanced_ct(tmp_path / "f", seed=2, n_frames=n, rows=64,
                                             columns=64, spacing=4.0, shared=shared,
                                             oblique=True))
    ds = pydicom.dcmread(p)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2.1"
    assert int(ds.NumberOfFrames) == n
    assert ds.pixel_array.shape == (n, 64, 64)
    assert len(ds.PerFrameFunctionalGroupsSequence) == n
    groups = ("PlaneOrientationSequence", "PixelMeasuresSequence",
              "PixelValueTransformationSequence", "FrameVOILUTSequence")
    sfg = ds.SharedFunctionalGroupsSequence[0]
    positions = []
    for k, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        assert int(item.FrameContentSequence[0].InStackPositionNumber) == k + 1
        positions.append([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient])
        src = sfg if shared else item
        for g in groups:
            assert g in src, g
            assert (g in item) == (not shared)
    pvt = (sfg if shared else ds.PerFrameFunctionalGroupsSequence[0]
           ).PixelValueTransformationSequence[0]
    assert (float(pvt.RescaleIntercept), float(pvt.RescaleSlope)) == (-1024.0, 1.0)
    src = sfg if shared else ds.PerFrameFunctionalGroupsSequence[0]
    iop = np.array([float(v) for v in src.PlaneOrientationSequence[0].ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    for s in np.diff(np.array(positions), axis=0):
        np.testing.assert_allclose(np.cross(s, normal), 0, atol=1e-5)
        assert np.linalg.norm(s) == pytest.approx(4.0, abs=1e-5)
    # Air (the image corners) is about -1000 HU after the functional-group rescale.
    hu = ds.pixel_array * float(pvt.RescaleSlope) + float(pvt.RescaleIntercept)
    assert abs(np.median(hu[:, :4, :4]) + 1000) < 15


def test_enhanced_ct_compressed(tmp_path):
    p = write_enhanced_ct(tmp_path / "e", seed=0, n_frames=3, rows=48, columns=48,
                          transfer_syntax=RLELossless)
    q = write_enhanced_ct(tmp_path / "u", seed=0, n_frames=3, rows=48, columns=48)
    np.testing.assert_array_equal(pydicom.dcmread(p).pixel_array,
                                  pydicom.dcmread(q).pixel_array)


def test_secondary_capture_rgb(tmp_path):
    p = write_secondary_capture(tmp_path / "sc", seed=1, rows=64, columns=80)
    ds = pydicom.dcmread(p)
    assert ds.PhotometricInterpretation == "RGB" and ds.SamplesPerPixel == 3
    a = ds.pixel_array
    assert a.shape == (64, 80, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, _sitk_array(p)[0])
    # Colour overlay: somewhere red differs from blue.
    assert np.abs(a[..., 0].astype(int) - a[..., 2]).max() > 50


def test_secondary_capture_jpeg_ybr(tmp_path):
    p = write_secondary_capture(tmp_path / "sc", seed=1, rows=64, columns=64, jpeg=True)
    rgb = pydicom.dcmread(write_secondary_capture(tmp_path / "rgb", seed=1, rows=64,
                                                  columns=64)).pixel_array.astype(int)
    ds = pydicom.dcmread(p)
    assert ds.PhotometricInterpretation == "YBR_FULL_422"
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    a = ds.pixel_array.astype(int)          # pydicom converts YBR to RGB by default
    assert a.shape == (64, 64, 3)
    assert np.abs(a - rgb).mean() < 4       # lossy, but close to the RGB original


def _ct_refs(tmp_path):
    paths = write_ct_series(tmp_path / "ct", seed=9, n_slices=3, rows=32, columns=32)
    return [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]


def test_sr_references_images(tmp_path):
    refs = _ct_refs(tmp_path)
    p = write_sr(tmp_path / "sr", refs, seed=1, finding="haemorrhage")
    assert _sha(p) == _sha(write_sr(tmp_path / "sr2", refs, seed=1, finding="haemorrhage"))
    sr = pydicom.dcmread(p)
    assert sr.Modality == "SR" and sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"
    assert sr.StudyInstanceUID == refs[0].StudyInstanceUID
    assert sr.PatientID == refs[0].PatientID
    assert sr.SeriesInstanceUID != refs[0].SeriesInstanceUID
    assert sr.ContentDate == refs[0].StudyDate
    evidence = {s.ReferencedSOPInstanceUID
                for st in sr.CurrentRequestedProcedureEvidenceSequence
                for se in st.ReferencedSeriesSequence for s in se.ReferencedSOPSequence}
    assert evidence == {r.SOPInstanceUID for r in refs}
    text = str(sr)
    for r in refs:
        assert r.SOPInstanceUID in text
    assert "haemorrhage" in text


def test_key_object_selection(tmp_path):
    refs = _ct_refs(tmp_path)
    ko = pydicom.dcmread(write_key_object_selection(tmp_path / "ko", refs[:2], seed=1))
    assert ko.Modality == "KO" and ko.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.59"
    assert ko.StudyInstanceUID == refs[0].StudyInstanceUID
    refd = {s.ReferencedSOPInstanceUID
            for st in ko.CurrentRequestedProcedureEvidenceSequence
            for se in st.ReferencedSeriesSequence for s in se.ReferencedSOPSequence}
    assert refd == {r.SOPInstanceUID for r in refs[:2]}


def test_sr_needs_references(tmp_path):
    with pytest.raises(ConfigError, match="at least one"):
        write_sr(tmp_path / "x", [])
