"""The compiled preprocessing kernel (numba, ``dicomml.preprocess._kernel``): the bytes of
the steps run one by one with NumPy / SciPy, on odd shapes, NaN, padding masks,
MONOCHROME1 and several threads; numba imported only on first use; the SciPy fallback.

The reference is written out here from public functions: ``apply_window`` into a float32
stack, ``invert_monochrome1``, ``apply_padding_floor``, then the two CSR products of
``tests/preprocess/helpers.py`` (``two_csr_products``).
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from dicomml.preprocess import ResizeMode, apply_padding_floor, invert_monochrome1
from dicomml.preprocess import resize as rz
from dicomml.preprocess.resize import compiled_kernel, resize_planes, window_resize
from dicomml.preprocess.window import apply_window, window_coefficients
from tests.preprocess.helpers import two_csr_products

WINDOWS = ((40.0, 80.0), (80.0, 200.0), (400.0, 1800.0))


def hu_planes(shape, planes=1, seed=0, nan=True):
    rng = np.random.default_rng(seed)
    x = rng.normal(40.0, 400.0, size=(planes, *shape)).astype(np.float32)
    if nan and x.size > 8:
        x.flat[rng.choice(x.size, 3, replace=False)] = np.nan
    return x


def steps_one_by_one(planes, windows, plane_of, invert, padding, pad_of, size, resize,
                     fov_mm=None, spacing=None):
    stack = np.empty((len(windows), *planes.shape[1:]), np.float32)
    for k, (c, w) in enumerate(windows):
        apply_window(planes[plane_of[k]], c, w, "LINEAR", out=stack[k])
    invert_monochrome1(stack, "MONOCHROME1" if invert else "MONOCHROME2", inplace=True)
    if padding is not None:
        for k in range(len(windows)):
            if pad_of[k] >= 0:
                apply_padding_floor(stack[k], padding[pad_of[k]], inplace=True)
    return two_csr_products(stack, size, resize, fov_mm, spacing)


def fused(planes, windows, plane_of, invert, padding, pad_of, size, resize, fov_mm=None,
          spacing=None):
    ab = [window_coefficients(c, w, "LINEAR") for c, w in windows]
    a = np.array([v[0] for v in ab], np.float32)
    b = np.array([v[1] for v in ab], np.float32)
    return window_resize(planes, np.asarray(plane_of, np.intp), a, b, invert, padding,
                         np.asarray(pad_of, np.intp), size, ResizeMode(resize), fov_mm, spacing)


def test_numba_is_there_and_imported_only_on_first_use():
    assert compiled_kernel() is not None, "numba is a dependency: the kernel must import"
    code = ("import sys; import dicomml.preprocess as p; "
            "pl = p.Pipeline(); assert 'numba' not in sys.modules, 'imported early'; "
            "import numpy as np; "
            "pl(np.zeros((32, 32), np.float32)); assert 'numba' in sys.modules; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


@pytest.mark.parametrize("shape,size,resize", [
    ((64, 48), 224, "pad"), ((7, 3), 5, "pad"), ((333, 517), 224, "crop"),
    ((512, 384), 96, "stretch"), ((1, 1), 4, "pad"), ((100, 80), 101, "pad"),
    ((1500, 90), 37, "pad"),   # a strong downscale: the window ring holds ~100 rows
])
@pytest.mark.parametrize("invert", [False, True])
def test_window_resize_is_the_steps_bit_for_bit(shape, size, resize, invert):
    rng = np.random.default_rng(1)
    one = hu_planes(shape, 1, seed=2)
    mask = rng.random(shape) < 0.2
    # one plane, three windows, one mask for all of them
    want = steps_one_by_one(one, WINDOWS, [0, 0, 0], invert, mask[None], [0, 0, 0], size,
                            resize)
    got = fused(one, WINDOWS, [0, 0, 0], invert, mask[None], [0, 0, 0], size, resize)
    assert got.dtype == np.float32 and got.shape == want.shape == (size, size, 3)
    assert got.tobytes() == want.tobytes()
    # three planes (2.5D), one window each, a mask per plane, no mask on the last
    three = hu_planes(shape, 3, seed=3)
    masks = rng.random((3, *shape)) < 0.3
    args = (three, [WINDOWS[0]] * 3, [0, 1, 2], invert, masks, [0, 1, -1], size, resize)
    assert fused(*args).tobytes() == steps_one_by_one(*args).tobytes()
    # no padding at all
    args = (one, WINDOWS[:1], [0], invert, None, [-1], size, resize)
    assert fused(*args).tobytes() == steps_one_by_one(*args).tobytes()


def test_the_window_ring_holds_every_row_an_output_row_reaches():
    """The ring of windowed rows (input row j at j mod n): replaying the kernel's order, no
    output row reads a row that a later one has overwritten, and n is a few rows, not the
    plane, for the usual 512 → 224."""
    for shape, size, resize in [((512, 512), 224, "pad"), ((1500, 90), 37, "pad"),
                                ((64, 48), 224, "pad"), ((333, 517), 224, "crop")]:
        key = (shape, size, ResizeMode(resize), None, None)
        R = rz.csr_matrices(*key)[0]
        n = rz.ring_rows(*key)
        slot, filled = {}, -1
        for r in range(R.shape[0]):
            for j in R.indices[R.indptr[r]:R.indptr[r + 1]]:
                while filled < j:
                    filled += 1
                    slot[filled % n] = filled
                assert slot[j % n] == j, (shape, size, r, j)
        assert n < shape[0] or shape[0] <= 64
    assert rz.ring_rows((512, 512), 224, ResizeMode.PAD, None, None) <= 16


def test_window_resize_with_a_field_of_view_and_spacing():
    x = hu_planes((300, 260), 1, seed=4)
    args = (x, WINDOWS, [0, 0, 0], False, None, [-1, -1, -1], 128, "pad", 150.0, (0.7, 0.8))
    assert fused(*args).tobytes() == steps_one_by_one(*args).tobytes()


def test_nan_stays_nan_where_its_weights_reach():
    x = np.full((1, 40, 40), 40.0, np.float32)
    x[0, 20, 20] = np.nan
    out = fused(x, WINDOWS[:1], [0], False, None, [-1], 20, "pad")
    ref = steps_one_by_one(x, WINDOWS[:1], [0], False, None, [-1], 20, "pad")
    assert np.isnan(out).any() and np.array_equal(np.isnan(out), np.isnan(ref))
    assert out.tobytes() == ref.tobytes()


@pytest.mark.parametrize("shape,size", [((512, 512), 224), ((61, 97), 33), ((3, 640), 224)])
def test_resize_planes_kernel_equals_the_scipy_fallback(monkeypatch, shape, size):
    x = np.clip(hu_planes(shape, 3, seed=5) / 1000.0, 0, 1)
    kernel = resize_planes(x, size)
    monkeypatch.setattr(rz, "compiled_kernel", lambda: None)
    scipy_path = resize_planes(x, size)
    assert kernel.tobytes() == scipy_path.tobytes() == two_csr_products(x, size).tobytes()
    assert resize_planes(x[0], size).tobytes() == two_csr_products(x[0], size).tobytes()
    # without numba the Pipeline runs the steps one by one: window_resize says so
    assert window_resize(x, np.zeros(1, np.intp), np.ones(1, np.float32),
                         np.zeros(1, np.float32), False, None, np.full(1, -1, np.intp), size,
                         ResizeMode.PAD, None, None) is None


def test_threads_keep_their_own_scratch():
    """Per-thread scratch buffers: four threads on different shapes give the serial bytes."""
    jobs = [(hu_planes(s, 1, seed=i), s) for i, s in
            enumerate([(512, 512), (300, 200), (64, 48), (512, 384)] * 4)]

    def run(job):
        x, _ = job
        return fused(x, WINDOWS, [0, 0, 0], True, None, [-1, -1, -1], 224, "pad").tobytes()

    serial = [run(j) for j in jobs]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(run, jobs))
    assert parallel == serial
    assert serial[0] == steps_one_by_one(jobs[0][0], WINDOWS, [0, 0, 0], True, None,
                                         [-1, -1, -1], 224, "pad").tobytes()


@pytest.mark.parametrize("invert", [False, True])
def test_the_register_path_gives_the_csr_paths_bytes(monkeypatch, invert):
    """512² → 224 takes the 8-tap register path (every output reaches ≤ 8 inputs; the padded
    terms have weight 0), a strong downscale the CSR walk; both are the steps' bytes, with
    NaN and a padding mask."""
    key = ((512, 512), 224, ResizeMode.PAD, None, None)
    assert rz.tap_tables(*key, compiled_kernel().TAPS) is not None
    assert rz.tap_tables((1500, 90), 37, ResizeMode.PAD, None, None,
                         compiled_kernel().TAPS) is None
    x = hu_planes((512, 512), 1, seed=7)
    mask = np.random.default_rng(8).random((1, 512, 512)) < 0.1
    args = (x, WINDOWS, [0, 0, 0], invert, mask, [0, 0, 0], 224, "pad")
    register = fused(*args)
    monkeypatch.setattr(rz, "tap_tables", lambda *a: None)
    csr_walk = fused(*args)
    assert np.isnan(register).any()
    assert register.tobytes() == csr_walk.tobytes() == steps_one_by_one(*args).tobytes()


@pytest.mark.parametrize("shape,size,resize", [
    ((512, 512), 224, "pad"),     # the 8-tap register path
    ((1500, 90), 37, "pad"),      # the CSR walk (outputs reach more than 8 inputs)
    ((100, 80), 101, "pad"), ((333, 517), 60, "crop"), ((7, 3), 5, "pad"),
])
@pytest.mark.parametrize("dtype,slope,intercept", [
    (np.uint16, 1.0, -1024.0), (np.int16, 1.0, 0.0), (np.int16, 2.0, -3.0),
    (np.int16, -1.0, 0.0), (np.uint8, 3.0, 100.0), (np.int8, 1.0, -128.0),
])
def test_stored_integers_with_their_rescale_give_the_float_planes_bytes(
        shape, size, resize, dtype, slope, intercept):
    """``rescale=(slope, intercept)``: the kernel converts each row of stored integers
    itself, the bits of ``rescale_into`` on the whole plane then the float32 kernel (and of
    the steps one by one), with masks, 2.5D planes and MONOCHROME1."""
    from dicomml.io.pixels import exact_in_float32, rescale_into

    assert exact_in_float32(dtype, slope, intercept)
    info = np.iinfo(dtype)
    rng = np.random.default_rng(11)
    stored = rng.integers(info.min, int(info.max) + 1, size=(3, *shape)).astype(dtype)
    hu = np.empty(stored.shape, np.float32)
    for k in range(3):
        rescale_into(stored[k], slope, intercept, hu[k])
    windows = ((float(intercept) + 40.0, 80.0), (0.0, 200.0), (400.0, 1800.0))
    masks = rng.random((3, *shape)) < 0.2
    for planes, plane_of, pad_of, invert in (
            (slice(0, 1), [0, 0, 0], [0, 0, 0], False),
            (slice(0, 3), [0, 1, 2], [0, 1, -1], True)):
        ab = [window_coefficients(c, w, "LINEAR") for c, w in windows]
        a = np.array([v[0] for v in ab], np.float32)
        b = np.array([v[1] for v in ab], np.float32)
        pad = masks[planes]
        common = (np.asarray(plane_of, np.intp), a, b, invert, pad, np.asarray(pad_of, np.intp),
                  size, ResizeMode(resize), None, None)
        got = window_resize(np.ascontiguousarray(stored[planes]), *common,
                            rescale=(slope, intercept))
        want = window_resize(np.ascontiguousarray(hu[planes]), *common)
        assert got.tobytes() == want.tobytes()
        assert want.tobytes() == steps_one_by_one(hu[planes], windows, plane_of, invert, pad,
                                                  pad_of, size, resize).tobytes()
