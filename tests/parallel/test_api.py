"""Result records, chunking, get_executor validation, CLI options, the in-process executor."""

from __future__ import annotations

import argparse
import pickle
import signal
import subprocess
import sys

import pytest

from dicomml.errors import ConfigError, DicommlError
from dicomml.parallel import (ChunkFailed, ExecutorError, Failure, InProcessExecutor, Outcome,
                              ProcessExecutor, WorkerCrashed, add_executor_arguments, chunked,
                              default_workers, executor_from_args, get_executor, is_failure)
from tests.parallel import _fns


def test_chunked_hand_computed():
    assert list(chunked(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunked(iter([]), 2)) == []
    assert list(chunked("ab", 5)) == [["a", "b"]]


@pytest.mark.parametrize("size", [0, -1, 1.5, True, "2"])
def test_chunked_rejects_bad_size(size):
    with pytest.raises(ConfigError, match="chunk size"):
        list(chunked([1], size))


def test_chunked_is_lazy():
    def endless():
        n = 0
        while True:
            yield n
            n += 1

    it = chunked(endless(), 4)
    assert next(it) == [0, 1, 2, 3]
    assert next(it) == [4, 5, 6, 7]


def test_outcome_unpacks_as_pair():
    o = Outcome([1, 2], [1, 4], 3)
    chunk, result = o
    assert (chunk, result, o.index, o.isolated, o.item_index, o.ok) == ([1, 2], [1, 4], 3,
                                                                         False, None, True)
    assert not Outcome([1], ChunkFailed("ValueError", "x"), 0).ok


def test_worker_crashed_reason():
    crash = WorkerCrashed("a.dcm", -signal.SIGABRT)
    assert crash.signal == signal.SIGABRT
    assert crash.reason == f"worker process killed by SIGABRT (signal {int(signal.SIGABRT)})"
    assert WorkerCrashed("x", 3).signal is None
    assert WorkerCrashed("x", 3).reason == "worker process exited with status 3"
    assert "KilledWorker" in WorkerCrashed("x", None, "KilledWorker on tcp://w").reason
    assert is_failure(crash) and isinstance(crash, Failure) and not is_failure([1])
    assert pickle.loads(pickle.dumps(crash)) == crash


def test_chunk_failed_from_exception():
    try:
        raise KeyError("missing")
    except KeyError as e:
        rec = ChunkFailed.from_exception(e)
    assert rec.exc_type == "KeyError" and rec.message == "'missing'"
    assert "raise KeyError" in rec.traceback
    assert str(rec) == "KeyError: 'missing'"
    assert ChunkFailed.from_exception(ConfigError("c")).exc_type == "dicomml.errors.ConfigError"
    assert pickle.loads(pickle.dumps(rec)) == rec


def test_inprocess_results_and_failure():
    items = [(v, None) for v in [1, 2, _fns.RAISE, 4, 5]]
    with get_executor("inprocess") as ex:
        assert isinstance(ex, InProcessExecutor)
        out = list(ex.map_chunks(_fns.square_chunk, chunked(items, 2)))
    assert [o.index for o in out] == [0, 1, 2]
    assert out[0].result == [1, 4]
    assert isinstance(out[1].result, ChunkFailed)
    assert (out[1].result.exc_type, out[1].result.message) == ("ValueError", "bad value -1")
    assert out[2].result == [25]
    assert ex.closed


def test_inprocess_lets_keyboard_interrupt_through():
    def interrupt(chunk):
        raise KeyboardInterrupt

    with get_executor("inprocess") as ex, pytest.raises(KeyboardInterrupt):
        list(ex.map_chunks(interrupt, [[1]]))


def test_progress_counts_items():
    class Bar:
        n = 0

        def update(self, k):
            self.n += k

    bar = Bar()
    with get_executor("inprocess") as ex:
        list(ex.map_chunks(_fns.plain_square, chunked(range(10), 3), progress=bar))
    assert bar.n == 10
    with get_executor("inprocess") as ex, pytest.raises(ConfigError, match="progress"):
        list(ex.map_chunks(_fns.plain_square, [[1]], progress="yes"))


def test_closed_and_busy_executor_refuse():
    ex = get_executor("inprocess")
    gen = ex.map_chunks(_fns.plain_square, [[1], [2]])
    next(gen)
    with pytest.raises(ExecutorError, match="already running"):
        ex.map_chunks(_fns.plain_square, [[1]])
    gen.close()
    g1, g2 = ex.map_chunks(_fns.plain_square, [[1]]), ex.map_chunks(_fns.plain_square, [[2]])
    assert next(g1).result == [1]
    with pytest.raises(ExecutorError, match="already running"):
        next(g2)
    g1.close()
    assert [r for _, r in ex.map_chunks(_fns.plain_square, [[3]])] == [[9]]
    ex.close()
    ex.close()  # idempotent
    with pytest.raises(ExecutorError, match="closed") as info:
        ex.map_chunks(_fns.plain_square, [[1]])
    assert isinstance(info.value, DicommlError)


def test_get_executor_validation():
    with pytest.raises(ConfigError, match="Did you mean 'processes'"):
        get_executor("proceses")
    with pytest.raises(ConfigError, match="needs kind='dask'"):
        get_executor("processes", scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(ConfigError, match="workers must be"):
        get_executor("processes", workers=0)
    with pytest.raises(ConfigError, match="start_method"):
        get_executor("processes", workers=1, start_method="vfork")
    with pytest.raises(ConfigError, match="not accepted"):
        get_executor("inprocess", start_method="spawn")
    with pytest.raises(ConfigError, match="inprocess"):
        get_executor("inprocess", workers=4)
    with get_executor("Processes", workers=3, start_method="spawn") as ex:
        assert isinstance(ex, ProcessExecutor) and ex.workers == 3
        assert ex.start_method == "spawn"
        assert ex.worker_pids() == []  # workers start on first use


def test_unpicklable_fn_is_a_config_error():
    with get_executor("processes", workers=1) as ex:
        with pytest.raises(ConfigError, match="picklable top-level function"):
            ex.map_chunks(lambda chunk: chunk, [[1]])
        assert ex.worker_pids() == []


def _parse(argv):
    parser = argparse.ArgumentParser()
    add_executor_arguments(parser)
    return parser.parse_args(argv)


def test_cli_arguments():
    assert vars(_parse([])) == {"workers": None, "scheduler": None, "dask_local": None,
                                "item_timeout": None}
    assert _parse(["--item-timeout", "2.5"]).item_timeout == 2.5
    assert _parse(["--workers", "3"]).workers == 3
    assert _parse(["--scheduler", "tcp://10.0.0.5:8786"]).scheduler == "tcp://10.0.0.5:8786"
    assert _parse(["--dask-local", "2"]).dask_local == 2
    for bad in (["--workers", "2", "--scheduler", "tcp://h:8786"],
                ["--workers", "-2"], ["--dask-local", "0"], ["--scheduler", "h:8786"],
                ["--scheduler", "tcp://h:8786", "--dask-local", "2"],
                ["--item-timeout", "0"], ["--item-timeout", "soon"]):
        with pytest.raises(SystemExit):
            _parse(bad)
    with executor_from_args(_parse(["--workers", "0"])) as ex:
        assert ex.kind == "inprocess"
    with executor_from_args(_parse(["--workers", "2"])) as ex:
        assert (ex.kind, ex.workers) == ("processes", 2)
    with executor_from_args(_parse([])) as ex:
        assert ex.kind == "processes" and ex.workers == default_workers()
    with executor_from_args(_parse(["--workers", "-1"])) as ex:  # every CPU, as without it
        assert ex.kind == "processes" and ex.workers == default_workers()
    with executor_from_args(_parse(["--workers", "1", "--item-timeout", "3"])) as ex:
        assert (ex.kind, ex.workers, ex.item_timeout) == ("processes", 1, 3.0)
    for argv in (["--workers", "0", "--item-timeout", "3"],
                 ["--dask-local", "2", "--item-timeout", "3"]):
        with pytest.raises(ConfigError, match="--item-timeout needs local worker"):
            executor_from_args(_parse(argv))


def test_import_is_light():
    code = ("import sys, dicomml.parallel; "
            "heavy = [m for m in ('tensorflow', 'keras', 'distributed', 'dask') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("module", ["dicomml.parallel", "dicomml.parallel._results"])
def test_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted >= 2
