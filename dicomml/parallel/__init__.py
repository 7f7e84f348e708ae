"""One executor interface: in-process, local processes, or a Dask cluster.

Scanning a PACS export and preprocessing it are embarrassingly parallel over files, and
some files crash their decoder (a C codec calling ``abort()`` on a corrupt stream). This
package runs ``fn(chunk)`` over chunks of items in parallel and makes one bad file cost
one item, never the batch.

Usage
-----
>>> from dicomml.parallel import get_executor, chunked
>>> with get_executor("inprocess") as ex:                      # doctest: +SKIP
...     for chunk, result in ex.map_chunks(fn, chunked(paths, 64), progress=True):
...         ...

The contract
------------
``fn``
    A picklable top-level function (defined in an importable module) of one chunk, a
    ``list`` of items, returning a picklable result. It is expected to catch the errors
    of each item itself (and report them in its result): an exception escaping ``fn``
    is treated as a bug and fails the whole chunk. Worker processes are started with
    "forkserver" or "spawn" by default, so they never inherit a TensorFlow runtime from
    the parent ("fork" is on request only, e.g. by the header scan, and refused while
    TensorFlow is loaded); they import only dicomml.parallel and what ``fn`` needs (and the
    main script, as Python always does for these start methods: keep a script's
    TensorFlow import under ``if __name__ == "__main__":``).

``map_chunks(fn, chunks, progress=None)``
    Consumes ``chunks`` (any iterable, even endless) lazily: at most a bounded number of
    chunks (two per local worker, up to four when the caller reads too, two per Dask
    thread) is pulled ahead, so memory stays flat. It yields :class:`Outcome` objects in
    *completion order*; an Outcome unpacks as ``chunk, result`` and also carries
    ``index`` (position of the chunk in the input), ``isolated`` and ``item_index``.
    ``result`` is exactly one of:

    1. **a normal result**: ``fn(chunk)``, ``isolated`` false — the common case;
    2. **a per-item result after an isolation retry**: ``fn([item])``, ``isolated`` true,
       ``chunk == [item]``. Produced when the process running the chunk died: every item
       of that chunk is then run once more, alone, in a fresh worker, and each gives its
       own Outcome (the chunk itself gives none);
    3. :class:`WorkerCrashed` ``(item, exitcode)`` — ``isolated`` true: this item killed
       its worker again when run alone (``exitcode`` is ``-signal``, e.g. -6 for SIGABRT;
       ``None`` under Dask, which does not report it), or, with ``item_timeout``, ran past
       its time limit alone (``timeout`` set); it is the culprit. ``reason`` words it;
    4. :class:`ChunkFailed` ``(exc_type, message, traceback)`` — a Python exception
       escaped ``fn`` (or its result could not be pickled); ``isolated`` may be either.

    Every item therefore appears in exactly one normal Outcome, or (after a crash) in
    exactly one isolated Outcome; no item runs more than twice (once in its chunk, once
    alone), and with local processes the other chunks in flight when a worker dies are
    not affected (a chunk that waited in the dead worker's pipe had not started: it is
    sent again whole, to another worker). Under Dask, chunks merely *queued* on the dead worker are re-run item
    by item as well (they had not started), and a chunk that had finished there but whose
    result was not yet collected is recomputed by Dask itself (its items run twice).
    Test for failures with ``isinstance(result, Failure)`` or ``outcome.ok``.

    Progress is counted in items: ``progress=True`` draws a tqdm bar on stderr (its total
    is known when ``chunks`` is a list), a tqdm object is updated and left open.
    Stopping early (``break``, an exception, ``close()`` on the generator, or
    :meth:`Executor.close` inside the loop) abandons the chunks in flight (local workers
    running them are killed, Dask tasks cancelled) and returns at once.

Executors
---------
``"inprocess"``
    ``fn`` runs in the caller, one chunk at a time: for debugging and tiny inputs. A crash
    of native code kills the caller (there is nothing to isolate it in).
``"processes"``
    ``workers`` local processes (default: the CPUs available), each running one chunk at
    a time, restarted after a crash. They start at the first ``map_chunks`` or at
    ``start()``; ``preload=[module, ...]`` has them import modules as they start, and
    ``item_timeout=seconds`` treats a chunk of n items still running after
    ``n * item_timeout`` s like a crash (a decoder stuck in a loop).
``"dask"``
    ``scheduler="tcp://host:8786"`` connects to a running Dask cluster; otherwise
    ``workers=N`` starts a ``LocalCluster`` of N one-thread worker processes listening on
    127.0.0.1 only, with no dashboard, closed by :meth:`Executor.close`.

Every executor closes its workers on :meth:`Executor.close` (also a context manager).

``workers`` has one meaning in every public entry point of dicomml (the scan, the cache,
``read_series``, the trainer's ``[data] workers``, predict, every ``--workers``):
:func:`resolve_workers` (None or -1 every CPU, 0 in this process, N at most N at once).

Command-line verbs add ``--workers N | --scheduler tcp://HOST:8786 | --dask-local N`` and
``--item-timeout SECONDS`` with :func:`add_executor_arguments` and build the executor with
:func:`executor_from_args`.
"""

