"""``dicomml preview``: writes a PNG of the right size that shows the tensor's channels."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage
from skimage.transform import resize as sk_resize

from dicomml.cli import main
from dicomml.io import read_image
from dicomml.preprocess import Pipeline, PreprocessConfig
from dicomml.preprocess.preview import HEADER_HEIGHT, panel_origin, preview_size
from tests.conftest import testdata as sample_file


def _heading_lines(png: np.ndarray, size: int, channels: int = 3) -> int:
    extra = png.shape[0] - preview_size(size, channels)[1]
    assert extra > 0 and extra % HEADER_HEIGHT == 0, "a heading above the panels"
    return extra // HEADER_HEIGHT


def _panel(png: np.ndarray, k: int, size: int, channels: int = 3) -> np.ndarray:
    x0, y0 = panel_origin(k, size, heading=_heading_lines(png, size, channels))
    return png[y0:y0 + size, x0:x0 + size]


def test_preview_three_windows(tmp_path, capsys):
    path = sample_file("693_UNCI.dcm")
    out = tmp_path / "sub" / "preview.png"
    rc = main(["preview", path, "--windows", "brain,subdural,bone", "--size", "64",
               "-o", str(out)])
    assert rc == 0
    assert capsys.readouterr().out.strip() == str(out)
    with PILImage.open(out) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        assert im.size[0] == preview_size(64)[0]
        png = np.asarray(im)
    # the panels show exactly what the model gets (unit normalization, 8 bits)
    tensor = Pipeline(PreprocessConfig(size=64))(read_image(path))
    u8 = np.rint(tensor * 255).astype(np.uint8)
    for c in range(3):
        panel = _panel(png, c, 64)
        np.testing.assert_array_equal(panel[..., 0], u8[..., c])
        np.testing.assert_array_equal(panel[..., 0], panel[..., 2])
    np.testing.assert_array_equal(_panel(png, 3, 64), u8)
    assert not list(tmp_path.glob("sub/.*.tmp"))


def test_preview_one_window_and_frame(tmp_path):
    path = sample_file("emri_small_RLE.dcm")
    out = tmp_path / "p.png"
    assert main(["preview", path, "--windows", "p1-p99", "--frame", "4", "--size", "32",
                 "-o", str(out)]) == 0
    with PILImage.open(out) as im:
        png = np.asarray(im)
    # one window replicated: one panel, not three identical ones and a composite
    assert png.shape[1] == preview_size(32, 1)[0]
    a = _panel(png, 0, 32, channels=1)
    # independent reference: pydicom frame 4, numpy percentiles, skimage resize
    ds = pydicom.dcmread(path)
    frame = ds.pixel_array[4].astype(np.float64)
    lo, hi = np.percentile(frame, [1, 99])
    ref = sk_resize(np.clip((frame - lo) / (hi - lo), 0, 1), (32, 32), order=1,
                    anti_aliasing=True)
    assert np.abs(a[..., 0] / 255.0 - ref).max() <= 1.5 / 255


def test_preview_colour_image(tmp_path):
    out = tmp_path / "c.png"
    assert main(["preview", sample_file("US1_UNCR.dcm"), "--size", "48", "-o", str(out)]) == 0
    with PILImage.open(out) as im:
        assert im.size[0] == preview_size(48)[0]


def test_preview_bad_window_is_a_clean_error(tmp_path, capsys):
    rc = main(["preview", sample_file("CT_small.dcm"), "--windows", "brian,subdural,bone",
               "-o", str(tmp_path / "x.png")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "Did you mean 'brain'" in err and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()


def _default_window_of(path, tmp_path, capsys):
    out = tmp_path / "d.png"
    assert main(["preview", path, "--size", "32", "-o", str(out)]) == 0
    capsys.readouterr()
    with PILImage.open(out) as im:
        return np.asarray(im)


@pytest.mark.parametrize("name, channels, window", [
    ("RG1_UNCR.dcm", 1, "file"),       # a CR with its own window: not a CT preset
    ("MR_small.dcm", 1, "file"),       # an MR with its own window
    ("emri_small_RLE.dcm", 1, "p1"),   # an MR without one: percentiles
    ("CT_small.dcm", 3, "CT"),         # a CT without one: CT presets
])
def test_preview_default_windows_follow_the_file(name, channels, window, tmp_path, capsys):
    path = sample_file(name)
    png = _default_window_of(path, tmp_path, capsys)
    assert png.shape[1] == preview_size(32, channels)[0]
    ds = pydicom.dcmread(path)
    image = read_image(path, frames=[0])
    from dicomml.cli.preview import default_windows

    specs, _ = default_windows(image, {"modality": ds.Modality})
    assert specs[0].startswith({"file": "file", "p1": "p1", "CT": ("abdomen", "brain",
                                                                   "lung")}[window])
    panel = _panel(png, 0, 32, channels)
    # the file's own window / percentiles: not saturated (a CT window on a CR is all black)
    assert 0.05 < (panel[..., 0] > 127).mean() < 0.95 or panel.std() > 20


def test_preview_file_window_equals_pydicom_voi(tmp_path, capsys):
    """The default for a file with a window is that window: compare with pydicom's apply_voi_lut."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    path = sample_file("RG1_UNCR.dcm")
    out = tmp_path / "w.png"
    assert main(["preview", path, "--size", "64", "--resize", "stretch", "-o", str(out)]) == 0
    with PILImage.open(out) as im:
        png = np.asarray(im)
    ds = pydicom.dcmread(path)
    v = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds).astype(np.float64)
    lo, hi = v.min(), v.max()
    ref = sk_resize((v - lo) / (hi - lo), (64, 64), order=1, anti_aliasing=True)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        ref = 1.0 - ref
    got = _panel(png, 0, 64, channels=1)[..., 0] / 255.0
    assert np.abs(got - ref).mean() < 0.03


def test_preview_jpeg_is_jpeg_and_other_extensions_refused(tmp_path, capsys):
    path = sample_file("CT_small.dcm")
    assert main(["preview", path, "--size", "32", "-o", str(tmp_path / "x.jpg")]) == 0
    with PILImage.open(tmp_path / "x.jpg") as im:
        assert im.format == "JPEG"
    capsys.readouterr()
    assert main(["preview", path, "-o", str(tmp_path / "x.gif")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "x.gif" in err[0] and ".png" in err[0]
    assert not (tmp_path / "x.gif").exists()


def test_preview_heading_names_file_modality_frame(tmp_path):
    from dicomml.preprocess.preview import render_preview

    t = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    plain = np.asarray(render_preview(t, ["a", "b", "c"]))
    titled = np.asarray(render_preview(t, ["a", "b", "c"], "IM0001 · CT · frame 0 of 1"))
    extra = titled.shape[0] - plain.shape[0]
    assert extra > 0 and extra % HEADER_HEIGHT == 0  # whole heading lines, wrapped to fit
    assert titled[:extra].max() > 200  # text was drawn
    np.testing.assert_array_equal(titled[extra:], plain)
