"""Pipeline / to_tensor: output contract, the order of operations, 2.5D, RGB, augmentation."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from skimage.transform import resize as sk_resize

from dicomml.errors import ConfigError, MissingAttributeError
from dicomml.io import read_image
from dicomml.io.types import Image, Volume
from dicomml.preprocess import (IMAGENET_MEAN, IMAGENET_STD, AugmentConfig, Pipeline,
                                PreprocessConfig, PreprocessError, to_tensor)
from dicomml.testing import write_ct_series
from tests.conftest import testdata as sample_file
from tests.preprocess.helpers import pydicom_modality, two_csr_products


def _linear(x, c, w):
    """PS3.3 C.11.2.1.2.1 LINEAR with output [0, 1], written independently of dicomml."""
    x = np.asarray(x, dtype=np.float64)
    y = (x - (c - 0.5)) / (w - 1) + 0.5
    y[x <= c - 0.5 - (w - 1) / 2] = 0.0
    y[x > c - 0.5 + (w - 1) / 2] = 1.0
    return y


def _reference_tensor(values, windows, size, pad_mask=None, monochrome1=False):
    """Window at native resolution, invert, zero padding, pad-to-square skimage resize."""
    rows, cols = values.shape
    scale = size / max(rows, cols)
    h, w = int(np.floor(rows * scale + 0.5)), int(np.floor(cols * scale + 0.5))
    chans = []
    for c, wd in windows:
        y = _linear(values, c, wd)
        if monochrome1:
            y = 1.0 - y
        if pad_mask is not None:
            y[pad_mask] = 0.0
        r = sk_resize(y, (h, w), order=1, anti_aliasing=True, mode="reflect")
        canvas = np.zeros((size, size))
        top, left = (size - h) // 2, (size - w) // 2
        canvas[top:top + h, left:left + w] = r
        chans.append(canvas)
    return np.stack(chans, axis=-1)


BRAIN_SUBDURAL_BONE = [(40, 80), (80, 200), (400, 1800)]


@pytest.mark.parametrize("name", ["693_UNCI.dcm", "CT_small.dcm"])
def test_ct_tensor_matches_independent_reference(name):
    path = sample_file(name)
    values, ds = pydicom_modality(path)
    pad = ds.pixel_array == ds.PixelPaddingValue
    ref = _reference_tensor(values, BRAIN_SUBDURAL_BONE, 224, pad)
    out = Pipeline()(read_image(path))
    assert out.shape == (224, 224, 3) and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert np.abs(out - ref).max() <= 1 / 255
    # the three windows really give three different channels
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        assert np.abs(out[..., a] - out[..., b]).mean() > 0.01


def test_from_path_equals_read_image_then_call():
    path = sample_file("emri_small_RLE.dcm")
    p = Pipeline(PreprocessConfig(windows=("p1-p99",), mode="replicate", size=96))
    np.testing.assert_array_equal(p.from_path(path, 3), p(read_image(path), 3))
    with pytest.raises(ConfigError, match="out of range"):
        p(read_image(path), 10)


def test_monochrome1_inverted_after_window_and_padding_is_black():
    rng = np.random.default_rng(0)
    hu = rng.normal(40, 30, (60, 80)).astype(np.float32)
    pad = np.zeros(hu.shape, bool)
    pad[:, :10] = True
    hu[pad] = -2000
    kw = dict(windows=[(40, 80)], size=64, padding_mask=pad)
    m2 = to_tensor(hu, **kw)
    m1 = to_tensor(hu, photometric_interpretation="MONOCHROME1", **kw)
    ref1 = _reference_tensor(hu, [(40, 80)], 64, pad, monochrome1=True)[..., 0]
    ref2 = _reference_tensor(hu, [(40, 80)], 64, pad)[..., 0]
    assert np.abs(m1[..., 0] - ref1).max() <= 1 / 255
    assert np.abs(m2[..., 0] - ref2).max() <= 1 / 255
    # padded input columns 0..9 of 80 (scale 0.8): output columns 0..7 sample only padding
    # ((j + 0.5) * 1.25 - 0.5 <= 9 for j <= 7) and are black in both
    assert m1[:, :8].max() <= 1e-6 and m2[:, :8].max() <= 1e-6   # Gaussian tail only
    assert m1[:, 8:].max() > 0.5
    # inside, MONOCHROME1 is the complement of MONOCHROME2 (away from the padding edge)
    np.testing.assert_allclose(m1[8:56, 20:], 1 - m2[8:56, 20:], atol=1e-5)  # 48 image rows
    # the input was not modified
    assert (hu[pad] == -2000).all()


def test_replicate_copies_one_window_to_three_channels():
    x = np.linspace(-100, 200, 50 * 50, dtype=np.float32).reshape(50, 50)
    out = to_tensor(x, windows="brain", size=32)
    np.testing.assert_array_equal(out[..., 0], out[..., 1])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def _volume(n=5):
    px = np.stack([np.full((20, 20), 100.0 * i, np.float32) for i in range(n)])
    return Volume(pixels=px, spacing=(2.5, 1.0, 1.0), origin=(0.0, 0.0, 0.0),
                  direction=np.eye(3))


def test_2p5d_takes_neighbouring_slices_of_a_volume():
    cfg = PreprocessConfig(windows=((200, 401),), mode="2.5d", size=16,
                           voi_function="LINEAR_EXACT")
    p = Pipeline(cfg)
    vol = _volume()
    # LINEAR_EXACT 200/401: slice value v -> (v - 200)/401 + 0.5
    expect = lambda v: (v - 200) / 401 + 0.5  # noqa: E731
    out = p(vol, 2)
    np.testing.assert_allclose(out[8, 8], [expect(100), expect(200), expect(300)], atol=1e-6)
    out0 = p(vol, 0)   # edge: the missing neighbour repeats the slice
    np.testing.assert_allclose(out0[8, 8], [expect(0), expect(0), expect(100)], atol=1e-6)
    assert p.channel_labels(vol, 2)[0].startswith("slice -1")


def test_2p5d_orders_frames_by_position_not_by_index():
    # frames stored in the order z = 0, 20, 10, 30, 40 (values equal z)
    z = np.array([0.0, 20.0, 10.0, 30.0, 40.0])
    px = np.stack([np.full((8, 8), v, np.float32) for v in z])
    img = Image(pixels=px, positions=np.stack([np.zeros(5), np.zeros(5), z], axis=1),
                orientations=np.tile([1.0, 0, 0, 0, 1.0, 0], (5, 1)))
    out = Pipeline(PreprocessConfig(windows=((20, 41),), mode="2.5d", size=8,
                                    voi_function="LINEAR_EXACT"))(img, 2)   # z = 10
    np.testing.assert_allclose(out[4, 4], [(v - 20) / 41 + 0.5 for v in (0, 10, 20)],
                               atol=1e-6)
    with pytest.raises(ConfigError, match="2.5d"):
        Pipeline(PreprocessConfig(windows=("brain",), mode="2.5d"))(
            Image(pixels=px), 1)


def test_rgb_keeps_colour_scaled_by_bit_depth():
    path = sample_file("US1_UNCR.dcm")
    ds = pydicom.dcmread(path)
    rgb = ds.pixel_array.astype(np.float64) / 255.0          # 480 x 640 x 3, 8 bits
    img = read_image(path)
    out = to_tensor(img)                                     # colour -> mode "rgb"
    h = int(np.floor(480 * 224 / 640 + 0.5))                 # 168
    top = (224 - h) // 2
    for c in range(3):
        ref = sk_resize(rgb[..., c], (h, 224), order=1, anti_aliasing=True)
        assert np.abs(out[top:top + h, :, c] - ref).max() <= 1 / 255
    with pytest.raises(ConfigError, match="mode 'rgb'"):
        Pipeline()(img)
    with pytest.raises(ConfigError, match="colour image"):
        Pipeline(PreprocessConfig(mode="rgb"))(np.zeros((10, 10), np.float32))


@pytest.mark.parametrize("how", ["unit", "imagenet", "zscore"])
def test_normalization_ranges(how):
    path = sample_file("693_UNCI.dcm")
    img = read_image(path)
    unit = Pipeline()(img)
    out = Pipeline(PreprocessConfig(normalize=how))(img)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    if how == "unit":
        assert 0 <= out.min() and out.max() <= 1
    elif how == "imagenet":
        np.testing.assert_allclose(out, (unit - IMAGENET_MEAN) / IMAGENET_STD, atol=1e-6)
        assert out.min() >= -0.485 / 0.229 - 1e-6 and out.max() <= (1 - 0.406) / 0.225 + 1e-6
    else:
        assert abs(float(out.mean())) < 1e-5 and float(out.std()) == pytest.approx(1, abs=1e-4)


def test_zscore_of_flat_image_is_zero():
    out = to_tensor(np.zeros((10, 10), np.float32), windows="brain", size=8, normalize="zscore")
    assert (out == 0).all()


def test_augmentation_seeded_and_only_when_training():
    img = read_image(sample_file("CT_small.dcm"))
    p = Pipeline(PreprocessConfig(windows=("brain", "subdural", "bone"), size=64))
    base = p(img)
    np.testing.assert_array_equal(p(img, training=False, rng=5), base)
    a1 = p(img, training=True, rng=np.random.default_rng(11))
    a2 = p(img, training=True, rng=np.random.default_rng(11))
    a3 = p(img, training=True, rng=np.random.default_rng(12))
    np.testing.assert_array_equal(a1, a2)
    assert np.abs(a1 - a3).max() > 0.05 and np.abs(a1 - base).max() > 0.05
    assert a1.dtype == np.float32 and a1.shape == base.shape and 0 <= a1.min() <= a1.max() <= 1
    # the pipeline's own generator: two pipelines of one config give the same sequence
    q = Pipeline(p.config)
    for _ in range(2):
        np.testing.assert_array_equal(p(img, training=True), q(img, training=True))
    # no augmentation ranges: training equals prediction
    off = AugmentConfig(flip_lr=0, flip_ud=0, rotate_deg=0, scale=0, translate=0, intensity=0,
                        window_center=0, window_width=0)
    r = Pipeline(PreprocessConfig(size=64, augment=off))
    np.testing.assert_array_equal(r(img, training=True, rng=3), base)


def test_flip_only_augmentation_is_an_exact_mirror():
    img = read_image(sample_file("CT_small.dcm"))
    flip = AugmentConfig(flip_lr=1.0, rotate_deg=0, scale=0, translate=0, intensity=0,
                         window_center=0, window_width=0)
    p = Pipeline(PreprocessConfig(size=64, augment=flip))
    np.testing.assert_array_equal(p(img, training=True, rng=0), p(img)[:, ::-1])


def test_input_image_not_mutated():
    img = read_image(sample_file("693_UNCI.dcm"))
    before = img.pixels.copy()
    Pipeline(PreprocessConfig(normalize="zscore"))(img, training=True, rng=1)
    np.testing.assert_array_equal(img.pixels, before)


def test_unknown_preset_in_config_did_you_mean():
    with pytest.raises(ConfigError, match="Did you mean 'mediastinum'"):
        PreprocessConfig(windows=("brain", "mediastinun", "bone"))


def test_step_errors_name_step_shape_and_range(monkeypatch):
    x = np.arange(64 * 48, dtype=np.float32).reshape(64, 48)
    with pytest.raises(MissingAttributeError) as e:
        Pipeline(PreprocessConfig(windows=("file",), mode="replicate"))(x)
    msg = str(e.value)
    assert "resolve windows" in msg and "(64, 48)" in msg and "0..3071" in msg

    import dicomml.preprocess.pipeline as pl

    def broken(*a, **k):
        raise ValueError("boom")

    monkeypatch.setattr(pl, "window_resize", broken)     # the compiled kernel's step
    with pytest.raises(PreprocessError,
                       match=r"step 'window and resize'.*\(64, 48\).*0\.\.3071.*boom") as e:
        Pipeline()(x)
    assert isinstance(e.value.__cause__, ValueError)

    monkeypatch.setattr(pl, "window_resize", lambda *a, **k: None)   # as without numba
    monkeypatch.setattr(pl, "resize_planes", broken)
    with pytest.raises(PreprocessError, match=r"step 'resize'.*\(3, 64, 48\).*0\.\.1.*boom") as e:
        Pipeline()(x)
    assert isinstance(e.value.__cause__, ValueError)


def test_to_tensor_metadata_only_for_arrays():
    img = read_image(sample_file("CT_small.dcm"))
    with pytest.raises(ConfigError, match="pixel_spacing"):
        to_tensor(img, pixel_spacing=(1.0, 1.0))
    out = to_tensor(np.zeros((100, 50), np.float32), windows="-600/1500", size=32,
                    fov_mm=25, pixel_spacing=(0.25, 0.5))
    assert out.shape == (32, 32, 3)


@pytest.mark.parametrize("name", ["693_UNCI.dcm", "CT_small.dcm"])
def test_default_tensor_bit_identical_to_the_separate_steps(name):
    """The Pipeline's default output is, bit for bit, its documented steps run one by one:
    each window by apply_window, the padding floor, then the resize as two CSR products
    per channel: a faster Pipeline must not change a single bit of the default tensors."""
    from dicomml.preprocess import apply_window
    from dicomml.preprocess.presets import PRESETS

    img = read_image(sample_file(name))
    hu = img.pixels[0]
    stack = np.stack([apply_window(hu, *PRESETS[w]) for w in ("brain", "subdural", "bone")])
    if img.padding_mask is not None:
        stack[:, img.padding_mask[0]] = 0.0
    ref = two_csr_products(stack, 224)
    assert Pipeline()(img).tobytes() == ref.tobytes()


def _variant(tmp_path, src, name, **attrs):
    ds = pydicom.dcmread(src)
    for k, v in attrs.items():
        setattr(ds, k, v)
    path = tmp_path / name
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("config", [
    dict(windows=("brain", "subdural", "bone")),
    dict(windows=((40.0, 80.0), "file:0", (400.0, 1800.0)), voi_function="LINEAR_EXACT"),
    dict(windows=("brain",), mode="replicate", size=96, resize="crop"),
    dict(windows=("brain",), mode="2.5d"),
    dict(windows=("p1-p99", "brain", "minmax")),     # computed from modality values
    dict(windows=("brain", "bone", "lung"), voi_function="SIGMOID"),   # not fused
    dict(windows=("brain", "bone", "lung"), normalize="imagenet", fov_mm=200.0),
])
def test_from_path_reads_stored_integers_and_gives_the_same_bytes(tmp_path, monkeypatch,
                                                                   config):
    """``from_path`` reads the stored integers (``stored_values=True``) and lets the kernel
    convert them; the tensor is, byte for byte, that of the float32 modality values, for
    unsigned and signed CT, an integer slope ≠ 1, a non-integer slope (read as float32),
    MONOCHROME1 and padding; percentile and sigmoid windows take the modality values."""
    import dicomml.io

    paths = sorted(write_ct_series(tmp_path / "u", seed=5, n_slices=3, rows=512, columns=512,
                                   body="head", padding=True))
    signed = sorted(write_ct_series(tmp_path / "s", seed=6, n_slices=1, rows=320,
                                    columns=400, body="head", signed=True))
    files = [paths[1], signed[0],
             _variant(tmp_path, paths[0], "slope2.dcm", RescaleSlope=2,
                      RescaleIntercept=-2048),
             _variant(tmp_path, paths[0], "slope_half.dcm", RescaleSlope=0.5),
             _variant(tmp_path, paths[0], "mono1.dcm", PhotometricInterpretation="MONOCHROME1")]
    p = Pipeline(PreprocessConfig(**config))
    seen = []
    real = dicomml.io.read_image

    def spy(path, **kw):
        img = real(path, **kw)
        seen.append(img.stored_values)
        return img

    for f in files:
        want = p(read_image(f), 0)
        with monkeypatch.context() as m:
            m.setattr(dicomml.io, "read_image", spy)
            got = p.from_path(f)
            jittered = p.from_path(f, training=True, rng=3)     # windows jittered
        assert got.dtype == np.float32 and got.tobytes() == want.tobytes(), f
        assert jittered.tobytes() == p(read_image(f), 0, training=True, rng=3).tobytes()
    computed = any(str(w)[:1] in "pm" for w in config["windows"])
    kept = [False] * 5 if computed else [True, True, True, False, True]
    assert seen == [v for v in kept for _ in (0, 1)]


def test_a_failing_step_is_named_with_its_input_and_file(monkeypatch):
    """A step's failure is re-raised once, naming the step, the input's shape and range and
    where it came from: dicomml's own errors keep their type, others become a
    PreprocessError with the original as its cause; an interrupt passes through as it is."""
    import dicomml.preprocess.pipeline as pipeline_mod
    from dicomml.preprocess import PreprocessError

    x = np.linspace(-100, 300, 64 * 64, dtype=np.float32).reshape(64, 64)
    with pytest.raises(MissingAttributeError) as got:
        Pipeline(PreprocessConfig(windows=("file:0",), mode="replicate", size=32))(x)
    msg = str(got.value)
    assert msg.startswith("preprocess step 'resolve windows' failed on array (input shape "
                          "(64, 64), range -100..300): ")
    assert msg.count("preprocess step") == 1

    def broken(*args, **kwargs):
        raise ValueError("no room")

    monkeypatch.setattr(pipeline_mod, "_fused", broken)
    with pytest.raises(PreprocessError, match=r"^preprocess step 'window and resize' failed "
                       r"on array \(input shape \(64, 64\), range -100\.\.300\): "
                       r"ValueError: no room$") as got:
        Pipeline(PreprocessConfig(size=32))(x)
    assert isinstance(got.value.__cause__, ValueError)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline_mod, "_fused", interrupted)
    with pytest.raises(KeyboardInterrupt):
        Pipeline(PreprocessConfig(size=32))(x)
