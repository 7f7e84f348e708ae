"""Local worker processes that survive a crashing codec.

A small pool of our own rather than :class:`concurrent.futures.ProcessPoolExecutor`:
each worker has its own pipe and runs its chunks in the order they were sent, so when a
process dies the executor knows exactly which chunk it was running and with which exit
status (``BrokenProcessPool`` tells neither, and fails every pending future of the pool).
A worker holds the chunk it runs and, while the pickled tasks are small
(:data:`QUEUE_BYTES` in all), the next one, queued in its pipe: it starts that one as soon
as it has sent an answer, instead of waiting for the parent to store the answer and send
more. Where the parent runs chunks too (``local``), a worker holds up to
:data:`LOCAL_IN_FLIGHT` tasks: while the parent reads a chunk of its own it stores no answer
and sends no task, and a worker that held two then waited for it (a 2-worker scan of 10,000
files: the parent read a third of them and the reading took 213 ms; now a fifth, 190 ms).
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import pickle
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any

from dicomml.errors import ConfigError
from dicomml.parallel._base import Executor, ExecutorError, default_workers
from dicomml.parallel._mainguard import main_hidden_if_unguarded
from dicomml.parallel._results import ChunkFailed, Outcome, WorkerCrashed
from dicomml.parallel._worker import STARTED, ping, worker_main

__all__ = ["ProcessExecutor", "START_METHODS", "QUEUE_BYTES", "LOCAL_IN_FLIGHT"]

log = logging.getLogger(__name__)

#: Start methods: "forkserver" and "spawn" never copy the parent's memory; "fork" (a worker
#: starts in milliseconds) is accepted only while TensorFlow is not loaded in this process.
START_METHODS = ("forkserver", "spawn", "fork")

_JOIN_TIMEOUT_S = 5.0
#: Time a worker may take to unpickle a task (import fn's module) before it starts fn,
#: when an item_timeout is set; the item budget only counts from the start of fn.
_STARTUP_ALLOWANCE_S = 120.0
#: Tasks are queued to a busy worker only while those waiting in its pipe pickle to at
#: most this many bytes in all and the pipe's send buffer holds four times as much: the
#: queued tasks then sit in the buffer whole, so sending them never waits for the worker
#: (which may itself be sending a large answer) -- no dead-lock, whatever the size of the
#: answers.
QUEUE_BYTES = 48 << 10
#: Tasks a worker holds at most (the one it runs and those queued in its pipe): two, and
#: this many where the parent runs chunks too (``local``). Only there: a worker holding
#: several long tasks at the end keeps the others waiting.
LOCAL_IN_FLIGHT = 4


@dataclass
class _Task:
    index: int
    chunk: list
    isolated: bool = False
    item_index: int | None = None
    #: the size of its pickled message, once sent (what it takes of QUEUE_BYTES)
    nbytes: int = 0


class _Slot:
    """One worker process, its pipe, and the task it is running (``None`` when idle)."""

    def __init__(self, ctx, number: int, preload: tuple[str, ...] = (), inherited=()):
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        forked = ctx.get_start_method() == "fork"
        if forked:  # the child holds copies of the parent's pipe ends: it closes them
            target, args = _forked_main, (child_conn, preload, (parent_conn, *inherited))
        else:
            target, args = worker_main, (child_conn, preload)
        self.process = ctx.Process(target=target, args=args, daemon=True,
                                   name=f"dicomml-worker-{number}")
        try:
            if forked:
                # The child's garbage collector then leaves the parent's objects alone, so
                # their memory pages stay shared instead of being copied on write. A forked
                # child never imports the main script: nothing to hide.
                gc.freeze()
                try:
                    self.process.start()
                finally:
                    gc.unfreeze()
            else:
                with main_hidden_if_unguarded():  # an unguarded script is not run again
                    self.process.start()
        except Exception as e:
            parent_conn.close()
            raise ExecutorError(
                f"cannot start a worker process ({type(e).__name__}: {e}); try "
                "get_executor('inprocess') or a smaller --workers") from e
        finally:
            child_conn.close()
        self.conn = parent_conn
        #: the tasks sent and not answered yet, in the order the worker runs them: the
        #: first is running (or about to), the others wait in the pipe
        self.tasks: deque[_Task] = deque()
        #: time.monotonic() by which the first task must be answered (None: no limit)
        self.deadline: float | None = None

    @property
    def task(self) -> _Task | None:
        """The task the worker runs now (``None`` when idle)."""
        return self.tasks[0] if self.tasks else None

    def queue_bytes(self) -> int:
        """The largest pickled task that may wait in this worker's pipe (0: none may);
        see :data:`QUEUE_BYTES`."""
        try:
            with socket.socket(fileno=os.dup(self.conn.fileno())) as sock:
                room = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        except (OSError, AttributeError, ValueError):  # not a socket (e.g. Windows pipes)
            return 0
        return QUEUE_BYTES if room >= 4 * QUEUE_BYTES else 0

    def send(self, data: bytes) -> bool:
        """Send a task; False when the worker is gone."""
        try:
            self.conn.send_bytes(data)
            return True
        except (OSError, EOFError, ValueError):
            return False

    def stop(self, force: bool = False) -> None:
        """End the process: politely (close the pipe) unless ``force``; always reaped."""
        p = self.process
        if force and p.is_alive():
            p.kill()
        try:
            self.conn.close()
        except OSError:
            pass
        p.join(_JOIN_TIMEOUT_S)
        if p.is_alive():
            p.terminate()
            p.join(_JOIN_TIMEOUT_S)
        if p.is_alive():
            p.kill()
            p.join()
        p.close()


def _forked_main(conn, preload, inherited) -> None:
    """:func:`worker_main` in a forked child, after closing its copies of the parent's pipe
    ends (else a worker would never see its own pipe close)."""
    for c in inherited:
        try:
            c.close()
        except OSError:
            pass
    worker_main(conn, preload)


class ProcessExecutor(Executor):
    """``workers`` local processes started with "forkserver" (or "spawn", or "fork").

    Parameters
    ----------
    workers : int, optional
        Number of worker processes (default: the CPUs available to this process).
    start_method : {"forkserver", "spawn", "fork"}, optional
        Default "forkserver" where the platform has it, else "spawn". "fork" starts a
        worker in milliseconds (no imports) and suits short jobs of pure-Python work such
        as the header scan; it is refused while TensorFlow is loaded in this process (a
        forked copy of its runtime is unsafe).
    item_timeout : float, optional
        Seconds one item may take: a chunk of n items that is not answered within
        ``n * item_timeout`` s of ``fn`` starting (a worker's start-up and the import of
        ``fn``'s module do not count) is treated like a crash (its worker is killed with SIGKILL
        and its items re-run alone, each with ``item_timeout``); an item that still runs
        out of time alone is reported as :class:`WorkerCrashed` with ``timeout`` set.
        Default: no limit.
    preload : sequence of str, optional
        Modules every worker imports as soon as it starts (e.g. ``["dicomml.io.scanner"]``):
        with :meth:`start` called early, that import overlaps the caller's own work.
    local : bool, optional
        The caller runs chunks too, whenever every worker is busy and no result is waiting
        (it has nothing else to do then): ``workers`` processes make ``workers + 1``
        readers. An exception escaping ``fn`` there fails its chunk (:class:`ChunkFailed`),
        as in a worker; a crash there is the caller's own.

    Workers start on the first :meth:`~Executor.map_chunks`, or at :meth:`start`.
    """

    kind = "processes"

    def __init__(self, workers: int | None = None, *, start_method: str | None = None,
                 preload=(), item_timeout: float | None = None, local: bool = False):
        workers = default_workers() if workers is None else workers
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"workers must be an integer >= 1. Received: workers={workers!r}")
        available = multiprocessing.get_all_start_methods()
        if start_method is None:
            start_method = "forkserver" if "forkserver" in available else "spawn"
        if start_method not in START_METHODS or start_method not in available:
            choices = [m for m in START_METHODS if m in available]
            raise ConfigError(f"start_method must be one of {choices} on this platform. "
                              f"Received: start_method={start_method!r}")
        if start_method == "fork" and "tensorflow" in sys.modules:
            raise ConfigError("start_method='fork' would copy the TensorFlow runtime loaded in "
                              "this process into every worker; use 'forkserver' or 'spawn'. "
                              "Received: start_method='fork'")
        super().__init__(workers)
        preload = () if preload is None else preload
        if isinstance(preload, str) or not all(isinstance(m, str) for m in preload):
            raise ConfigError("preload must be a list of module names. "
                              f"Received: preload={preload!r}")
        if item_timeout is not None and (isinstance(item_timeout, bool) or
                                         not isinstance(item_timeout, (int, float)) or
                                         not item_timeout > 0):
            raise ConfigError("item_timeout must be a number of seconds > 0 or None. "
                              f"Received: item_timeout={item_timeout!r}")
        self.item_timeout = None if item_timeout is None else float(item_timeout)
        self.start_method = start_method
        self.preload = tuple(preload)
        self.local = bool(local)
        self._in_flight = LOCAL_IN_FLIGHT if self.local else 2
        self._ctx = multiprocessing.get_context(start_method)
        self._slots: list[_Slot | None] = [None] * workers
        self._started = 0
        self._task_ids = 0
        self._queue_bytes: int | None = None  # Slot.queue_bytes of the first worker

    # -- worker management ------------------------------------------------------------
    def _slot(self, i: int) -> _Slot:
        slot = self._slots[i]
        if slot is not None and not slot.process.is_alive():
            # Died while idle (e.g. the OOM killer): nothing was lost, just replace it.
            log.warning("worker process %s exited while idle (status %s); replacing it",
                        slot.process.pid, slot.process.exitcode)
            slot.stop()
            slot = None
        if slot is None:
            self._started += 1
            inherited = [s.conn for s in self._slots if s is not None]
            slot = self._slots[i] = _Slot(self._ctx, self._started, self.preload, inherited)
        return slot

    def start(self, wait: bool = False) -> None:
        """Start every worker now (not at the first map_chunks); ``wait`` until all answer.

        Raises
        ------
        ExecutorError
            The executor is closed or busy, or a worker died while starting.
        """
        if self._closed or self._busy:
            raise ExecutorError(f"cannot start workers of a closed or busy {self.kind!r} "
                                "executor")
        slots = [self._slot(i) for i in range(self.workers)]
        if not wait:
            return
        data = pickle.dumps((0, ping, [], False), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            for slot in slots:
                if not slot.send(data):
                    raise EOFError
            for slot in slots:
                slot.conn.recv_bytes()
        except (EOFError, OSError) as e:
            # Some answers may be left unread in the pipes: start afresh next time.
            pid, code = slot.process.pid, slot.process.exitcode
            for i, s in enumerate(self._slots):
                if s is not None:
                    s.stop(force=True)
                    self._slots[i] = None
            raise ExecutorError(f"worker process {pid} died while starting (status {code}); "
                                "see its error output above") from e

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (for monitoring and tests)."""
        return [s.process.pid for s in self._slots if s is not None and s.process.is_alive()]

    def _shutdown(self) -> None:
        for i, slot in enumerate(self._slots):
            if slot is not None:
                slot.stop(force=bool(slot.tasks))
                self._slots[i] = None

    # -- the loop ---------------------------------------------------------------------
    def _map(self, fn, chunks):
        retry: deque[_Task] = deque()  # dispatched to a worker that was already gone
        held: deque[_Task] = deque()  # more than a busy worker's pipe may hold now
        isolate: deque[_Task] = deque()  # items of a chunk that crashed, to run alone
        exhausted = False
        next_index = 0
        clean = False
        pickled: dict[int, bytes] = {}  # id(task) -> its message, for a task held back

        def next_task():
            """The next task to send: retries, isolated items, new chunks (None: none)."""
            nonlocal exhausted, next_index
            if retry:
                return retry.popleft()
            if held:
                return held.popleft()
            if isolate:
                return isolate.popleft()
            if exhausted:
                return None
            try:
                chunk = next(chunks)
            except StopIteration:
                exhausted = True
                return None
            next_index += 1
            return _Task(next_index - 1, list(chunk))

        try:
            while True:
                # 1. give work to every idle slot, then more tasks to each busy one while
                # its pipe can hold them (QUEUE_BYTES, LOCAL_IN_FLIGHT).
                for depth in (0, 1):
                    for i in range(self.workers):
                        while self._slots[i] is None or len(self._slots[i].tasks) < (
                                self._in_flight if depth else 1):
                            if depth and not self._can_queue(i):
                                break
                            task = next_task()
                            if task is None:
                                break
                            data = pickled.pop(id(task), None)
                            if data is None:
                                self._task_ids += 1
                                try:
                                    data = pickle.dumps((self._task_ids, fn, task.chunk,
                                                         self.item_timeout is not None),
                                                        protocol=pickle.HIGHEST_PROTOCOL)
                                except Exception as e:  # an item that cannot be pickled
                                    yield _outcome(task, ChunkFailed.from_exception(e))
                                    continue
                            if depth and self._queued(i) + len(data) > self._queue_bytes:
                                # sent first to the next idle slot, or run here
                                pickled[id(task)] = data
                                held.appendleft(task)
                                break
                            # a busy slot as it is: _slot() would replace a dead
                            # worker as idle, and its running task would be lost
                            slot = self._slots[i] if depth else self._slot(i)
                            if slot.send(data):
                                task.nbytes = len(data)
                                slot.tasks.append(task)
                                if self.item_timeout is not None and len(slot.tasks) == 1:
                                    slot.deadline = time.monotonic() + _STARTUP_ALLOWANCE_S
                            else:  # gone before it read the task: the chunk never ran
                                pickled[id(task)] = data
                                retry.appendleft(task)
                                if depth:  # its running task is handled below (2., 3.)
                                    break
                                self._drop(i)
                        if depth and (retry or held):
                            break
                busy = [s for s in self._slots if s is not None and s.tasks]
                if not busy:
                    clean = True
                    return
                # 2. wait for an answer, a death, or the nearest deadline; with ``local``,
                # run the next chunk here while every worker is busy and none has answered.
                watched = [s.conn for s in busy] + [s.process.sentinel for s in busy]
                if self.local and not exhausted and not retry and not isolate \
                        and not wait(watched, timeout=0):
                    task = next_task()
                    if task is not None:
                        pickled.pop(id(task), None)  # a held task, run here instead
                        try:
                            result = fn(task.chunk)
                        except Exception as e:  # noqa: BLE001 - as in a worker: the chunk fails
                            result = ChunkFailed.from_exception(e)
                        yield _outcome(task, result)
                        continue
                deadlines = [s.deadline for s in busy if s.deadline is not None]
                limit = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
                ready = set(wait(watched, timeout=limit))
                now = time.monotonic()
                for slot in busy:
                    readable = slot.conn in ready or slot.process.sentinel in ready
                    expired = slot.deadline is not None and now >= slot.deadline
                    if not readable and not expired:
                        continue
                    task, msg = slot.tasks[0], None
                    try:
                        if slot.conn.poll():
                            msg = slot.conn.recv_bytes()
                    except (EOFError, OSError):
                        msg = None
                    if msg == STARTED:  # fn runs from now: its time budget starts
                        slot.deadline = now + self.item_timeout * len(task.chunk)
                        continue
                    if msg is not None:
                        slot.tasks.popleft()
                        slot.deadline = None
                        if slot.tasks and self.item_timeout is not None:  # until it starts
                            slot.deadline = now + _STARTUP_ALLOWANCE_S
                        try:
                            _, _, payload = pickle.loads(msg)
                        except Exception as e:  # result class not importable here
                            payload = ChunkFailed.from_exception(e)
                        yield _outcome(task, payload)
                        continue
                    timed_out = expired and slot.process.is_alive()
                    if not timed_out and slot.process.is_alive() and \
                            slot.process.sentinel not in ready:
                        continue  # spurious wake-up
                    # 3. the worker died (or ran out of time) while running ``task``; the
                    # tasks queued behind it never started: they are sent again whole.
                    if timed_out:
                        slot.process.kill()
                    slot.process.join(_JOIN_TIMEOUT_S)
                    code = slot.process.exitcode
                    queued = list(slot.tasks)[1:]
                    slot.tasks.clear()
                    slot.deadline = None
                    self._drop(self._slots.index(slot))
                    retry.extendleft(reversed(queued))
                    if task.isolated:
                        item = task.chunk[0]
                        crash = WorkerCrashed(item, code, f"chunk {task.index}, item "
                                                          f"{task.item_index}",
                                              self.item_timeout if timed_out else None)
                        log.warning("chunk %d item %d: %s", task.index, task.item_index,
                                    crash.reason)
                        yield _outcome(task, crash)
                    else:
                        why = ("ran out of time, worker killed" if timed_out
                               else f"worker process died (status {code})")
                        log.warning("chunk %d (%d items): %s; re-running its items one by "
                                    "one", task.index, len(task.chunk), why)
                        isolate.extend(_Task(task.index, [item], True, k)
                                       for k, item in enumerate(task.chunk))
        finally:
            if not clean:
                # Abandoned by the caller (break, exception, Ctrl-C): stop the work in
                # flight now rather than wait for it; idle workers are kept.
                for i, slot in enumerate(self._slots):
                    if slot is not None and slot.tasks:
                        slot.stop(force=True)
                        self._slots[i] = None

    def _can_queue(self, i: int) -> bool:
        """Whether slot ``i`` (running a task) may be sent more (QUEUE_BYTES, in flight)."""
        slot = self._slots[i]
        if slot is None or not slot.tasks or len(slot.tasks) >= self._in_flight:
            return False
        if self._queue_bytes is None:
            self._queue_bytes = slot.queue_bytes()
        return self._queued(i) < self._queue_bytes

    def _queued(self, i: int) -> int:
        """The bytes of the tasks waiting in slot ``i``'s pipe (all but the running one)."""
        tasks = self._slots[i].tasks
        return sum(tasks[k].nbytes for k in range(1, len(tasks)))

    def _drop(self, i: int) -> None:
        """Stop and forget the worker of slot ``i`` (it died, or its pipe broke)."""
        self._slots[i].stop()
        self._slots[i] = None


def _outcome(task: _Task, result: Any) -> Outcome:
    return Outcome(task.chunk, result, task.index, task.isolated, task.item_index)
