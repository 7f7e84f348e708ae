"""A Pipeline's output tensors reuse the memory of tensors the caller has dropped
(``Pipeline`` keeps a pool of its kernel's output buffers): what the caller still holds,
or any view of it, is never written again; a reused buffer gives the very bytes a fresh
one does (nothing of an earlier tensor shows through, padded borders included); threads
and pickling are safe.

The reference for the values is a new Pipeline for each plane (a fresh pool, a fresh
buffer) and the kernel called without a pool (``window_resize(..., empty=None)``).
"""

from __future__ import annotations

import gc
import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from dicomml.preprocess import Pipeline, PreprocessConfig, ResizeMode
from dicomml.preprocess.resize import window_resize
from dicomml.preprocess.window import window_coefficients


def plane(shape, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(40.0, 600.0, size=shape).astype(np.float32)


def address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


@pytest.fixture
def pipeline():
    return Pipeline(PreprocessConfig(windows=("brain", "subdural", "bone"), size=64))


def test_a_dropped_tensor_s_memory_backs_the_next_one(pipeline):
    first = pipeline(plane((80, 80), 0))
    where = address(first)
    del first
    gc.collect()
    second = pipeline(plane((80, 80), 1))
    assert address(second) == where, "the dropped tensor's buffer should be reused"


def test_kept_tensors_and_their_views_are_never_written_again(pipeline):
    for s in range(3):
        pipeline(plane((80, 80), 100 + s))     # dropped at once: the pool has buffers
    gc.collect()
    kept = pipeline(plane((80, 80), 0))
    copy = kept.copy()
    view = pipeline(plane((80, 80), 1))[8:40, :, 1]   # only a view of the second survives
    view_copy = view.copy()
    gc.collect()
    later = [pipeline(plane((80, 80), s)) for s in range(2, 12)]
    assert np.array_equal(kept, copy)
    assert np.array_equal(view, view_copy)
    for t in later:
        assert not np.shares_memory(t, kept) and not np.shares_memory(t, view)
    assert len({address(t) for t in later}) == len(later)


@pytest.mark.parametrize("resize", ["pad", "crop", "stretch"])
def test_a_reused_buffer_gives_a_fresh_buffer_s_bytes(resize):
    cfg = PreprocessConfig(windows=("brain", "subdural", "bone"), size=48, resize=resize)
    p = Pipeline(cfg)
    # bright square planes fill every output pixel; the wide and tall ones after them
    # leave padded borders (resize "pad") that must not keep the earlier values
    shapes = [(60, 60), (30, 90), (90, 30), (17, 70), (60, 60), (5, 48)]
    for i, shape in enumerate(shapes):
        bright = np.full((60, 60), 3000.0, np.float32)
        dropped = p(bright)
        where = address(dropped)
        del dropped
        gc.collect()
        x = plane(shape, i)
        got = p(x)
        assert address(got) == where
        want = Pipeline(cfg)(x)
        assert got.tobytes() == want.tobytes(), (resize, shape)
        del got


def test_the_kernel_with_a_pool_equals_the_kernel_without(pipeline):
    x = plane((70, 50), 3)[None]
    ab = [window_coefficients(c, w, "LINEAR") for c, w in ((40, 80), (80, 200), (600, 2800))]
    a = np.array([v[0] for v in ab], np.float32)
    b = np.array([v[1] for v in ab], np.float32)
    args = (x, np.zeros(3, np.intp), a, b, False, None, np.full(3, -1, np.intp), 32,
            ResizeMode.PAD, None, None)
    dirty = np.full((32, 32, 3), np.nan, np.float32)
    got = window_resize(*args, empty=lambda shape: dirty)
    assert got is dirty
    assert got.tobytes() == window_resize(*args).tobytes()


def test_threads_share_one_pipeline_and_get_the_serial_bytes(pipeline):
    planes = [plane((64, 64), s) for s in range(24)]
    serial = [pipeline(x).tobytes() for x in planes]

    def run(k):
        return [pipeline(planes[(k + i) % len(planes)]).tobytes() for i in range(40)]

    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(run, range(4)))
    for k, got in enumerate(results):
        assert got == [serial[(k + i) % len(planes)] for i in range(40)]


def test_a_pickled_pipeline_does_not_carry_its_free_buffers(pipeline):
    empty_size = len(pickle.dumps(pipeline))
    for s in range(20):
        pipeline(plane((64, 64), s))           # each dropped at once: 20 buffers come back
    gc.collect()
    assert len(pickle.dumps(pipeline)) == empty_size
    clone = pickle.loads(pickle.dumps(pipeline))
    x = plane((64, 64), 99)
    assert clone(x).tobytes() == pipeline(x).tobytes()
