"""Heatmaps on the source geometry: the inverse of the run's resize, the display, the DICOM
objects (Parametric Map, Secondary Capture) of real files."""

from __future__ import annotations

import numpy as np
import pytest

from dicomml.preprocess import PreprocessConfig
from dicomml.preprocess.resize import resize_planes
from dicomml.evaluate.heatmaps import display_frame, to_source_grid
from dicomml.report.heatmap import LABEL, heatmap_sc_pixels


@pytest.mark.parametrize("shape, resize, fov", [((100, 60), "pad", None),
                                                ((60, 100), "crop", None),
                                                ((512, 512), "stretch", None),
                                                ((128, 128), "pad", 200.0)])
def test_to_source_grid_inverts_the_resize(shape, resize, fov):
    rows, cols = shape
    yy, xx = np.mgrid[:rows, :cols]
    blob = np.exp(-(((yy - rows * 0.45) / (rows * 0.15)) ** 2
                    + ((xx - cols * 0.55) / (cols * 0.15)) ** 2)).astype(np.float32)
    cfg = PreprocessConfig(resize=resize, fov_mm=fov)
    spacing = (1.0, 1.0) if fov else None
    tensor_heat = resize_planes(blob, cfg.size, cfg.resize, cfg.fov_mm, spacing)
    back = to_source_grid(tensor_heat, shape, cfg, spacing)
    assert back.shape == shape and back.dtype == np.float32
    # where the source was seen by the model, the heat comes back in place
    seen = to_source_grid(np.ones((cfg.size, cfg.size)), shape, cfg, spacing) > 0.99
    if resize == "crop":
        assert not seen.all() and seen[:, cols // 2].all()
    np.testing.assert_allclose(back[seen], blob[seen], atol=0.06)
    assert np.unravel_index(np.argmax(back), shape) == pytest.approx(
        np.unravel_index(np.argmax(blob), shape), abs=2)


def test_to_source_grid_checks_the_size():
    with pytest.raises(Exception, match="224×224"):
        to_source_grid(np.zeros((10, 10)), (64, 64), PreprocessConfig())


def test_display_frame_uses_the_source_window_and_monochrome1():
    from dicomml.io import Image, Window

    v = np.array([[[0.0, 40.0, 80.0, 200.0]]], np.float32)
    img = Image(v, windows=(Window(40.0, 80.0),), photometric_interpretation="MONOCHROME1")
    out, how = display_frame(img)
    assert how == "source window 40/80"
    # PS3.3 C.11.2.1.2 LINEAR, then inverted: 0 HU is white, 80 HU and above black
    np.testing.assert_allclose(out[0], [1.0, 1.0 - (0.5 / 79 + 0.5), 0.0, 0.0], atol=1e-5)
    plain, how = display_frame(Image(v), PreprocessConfig(windows=("bone",), mode="replicate"))
    assert how == "run window -500..1300"
    assert plain.min() > 0 and plain.max() < 1


def test_display_frame_of_stored_values_is_that_of_modality_values(tmp_path):
    from dicomml.io import read_image
    from dicomml.testing import write_ct_series

    path = write_ct_series(tmp_path, seed=2, n_slices=1, rows=96, columns=96)[0]
    stored = read_image(path, stored_values=True)
    assert stored.stored_values and stored.pixels.dtype.kind == "u"
    got, how = display_frame(stored)
    want, how_want = display_frame(read_image(path))
    assert how == how_want and got.tobytes() == want.tobytes()


def test_sc_pixels_keep_the_source_grid_and_carry_the_label():
    gray = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (48, 1))
    heat = np.zeros_like(gray)
    px = heatmap_sc_pixels(gray, heat)
    assert px.dtype == np.uint8 and px.shape[0] == 48 + 14 and px.shape[1] >= 64 + 14
    # no heat: the source's pixels unchanged (gray levels) in the top-left block
    np.testing.assert_array_equal(px[:48, :64, 0], np.round(gray * 255).astype(np.uint8))
    assert (px[:48, :64, 0] == px[:48, :64, 2]).all()
    banner = px[48:]
    assert banner.max() > 200 and 0.02 < (banner > 0).mean() < 0.5  # white text on black
    assert len(LABEL) > 10


@pytest.mark.tool
@pytest.mark.parametrize("name, frame", [("CT_small.dcm", 0), ("eCT_Supplemental.dcm", 1),
                                         ("J2K_pixelrep_mismatch.dcm", 0)])
def test_heatmap_objects_of_real_files(name, frame, tmp_path):
    """PM and SC of real sources (enhanced CT: geometry and frame from the functional
    groups; Patient Orientation L\\PF) are dciodvfy-clean and read back by highdicom."""
    import highdicom as hd
    import pydicom

    from dicomml.io import read_image
    from dicomml.evaluate.heatmaps import heatmap_objects
    from dicomml.report.sources import geometry
    from dicomml.report.sr import write_sr
    from tests.conftest import testdata
    from tests.report.helpers import dciodvfy_errors

    path = testdata(name)
    source = pydicom.dcmread(path, stop_before_pixels=True)
    image = read_image(path, frames=[frame])
    heat = np.zeros((224, 224), np.float32)
    heat[80:140, 90:150] = 1.0
    objs = dict(heatmap_objects(source, image, heat, PreprocessConfig(), frame=frame))
    assert set(objs) == {"pm", "sc"}
    for kind, obj in objs.items():
        out = write_sr(obj, tmp_path / f"{kind}.dcm")
        errors, text = dciodvfy_errors(out)
        assert errors == [], text
        back = hd.imread(out)
        assert back.SOPInstanceUID == obj.SOPInstanceUID
    pm = hd.imread(tmp_path / "pm.dcm")
    assert pm.pixel_array.shape == image.pixels.shape[1:3]
    geo = geometry(source, frame)
    got = pm.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0]
    np.testing.assert_allclose([float(v) for v in got.ImagePositionPatient],
                               geo["ImagePositionPatient"], atol=1e-4)
    ref = pm.ReferencedImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == source.SOPInstanceUID
    if int(source.get("NumberOfFrames", 1)) > 1:
        assert int(ref.ReferencedFrameNumber) == frame + 1
    sc = pydicom.dcmread(tmp_path / "sc.dcm")
    assert sc.BurnedInAnnotation == "YES"
    assert sc.Rows == image.pixels.shape[1] + 14


def test_heatmap_objects_do_not_import_tensorflow():
    import subprocess
    import sys

    from tests.conftest import testdata

    path = testdata("CT_small.dcm")
    code = ("import numpy as np, pydicom, sys\n"
            "from dicomml.io import read_image\n"
            "from dicomml.preprocess import PreprocessConfig\n"
            "from dicomml.evaluate.heatmaps import heatmap_objects\n"
            f"ds = pydicom.dcmread({path!r})\n"
            f"objs = heatmap_objects(ds, read_image({path!r}), "
            "np.ones((224, 224)), PreprocessConfig())\n"
            "assert [k for k, _ in objs] == ['pm', 'sc']\n"
            "print('\\n'.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True).stdout.split()
    assert "dicomml.report.heatmap" in out and "dicomml.evaluate.heatmaps" in out
    assert not [m for m in out if m == "tensorflow" or m.startswith(("tensorflow.", "keras"))]
