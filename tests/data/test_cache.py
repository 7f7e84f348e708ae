"""Tensor cache: exact round trip, dtype choice, failures, crash isolation, SIGKILL resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from dicomml.data.cache import TensorCache, decode, encode, storage_dtype_for
from tests.data._fake import FakePipeline, write_files

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_encode_decode_bounds():
    rng = np.random.default_rng(0)
    x = rng.random((4, 224, 224, 3), dtype=np.float32)
    u = encode(x, "uint8")
    assert u.dtype == np.uint8
    np.testing.assert_array_equal(u, np.rint(x * 255).astype(np.uint8))
    assert np.abs(decode(u) - x).max() <= 1 / 510 + 1e-7
    z = (x * 4 - 2).astype(np.float32)
    h = encode(z, "float16")
    assert h.dtype == np.float16
    np.testing.assert_array_equal(decode(h), z.astype(np.float16).astype(np.float32))


def test_storage_dtype_follows_normalization():
    assert storage_dtype_for(FakePipeline("unit")) == "uint8"
    assert storage_dtype_for(FakePipeline("zscore")) == "float16"
    assert storage_dtype_for(FakePipeline("imagenet")) == "float16"


@pytest.mark.parametrize("norm", ["unit", "zscore"])
def test_fill_and_read_back_inprocess(tmp_path, norm):
    ex = write_files(tmp_path / "src", range(10), special={"broken.txt": "bad"})
    pipe = FakePipeline(norm)
    cache = TensorCache.for_pipeline(tmp_path / "cache", pipe, shard_size=4)
    rep = cache.fill(ex, pipe, executor="inprocess", progress=False)
    assert rep.requested == 11 and rep.computed == 11 and rep.already_cached == 0
    assert rep.shards_written == 3
    assert list(rep.failed["path"]) == [str(tmp_path / "src" / "broken.txt")]
    assert "Transfer Syntax" in rep.failed["reason"].iloc[0]
    good = ex[ex.seed >= 0].iloc[::-1]  # any order
    got = cache.get(good)
    want = np.stack([pipe.expected(s, 0) for s in good.seed])
    if norm == "unit":
        np.testing.assert_array_equal(got, np.rint(want * 255).astype(np.uint8) / np.float32(255))
    else:
        np.testing.assert_array_equal(got, want.astype(np.float16).astype(np.float32))
    # each shard has an index file and only complete shards are present
    names = sorted(os.listdir(cache.folder))
    assert len([n for n in names if n.endswith(".json")]) == 3
    assert not [n for n in names if n.endswith(".tmp")]
    # second fill does nothing (failures are not retried unless asked)
    rep2 = cache.fill(ex, pipe, executor="inprocess", progress=False)
    assert rep2.computed == 0 and rep2.already_cached == 11 and len(rep2.failed) == 1
    # another config has its own folder
    other = TensorCache.for_pipeline(tmp_path / "cache", FakePipeline("imagenet"))
    assert other.folder != cache.folder and len(other) == 0


@pytest.mark.slow
def test_worker_crash_costs_one_item(tmp_path):
    ex = write_files(tmp_path / "src", range(6), special={"killer.txt": "abort"})
    pipe = FakePipeline()
    cache = TensorCache.for_pipeline(tmp_path / "cache", pipe, shard_size=8)
    rep = cache.fill(ex, pipe, workers=2, executor="processes", progress=False)
    assert list(rep.failed["path"]) == [str(tmp_path / "src" / "killer.txt")]
    assert "SIGABRT" in rep.failed["reason"].iloc[0]
    good = ex[ex.seed >= 0]
    np.testing.assert_array_equal(
        cache.get(good),
        np.rint(np.stack([pipe.expected(s, 0) for s in good.seed]) * 255) / np.float32(255))


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path):
    ex = write_files(tmp_path / "src", range(40))
    csv = tmp_path / "ex.csv"
    ex.to_csv(csv, index=False)
    root = tmp_path / "cache"
    env = dict(os.environ, PYTHONPATH=ROOT)
    cmd = [sys.executable, "-m", "tests.data._fake", str(root), str(csv), "0", "0.15"]
    errlog = tmp_path / "stderr.txt"
    with open(errlog, "wb") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
    folder = root / FakePipeline().config.config_hash()
    deadline = time.time() + 120
    while time.time() < deadline:
        if folder.exists() and len(list(folder.glob("shard-*.json"))) >= 3:
            break
        if proc.poll() is not None:
            pytest.fail(f"the filling process ended early: {errlog.read_text()[-2000:]}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    finished = {p.name: p.stat().st_mtime_ns for p in folder.glob("shard-*")
                if not p.name.endswith(".tmp")}
    n_json = len([n for n in finished if n.endswith(".json")])
    assert 3 <= n_json < 10
    out = subprocess.run(cmd[:-1] + ["0"], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True, timeout=300)
    rep = json.loads(out.stdout.strip().splitlines()[-1])
    assert rep["cached"] == 4 * n_json and rep["computed"] == 40 - 4 * n_json
    for name, mtime in finished.items():  # finished shards were not redone
        if name.endswith(".json"):
            assert (folder / name).stat().st_mtime_ns == mtime
    cache = TensorCache.for_pipeline(root, FakePipeline())
    assert len(cache) == 40
    want = np.rint(np.stack([FakePipeline().expected(s, 0) for s in range(40)]) * 255)
    np.testing.assert_array_equal(cache.get(ex), want / np.float32(255))
    # a fresh uninterrupted fill gives identical tensors
    fresh = TensorCache.for_pipeline(tmp_path / "fresh", FakePipeline(), shard_size=4)
    fresh.fill(ex, FakePipeline(), executor="inprocess", progress=False)
    np.testing.assert_array_equal(fresh.get(ex), cache.get(ex))


def test_get_reports_missing(tmp_path):
    ex = write_files(tmp_path / "src", range(2))
    cache = TensorCache.for_pipeline(tmp_path / "c", FakePipeline())
    with pytest.raises(ValueError, match="not in the cache"):
        cache.get(ex)
    with pytest.raises(ValueError, match="another preprocessing"):
        TensorCache(tmp_path / "c", "abc").fill(ex, FakePipeline(), executor="inprocess")
    assert isinstance(pd.DataFrame(), pd.DataFrame)
