"""The Dask executor on a real LocalCluster of two worker processes (slow: ~10 s)."""

from __future__ import annotations

import itertools
from urllib.parse import urlsplit

import psutil
import pytest

from dicomml.errors import ConfigError
from dicomml.parallel import ChunkFailed, ExecutorError, chunked, get_executor
from tests.parallel import _fns
from tests.parallel.conftest import check_crash_isolation, child_pids

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _listening(pids):
    """(ip, port) of every listening inet socket of these processes."""
    out = set()
    for pid in pids:
        try:
            conns = psutil.Process(pid).net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        out |= {(c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN}
    return out


@pytest.fixture(scope="module")
def cluster_ex():
    """One LocalCluster(2) for the module; checks binding and clean shutdown around it."""
    before_children = child_pids()
    before_listen = _listening([psutil.Process().pid])
    ex = get_executor("dask", workers=2)
    try:
        children = child_pids() - before_children
        listening = _listening(children) | (_listening([psutil.Process().pid]) - before_listen)
        yield ex, children, listening
    finally:
        ex.close()
    leftover = child_pids() - before_children
    assert leftover == set(), f"LocalCluster left processes behind: {leftover}"


def test_local_cluster_binds_loopback_only(cluster_ex):
    ex, children, listening = cluster_ex
    assert ex.kind == "dask" and ex.workers == 2 and ex.window == 4
    assert len(ex.client.scheduler_info()["workers"]) == 2
    addr = urlsplit(ex.cluster.scheduler_address)
    assert (addr.scheme, addr.hostname) == ("tcp", "127.0.0.1")
    assert addr.port is not None and ("127.0.0.1", addr.port) in listening
    # scheduler (+ its HTTP routes), nannies and workers: nothing beyond loopback
    assert len(listening) >= 6
    assert {ip for ip, _ in listening} == {"127.0.0.1"}
    assert len(children) == 2  # the worker processes (nannies run in this process)


def test_same_results_as_other_executors(cluster_ex, run_dir):
    ex, _, _ = cluster_ex
    items = [(v, run_dir) for v in range(1, 30)] + [(_fns.RAISE, run_dir)]

    def by_index(outcomes):
        return [(o.index, o.chunk, o.result) for o in sorted(outcomes, key=lambda o: o.index)]

    got = by_index(ex.map_chunks(_fns.square_chunk, chunked(items, 4)))
    with get_executor("inprocess") as ref:
        assert got == by_index(ref.map_chunks(_fns.square_chunk, chunked(items, 4)))
    with get_executor("processes", workers=2) as ref:
        assert got == by_index(ref.map_chunks(_fns.square_chunk, chunked(items, 4)))
    assert got[0][2] == [1, 4, 9, 16]
    assert isinstance(got[-1][2], ChunkFailed) and got[-1][2].message == "bad value -1"


def test_workers_scrub_what_they_log(cluster_ex):
    """Dask workers run every chunk under dicomml.privacy's filter (issue 14: every verb)."""
    ex, _, _ = cluster_ex
    got = [r for _, r in ex.map_chunks(_fns.privacy_state, chunked(range(4), 2))]
    assert got and all(isinstance(r, list) for r in got), got
    for rows in got:
        for on, text in rows:
            assert on is True and "DOE" not in text


def test_crashing_item_is_isolated(cluster_ex, run_dir):
    ex, _, _ = cluster_ex
    check_crash_isolation(ex, run_dir, _fns.ABORT, None, others_at_most=2)
    # the nanny restarted the worker: the cluster still runs
    assert [r for _, r in ex.map_chunks(_fns.plain_square, [[3]])] == [[9]]


def test_endless_input_bounded_window(cluster_ex):
    ex, _, _ = cluster_ex
    pulled = itertools.count()

    def endless():
        for i in itertools.count():
            next(pulled)
            yield [i]

    gen = ex.map_chunks(_fns.plain_square, endless())
    first = [next(gen) for _ in range(6)]
    gen.close()
    assert 6 <= next(pulled) <= 6 + ex.window + 1
    assert all(o.result == [o.chunk[0] ** 2] for o in first)


def test_connect_to_running_scheduler(cluster_ex):
    ex, _, _ = cluster_ex
    address = ex.cluster.scheduler_address
    with get_executor("dask", scheduler=address) as remote:
        assert remote.cluster is None and remote.scheduler_address == address
        out = sorted(remote.map_chunks(_fns.plain_square, chunked(range(9), 2)),
                     key=lambda o: o.index)
        assert [o.result for o in out] == [[0, 1], [4, 9], [16, 25], [36, 49], [64]]
    # closing a client does not stop the cluster it connected to
    assert [r for _, r in ex.map_chunks(_fns.plain_square, [[2]])] == [[4]]


def test_connect_again_when_the_handshake_is_interleaved(cluster_ex, monkeypatch):
    """distributed asserts that the scheduler's first batch to a new client is one message;
    a broadcast in the same batch (another client cancelling its tasks) breaks that after the
    client has connected. The executor closes that half-open client at once (left to the
    garbage collector it can deadlock on its own event loop's lock) and connects again; a
    scheduler that keeps failing it is an ExecutorError."""
    import distributed

    ex, _, _ = cluster_ex
    address = ex.cluster.scheduler_address
    made = []
    real = distributed.Client

    def flaky(fail_first):
        class Flaky(real):
            def start(self, **kwargs):
                made.append(self)
                super().start(**kwargs)         # connected, as in the real race
                if len(made) <= fail_first:
                    raise AssertionError
        return Flaky

    monkeypatch.setattr(distributed, "Client", flaky(2))
    with get_executor("dask", scheduler=address) as remote:
        assert [r for _, r in remote.map_chunks(_fns.plain_square, [[3]])] == [[9]]
        assert [c.status for c in made] == ["closed", "closed", "running"]
    assert len(made) == 3

    made.clear()
    monkeypatch.setattr(distributed, "Client", flaky(99))
    with pytest.raises(ExecutorError, match="broke the client's handshake 3 times"):
        get_executor("dask", scheduler=address)
    assert len(made) == 3 and all(c.status == "closed" for c in made)


def test_close_inside_the_loop_ends_it(cluster_ex):
    ex, _, _ = cluster_ex
    remote = get_executor("dask", scheduler=ex.cluster.scheduler_address)
    seen = []
    for outcome in remote.map_chunks(_fns.sleep_items, [[0.0]] + [[1.5]] * 6):
        seen.append(outcome.result)
        remote.close()  # cancels the tasks in flight; the loop then ends
    assert seen == [[0.0]] and remote.closed
    assert [r for _, r in ex.map_chunks(_fns.plain_square, [[3]])] == [[9]]


def test_unreachable_scheduler_is_an_executor_error():
    import socket

    with socket.socket() as s:  # a free port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ExecutorError, match=f"tcp://127.0.0.1:{port}"):
        get_executor("dask", scheduler=f"tcp://127.0.0.1:{port}", timeout=1)


def test_dask_options_validation():
    with pytest.raises(ConfigError, match="not both"):
        get_executor("dask", workers=2, scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(ConfigError, match="workers must be"):
        get_executor("dask", workers=0)



def test_a_cluster_without_workers_is_an_executor_error_not_a_hang():
    """Chunks in flight on a scheduler that has (or is left with) no worker: the run ends
    with an ExecutorError naming the scheduler after ``no_worker_timeout`` seconds."""
    import time

    from distributed import LocalCluster

    with LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=None,
                      scheduler_kwargs={"dashboard": False,
                                        "dashboard_address": "127.0.0.1:0"}) as cluster:
        with get_executor("dask", scheduler=cluster.scheduler_address) as ex:
            ex.no_worker_timeout = 1.0
            t0 = time.monotonic()
            with pytest.raises(ExecutorError, match="no worker for 1 s") as err:
                list(ex.map_chunks(_fns.plain_square, chunked(range(4), 2)))
            assert cluster.scheduler_address in str(err.value)
            assert time.monotonic() - t0 < 30
