"""The tensor cache filled in-process, by 2 local processes and by a real Dask LocalCluster of
2 worker processes gives byte-identical shards; ``dicomml preprocess --dask-local 2`` too.

Shards are named by the SHA-1 of their sorted keys and written by whichever process computed
them: the three fills must leave exactly the same files, byte for byte (tensors, index,
failure records).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from dicomml.data.cache import TensorCache

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _files(folder) -> dict[str, bytes]:
    """The cache's contents; the fill's advisory lock file ``.lock`` (empty) is not data."""
    out = {}
    for name in sorted(os.listdir(folder)):
        if name == ".lock":
            continue
        with open(os.path.join(folder, name), "rb") as f:
            out[name] = f.read()
    return out


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    import pydicom

    from dicomml.testing import write_ct_series

    d = tmp_path_factory.mktemp("cache-executors")
    write_ct_series(d / "ct", n_slices=10, rows=64, columns=64, seed=4)
    rows = []
    for name in sorted(os.listdir(d / "ct")):
        p = str(d / "ct" / name)
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        rows.append({"path": p, "sop_instance_uid": str(ds.SOPInstanceUID), "frame": 0})
    # one file whose Pixel Data (7FE0,0010) is cut short: recorded as failed, in every fill
    with open(rows[0]["path"], "rb") as f:
        data = f.read()
    bad = d / "ct-bad.dcm"
    bad.write_bytes(data[:-3000])
    rows.append({"path": str(bad), "sop_instance_uid": "1.2.826.0.1.3680043.8.498.999",
                 "frame": 0})
    return d, pd.DataFrame(rows)


def _fill(root, examples, executor, workers):
    from dicomml.preprocess import Pipeline, PreprocessConfig

    pipe = Pipeline(PreprocessConfig())
    cache = TensorCache.for_pipeline(root, pipe, shard_size=4)
    rep = cache.fill(examples, pipe, executor=executor, workers=workers, progress=False)
    return cache, rep


@pytest.mark.slow
def test_dask_local_cluster_fill_is_byte_identical(source, tmp_path):
    d, ex = source
    fills = {kind: _fill(tmp_path / kind, ex, kind, workers)
             for kind, workers in (("inprocess", None), ("processes", 2), ("dask", 2))}
    ref_cache, ref_rep = fills["inprocess"]
    assert ref_rep.requested == 11 and ref_rep.computed == 11
    assert ref_rep.shards_written == 3  # 11 examples, 4 per shard
    assert list(ref_rep.failed["path"]) == [str(d / "ct-bad.dcm")]
    ref_files = _files(ref_cache.folder)
    assert len(ref_files) == 6 and all(n.startswith("shard-") for n in ref_files)
    for kind in ("processes", "dask"):
        cache, rep = fills[kind]
        assert (rep.requested, rep.computed, rep.shards_written) == (11, 11, 3), kind
        pd.testing.assert_frame_equal(rep.failed, ref_rep.failed)
        got = _files(cache.folder)
        assert list(got) == list(ref_files), kind
        for name in ref_files:
            assert got[name] == ref_files[name], f"{kind}: {name} differs"
    # and they hold what the pipeline computes here, rounded to uint8 (unit normalization)
    good = ex.iloc[:-1]
    want = np.stack([np.rint(np.clip(ref_cache_pipe().from_path(p, 0), 0, 1) * 255)
                     for p in good["path"]]).astype(np.uint8)
    for kind, (cache, _rep) in fills.items():
        np.testing.assert_array_equal(cache.get(good), want / np.float32(255), err_msg=kind)


def ref_cache_pipe():
    from dicomml.preprocess import Pipeline, PreprocessConfig

    return Pipeline(PreprocessConfig())


def _cli_has_dask_local() -> bool:
    import argparse

    from dicomml.cli import preprocess

    p = argparse.ArgumentParser()
    preprocess.add_arguments(p)
    return any("--dask-local" in a.option_strings for a in p._actions)


@pytest.mark.slow
def test_cli_preprocess_dask_local(source, tmp_path):
    assert _cli_has_dask_local()
    d, ex = source
    ref_cache, _ = _fill(tmp_path / "ref", ex.iloc[:-1], "inprocess", None)
    cache_dir = tmp_path / "cli"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ROOT}
    r = subprocess.run([sys.executable, "-m", "dicomml", "preprocess", str(d / "ct"),
                        "--db", str(tmp_path / "index.sqlite"), "--cache", str(cache_dir),
                        "--dask-local", "2", "--quiet"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "10 examples" in r.stdout and "10 computed" in r.stdout and "0 failed" in r.stdout
    # the CLI takes every image frame of the folder: the same 10 tensors, in the same shards
    # (shards are named by their keys, sorted by SOP Instance UID)
    cli = TensorCache(cache_dir, ref_cache.config_hash, ref_cache.dtype)
    np.testing.assert_array_equal(cli.get(ex.iloc[:-1]), ref_cache.get(ex.iloc[:-1]))
