"""One meaning of ``workers`` (dicomml.parallel.resolve_workers) at every entry point:
None or -1 every CPU, 0 in this process, N at most N; anything else a ConfigError that says
what to write."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dicomml.errors import ConfigError
from dicomml.parallel import check_workers, default_workers, resolve_workers

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("given, expected", [(None, None), (-1, None), (0, 0), (1, 1),
                                             (7, 7), (np.int64(3), 3)])
def test_check_workers_canonical_form(given, expected):
    assert check_workers(given) == expected


@pytest.mark.parametrize("given, expected", [(None, "all"), (-1, "all"), (0, 0), (2, 2)])
def test_resolve_workers(given, expected):
    assert resolve_workers(given) == (default_workers() if expected == "all" else expected)


def test_every_cpu_honours_the_affinity():
    import os

    assert default_workers() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("bad", [-2, -10, 1.5, 2.0, True, "4"])
def test_anything_else_says_what_to_write(bad):
    with pytest.raises(ConfigError) as exc:
        resolve_workers(bad, what="data.workers")
    msg = str(exc.value)
    assert "data.workers" in msg and "0 (in this process)" in msg and "every CPU" in msg
    assert f"Received: data.workers={bad!r}" in msg


# --- the entry points -------------------------------------------------------------------
@pytest.fixture(scope="module")
def series(tmp_path_factory):
    from dicomml.testing import write_ct_series

    d = tmp_path_factory.mktemp("workers")
    write_ct_series(d / "ct", seed=3, n_slices=4, rows=16, columns=16)
    return d / "ct"


def test_scan(series, tmp_path):
    from dicomml.io import scan

    ref = scan(series, tmp_path / "a.sqlite", workers=0, progress=False)
    every = scan(series, tmp_path / "b.sqlite", workers=-1, progress=False)
    assert (every.files_read, every.summary) == (ref.files_read, ref.summary)
    with pytest.raises(ConfigError, match=r"Received: workers=-3"):
        scan(series, tmp_path / "c.sqlite", workers=-3, progress=False)


def test_read_series(series):
    from dicomml.io import read_series

    ref = read_series(series, workers=0)
    for w in (None, -1, 1, 3):
        np.testing.assert_array_equal(read_series(series, workers=w).pixels, ref.pixels)
    with pytest.raises(ConfigError, match="every CPU"):
        read_series(series, workers=-2)


def test_cache_and_on_the_fly_executors():
    import pandas as pd

    from dicomml.data.cache import make_executor
    from dicomml.data.tfdata import OnTheFly
    from dicomml.preprocess import Pipeline, PreprocessConfig

    for w, kind, n in ((0, "inprocess", 1), (2, "processes", 2),
                       (None, "processes", default_workers()),
                       (-1, "processes", default_workers())):
        with make_executor("processes", w) as ex:
            assert (ex.kind, ex.workers) == (kind, n)
    with pytest.raises(ConfigError):
        make_executor("processes", -4)
    ex = pd.DataFrame({"path": ["x.dcm"], "frame": [0]})
    pipe = Pipeline(PreprocessConfig(size=32))
    with OnTheFly(ex, pipe, workers=-1) as otf:
        assert (otf.workers, otf.kind) == (default_workers(), "processes")
    with OnTheFly(ex, pipe, workers=0) as otf:
        assert (otf.workers, otf.kind) == (0, "inprocess")
    with pytest.raises(ConfigError):
        OnTheFly(ex, pipe, workers=-5)


def test_train_config(tmp_path):
    from dicomml.train.config import DataConfig, load_config

    assert DataConfig().workers is None  # every CPU
    assert DataConfig(workers=-1).workers is None  # the earlier spelling
    assert DataConfig(workers=0).workers == 0
    with pytest.raises(ConfigError, match=r"data\.workers.*Received: data\.workers=-2"):
        DataConfig(workers=-2)
    toml = tmp_path / "train.toml"
    toml.write_text('[data]\nfolder = "d"\nlabels = "l.csv"\nworkers = -1\n')
    assert load_config(toml).data.workers is None
    # the resolved configuration leaves "every CPU" out (TOML has no null) and reads back
    from dicomml.train.toml_io import dumps_toml

    cfg = load_config(toml)
    assert "workers" not in dumps_toml(cfg.to_dict()).split("[split]")[0]
    toml.write_text('[data]\nfolder = "d"\nlabels = "l.csv"\nworkers = -2\n')
    with pytest.raises(ConfigError, match="data.workers"):
        load_config(toml)


def _cli(*argv):
    return subprocess.run([sys.executable, "-m", "dicomml", *argv], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)


def test_cli_workers(series, tmp_path):
    ok = _cli("scan", str(series), "--db", str(tmp_path / "i.sqlite"), "--workers", "-1",
              "--no-progress")
    assert ok.returncode == 0, ok.stderr[-2000:]
    bad = _cli("scan", str(series), "--db", str(tmp_path / "j.sqlite"), "--workers", "-2")
    assert bad.returncode == 2
    assert "--workers" in bad.stderr and "-1 (every CPU" in bad.stderr
    for verb in ("train", "predict", "evaluate", "demo"):
        r = _cli(verb, "--help")
        assert r.returncode == 0 and "--workers" in r.stdout, verb


def test_read_images(series):
    from dicomml.io import Image, read_images

    paths = sorted(str(p) for p in series.iterdir())
    for w in (0, -1, 2):
        got = dict(read_images(paths, workers=w))
        assert set(got) == set(paths) and all(isinstance(v, Image) for v in got.values()), w
    with pytest.raises(ConfigError):
        list(read_images(paths, workers=-3))
