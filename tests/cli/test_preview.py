"""``dicomml preview``: writes a PNG of the right size that shows the tensor's channels."""

from __future__ import annotations

import numpy as np
import pydicom
from PIL import Image as PILImage
from skimage.transform import resize as sk_resize

from dicomml.cli import main
from dicomml.io import read_image
from dicomml.preprocess import Pipeline, PreprocessConfig
from dicomml.preprocess.preview import MARGIN, TITLE_HEIGHT
from tests.conftest import testdata as sample_file


def _panel(png: np.ndarray, k: int, size: int) -> np.ndarray:
    x0, y0 = MARGIN + k * (size + MARGIN), MARGIN + TITLE_HEIGHT
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
        assert im.size == (4 * 64 + 5 * MARGIN, 64 + TITLE_HEIGHT + 2 * MARGIN)
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
    a, b = _panel(png, 0, 32), _panel(png, 1, 32)
    np.testing.assert_array_equal(a, b)
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
        assert im.size == (4 * 48 + 5 * MARGIN, 48 + TITLE_HEIGHT + 2 * MARGIN)


def test_preview_bad_window_is_a_clean_error(tmp_path, capsys):
    rc = main(["preview", sample_file("CT_small.dcm"), "--windows", "brian,subdural,bone",
               "-o", str(tmp_path / "x.png")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "Did you mean 'brain'" in err and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()
