"""tf.data pipelines: cache-fed (seeded shuffle, batching), on the fly, predict order."""

from __future__ import annotations

import numpy as np
import pytest

from dicomml.data import OnTheFly, TensorCache, cache_dataset, load_tensors, predict_tensors
from tests.data._fake import FakePipeline, write_files


def _expected(pipe, seeds, quantize=True):
    x = np.stack([pipe.expected(s, 0) for s in seeds])
    return np.rint(x * 255) / np.float32(255) if quantize else x


def test_cache_dataset_shuffle_batches(tmp_path):
    ex = write_files(tmp_path / "src", range(10), special={"bad.txt": "bad"})
    pipe = FakePipeline()
    cache = TensorCache.for_pipeline(tmp_path / "c", pipe, shard_size=3)
    cache.fill(ex, pipe, executor="inprocess", progress=False)
    targets = (ex["seed"] % 2).clip(lower=0).to_numpy()
    ds = cache_dataset(cache, ex, targets=targets, n_classes=2, batch_size=4, shuffle=True,
                       seed=7)
    ep1 = [(x.numpy(), y.numpy()) for x, y in ds]
    ep2 = [(x.numpy(), y.numpy()) for x, y in ds]
    assert [len(b[0]) for b in ep1] == [4, 4, 2]  # the undecodable file is left out
    x1 = np.concatenate([b[0] for b in ep1])
    y1 = np.concatenate([b[1] for b in ep1])
    want = _expected(pipe, range(10))
    # identify each row by its content, check labels follow the images
    order = [int(np.argmin(np.abs(want - row).sum(axis=(1, 2, 3)))) for row in x1]
    assert sorted(order) == list(range(10)) and order != list(range(10))
    np.testing.assert_array_equal(x1, want[order])
    np.testing.assert_array_equal(y1, np.eye(2, dtype=np.float32)[np.array(order) % 2])
    x2 = np.concatenate([b[0] for b in ep2])
    assert not np.array_equal(x1, x2)  # reshuffled each epoch
    again = np.concatenate([x.numpy() for x, _ in cache_dataset(
        cache, ex, targets=targets, batch_size=4, shuffle=True, seed=7)])
    np.testing.assert_array_equal(again, x1)  # same seed, same order
    plain = np.concatenate([x.numpy() for x in cache_dataset(cache, ex[ex.seed >= 0],
                                                             batch_size=3)])
    np.testing.assert_array_equal(plain, want)


def test_on_the_fly_inprocess_matches_pipeline(tmp_path):
    ex = write_files(tmp_path / "src", range(5), special={"bad.txt": "bad"})
    pipe = FakePipeline()
    with OnTheFly(ex, pipe, workers=0) as otf:
        ds = otf.dataset(targets=np.zeros(6, int), batch_size=2)
        xs = np.concatenate([x.numpy() for x, _ in ds])
        assert len(otf.failures) == 1 and "Transfer Syntax" in otf.failures[0]["reason"]
    np.testing.assert_array_equal(xs, _expected(pipe, range(5), quantize=False))


def test_predict_tensors_warning_names_the_first_failure(tmp_path, caplog):
    ex = write_files(tmp_path / "src", range(2), special={"bad.txt": "bad"})
    with caplog.at_level("WARNING", logger="dicomml.data.tfdata"):
        x = load_tensors(ex, FakePipeline(), batch_size=2, workers=0)
    assert np.isnan(x[2]).all() and np.isfinite(x[:2]).all()
    msg = caplog.text
    assert "1 examples could not be decoded" in msg
    assert "bad.txt frame 0" in msg and "Transfer Syntax" in msg


@pytest.mark.slow
def test_predict_tensors_order_with_workers_and_cache(tmp_path):
    ex = write_files(tmp_path / "src", range(7), special={"bad.txt": "bad"})
    ex = ex.iloc[[3, 7, 0, 5, 1, 6, 2, 4]].reset_index(drop=True)  # bad one in 2nd place
    pipe = FakePipeline()
    want = np.full((8, 224, 224, 3), np.nan, np.float32)
    ok = ex["seed"] >= 0
    want[ok.to_numpy()] = _expected(pipe, ex.loc[ok, "seed"], quantize=False)
    got = load_tensors(ex, pipe, batch_size=3, workers=2)
    np.testing.assert_array_equal(got, want)
    batches = list(predict_tensors(ex, pipe, batch_size=3, cache_dir=tmp_path / "c", workers=2))
    assert [len(b) for b in batches] == [3, 3, 2]
    wq = want.copy()
    wq[ok.to_numpy()] = _expected(pipe, ex.loc[ok, "seed"])
    np.testing.assert_array_equal(np.concatenate(batches), wq)


