"""Secondary Capture of a heatmap and the overlay helper."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from matplotlib import colormaps

from dicomml.errors import ConfigError, MissingAttributeError
from dicomml.report.overlay import heatmap_overlay, save_png, to_display_gray
from dicomml.report.sc import build_heatmap_sc, patient_orientation
from dicomml.report.sr import write_sr
from tests.report.helpers import dciodvfy_errors, write_series


def test_overlay_hand_values():
    img = np.array([[0.0, 2.0], [4.0, 4.0]])
    heat = np.array([[0.0, 1.0], [0.5, 0.0]])
    rgb = heatmap_overlay(img, heat, alpha=0.5)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    # cold pixel: the gray value unchanged
    assert rgb[0, 0].tolist() == [0, 0, 0]
    assert rgb[1, 1].tolist() == [255, 255, 255]
    # hot pixel: half gray 0.5, half the colormap's top colour
    top = np.array(colormaps["jet"](1.0)[:3])
    assert rgb[0, 1].tolist() == np.round((0.5 * 0.5 + 0.5 * top) * 255).astype(int).tolist()
    mid = np.array(colormaps["jet"](0.5)[:3])
    assert rgb[1, 0].tolist() == np.round((0.75 * 1.0 + 0.25 * mid) * 255).astype(int).tolist()
    assert img.tolist() == [[0.0, 2.0], [4.0, 4.0]]  # not mutated
    assert to_display_gray(np.full((3, 3, 3), 7.0)).max() == 0.0
    with pytest.raises(ConfigError):
        heatmap_overlay(img, heat, alpha=2.0)


def test_save_png_roundtrip(tmp_path):
    from matplotlib import image as mpimg

    rgb = heatmap_overlay(np.random.default_rng(0).random((20, 30)), np.eye(20, 30))
    p = save_png(tmp_path / "o.png", rgb)
    back = mpimg.imread(p)
    assert back.shape[:2] == (20, 30)
    np.testing.assert_array_equal(np.round(back[..., :3] * 255).astype(np.uint8), rgb)


def test_patient_orientation_from_iop():
    ds = pydicom.Dataset()
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    assert patient_orientation(ds) == ("L", "P")
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]  # sagittal
    assert patient_orientation(ds) == ("P", "F")
    ds.PatientOrientation = ["A", "F"]
    assert patient_orientation(ds) == ("A", "F")
    with pytest.raises(MissingAttributeError, match=r"\(0020,0037\)"):
        patient_orientation(pydicom.Dataset())


@pytest.mark.tool
def test_heatmap_sc_valid_and_referencing(tmp_path):
    (path,) = write_series(tmp_path / "src", 1)
    src = pydicom.dcmread(path)
    heat = np.zeros((224, 224))
    heat[40:80, 100:140] = 1.0
    rgb = heatmap_overlay(np.random.default_rng(1).random((224, 224, 3)), heat)
    sc = build_heatmap_sc(src, rgb, series_number=12)
    out = write_sr(sc, tmp_path / "sc.dcm")
    errors, text = dciodvfy_errors(out)
    assert errors == [], text
    back = pydicom.dcmread(out)
    assert back.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
    assert back.StudyInstanceUID == src.StudyInstanceUID
    assert back.SeriesInstanceUID != src.SeriesInstanceUID and back.SeriesNumber == 12
    assert back.PatientID == src.PatientID and back.PatientName == src.PatientName
    assert back.PhotometricInterpretation == "RGB" and back.SamplesPerPixel == 3
    assert back.BurnedInAnnotation == "NO"
    assert list(back.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert "Grad-CAM" in back.DerivationDescription
    (s,) = back.SourceImageSequence
    assert (s.ReferencedSOPClassUID, s.ReferencedSOPInstanceUID) == (src.SOPClassUID,
                                                                     src.SOPInstanceUID)
    assert s.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
    (r,) = back.ReferencedImageSequence
    assert r.ReferencedSOPInstanceUID == src.SOPInstanceUID
    np.testing.assert_array_equal(back.pixel_array, rgb)


def test_sc_rejects_non_rgb(tmp_path):
    (path,) = write_series(tmp_path / "src", 1)
    src = pydicom.dcmread(path, stop_before_pixels=True)
    with pytest.raises(ConfigError, match="uint8"):
        build_heatmap_sc(src, np.zeros((8, 8, 3), np.float32))
