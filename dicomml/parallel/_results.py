"""Result records of :mod:`dicomml.parallel` and small helpers (stdlib only).

This module is imported by worker processes: it must stay light (no NumPy, no Dask,
never TensorFlow).
"""

from __future__ import annotations

import itertools
import signal as _signal
import traceback as _traceback
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

__all__ = ["Outcome", "Failure", "ChunkFailed", "WorkerCrashed", "chunked", "is_failure"]


class Failure:
    """Common base of the two failure records, for ``isinstance(result, Failure)``."""

    __slots__ = ()


@dataclass(frozen=True)
class ChunkFailed(Failure):
    """``fn(chunk)`` raised a Python exception (a bug path: fn should catch per-item errors).

    Attributes
    ----------
    exc_type : str
        Qualified name of the exception class, e.g. ``"builtins.ValueError"``.
    message : str
        ``str(exception)``.
    traceback : str
        The formatted traceback from the process that ran ``fn`` ("" when unknown).
    """

    exc_type: str
    message: str
    traceback: str = field(default="", repr=False, compare=False)

    @classmethod
    def from_exception(cls, exc: BaseException) -> "ChunkFailed":
        """Build the record from a caught exception (keeps only strings: always picklable)."""
        t = type(exc)
        name = t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
        try:
            message = str(exc)
        except Exception:  # a broken __str__ must not hide the failure
            message = repr(exc)
        tb = "".join(_traceback.format_exception(t, exc, exc.__traceback__))
        return cls(exc_type=name, message=message, traceback=tb)

    def __str__(self) -> str:
        return f"{self.exc_type}: {self.message}"


@dataclass(frozen=True)
class WorkerCrashed(Failure):
    """The worker process died (or ran out of time) running ``fn([item])`` on this item alone.

    Attributes
    ----------
    item : object
        The single item that killed its worker when run in isolation.
    exitcode : int or None
        The process exit status as :attr:`multiprocessing.Process.exitcode` reports it:
        negative ``-N`` when killed by signal ``N``; ``None`` when unknown (Dask).
    detail : str
        A short description (for Dask: the scheduler's ``KilledWorker`` message).
    timeout : float or None
        Set when the item did not die by itself but ran past this limit (seconds per
        item) and its worker was killed.
    """

    item: Any
    exitcode: int | None = None
    detail: str = ""
    timeout: float | None = None

    @property
    def signal(self) -> int | None:
        """The signal number that killed the worker (``None`` for a plain exit or unknown)."""
        if self.exitcode is not None and self.exitcode < 0:
            return -self.exitcode
        return None

    @property
    def reason(self) -> str:
        """A human-readable cause, e.g. ``"worker process killed by SIGABRT (signal 6)"``."""
        if self.timeout is not None:
            return f"worker process killed after exceeding the time limit of {self.timeout:g} s"
        sig = self.signal
        if sig is not None:
            try:
                name = _signal.Signals(sig).name
            except ValueError:
                name = f"signal {sig}"
            return f"worker process killed by {name} (signal {sig})"
        if self.exitcode is not None:
            return f"worker process exited with status {self.exitcode}"
        return f"worker process died ({self.detail or 'cause unknown'})"

    def __str__(self) -> str:
        return self.reason


def is_failure(result: Any) -> bool:
    """True when ``result`` is a :class:`ChunkFailed` or :class:`WorkerCrashed` record."""
    return isinstance(result, Failure)


@dataclass(frozen=True)
class Outcome:
    """One answer of :meth:`Executor.map_chunks`; unpacks as ``chunk, result``.

    Attributes
    ----------
    chunk : list
        The items this result is about: the submitted chunk, or a one-item list
        ``[item]`` when ``isolated`` is true.
    result : object
        ``fn(chunk)``, or a :class:`ChunkFailed` / :class:`WorkerCrashed` record.
    index : int
        Position (from 0) of the submitted chunk in the caller's iterable of chunks; the
        per-item outcomes of an isolation retry share the index of their chunk.
    isolated : bool
        True when the submitted chunk ``index`` crashed its worker and this is the
        outcome of one of its items re-run alone.
    item_index : int or None
        Position of the item inside its submitted chunk when ``isolated``, else ``None``.
    """

    chunk: list
    result: Any
    index: int
    isolated: bool = False
    item_index: int | None = None

    def __iter__(self) -> Iterator[Any]:
        yield self.chunk
        yield self.result

    @property
    def ok(self) -> bool:
        """True when ``result`` is a value of ``fn`` (not a failure record)."""
        return not isinstance(self.result, Failure)


def chunked(iterable: Iterable[Any], size: int) -> Iterator[list]:
    """Yield lists of ``size`` consecutive items (the last one may be shorter); lazy.

    Examples
    --------
    >>> list(chunked(range(5), 2))
    [[0, 1], [2, 3], [4]]
    >>> list(chunked([], 3))
    []
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        from dicomml.errors import ConfigError

        raise ConfigError(f"chunk size must be an integer >= 1. Received: size={size!r}")
    it = iter(iterable)
    while True:
        chunk = list(itertools.islice(it, size))
        if not chunk:
            return
        yield chunk