@pytest.mark.parametrize("normalization", ["unit", "zscore"])
def test_cache_dataset_stored_output_decodes_to_the_float32_batches(tmp_path, normalization):
    import tensorflow as tf

    from dicomml.data.cache import decode
    from dicomml.data.tfdata import stored_to_float

    ex = write_files(tmp_path / "src", range(7))
    pipe = FakePipeline(normalization)
    cache = TensorCache.for_pipeline(tmp_path / "c", pipe, shard_size=3)
    cache.fill(ex, pipe, executor="inprocess", progress=False)
    kw = dict(targets=np.arange(7) % 2, batch_size=3, shuffle=True, seed=5)
    f32 = [(x.numpy(), y.numpy()) for x, y in cache_dataset(cache, ex, **kw)]
    stored = [(x.numpy(), y.numpy()) for x, y in cache_dataset(cache, ex, output="stored",
                                                               **kw)]
    want_dtype = np.uint8 if normalization == "unit" else np.float16
    assert all(x.dtype == want_dtype for x, _ in stored)
    assert [len(x) for x, _ in stored] == [3, 3, 1]
    for (xf, yf), (xs, ys) in zip(f32, stored):
        np.testing.assert_array_equal(yf, ys)
        np.testing.assert_array_equal(xf, decode(xs))  # the numpy decoding, exactly
        np.testing.assert_array_equal(xf, stored_to_float(tf.constant(xs)).numpy())
    np.testing.assert_array_equal(np.concatenate([x for x, _ in f32]),
                                  cache.get(ex.iloc[np.concatenate(
                                      [_rows_of(cache, ex, x) for x, _ in f32])]))
    with pytest.raises(Exception, match="output must be"):
        cache_dataset(cache, ex, output="uint8")


def _rows_of(cache, ex, batch):
    """Which examples a float32 batch holds (each tensor is unique)."""
    every = cache.get(ex)
    return [int(np.argmin(np.abs(every - row).sum(axis=(1, 2, 3)))) for row in batch]


def test_gathered_batches_are_aligned_for_tensorflow(tmp_path):
    from dicomml.data.cache import ALIGN, empty_aligned

    for n in (0, 1, 5):
        a = empty_aligned((n, 7, 3), np.uint8)
        assert a.shape == (n, 7, 3) and a.flags.c_contiguous
        assert n == 0 or a.ctypes.data % ALIGN == 0  # (an empty array has no data)
    ex = write_files(tmp_path / "src", range(5))
    pipe = FakePipeline()
    cache = TensorCache.for_pipeline(tmp_path / "c", pipe, shard_size=2)
    cache.fill(ex, pipe, executor="inprocess", progress=False)
    shard_no, rows, names = cache.locate(ex)
    order = np.array([4, 0, 3, 1, 2])
    raw = cache.gather_raw(shard_no[order], rows[order], names)
    assert raw.ctypes.data % ALIGN == 0 and raw.flags.c_contiguous
    np.testing.assert_array_equal(raw, np.stack(
        [np.load(f"{cache.folder}/{names[shard_no[i]]}.npy")[rows[i]] for i in order]))


def test_buffer_pool_reuses_only_buffers_nothing_refers_to():
    from dicomml.data.cache import ALIGN, BufferPool

    pool = BufferPool(keep=2)
    a = pool.get((4, 5, 3), np.uint8)
    assert a.ctypes.data % ALIGN == 0 and a.flags.c_contiguous and a.shape == (4, 5, 3)
    b = pool.get((4, 5, 3), np.uint8)
    assert not np.shares_memory(a, b)  # a is still referred to
    at = a.ctypes.data
    del a
    c = pool.get((1, 5, 3), np.float32)  # a batch of no more bytes fits in a's buffer
    assert c.ctypes.data == at and c.dtype == np.float32
    keep = c[:, 1:][0]  # a view of a view still holds the buffer
    del c
    d = pool.get((1, 5, 3), np.float32)
    assert not np.shares_memory(d, keep)
    e = pool.get((1, 5, 3), np.float32)  # every pooled buffer in use: a new, unpooled one
    assert len({x.ctypes.data for x in (b, d, e, keep)}) == 4
    del keep, d
    assert pool.get((1, 5, 3), np.float32).ctypes.data == at  # free again


