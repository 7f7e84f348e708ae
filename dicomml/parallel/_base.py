"""The :class:`Executor` interface, progress handling, and the in-process executor."""

from __future__ import annotations

import abc
import numbers
import os
import pickle
import sys
from collections.abc import Sized
from typing import Any, Callable, Iterable, Iterator

from dicomml.errors import FATAL, ConfigError, DicommlError
from dicomml.parallel._results import ChunkFailed, Outcome

__all__ = ["Executor", "InProcessExecutor", "ExecutorError", "default_workers",
           "check_workers", "resolve_workers"]


class ExecutorError(DicommlError, RuntimeError):
    """The executor cannot run: closed, already mapping, or its workers cannot start."""


def default_workers() -> int:
    """Number of CPUs this process may run on (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def check_workers(workers: Any, *, what: str = "workers") -> int | None:
    """The canonical form of a ``workers`` setting (see :func:`resolve_workers`): ``None``
    (every CPU) or a whole number ``>= 0``; ``-1`` becomes ``None``.

    Use it where the setting is *stored* (a configuration, a run folder): it keeps "every
    CPU" rather than this machine's count.

    Raises
    ------
    ConfigError
        Anything else, naming ``what`` and saying what to write.
    """
    if workers is None:
        return None
    if isinstance(workers, bool) or not isinstance(workers, numbers.Integral):
        raise ConfigError(f"{what} must be a whole number: 0 (in this process), N >= 1 "
                          "(N at once), or left out / None (every CPU). "
                          f"Received: {what}={workers!r}")
    n = int(workers)
    if n == -1:  # the joblib / scikit-learn spelling of "every CPU" (and of earlier configs)
        return None
    if n < 0:
        raise ConfigError(f"{what} must be 0 (in this process), N >= 1 (N at once), or left "
                          "out / None (every CPU; -1 is accepted for it). "
                          f"Received: {what}={workers!r}")
    return n


def resolve_workers(workers: Any, *, what: str = "workers") -> int:
    """How many CPUs a call may keep busy at once: the one meaning of ``workers``.

    Every public entry point that takes ``workers`` (:func:`dicomml.io.scan`,
    :meth:`dicomml.data.TensorCache.fill`, :func:`dicomml.io.read_series`,
    :func:`dicomml.io.read_images`,
    :class:`dicomml.data.OnTheFly` and :func:`dicomml.data.predict_tensors`, the trainer's
    ``[data] workers``, :func:`dicomml.evaluate.predict` and
    :func:`dicomml.evaluate.evaluate_run`, and every CLI verb's ``--workers``) reads it
    through this function, so it means the same everywhere:

    ``None`` (the default; in a TOML file: leave the key out)
        Every CPU this process may run on (:func:`default_workers`, which honours the CPU
        affinity of a container or ``taskset``). ``-1`` is accepted as the same thing (the
        joblib spelling, and that of earlier train configurations).
    ``0``
        Everything in this process: no worker process, no thread pool, and therefore no
        crash isolation (a decoder that aborts takes the caller with it). For debugging,
        tiny inputs, and a process that is itself a worker (``dicomml serve``).
    ``N >= 1``
        At most N at once. Each entry point decides what carries the work, and says so:
        the scan reads headers in N processes *counting this one* (it reads too, so 1
        reads here, like 0); the tensor cache and on-the-fly decoding run N worker
        processes (this one only gathers the results, so 1 is one isolated worker), as
        does ``read_images`` (with 0 it reads here, like ``isolate=False``);
        ``read_series`` decodes with N threads (codecs release the GIL).

    Anything else (another negative number, a float, a bool) is a
    :class:`~dicomml.errors.ConfigError` that says what to write.

    Parameters
    ----------
    workers : int or None
    what : str
        The name of the setting in messages, e.g. ``"data.workers"``.

    Returns
    -------
    int
        ``0`` or the number of CPUs to use (``>= 1``).

    Examples
    --------
    >>> resolve_workers(0), resolve_workers(3)
    (0, 3)
    >>> resolve_workers(None) == resolve_workers(-1) == default_workers()
    True
    """
    n = check_workers(workers, what=what)
    return default_workers() if n is None else n


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
