"""Dask distributed executor: a remote scheduler, or a LocalCluster bound to 127.0.0.1.

``distributed`` is imported only when this executor is created (it is heavy).
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections import deque

from dicomml.errors import ConfigError
from dicomml.parallel._base import Executor, ExecutorError, default_workers
from dicomml.parallel._results import ChunkFailed, Outcome, WorkerCrashed
from dicomml.parallel._worker import run_chunk

__all__ = ["DaskExecutor"]

log = logging.getLogger(__name__)

_CONNECT_TIMEOUT_S = 30
#: Seconds between checks, while no chunk finishes, that the cluster still has workers.
_POLL_S = 5.0


def run_dask_chunk(fn, chunk: list):
    """:func:`run_chunk` on a Dask worker, with :mod:`dicomml.privacy`'s scrubbing filter
    installed first (idempotent): what a worker logs or warns names no patient either."""
    from dicomml.privacy import install

    install()
    return run_chunk(fn, chunk)


#: Attempts at connecting a client to a running scheduler (see :func:`_connect`).
_CONNECT_ATTEMPTS = 3


def _handshake_client(client_class):
    """A subclass of ``client_class`` whose failed handshake closes the half-open client at
    once, in the thread that made it: left to the garbage collector, its ``__del__`` may run
    in the client's own event-loop thread and wait forever on the lock of the loop it stops."""
    class HandshakeClient(client_class):
        def start(self, **kwargs):
            try:
                return super().start(**kwargs)
            except AssertionError:
                try:
                    self.close()
                except Exception as e:  # noqa: BLE001 - already broken; the retry decides
                    log.debug("closing the half-open Dask client: %s", e)
                raise

    return HandshakeClient


def _connect(client_class, scheduler: str, timeout: float):
    """A client of the running ``scheduler``.

    distributed's client asserts that the scheduler's first batch on a new connection is one
    message; a message the scheduler broadcasts to every client in the same 2 ms batch (its
    "cancelled-keys" report when another client cancels tasks) makes it two, and the handshake
    fails with a bare AssertionError (about 1 connection in 15 while another client cancels
    tasks in a loop). That race is the scheduler's, not the address's: the half-open client
    is closed and a new one connects (an ExecutorError after :data:`_CONNECT_ATTEMPTS`)."""
    cls = _handshake_client(client_class)
    attempt = 1
    while True:
        try:
            return cls(scheduler, set_as_default=False, timeout=timeout)
        except AssertionError as e:
            if attempt >= _CONNECT_ATTEMPTS:
                raise ExecutorError(
                    f"the Dask scheduler at {scheduler} broke the client's handshake "
                    f"{attempt} times (distributed asserts on its first message); check "
                    "that the scheduler and this client run the same distributed version, "
                    "and try again") from e
            log.debug("the Dask scheduler's handshake was interleaved with another message "
                      "(attempt %d of %d); connecting again", attempt, _CONNECT_ATTEMPTS)
            time.sleep(0.05 * attempt)
            attempt += 1