@pytest.mark.parametrize("output", ["float32", "stored"])
def test_cache_dataset_kept_batches_match_a_reference_order(tmp_path, output):
    """Every batch of three shuffled epochs (resumed two batches in), all kept alive as
    tensors (more than the buffer pool holds), equals the reference: epoch e's order is
    ``stateless_shuffle(range(n), seed=(seed, e))``, the tensors those of TensorCache.get."""
    import tensorflow as tf

    from dicomml.data.cache import decode

    ex = write_files(tmp_path / "src", range(11))
    pipe = FakePipeline()
    cache = TensorCache.for_pipeline(tmp_path / "c", pipe, shard_size=4)
    cache.fill(ex, pipe, executor="inprocess", progress=False)
    y = np.arange(11) % 3
    ds = cache_dataset(cache, ex, targets=y, n_classes=3, batch_size=2, shuffle=True, seed=9,
                       repeat=True, skip_batches=2, output=output)
    kept = list(ds.take(16))  # 3 epochs of 6 batches, less the first 2: tensors, not copies
    every, eye = cache.get(ex), np.eye(3, dtype=np.float32)
    want = []
    for e in range(3):
        perm = tf.random.experimental.stateless_shuffle(
            tf.range(11, dtype=tf.int64), seed=tf.constant([9, e], tf.int64)).numpy()
        want += [perm[i:i + 2] for i in range(0, 11, 2)]
    want = want[2:]
    assert len(kept) == len(want) == 16
    for (x, yy), idx in zip(kept, want):
        x = x.numpy()
        assert x.dtype == (np.float32 if output == "float32" else np.uint8)
        np.testing.assert_array_equal(decode(x) if output == "stored" else x, every[idx])
        np.testing.assert_array_equal(yy.numpy(), eye[y[idx]])


@pytest.mark.slow
def test_on_the_fly_workers_give_the_reference_stream_through_segments(tmp_path):
    """Two worker processes (tensors back through reused segment files): the endless
    shuffled stream, resumed 3 batches in, equals the reference (epoch e in the order
    ``default_rng((seed, e)).permutation(n)``, the pipeline's tensors, failures left out);
    batches kept as tensors stay intact; a crashing file costs its item only; a pass
    abandoned midway leaves the next one whole; close() removes the segment files."""
    import glob
    import os

    from dicomml.data.tfdata import SHM_DIR

    mine = f"{SHM_DIR}/dicomml-otf-{os.getpid()}-*"

    ex = write_files(tmp_path / "src", range(9), special={"bad.txt": "bad",
                                                          "abort.txt": "abort"})
    n, seeds = len(ex), ex["seed"].to_numpy()
    pipe = FakePipeline()
    y = np.arange(n) % 2
    with OnTheFly(ex, pipe, workers=2) as otf:
        it = iter(otf.batches(np.arange(n), batch_size=4))
        next(it)
        it.close()  # abandoned with chunks in flight
        ds = otf.dataset(targets=y, batch_size=4, shuffle=True, seed=4, repeat=True,
                         skip_batches=3)
        kept = list(ds.take(6))  # tensors, not copies: more than one pass of buffers
        left = glob.glob(mine)
        assert 1 <= len(left) <= 8  # the segment path, its files reused, not one per batch
        reasons = {f["path"].rsplit("/", 1)[-1]: f["reason"] for f in otf.failures}
    assert not glob.glob(mine)
    assert "Transfer Syntax" in reasons["bad.txt"] and "abort.txt" in reasons
    want = []
    for e in range(3):
        perm = np.random.default_rng((4, e)).permutation(n)
        want += [perm[i:i + 4] for i in range(0, n, 4)]
    want = want[3:9]
    assert len(kept) == 6
    for (x, yy), idx in zip(kept, want):
        idx = idx[seeds[idx] >= 0]  # the two broken files are missing from their batch
        np.testing.assert_array_equal(x.numpy(), _expected(pipe, seeds[idx], quantize=False))
        np.testing.assert_array_equal(yy.numpy(), np.eye(2, dtype=np.float32)[y[idx]])


def test_on_the_fly_falls_back_to_pipes_when_no_segment_can_be_made(tmp_path, monkeypatch,
                                                                     caplog):
    """A segment that cannot be created (here: its folder is gone; in practice a full
    /dev/shm, refused by posix_fallocate) is a warning, and the tensors come back pickled:
    the same batches, nothing recorded as a failure."""
    from dicomml.data import tfdata

    ex = write_files(tmp_path / "src", range(5))
    pipe = FakePipeline()
    with OnTheFly(ex, pipe, workers=1) as otf:
        monkeypatch.setattr(tfdata, "SHM_DIR", str(tmp_path / "gone"))
        with caplog.at_level("WARNING", logger="dicomml.data.tfdata"):
            got = list(otf.batches(np.arange(5)[::-1], batch_size=2))
        assert not otf.failures
    assert "cannot create a batch segment" in caplog.text
    assert [list(p) for p, _ in got] == [[4, 3], [2, 1], [0]]
    np.testing.assert_array_equal(np.concatenate([x for _, x in got]),
                                  _expected(pipe, [4, 3, 2, 1, 0], quantize=False))
