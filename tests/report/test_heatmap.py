"""Heatmaps on the source geometry: the inverse of the run's resize, the SC picture."""

from __future__ import annotations

import numpy as np
import pytest

from dicomml.preprocess import PreprocessConfig
from dicomml.preprocess.resize import resize_planes
from dicomml.report.heatmap import LABEL, display_frame, heatmap_sc_pixels, to_source_grid


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
