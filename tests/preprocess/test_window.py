"""apply_window / apply_voi_lut: hand-computed PS3.3 C.11.2 cases and pydicom's VOI transforms."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.pixels import apply_voi_lut as pd_apply_voi_lut
from pydicom.pixels import apply_windowing as pd_apply_windowing

from dicomml.errors import ConfigError, MissingAttributeError
from dicomml.io.types import VOILUT, Window
from dicomml.preprocess import (PRESETS, VOILUTFunction, apply_voi_lut, apply_window,
                                resolve_window)
from dicomml.preprocess.presets import window_is_fixed
from tests.conftest import testdata as sample_file
from tests.preprocess.helpers import pydicom_modality


# --- LINEAR, PS3.3 C.11.2.1.2.1, worked by hand for c=40, w=80 -------------------------
# lower edge c - 0.5 - (w-1)/2 = 0, upper edge c - 0.5 + (w-1)/2 = 79;
# between: (x - 39.5)/79 + 0.5
@pytest.mark.parametrize("x, expected", [
    (-1000.0, 0.0), (0.0, 0.0), (0.5, 1 / 158), (39.5, 0.5), (40.0, 0.5 + 0.5 / 79),
    (78.0, 78 / 79), (79.0, 1.0), (79.5, 1.0), (3000.0, 1.0),
])
def test_linear_hand_values(x, expected):
    out = apply_window(np.array([x]), 40, 80)
    assert out.dtype == np.float32
    assert out[0] == pytest.approx(expected, abs=1e-6)


def test_linear_width_one_is_a_step_at_c_minus_half():
    x = np.array([99.0, 99.5, 99.50001, 100.0, 101.0])
    assert apply_window(x, 100, 1).tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("x, expected", [(-10.0, 0.0), (0.0, 0.0), (20.0, 0.25), (40.0, 0.5),
                                         (60.0, 0.75), (80.0, 1.0), (200.0, 1.0)])
def test_linear_exact_hand_values(x, expected):
    assert apply_window(np.array([x]), 40, 80, "LINEAR_EXACT")[0] == pytest.approx(expected,
                                                                                   abs=1e-6)


def test_linear_exact_allows_width_below_one():
    assert apply_window(np.array([0.0, 0.25, 0.5]), 0.25, 0.5, "LINEAR_EXACT").tolist() == \
        [0.0, 0.5, 1.0]


def test_sigmoid_hand_values():
    x = np.array([40.0, 60.0, 20.0])
    expected = 1.0 / (1.0 + np.exp(-4.0 * (x - 40.0) / 80.0))
    np.testing.assert_allclose(apply_window(x, 40, 80, "SIGMOID"), expected, rtol=1e-6)
    assert np.isfinite(apply_window(np.array([-1e6, 1e6]), 0, 1, "SIGMOID")).all()


@pytest.mark.parametrize("fn", ["LINEAR", "linear", VOILUTFunction.LINEAR, " Linear "])
def test_function_spellings(fn):
    assert apply_window(np.array([40.0]), 40, 80, fn)[0] == pytest.approx(0.5 + 0.5 / 79)


def test_function_typo_says_did_you_mean():
    with pytest.raises(ConfigError, match="Did you mean 'LINEAR_EXACT'"):
        apply_window(np.zeros(3), 40, 80, "LINEAR_EXCAT")


@pytest.mark.parametrize("fn, width", [("LINEAR", 0.5), ("LINEAR_EXACT", 0.0),
                                       ("SIGMOID", -1.0), ("LINEAR", float("nan"))])
def test_forbidden_widths(fn, width):
    with pytest.raises(ConfigError, match="Width"):
        apply_window(np.zeros(3), 40, width, fn)


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.int32, np.float32, np.float64])
def test_dtypes_and_input_untouched(dtype):
    x = np.array([[-1000, 0], [40, 2000]], dtype=dtype) if np.dtype(dtype).kind != "u" \
        else np.array([[0, 10], [40, 2000]], dtype=dtype)
    before = x.copy()
    out = apply_window(x, 40, 80)
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_array_equal(x, before)
    assert out.min() >= 0 and out.max() <= 1


# --- VOI LUT, PS3.3 C.11.2.1.1 -------------------------------------------------------
def test_voi_lut_hand_values():
    lut = VOILUT(first_mapped=-2, bits=12, data=np.array([0, 1000, 4095, 3000], np.uint16))
    x = np.array([-100.0, -2.0, -1.0, -0.6, 0.0, 1.0, 50.0])
    expected = np.array([0, 0, 1000, 1000, 4095, 3000, 3000]) / 4095.0
    np.testing.assert_allclose(apply_voi_lut(x, lut), expected, rtol=1e-6)


def test_voi_lut_against_pydicom():
    path = sample_file("vlut_04.dcm")
    values, ds = pydicom_modality(path)
    item = ds.VOILUTSequence[0]
    desc = [int(v) for v in item.LUTDescriptor]
    lut = VOILUT(first_mapped=desc[1], bits=desc[2],
                 data=np.asarray(item.LUTData, dtype=np.uint16))
    ref = pd_apply_voi_lut(ds.pixel_array, ds, prefer_lut=True).astype(np.float64)
    ours = apply_voi_lut(values, lut).astype(np.float64) * (2 ** desc[2] - 1)
    np.testing.assert_allclose(ours, ref, atol=0.5)


@pytest.mark.parametrize("name", ["MR_small.dcm", "MR-SIEMENS-DICOM-WithOverlays.dcm",
                                  "693_UNCI.dcm", "RG3_UNCI.dcm"])
def test_file_windows_against_pydicom(name):
    """The file's own (0028,1050)/(0028,1051) through resolve_window('file:i') equals
    pydicom.pixels.apply_windowing, rescaled from its [y_min, y_max] to [0, 1]."""
    values, ds = pydicom_modality(sample_file(name))
    centers = ds.WindowCenter if ds["WindowCenter"].VM > 1 else [ds.WindowCenter]
    widths = ds.WindowWidth if ds["WindowWidth"].VM > 1 else [ds.WindowWidth]
    file_windows = tuple(Window(float(c), float(w), None, str(ds.get("VOILUTFunction",
                                                                      "LINEAR")))
                         for c, w in zip(centers, widths))
    for i in range(len(file_windows)):
        ref = pd_apply_windowing(values.copy(), ds, index=i)
        lo_hi = pd_apply_windowing(np.array([-1e9, 1e9]), ds, index=i)
        ref01 = (ref - lo_hi[0]) / (lo_hi[1] - lo_hi[0])
        w = resolve_window(f"file:{i}", file_windows=file_windows)
        np.testing.assert_allclose(w.apply(values), ref01, atol=1e-5)


# --- window choices ------------------------------------------------------------------
def test_presets_have_documented_values():
    assert PRESETS["brain"] == (40.0, 80.0)
    assert PRESETS["subdural"] == (80.0, 200.0)
    assert PRESETS["stroke"] == (40.0, 40.0)
    assert PRESETS["temporal_bone"] == (600.0, 2800.0)
    assert PRESETS["bone"] == (400.0, 1800.0)
    assert PRESETS["lung"] == (-600.0, 1500.0)
    assert PRESETS["mediastinum"] == (50.0, 350.0)
    assert PRESETS["abdomen"] == PRESETS["soft_tissue"] == (50.0, 400.0)
    assert PRESETS["liver"] == (60.0, 150.0)


def test_unknown_preset_did_you_mean():
    with pytest.raises(ConfigError, match="Did you mean 'subdural'"):
        resolve_window("subdral")


@pytest.mark.parametrize("spec, c, w", [("LUNG", -600, 1500), ("-600/1500", -600, 1500),
                                        ((40, 80), 40, 80), ([40.0, 80.0], 40, 80),
                                        (Window(10, 20), 10, 20)])
def test_spellings(spec, c, w):
    r = resolve_window(spec)
    assert (r.center, r.width) == (c, w)


@pytest.mark.parametrize("spec, fixed", [
    ("brain", True), ("LUNG", True), ("-600/1500", True), ((40, 80), True), (Window(1, 2), True),
    ("file", False), ("file:0", False), (("file", 1), False), ("voilut:0", False),
    ("p1-p99", False), ("minmax", False)])
def test_which_windows_are_the_same_for_every_plane(spec, fixed):
    assert window_is_fixed(spec) is fixed


def test_a_pipeline_resolves_file_windows_per_file_and_fixed_ones_once():
    """A Pipeline resolves its fixed windows once and keeps them; a file window is taken
    from each image: two images differing only in their (0028,1050)/(0028,1051) give
    different tensors for "file:0", the same for presets and "C/W" windows."""
    from dicomml.io.types import Image
    from dicomml.preprocess import Pipeline, PreprocessConfig
    x = np.linspace(-200, 200, 64 * 64, dtype=np.float32).reshape(1, 64, 64)
    narrow = Image(pixels=x, windows=(Window(0, 40),))
    wide = Image(pixels=x, windows=(Window(0, 400),))
    by_file = Pipeline(PreprocessConfig(windows=("file:0",), mode="replicate", size=32))
    a, b = by_file(narrow), by_file(wide)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, by_file(narrow))
    fixed = Pipeline(PreprocessConfig(windows=("brain", (0.0, 40.0), "10/400"), size=32))
    assert fixed.channel_labels(narrow) == ["brain 40/80", "0/40", "10/400"]
    np.testing.assert_array_equal(fixed(narrow), fixed(wide))
    np.testing.assert_array_equal(a[..., 0], fixed(narrow)[..., 1])


def test_file_window_by_index_and_explanation():
    fw = (Window(40, 80, "BRAIN"), Window(600, 2800, "BONE", "LINEAR_EXACT"))
    assert resolve_window("file", file_windows=fw).center == 40
    assert resolve_window(("file", 1), file_windows=fw).width == 2800
    r = resolve_window("file:bone", file_windows=fw)
    assert (r.center, r.function) == (600, VOILUTFunction.LINEAR_EXACT)
    with pytest.raises(ConfigError, match="Did you mean 'BONE'"):
        resolve_window("file:BONES", file_windows=fw)
    with pytest.raises(ConfigError, match="out of range"):
        resolve_window("file:2", file_windows=fw)
    with pytest.raises(MissingAttributeError, match=r"\(0028,1050\)"):
        resolve_window("file", file_windows=(), where="x.dcm")


def test_percentile_window_ignores_padding():
    rng = np.random.default_rng(1)
    values = rng.normal(100, 30, size=(50, 40))
    pad = np.zeros_like(values, dtype=bool)
    pad[:, :10] = True
    values[pad] = -3000
    r = resolve_window("p1-p99", values=values, padding_mask=pad)
    lo, hi = np.percentile(values[~pad], [1, 99])
    assert r.center == pytest.approx((lo + hi) / 2) and r.width == pytest.approx(hi - lo)
    y = r.apply(values[~pad])
    assert np.mean(y == 0) == pytest.approx(0.01, abs=0.002)
    assert np.mean(y == 1) == pytest.approx(0.01, abs=0.002)
    m = resolve_window("minmax", values=values, padding_mask=pad)
    assert m.center - m.width / 2 == pytest.approx(values[~pad].min())
    assert m.center + m.width / 2 == pytest.approx(values[~pad].max())


@pytest.mark.parametrize("function,width", [("LINEAR", 80.0), ("LINEAR", 1.0),
                                            ("LINEAR_EXACT", 0.5), ("SIGMOID", 80.0)])
@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.float64])
def test_apply_window_into_out_is_the_same_window(function, width, dtype):
    """``out=`` (the Pipeline's preallocated stack) writes exactly what a new array holds."""
    x = np.arange(-100, 200, 3, dtype=dtype).reshape(10, 10)
    ref = apply_window(x, 40, width, function)
    out = np.full(x.shape, np.nan, np.float32)
    got = apply_window(x, 40, width, function, out=out)
    assert got is out and got.dtype == np.float32
    np.testing.assert_array_equal(got, ref)
    with pytest.raises(ConfigError, match="out must be a float32 array"):
        apply_window(x, 40, width, function, out=np.empty((10, 9), np.float32))


@pytest.mark.parametrize("width,function", [(0.0, "LINEAR"), (0.5, "LINEAR"),
                                            (0.0, "LINEAR_EXACT"), (-2.0, "SIGMOID")])
def test_a_files_own_forbidden_window_width_is_a_file_defect(tmp_path, width, function):
    """(0028,1051) Window Width 0 in the file: InvalidDicomError naming the tag and the file
    (not ConfigError, which is for the caller's own choices), from resolve_window and from
    the Pipeline; an explicit window of the same width stays a ConfigError."""
    import pydicom

    from dicomml.errors import InvalidDicomError
    from dicomml.io import read_image
    from dicomml.preprocess import Pipeline, PreprocessConfig, resolve_window

    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 40, width, function
    path = tmp_path / "width.dcm"
    ds.save_as(path)
    img = read_image(path)
    assert img.windows[0].width == width
    with pytest.raises(InvalidDicomError, match=r"\(0028,1051\) Window Width") as exc:
        resolve_window("file:0", file_windows=img.windows, where=str(path))
    assert str(path) in str(exc.value)
    cfg = PreprocessConfig(windows=["file:0"], mode="replicate", size=32)
    with pytest.raises(InvalidDicomError, match=r"\(0028,1051\) Window Width"):
        Pipeline(cfg)(img, 0)
    with pytest.raises(ConfigError):
        apply_window(img.pixels[0], 40, width, function)
