"""The local-process executor: results, crash isolation, laziness, clean shutdown."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from dicomml.errors import ConfigError
from dicomml.parallel import ChunkFailed, ExecutorError, WorkerCrashed, chunked, get_executor
from tests.parallel import _fns
from tests.parallel.conftest import check_crash_isolation, child_pids, run_counts

pytestmark = pytest.mark.timeout(120)


def _by_index(outcomes):
    return [(o.index, o.chunk, o.result) for o in sorted(outcomes, key=lambda o: o.index)]


def test_same_results_as_inprocess(run_dir):
    items = [(v, run_dir) for v in range(37)]
    with get_executor("inprocess") as ex:
        expected = _by_index(ex.map_chunks(_fns.square_chunk, chunked(items, 5)))
    with get_executor("processes", workers=2) as ex:
        got = _by_index(ex.map_chunks(_fns.square_chunk, chunked(items, 5)))
    assert got == expected
    assert [r for _, _, r in got][0] == [0, 1, 4, 9, 16]  # hand-computed
    assert set(run_counts(run_dir).values()) == {2}  # once per executor


@pytest.mark.parametrize("value,sig", [(_fns.ABORT, signal.SIGABRT),
                                       (_fns.SEGV, signal.SIGSEGV),
                                       (_fns.KILL, signal.SIGKILL)])
def test_crashing_item_is_isolated(run_dir, value, sig):
    with get_executor("processes", workers=2) as ex:
        out = check_crash_isolation(ex, run_dir, value, -sig)
        # only the chunk of the culprit was re-run item by item
        assert {o.index for o in out if o.isolated} == {1}
        assert str(next(o.result for o in out if not o.ok)).startswith(
            f"worker process killed by {signal.Signals(sig).name}")
        # the pool was rebuilt and is still usable
        assert [r for _, r in ex.map_chunks(_fns.plain_square, [[3]])] == [[9]]
        assert len(ex.worker_pids()) >= 1


def test_crash_in_every_item_of_a_chunk(run_dir):
    with get_executor("processes", workers=1) as ex:
        out = list(ex.map_chunks(_fns.square_chunk, [[(_fns.ABORT, run_dir)] * 3,
                                                      [(2, run_dir)]]))
    crashes = [o for o in out if isinstance(o.result, WorkerCrashed)]
    assert [o.item_index for o in crashes] == [0, 1, 2]
    assert [o.result for o in out if o.index == 1] == [[4]]
    assert run_counts(run_dir) == {_fns.ABORT: 4, 2: 1}  # 1 in the chunk + 3 alone


def test_python_exception_is_chunk_failed(run_dir):
    items = [(v, run_dir) for v in (1, 2, _fns.RAISE, 3, 4, 5)]
    with get_executor("processes", workers=2) as ex:
        out = _by_index(ex.map_chunks(_fns.square_chunk, chunked(items, 2)))
    assert out[0][2] == [1, 4] and out[2][2] == [16, 25]
    failed = out[1][2]
    assert isinstance(failed, ChunkFailed)
    assert (failed.exc_type, failed.message) == ("ValueError", "bad value -1")
    assert 'raise ValueError(f"bad value {value}")' in failed.traceback
    # an exception is not a crash: no isolation retry
    assert run_counts(run_dir)[_fns.RAISE] == 1 and run_counts(run_dir)[3] == 0


def test_unpicklable_result_and_item():
    import threading

    with get_executor("processes", workers=1) as ex:
        (o,) = ex.map_chunks(_fns.unpicklable_result, [[1]])
        assert isinstance(o.result, ChunkFailed) and not o.isolated
        assert "pickle" in (o.result.exc_type + o.result.message).lower()
        out = list(ex.map_chunks(_fns.plain_square, [[threading.Lock()], [2]]))
    assert isinstance(out[0].result, ChunkFailed) and out[0].result.exc_type == "TypeError"
    assert out[1].result == [4]


def test_endless_input_is_consumed_lazily():
    pulled = itertools.count()

    def endless():
        for i in itertools.count():
            next(pulled)
            yield [i]

    with get_executor("processes", workers=2) as ex:
        gen = ex.map_chunks(_fns.plain_square, endless())
        first = [next(gen) for _ in range(10)]
        gen.close()
        n_pulled = next(pulled)
        # one chunk per worker in flight, beyond the 10 answered (+1 being pulled)
        assert 10 <= n_pulled <= 10 + ex.workers + 1
        assert all(o.result == [o.chunk[0] ** 2] and o.chunk == [o.index] for o in first)
        assert len({o.index for o in first}) == 10
        # abandoned work was stopped; the executor still works
        assert [r for _, r in ex.map_chunks(_fns.plain_square, [[5]])] == [[25]]


def test_break_stops_work_in_flight():
    before = child_pids()
    with get_executor("processes", workers=2) as ex:
        gen = ex.map_chunks(_fns.sleep_chunk, [[0.0], [60.0], [60.0], [0.0]])
        assert next(gen).result == [0.0]
        started = time.monotonic()
        gen.close()  # must not wait for the minute-long chunk
        assert time.monotonic() - started < 10
        assert [r for _, r in ex.map_chunks(_fns.plain_square, [[2]])] == [[4]]
    assert child_pids() - before == set()


def test_close_leaves_no_child_processes():
    before = child_pids()
    ex = get_executor("processes", workers=2)
    out = list(ex.map_chunks(_fns.modules_loaded, [[1], [2], [3], [4]]))
    pids = ex.worker_pids()
    assert len(pids) == 2 and set(pids) <= child_pids()
    ex.close()
    assert child_pids() - before == set()
    assert not any(psutil.pid_exists(p) for p in pids)
    # the workers never imported TensorFlow or Keras
    assert {(tf, keras) for _, (_, tf, keras, _) in out} == {(False, False)}


def test_progress_true_counts_items_on_stderr(capsys):
    with get_executor("processes", workers=2) as ex:
        list(ex.map_chunks(_fns.plain_square, [[1, 2], [3, 4, 5]], progress=True,
                           desc="files"))
    err = capsys.readouterr().err
    assert "files: 100%" in err and "5/5" in err


@pytest.mark.parametrize("start_method", [None, "spawn", "forkserver"])
def test_workers_do_not_inherit_tensorflow_from_parent(tmp_path, start_method):
    """A parent with TensorFlow loaded (a stand-in module here) must not pass it on (no fork)."""
    (tmp_path / "tensorflow.py").write_text("LOADED = True\n")
    main = tmp_path / "main_script.py"
    main.write_text(textwrap.dedent(f"""
        import os, sys
        from dicomml.parallel import get_executor
        from tests.parallel import _fns
        if __name__ == "__main__":
            sys.path.insert(0, {str(tmp_path)!r})
            import tensorflow  # loaded in the parent only
            with get_executor("processes", workers=1, start_method={start_method!r}) as ex:
                (o,) = ex.map_chunks(_fns.modules_loaded, [[0]])
            print("tensorflow" in sys.modules, o.result[1], o.result[3] != os.getpid())
    """))
    res = subprocess.run([sys.executable, str(main)], capture_output=True, text=True,
                         cwd=os.getcwd(), timeout=90,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["True", "False", "True"]


def test_start_and_preload():
    with get_executor("processes", workers=2,
                      preload=["colorsys", "no_such_module_for_dicomml"]) as ex:
        assert ex.worker_pids() == []
        ex.start(wait=True)
        pids = ex.worker_pids()
        assert len(pids) == 2
        out = list(ex.map_chunks(_fns.has_modules, [["colorsys", "wave"]] * 4))
        assert {tuple(o.result) for o in out} == {(True, False)}
        assert {o.result[3] for o in ex.map_chunks(_fns.modules_loaded, [[1]] * 4)} <= set(pids)
    with get_executor("processes", workers=1) as ex:
        (o,) = ex.map_chunks(_fns.has_modules, [["colorsys"]])
        assert o.result == [False]
    with pytest.raises(ConfigError, match="preload"):
        get_executor("processes", preload="colorsys")


def test_item_timeout_kills_a_hanging_item():
    with get_executor("processes", workers=2, item_timeout=1.0) as ex:
        started = time.monotonic()
        out = sorted(ex.map_chunks(_fns.sleep_items, [[0.01, 30.0, 0.02], [0.03]]),
                     key=lambda o: (o.index, o.item_index or 0))
        assert time.monotonic() - started < 20  # 3 s for the chunk + 1 s alone
        assert [(o.index, o.item_index, o.result) for o in out if o.ok] == [
            (0, 0, [0.01]), (0, 2, [0.02]), (1, None, [0.03])]
        (hung,) = [o for o in out if not o.ok]
        assert (hung.chunk, hung.isolated, hung.item_index) == ([30.0], True, 1)
        crash = hung.result
        assert isinstance(crash, WorkerCrashed) and crash.item == 30.0
        assert (crash.timeout, crash.exitcode) == (1.0, -signal.SIGKILL)
        assert crash.reason == "worker process killed after exceeding the time limit of 1 s"
        assert [o.result for o in ex.map_chunks(_fns.sleep_items, [[0.0]])] == [[0.0]]
    for bad in (0, -1, "5", True):
        with pytest.raises(ConfigError, match="item_timeout"):
            get_executor("processes", item_timeout=bad)


def test_start_reports_a_worker_that_dies(tmp_path, monkeypatch):
    (tmp_path / "dies_on_import.py").write_text("import os\nos._exit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with get_executor("processes", workers=2, preload=["dies_on_import"]) as ex:
        with pytest.raises(ExecutorError, match="died while starting"):
            ex.start(wait=True)
        assert ex.worker_pids() == []


def test_close_inside_the_loop_ends_it():
    before = child_pids()
    ex = get_executor("processes", workers=2)
    seen = []
    for outcome in ex.map_chunks(_fns.sleep_items, [[0.0]] + [[30.0]] * 5):
        seen.append(outcome.result)
        ex.close()  # abandons the 30-second chunks in flight; the loop then ends
    assert seen == [[0.0]]
    assert child_pids() - before == set()


def test_item_timeout_does_not_count_worker_start_up(tmp_path, monkeypatch):
    (tmp_path / "slow_import_fns.py").write_text(
        "import time\ntime.sleep(1.5)\n\ndef ident(chunk):\n    return list(chunk)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import slow_import_fns  # picklable by reference; each worker imports it again (1.5 s)

    with get_executor("processes", workers=1, item_timeout=0.5) as ex:
        out = list(ex.map_chunks(slow_import_fns.ident, [[1], [2]]))
    assert [o.result for o in out] == [[1], [2]]


def test_fork_is_refused_while_tensorflow_is_loaded(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", type(sys)("tensorflow"))
    with pytest.raises(ConfigError, match="TensorFlow"):
        get_executor("processes", workers=1, start_method="fork")


@pytest.mark.parametrize("payload", [1_000, 20_000, 60_000])
def test_caller_reading_too_queues_tasks_within_the_byte_budget(payload):
    """With ``local=True`` a worker holds up to LOCAL_IN_FLIGHT tasks while the caller runs
    chunks too, as many as QUEUE_BYTES of queued messages allow: small tasks several, 20 kB
    ones two (a third waits, or the caller runs it), 60 kB ones none queued. Every chunk is
    answered once, by the worker or the caller, and the input is pulled lazily."""
    from dicomml.parallel._processes import LOCAL_IN_FLIGHT, QUEUE_BYTES

    pulled = itertools.count()
    n = 40

    def chunks():
        for i in range(n):
            next(pulled)
            yield [(i, b"x" * payload)]

    with get_executor("processes", workers=1, local=True) as ex:
        gen = ex.map_chunks(_fns.sized_pid, chunks())
        first = next(gen)
        ahead = next(pulled) - 1  # chunks pulled when the first answer came
        rest = list(gen)
    out = [r for o in [first, *rest] for r in o.result]
    assert sorted(i for i, _, _ in out) == list(range(n))
    assert {size for _, size, _ in out} == {payload}
    assert len({pid for _, _, pid in out}) == 2  # the worker and the caller both read
    queued = max(0, min(LOCAL_IN_FLIGHT - 1, QUEUE_BYTES // (payload + 100)))
    assert ahead <= 1 + queued + 2, (ahead, queued)  # running, queued, the caller's, one held


def test_forked_workers_with_the_caller_reading_too(tmp_path):
    """``start_method="fork"`` (with ``local=True`` as the scan uses it): a SIGKILLed
    worker costs only its item (run again alone in a fresh forked worker), the caller runs
    chunks while the workers are busy, and close() ends every worker at once (a forked child
    closes its copies of the parent's pipe ends, else it would wait for the join timeout).
    In a fresh process: forking needs a parent without TensorFlow."""
    script = tmp_path / "forked.py"
    (tmp_path / "runs").mkdir()
    script.write_text(textwrap.dedent(f"""
        import os, sys, time
        from dicomml.parallel import WorkerCrashed, chunked, get_executor
        from tests.parallel import _fns
        from tests.parallel.conftest import check_crash_isolation
        with get_executor("processes", workers=2, start_method="fork") as ex:
            check_crash_isolation(ex, {str(tmp_path / "runs")!r}, _fns.KILL, -9)
        with get_executor("processes", workers=2, start_method="fork", local=True) as ex:
            pids = [o.result for o in ex.map_chunks(_fns.sleep_pid, [[0.2]] * 12)]
            t0 = time.monotonic()
        print(os.getpid() in pids, len(set(pids)) == 3 and len(pids) == 12,
              time.monotonic() - t0 < 3)
    """))
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         cwd=os.getcwd(), timeout=90,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.split() == ["True", "True", "True"], res.stdout
