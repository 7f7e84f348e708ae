"""resize_planes against skimage.transform.resize (anti-aliasing) and hand-made geometry."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.transform import resize as sk_resize

from dicomml.errors import ConfigError
from dicomml.preprocess import resampling_matrix, resize_planes
from tests.preprocess.helpers import two_csr_products


def _sk(plane: np.ndarray, shape) -> np.ndarray:
    return sk_resize(plane.astype(np.float64), shape, order=1, anti_aliasing=True,
                     mode="reflect")


@pytest.fixture
def planes():
    rng = np.random.default_rng(7)
    return rng.random((3, 300, 200)).astype(np.float32)


@pytest.mark.parametrize("n_in, n_out", [(512, 224), (300, 224), (224, 224), (64, 224),
                                         (1760, 224), (7, 3)])
def test_matrix_equals_skimage_1d(n_in, n_out):
    rng = np.random.default_rng(n_in)
    x = rng.random((n_in, 5))
    ref = sk_resize(x, (n_out, 5), order=1, anti_aliasing=True, mode="reflect")
    np.testing.assert_allclose(resampling_matrix(n_in, n_out) @ x, ref, atol=1e-12)
    m = resampling_matrix(n_in, n_out)
    assert (m >= -1e-15).all() and np.allclose(m.sum(axis=1), 1.0)


def test_stretch_equals_skimage(planes):
    out = resize_planes(planes, 224, "stretch")
    assert out.shape == (224, 224, 3) and out.dtype == np.float32
    for c in range(3):
        assert np.abs(out[..., c] - _sk(planes[c], (224, 224))).max() <= 1 / 255 * 1e-3


def test_pad_keeps_aspect_and_pads_with_floor(planes):
    # 300 x 200 -> scale 224/300: 224 x 149 (round(149.33)), centred: 37 columns each side
    out = resize_planes(planes, 224, "pad")
    left = (224 - 149) // 2
    assert left == 37
    np.testing.assert_array_equal(out[:, :left], 0)
    np.testing.assert_array_equal(out[:, left + 149:], 0)
    for c in range(3):
        ref = _sk(planes[c], (224, 149))
        assert np.abs(out[:, left:left + 149, c] - ref).max() <= 1e-5
    assert (out[:, left:left + 149] > 0).mean() > 0.99


def test_crop_scales_short_side_and_centre_crops(planes):
    # 300 x 200 -> scale 224/200: 336 x 224, centre rows 56..280
    out = resize_planes(planes, 224, "crop")
    for c in range(3):
        ref = _sk(planes[c], (336, 224))[56:280]
        assert np.abs(out[..., c] - ref).max() <= 1e-5


def test_upsampling_small_plane():
    x = np.random.default_rng(3).random((64, 64)).astype(np.float32)
    out = resize_planes(x, 224)
    assert out.shape == (224, 224)
    assert np.abs(out - _sk(x, (224, 224))).max() <= 1e-5


def test_fov_mm_uses_pixel_spacing():
    # 200 x 200 pixels of 0.5 mm = 100 mm; a 50 mm field of view is the central 100 pixels
    x = np.random.default_rng(4).random((200, 200)).astype(np.float32)
    out = resize_planes(x, 64, fov_mm=50, pixel_spacing=(0.5, 0.5))
    assert np.abs(out - _sk(x[50:150, 50:150], (64, 64))).max() <= 1e-5
    # anisotropic spacing: 0.5 mm rows, 1.0 mm columns -> 100 rows x 50 columns
    out = resize_planes(x, 64, fov_mm=50, pixel_spacing=(0.5, 1.0))
    assert np.abs(out - _sk(x[50:150, 75:125], (64, 64))).max() <= 1e-5
    # a field of view larger than the image: zero (floor) around it
    out = resize_planes(np.ones((100, 100), np.float32), 100, fov_mm=200,
                        pixel_spacing=(1.0, 1.0))
    ref = _sk(np.pad(np.ones((100, 100)), 50), (100, 100))
    assert np.abs(out - ref).max() <= 1e-5
    assert out[0, 0] == 0 and out[50, 50] == pytest.approx(1.0, abs=1e-6)


def test_fov_needs_spacing():
    with pytest.raises(ConfigError, match=r"\(0028,0030\) Pixel Spacing"):
        resize_planes(np.zeros((10, 10), np.float32), 8, fov_mm=50)


def test_input_not_modified(planes):
    before = planes.copy()
    resize_planes(planes, 64)
    np.testing.assert_array_equal(planes, before)


def test_resize_typo():
    with pytest.raises(ConfigError, match="Did you mean 'stretch'"):
        resize_planes(np.zeros((10, 10), np.float32), 8, "strech")


# ------------------------------------------------------------------ bit for bit the CSR products
@pytest.mark.parametrize("shape, size, resize", [
    ((3, 512, 512), 224, "pad"), ((3, 300, 200), 224, "pad"), ((3, 200, 300), 224, "crop"),
    ((1, 64, 48), 224, "stretch"), ((480, 640), 224, "pad"), ((3, 7, 3), 5, "pad"),
    ((3, 1024, 1024), 224, "pad")])
def test_bit_identical_to_the_two_csr_products(shape, size, resize):
    rng = np.random.default_rng(sum(shape))
    x = rng.random(shape, dtype=np.float32)
    x[x < 0.2] = 0.0          # the window's floor, as windowed CT has much of
    x[x > 0.9] = 1.0
    got = resize_planes(x, size, resize)
    ref = two_csr_products(x, size, resize)
    assert got.shape == ref.shape and got.dtype == ref.dtype
    assert got.tobytes() == ref.tobytes()


@pytest.mark.parametrize("fov_mm, spacing", [(50, (0.5, 0.5)), (50, (0.5, 1.0)),
                                             (300, (0.7, 0.7))])
def test_fov_bit_identical_to_the_two_csr_products(fov_mm, spacing):
    x = np.random.default_rng(5).random((3, 200, 180), dtype=np.float32)
    got = resize_planes(x, 64, fov_mm=fov_mm, pixel_spacing=spacing)
    assert got.tobytes() == two_csr_products(x, 64, "pad", fov_mm, spacing).tobytes()


def test_a_nan_stays_where_the_products_put_it():
    x = np.random.default_rng(6).random((3, 128, 128), dtype=np.float32)
    x[1, 40, 40] = np.nan
    got, ref = resize_planes(x, 64), two_csr_products(x, 64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    assert np.isnan(got).sum() > 0 and np.array_equal(got, ref, equal_nan=True)


def test_threads_do_not_share_the_transpose_buffer():
    """The row product is transposed into a buffer of the calling thread: planes resized
    at once by several threads come out as each alone would."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(8)
    planes = [rng.random((3, 256, 256 + 4 * k), dtype=np.float32) for k in range(6)] * 4
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda x: resize_planes(x, 96), planes))
    for x, y in zip(planes, got):
        assert y.tobytes() == two_csr_products(x, 96).tobytes()
