"""Helpers for the executor tests: run counting and child-process inspection."""

from __future__ import annotations

import collections
import os

import psutil
import pytest

# multiprocessing's own long-lived helpers (one per parent process, started on first use
# of "spawn"/"forkserver" by anything): they are not workers and are not ours to stop.
_MP_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def child_pids() -> set[int]:
    """Live descendants of this process, without multiprocessing's helper processes.

    The helpers are direct children whose command line names them; processes forked *by*
    the forkserver (our workers) share its command line but are its children, so they count.
    """
    me = psutil.Process()
    helpers = set()
    for child in me.children():
        try:
            if any(h in " ".join(child.cmdline()) for h in _MP_HELPERS):
                helpers.add(child.pid)
        except psutil.NoSuchProcess:
            continue
    pids = set()
    for proc in me.children(recursive=True):
        try:
            if proc.pid in helpers or proc.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.NoSuchProcess:
            continue
        pids.add(proc.pid)
    return pids


def run_counts(run_dir) -> collections.Counter:
    """How many times each item value ran (files ``run_<value>_<uuid>``)."""
    return collections.Counter(int(name.split("_")[1]) for name in os.listdir(run_dir))


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / "runs"
    d.mkdir()
    return str(d)


def check_crash_isolation(ex, run_dir, crash_value, exitcode, others_at_most=1):
    """Run 6 chunks of 4 with ``crash_value`` third in chunk 1; check every promise.

    ``others_at_most``: how often an item of another chunk may run (Dask recomputes a
    finished result that was still on the worker that crashed: 2 there).
    Returns the outcomes (sorted by chunk and item) for executor-specific checks.
    """
    from dicomml.parallel import WorkerCrashed, chunked
    from tests.parallel import _fns

    values = list(range(1, 25))
    values.insert(6, crash_value)  # chunk 1 = [5, 6, crash, 7]
    chunks = list(chunked([(v, run_dir) for v in values], 4))
    out = sorted(ex.map_chunks(_fns.square_chunk, chunks),
                 key=lambda o: (o.index, -1 if o.item_index is None else o.item_index))
    crashed = [o for o in out if isinstance(o.result, WorkerCrashed)]
    assert len(crashed) == 1
    (c,) = crashed
    assert c.result.item == (crash_value, run_dir) and c.chunk == [(crash_value, run_dir)]
    assert (c.index, c.isolated, c.item_index) == (1, True, 2)
    assert c.result.exitcode == exitcode
    # every other item has exactly one result, the right one
    got = {}
    for o in out:
        if o is c:
            continue
        assert isinstance(o.result, list), o
        for (v, _), r in zip(o.chunk, o.result, strict=True):
            assert v not in got
            got[v] = r
    assert got == {v: v * v for v in range(1, 25)}
    # chunk 1 was re-run item by item, in order of its items
    assert [(o.chunk[0][0], o.item_index) for o in out if o.index == 1] == [
        (5, 0), (6, 1), (crash_value, 2), (7, 3)]
    # nothing ran more than twice; items after the culprit in its chunk ran once (alone)
    counts = run_counts(run_dir)
    assert counts[crash_value] == 2
    assert counts[5] == counts[6] == 2 and counts[7] == 1
    assert all(1 <= counts[v] <= others_at_most
               for v in values if v not in (5, 6, 7, crash_value))
    return out