from __future__ import annotations


from dicomml.errors import ConfigError, did_you_mean
from dicomml.parallel._base import (Executor, ExecutorError, InProcessExecutor, check_workers,
                                    default_workers, resolve_workers)
from dicomml.parallel._cli import add_executor_arguments, executor_from_args, workers_argument
from dicomml.parallel._processes import ProcessExecutor
from dicomml.parallel._results import (ChunkFailed, Failure, Outcome, WorkerCrashed, chunked,
                                       is_failure)
from dicomml.parallel._worker import retain_freed_memory

__all__ = [
    "get_executor", "Executor", "InProcessExecutor", "ProcessExecutor", "DaskExecutor",
    "Outcome", "Failure", "ChunkFailed", "WorkerCrashed", "ExecutorError", "KINDS",
    "chunked", "is_failure", "default_workers", "add_executor_arguments",
    "executor_from_args", "resolve_workers", "check_workers", "workers_argument",
    "retain_freed_memory",
]

#: The executor kinds accepted by :func:`get_executor`.
KINDS = ("inprocess", "processes", "dask")


def get_executor(kind: str = "processes", workers: int | None = None,
                 scheduler: str | None = None, **options) -> Executor:
    """Create an executor.

    Parameters
    ----------
    kind : {"inprocess", "processes", "dask"}, optional
        Where ``fn`` runs (see :mod:`dicomml.parallel`). Default "processes".
    workers : int, optional
        Number of worker processes for "processes" and a local "dask" cluster
        (default: the CPUs available). Ignored by "inprocess" unless it is not 1.
    scheduler : str, optional
        "dask" only: address of a running scheduler, e.g. ``"tcp://host:8786"``.
    **options
        "processes": ``start_method`` ("forkserver", "spawn", or "fork" while TensorFlow
        is not loaded), ``preload`` (modules each worker imports at start, see
        :meth:`ProcessExecutor.start`), ``item_timeout`` (seconds per item before a worker
        is killed) and ``local`` (the caller runs chunks too); "dask": ``timeout``
        (seconds to wait for the scheduler, default 30).

    Returns
    -------
    Executor
        Close it with :meth:`Executor.close` or use it as a context manager.

    Raises
    ------
    ConfigError
        Unknown kind (with a suggestion), bad worker count, or options that do not go
        together (``scheduler`` without "dask").
    ExecutorError
        The Dask scheduler cannot be reached.

    Examples
    --------
    >>> with get_executor("inprocess") as ex:
    ...     [result for _, result in ex.map_chunks(len, [[1, 2], [3]])]
    [2, 1]
    """
    name = str(getattr(kind, "value", kind)).strip().lower().replace("-", "").replace("_", "")
    name = {"process": "processes", "local": "processes", "serial": "inprocess"}.get(name, name)
    if name not in KINDS:
        hint = did_you_mean(kind, KINDS)
        raise ConfigError(f"unknown executor kind; expected one of {list(KINDS)}.{hint} "
                          f"Received: kind={kind!r}")
    if scheduler is not None and name != "dask":
        raise ConfigError("a scheduler address needs kind='dask'. "
                          f"Received: kind={kind!r}, scheduler={scheduler!r}")
    accepted = {"processes": {"start_method", "preload", "item_timeout", "local"},
                "dask": {"timeout"}}.get(name, set())
    unknown = set(options) - accepted
    if unknown:
        raise ConfigError(f"options {sorted(unknown)} are not accepted by the {name!r} "
                          f"executor. Received: {options!r}")
    if name == "inprocess":
        if workers not in (None, 1):
            raise ConfigError("the 'inprocess' executor runs in the caller only; use "
                              f"kind='processes' for {workers} workers. "
                              f"Received: workers={workers!r}")
        return InProcessExecutor()
    if name == "processes":
        return ProcessExecutor(workers, **options)
    from dicomml.parallel._dask import DaskExecutor

    return DaskExecutor(workers=workers, scheduler=scheduler, **options)


def __getattr__(name: str):
    if name == "DaskExecutor":  # imported on demand: distributed is heavy
        from dicomml.parallel._dask import DaskExecutor

        return DaskExecutor
    raise AttributeError(f"module 'dicomml.parallel' has no attribute {name!r}")
