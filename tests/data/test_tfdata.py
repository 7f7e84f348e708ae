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
