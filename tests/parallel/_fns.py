"""Top-level functions that worker processes import (they must be picklable by reference).

Items are ``(value, run_dir)`` pairs: every run of an item creates one new file in
``run_dir`` (``run_<value>_<uuid>``) so that a test can count how many times each item
ran, in any process.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
import time
import uuid

#: item values with a special behaviour
ABORT, SEGV, KILL, RAISE = -6, -11, -9, -1


def _record(value, run_dir):
    if run_dir is not None:
        with open(os.path.join(run_dir, f"run_{value}_{os.getpid()}_{uuid.uuid4().hex}"), "x"):
            pass


def _crash(value):
    """Die at once, like a C codec would (synchronously, even in a non-main thread)."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file
    if value == ABORT:
        os.abort()
    elif value == SEGV:
        import ctypes

        ctypes.string_at(0)  # a real segmentation fault
    else:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)  # never reached


def square_chunk(chunk):
    """Square each value; crash or raise on the special values above."""
    out = []
    for value, run_dir in chunk:
        _record(value, run_dir)
        if value in (ABORT, SEGV, KILL):
            _crash(value)
        if value == RAISE:
            raise ValueError(f"bad value {value}")
        out.append(value * value)
    return out


def plain_square(chunk):
    return [x * x for x in chunk]


def modules_loaded(chunk):
    """Which heavy modules this worker process has imported."""
    return [len(chunk), "tensorflow" in sys.modules, "keras" in sys.modules, os.getpid()]


def unpicklable_result(chunk):
    return lambda: chunk


def sleep_chunk(chunk):
    import time

    time.sleep(chunk[0])
    return chunk


def has_modules(chunk):
    """Whether each module name of the chunk is imported in this worker."""
    return [name in sys.modules for name in chunk]


def sleep_items(chunk):
    """Sleep each item's number of seconds (a decoder that hangs on some files)."""
    for seconds in chunk:
        time.sleep(seconds)
    return list(chunk)


def sleep_pid(chunk):
    """Sleep ``chunk[0]`` seconds; the process id that ran it."""
    time.sleep(chunk[0])
    return os.getpid()


def privacy_state(chunk):
    """Whether dicomml.privacy's filter is installed in this worker, and what a warning
    naming a patient looks like once scrubbed there."""
    import warnings as _w

    from dicomml.privacy import installed, scrub

    with _w.catch_warnings():
        _w.simplefilter("ignore")
        return [(installed(), scrub("Unable to convert 'DOE^JOHN' to a name"))] * len(chunk)


def sized_pid(chunk):
    """``(index, bytes of payload, process id)`` of a chunk ``[(index, payload)]``, after a
    short sleep (so that the workers stay busy while the caller dispatches)."""
    time.sleep(0.01)
    return [(i, len(payload), os.getpid()) for i, payload in chunk]
