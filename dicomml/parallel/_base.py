"""The :class:`Executor` interface, progress handling, and the in-process executor."""

from __future__ import annotations

import abc
import os
import pickle
import sys
from collections.abc import Sized
from typing import Any, Callable, Iterable, Iterator

from dicomml.errors import FATAL, ConfigError, DicommlError
from dicomml.parallel._results import ChunkFailed, Outcome

__all__ = ["Executor", "InProcessExecutor", "ExecutorError", "default_workers"]


class ExecutorError(DicommlError, RuntimeError):
    """The executor cannot run: closed, already mapping, or its workers cannot start."""


def default_workers() -> int:
    """Number of CPUs this process may run on (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class _Progress:
    """Counts finished items on a tqdm-like object (anything with ``update(n)``)."""

    def __init__(self, progress: Any, chunks: Any, desc: str):
        self._bar = None
        self._own = False
        if progress is None or progress is False:
            return
        if progress is True:
            from tqdm.auto import tqdm

            total = None
            if isinstance(chunks, (list, tuple)) and all(isinstance(c, Sized) for c in chunks):
                total = sum(len(c) for c in chunks)
            self._bar = tqdm(total=total, unit="item", desc=desc, file=sys.stderr,
                             dynamic_ncols=True)
            self._own = True
        elif callable(getattr(progress, "update", None)):
            self._bar = progress
        else:
            raise ConfigError("progress must be None, True/False or a tqdm-like object with "
                              f"an update(n) method. Received: progress={progress!r}")

    def update(self, n: int) -> None:
        if self._bar is not None and n:
            self._bar.update(n)

    def close(self) -> None:
        if self._own and self._bar is not None:
            self._bar.close()
        self._bar = None


def check_picklable(fn: Callable) -> None:
    """Raise :class:`ConfigError` when ``fn`` cannot be sent to another process."""
    if not callable(fn):
        raise ConfigError(f"fn must be callable. Received: fn={fn!r}")
    try:
        pickle.dumps(fn, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:
        raise ConfigError(
            "fn must be a picklable top-level function (defined at module level in an "
            f"importable module, not a lambda or a closure): {type(e).__name__}: {e}. "
            f"Received: fn={fn!r}") from e


class Executor(abc.ABC):
    """Runs ``fn(chunk)`` over an iterable of chunks; see :mod:`dicomml.parallel`.

    Subclasses implement :meth:`_map` and :meth:`_shutdown`. An executor is reusable
    (several :meth:`map_chunks` one after the other) until :meth:`close`; one
    :meth:`map_chunks` runs at a time.
    """

    #: "inprocess", "processes" or "dask"
    kind: str = ""

    def __init__(self, workers: int):
        self.workers = workers
        self._closed = False
        self._busy = False
        self._active = None  # the running _map generator

    # -- public API -------------------------------------------------------------------
    def map_chunks(self, fn: Callable[[list], Any], chunks: Iterable[list], *,
                   progress: Any = None, desc: str = "items") -> Iterator[Outcome]:
        """Yield one :class:`Outcome` (``chunk, result``) per chunk, in completion order.

        Parameters
        ----------
        fn : callable
            A picklable top-level function of one chunk (a list of items) that returns a
            picklable result; it should catch per-item errors itself.
        chunks : iterable of list
            Consumed lazily: only a bounded number of chunks is pulled ahead, so an
            endless generator works. Each chunk is converted with ``list()``.
        progress : None, bool or tqdm-like, optional
            ``True`` draws a tqdm bar on stderr counted in items; a tqdm-like object is
            updated with ``update(n_items)`` and left open.
        desc : str, optional
            Label of the progress bar created for ``progress=True``.

        Yields
        ------
        Outcome
            ``result`` is ``fn(chunk)``, a :class:`ChunkFailed`, or (for one item re-run
            alone after a crash, ``isolated=True``) a :class:`WorkerCrashed`.

        Raises
        ------
        ConfigError
            ``fn`` is not picklable (executors other than "inprocess").
        ExecutorError
            The executor is closed or another ``map_chunks`` of it is still running.
        """
        if self._closed:
            raise ExecutorError(f"this {self.kind!r} executor is closed; create a new one "
                                "with dicomml.parallel.get_executor()")
        if self._busy:
            raise ExecutorError(f"this {self.kind!r} executor is already running a "
                                "map_chunks(); finish or close that generator first")
        if self.kind != "inprocess":
            check_picklable(fn)
        return self._generate(fn, chunks, progress, desc)

    def _generate(self, fn, chunks, progress, desc):
        if self._busy or self._closed:  # two generators created, then both started
            raise ExecutorError(f"this {self.kind!r} executor is closed or already running "
                                "a map_chunks(); finish or close that generator first")
        bar = _Progress(progress, chunks, desc)
        self._busy = True
        self._active = gen = self._map(fn, iter(chunks))
        try:
            for outcome in gen:  # ends early when close() closed ``gen``
                bar.update(len(outcome.chunk))
                yield outcome
        finally:
            gen.close()
            self._active = None
            self._busy = False
            bar.close()

    def start(self, wait: bool = False) -> None:
        """Start the workers now rather than at the first :meth:`map_chunks`.

        With ``wait``, return once every worker is ready. A no-op for executors whose
        workers are always up ("inprocess"; "dask" connects or starts its cluster when it
        is created).
        """

    def close(self) -> None:
        """Stop the workers and release their resources; idempotent.

        Called while a :meth:`map_chunks` is being iterated, it stops that one too (its
        loop then ends) and the work in flight is abandoned.
        """
        if not self._closed:
            self._closed = True
            try:
                if self._active is not None:
                    self._active.close()
            finally:
                self._shutdown()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} kind={self.kind!r} workers={self.workers} {state}>"

    # -- for subclasses ---------------------------------------------------------------
    @abc.abstractmethod
    def _map(self, fn: Callable[[list], Any], chunks: Iterator[list]) -> Iterator[Outcome]:
        """Yield outcomes; must stop cleanly (no leftover work) on ``GeneratorExit``."""

    def _shutdown(self) -> None:  # noqa: B027 - optional hook
        """Release resources (called once by :meth:`close`)."""


class InProcessExecutor(Executor):
    """Runs ``fn`` in the calling process, one chunk at a time (for debugging and tiny jobs).

    A Python exception inside ``fn`` becomes :class:`ChunkFailed` as with the other
    executors, but a crash of native code (SIGSEGV, SIGABRT) kills the caller: there is
    no isolation here.
    """

    kind = "inprocess"

    def __init__(self):
        super().__init__(workers=1)

    def _map(self, fn, chunks):
        for index, chunk in enumerate(chunks):
            chunk = list(chunk)
            try:
                result = fn(chunk)
            except BaseException as e:  # noqa: BLE001 - a Rust panic is a BaseException
                if isinstance(e, FATAL):  # Ctrl-C and SystemExit keep their meaning
                    raise
                result = ChunkFailed.from_exception(e)
            yield Outcome(chunk, result, index)
