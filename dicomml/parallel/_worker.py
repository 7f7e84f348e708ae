"""Code that runs inside worker processes (stdlib only: keeps worker start-up cheap).

Never import NumPy, Dask or TensorFlow here: a worker only imports what ``fn`` needs.
"""

from __future__ import annotations

import importlib
import pickle
import signal
from typing import Any, Callable

from dicomml.parallel._results import ChunkFailed

__all__ = ["run_chunk", "worker_main", "ping", "STARTED", "retain_freed_memory"]

#: Sent by a worker when it starts running ``fn`` (only when the task asks for it); any
#: other message is a pickle, which never starts with this byte.
STARTED = b"S"


_RETAINED: list[bool] = []  # retain_freed_memory's answer, once per process


def retain_freed_memory(mmap_threshold: int = 64 << 20, trim_threshold: int = 256 << 20
                        ) -> bool:
    """Have glibc's ``malloc`` keep the memory a worker frees for its next item, instead of
    giving it back to the kernel (once per process; True where it applied: glibc only).

    By default blocks above a threshold that adapts (at most 32 MB) are mapped and unmapped
    per allocation, and freed memory at the top of the heap beyond 2× that threshold is
    returned: a worker preprocessing one 512×512 slice after another then takes a fresh
    page fault, and a zeroing, for each 4 KiB of every temporary array, which on a virtual
    machine cost as much CPU as the preprocessing itself (measured: 9 ms instead of 4.3 ms
    per CT slice; ``bench/README.md``, "tfdata"). Here blocks below ``mmap_threshold``
    come from the heap and up to ``trim_threshold`` bytes of freed heap are kept: the
    worker's resident memory stays at its peak working set plus at most that much.
    """
    if _RETAINED:
        return _RETAINED[0]
    ok = False
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        # M_TRIM_THRESHOLD -1, M_MMAP_THRESHOLD -3 (malloc.h); mallopt returns 1 on success
        ok = bool(mallopt(-1, int(trim_threshold))) and bool(mallopt(-3, int(mmap_threshold)))
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows)
        ok = False
    _RETAINED.append(ok)
    return ok


def run_chunk(fn: Callable[[list], Any], chunk: list) -> tuple[bool, Any]:
    """Call ``fn(chunk)``; return ``(True, result)`` or ``(False, ChunkFailed)``.

    ``KeyboardInterrupt`` and ``SystemExit`` become :class:`ChunkFailed` as well: inside a
    worker they can only come from ``fn`` itself (workers ignore SIGINT).
    """
    try:
        return True, fn(chunk)
    except BaseException as e:  # noqa: BLE001 - every failure of fn becomes a record
        return False, ChunkFailed.from_exception(e)


def _dumps(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def ping(chunk: list) -> int:
    """A task that does nothing (used to wait until workers are up)."""
    return len(chunk)


def worker_main(conn, preload: tuple[str, ...] = ()) -> None:
    """Loop of a local worker process: receive ``(task_id, fn, chunk, ack)``, answer.

    ``preload`` names modules to import first (while the parent is still busy elsewhere,
    e.g. listing files); one that fails to import is ignored here and reported by the
    first task that needs it. Messages are pickled bytes. With ``ack`` true the worker
    first sends :data:`STARTED` once the task is unpickled (``fn``'s module imported), so
    that the parent's time limit counts the run of ``fn`` only. An empty message or a
    closed pipe ends the loop. The answer is ``(task_id, ok, payload)`` as
    :func:`run_chunk` returns it; a task that cannot be unpickled, or a result that cannot
    be pickled, is answered with a :class:`ChunkFailed` so that the parent always gets a
    reply unless the process dies.
    """
    # Ctrl-C reaches the whole process group: the parent decides, workers carry on until
    # it terminates them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from dicomml.privacy import install  # what a worker logs or warns is scrubbed too

    install()
    for name in preload:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - reported by the task that needs it
            pass
    while True:
        try:
            msg = conn.recv_bytes()
        except (EOFError, OSError):
            return
        if not msg:
            return
        task_id = None
        try:
            task_id, fn, chunk, ack = pickle.loads(msg)
        except BaseException as e:  # noqa: BLE001 - e.g. fn's module missing in the worker
            answer = _dumps((task_id, False, ChunkFailed.from_exception(e)))
        else:
            if ack:
                try:
                    conn.send_bytes(STARTED)
                except (EOFError, OSError):
                    return
            ok, payload = run_chunk(fn, chunk)
            del chunk
            try:
                answer = _dumps((task_id, ok, payload))
            except BaseException as e:  # noqa: BLE001 - an unpicklable result
                answer = _dumps((task_id, False, ChunkFailed.from_exception(e)))
            del payload
        try:
            conn.send_bytes(answer)
        except (EOFError, OSError):
            return