class DaskExecutor(Executor):
    """Runs chunks as Dask tasks, at most ``2 × threads`` in flight.

    Parameters
    ----------
    workers : int, optional
        Without ``scheduler``: start a ``LocalCluster`` of this many worker processes
        (one thread each; default: the CPUs available), bound to 127.0.0.1 with no
        dashboard, and close it on :meth:`close`.
    scheduler : str, optional
        Address of a running scheduler, e.g. ``"tcp://host:8786"``: connect to it (the
        cluster is left running on :meth:`close`). Its workers must be able to import
        dicomml and the module that defines ``fn``.
    timeout : float, optional
        Seconds to wait for the scheduler (default 30).

    Notes
    -----
    The LocalCluster's scheduler is created with ``allowed_failures=0`` and
    ``worker-saturation=1.0``: a task whose worker dies fails at once with
    ``KilledWorker`` (Dask does not re-run it on another worker). Every chunk that was
    on the dead worker (running, or queued there and never started) is then re-run item
    by item; those single items run one at a time with nothing else in flight, so that
    a second crash cannot lose other results. A chunk that had *finished* on the dead
    worker but whose result was not yet collected is recomputed by Dask itself (its items
    then run twice, never more for one crash).
    A remote scheduler keeps its own settings: with Dask's default
    ``distributed.scheduler.allowed-failures: 3`` it re-runs a crashing chunk itself
    before reporting it, so start it with ``DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=0``
    for the at-most-twice guarantee.
    """

    kind = "dask"
    #: Seconds the cluster may have no worker at all while chunks are in flight before
    #: :class:`~dicomml.parallel.ExecutorError` ends the run (instead of waiting forever
    #: for tasks no one can run: every worker died or left, none was ever started).
    no_worker_timeout: float = 120.0

    def __init__(self, workers: int | None = None, scheduler: str | None = None, *,
                 timeout: float = _CONNECT_TIMEOUT_S):
        if scheduler is not None and workers is not None:
            raise ConfigError("give either scheduler (connect to a running cluster) or "
                              "workers (start a local one), not both. Received: "
                              f"workers={workers!r}, scheduler={scheduler!r}")
        if scheduler is None:
            workers = default_workers() if workers is None else workers
            if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
                raise ConfigError("workers must be an integer >= 1. "
                                  f"Received: workers={workers!r}")
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError as e:  # pragma: no cover - a dependency of dicomml
            raise ConfigError("the 'dask' executor needs the packages dask and distributed: "
                              "pip install 'dask[distributed]'") from e
        self._cluster = None
        self.scheduler = scheduler
        try:
            if scheduler is not None:
                self._client = _connect(Client, scheduler, timeout)
            else:
                # Dask's nannies set MALLOC_TRIM_THRESHOLD_=65536, which sends every
                # tensor-sized buffer through mmap/munmap (4x slower cache fills).
                malloc = {"MALLOC_TRIM_THRESHOLD_": 33554432,
                          "MALLOC_MMAP_THRESHOLD_": 33554432, "OMP_NUM_THREADS": 1,
                          "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1}
                with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                                      "distributed.scheduler.worker-saturation": 1.0,
                                      "distributed.nanny.pre-spawn-environ": malloc}):
                    self._cluster = LocalCluster(
                        n_workers=workers, threads_per_worker=1, processes=True,
                        host="127.0.0.1", dashboard_address=None,
                        worker_dashboard_address=None,
                        # the scheduler's HTTP routes (health, metrics) exist even with no
                        # dashboard: keep them on a free loopback port, not on 8787.
                        scheduler_kwargs={"allowed_failures": 0, "dashboard": False,
                                          "dashboard_address": "127.0.0.1:0"})
                self._client = Client(self._cluster, set_as_default=False)
        except (OSError, TimeoutError) as e:
            if self._cluster is not None:
                self._cluster.close()
            if scheduler is None:
                raise ExecutorError(f"cannot start a Dask LocalCluster on 127.0.0.1 "
                                    f"({type(e).__name__}: {e}); try --workers N (local "
                                    "processes) instead") from e
            raise ExecutorError(f"cannot reach the Dask scheduler at {scheduler} "
                                f"({type(e).__name__}: {e}); check the address and that "
                                "the scheduler is running") from e
        threads = sum(self._client.nthreads().values()) or (workers or 1)
        super().__init__(threads)
        #: At most this many chunks are submitted and not yet yielded.
        self.window = 2 * threads

    @property
    def scheduler_address(self) -> str:
        """The address of the scheduler in use."""
        return self._client.scheduler.address

    @property
    def client(self):
        """The ``distributed.Client`` in use."""
        return self._client

    @property
    def cluster(self):
        """The ``LocalCluster`` this executor started, or ``None``."""
        return self._cluster

    def _shutdown(self) -> None:
        try:
            self._client.close()
        finally:
            if self._cluster is not None:
                self._cluster.close()

    def _next_done(self, ac, pending: dict):
        """The next finished future of ``ac``; while none finishes, checks every
        :data:`_POLL_S` seconds that the scheduler still has workers, and raises
        ExecutorError once it has had none for :attr:`no_worker_timeout` seconds."""
        check = time.monotonic() + min(_POLL_S, self.no_worker_timeout)
        since = None
        while not ac.has_ready():
            with ac.thread_condition:            # what as_completed's own next() waits on
                ac.thread_condition.wait(timeout=0.1)
            now = time.monotonic()
            if now < check:
                continue
            check = now + min(_POLL_S, self.no_worker_timeout)
            if self._client.scheduler_info().get("workers"):
                since = None
                continue
            since = now if since is None else since
            if now - since >= self.no_worker_timeout:
                raise ExecutorError(
                    f"the Dask scheduler at {self.scheduler_address} has had no worker for "
                    f"{self.no_worker_timeout:g} s while {len(pending)} chunk(s) wait to run "
                    "(every worker died or left, or none was started); start workers "
                    "(dask worker ADDRESS) or run with --workers N (local processes)")
        return next(ac)

    def _map(self, fn, chunks):
        from distributed import as_completed

        try:
            from distributed import KilledWorker
        except ImportError:  # older distributed
            from distributed.scheduler import KilledWorker

        client = self._client
        token = uuid.uuid4().hex[:12]
        keys = itertools.count()
        isolate: deque[tuple[int, list, int | None]] = deque()
        pending: dict = {}
        exhausted = False
        next_index = 0
        ac = as_completed(loop=client.loop)

        def submit(index, chunk, item_index):
            fut = client.submit(run_dask_chunk, fn, chunk, pure=False, retries=0,
                                key=f"dicomml-chunk-{token}-{next(keys)}")
            pending[fut] = (index, chunk, item_index)
            ac.add(fut)

        def submit_more():
            nonlocal exhausted, next_index
            if isolate:
                # Items re-run alone go one at a time with nothing else in flight: a
                # crash then loses no other finished result still held by that worker
                # (which Dask would silently recompute: a third run).
                if not pending:
                    submit(*isolate.popleft())
                return
            while len(pending) < self.window and not exhausted:
                try:
                    chunk = list(next(chunks))
                except StopIteration:
                    exhausted = True
                    return
                submit(next_index, chunk, None)
                next_index += 1

        try:
            submit_more()
            while pending:
                fut = self._next_done(ac, pending)
                index, chunk, item_index = pending.pop(fut)
                isolated = item_index is not None
                status = fut.status
                if status == "finished":
                    try:
                        _, payload = fut.result()
                    except Exception as e:  # result lost or not unpicklable here
                        payload = ChunkFailed.from_exception(e)
                    out = Outcome(chunk, payload, index, isolated, item_index)
                else:
                    exc = fut.exception() if status == "error" else None
                    if isinstance(exc, KilledWorker):
                        detail = f"KilledWorker on {getattr(exc.last_worker, 'address', '?')}"
                        if isolated:
                            out = Outcome(chunk, WorkerCrashed(chunk[0], None, detail), index,
                                          True, item_index)
                            log.warning("chunk %d item %d: %s", index, item_index, detail)
                        else:
                            log.warning("chunk %d (%d items): worker died (%s); re-running "
                                        "its items one by one", index, len(chunk), detail)
                            isolate.extend((index, [item], k) for k, item in enumerate(chunk))
                            out = None
                    else:
                        if exc is None:
                            exc = ExecutorError(f"Dask task of chunk {index} was {status}")
                        out = Outcome(chunk, ChunkFailed.from_exception(exc), index,
                                      isolated, item_index)
                fut.release()
                submit_more()
                if out is not None:
                    yield out
        finally:
            if pending:
                try:
                    client.cancel(list(pending))
                except Exception as e:  # noqa: BLE001 - client already closed or gone
                    log.debug("could not cancel %d Dask tasks: %s", len(pending), e)
                pending.clear()
