"""Command-line options that choose an executor (shared by the CLI verbs)."""

from __future__ import annotations

import argparse
import re

from dicomml.errors import ConfigError
from dicomml.parallel._base import check_workers

__all__ = ["add_executor_arguments", "executor_from_args", "workers_argument"]

_SCHEDULER_RE = re.compile(r"^(tcp|tls|ucx|ws|wss)://[^\s/:]+(:\d+)?/?$")


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def workers_argument(text: str) -> int:
    """The argparse ``type`` of every verb's ``--workers``: a whole number that
    :func:`~dicomml.parallel.check_workers` accepts (0, N >= 1, or -1 for every CPU, as
    without the option), returned as given so that it overrides a configuration's value;
    the entry points resolve it (:func:`~dicomml.parallel.resolve_workers`)."""
    n = _whole(text)
    try:
        check_workers(n, what="--workers")
        return n
    except ConfigError:
        raise argparse.ArgumentTypeError(
            f"expected 0 (in this process), N >= 1 (N at once) or -1 (every CPU, the same "
            f"as leaving --workers out), got {n}") from None


def _positive(text: str) -> int:
    n = _whole(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {n}")
    return n


def _seconds(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not x > 0:
        raise argparse.ArgumentTypeError(f"expected more than 0 seconds, got {text!r}")
    return x


def _scheduler(text: str) -> str:
    if not _SCHEDULER_RE.match(text):
        raise argparse.ArgumentTypeError(
            f"expected a Dask scheduler address like tcp://HOST:8786, got {text!r}")
    return text


def add_executor_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--workers N``, ``--scheduler tcp://HOST:8786``, ``--dask-local N`` and
    ``--item-timeout SECONDS``.

    The first three are mutually exclusive. Without any of them the verb uses local
    worker processes, one per available CPU. ``--item-timeout`` applies to local worker
    processes. Returns ``parser``.
    """
    group = parser.add_argument_group("parallel execution (pick one)")
    ex = group.add_mutually_exclusive_group()
    ex.add_argument("--workers", type=workers_argument, default=None, metavar="N",
                    help="CPUs to use at once, in local worker processes (default: every "
                         "CPU; 0 = run in this process, no crash isolation)")
    ex.add_argument("--scheduler", type=_scheduler, default=None, metavar="tcp://HOST:8786",
                    help="run on a running Dask cluster (its workers need dicomml installed)")
    ex.add_argument("--dask-local", type=_positive, default=None, metavar="N",
                    help="start a local Dask cluster of N worker processes on 127.0.0.1")
    group.add_argument("--item-timeout", type=_seconds, default=None, metavar="SECONDS",
                       help="local worker processes: kill a worker that spends longer than "
                            "this on one file and report the file (default: no limit)")
    return parser


def executor_from_args(args: argparse.Namespace):
    """Build the executor the options of :func:`add_executor_arguments` ask for.

    The caller closes it (``with executor_from_args(args) as ex: ...``).
    """
    from dicomml.parallel import get_executor

    scheduler = getattr(args, "scheduler", None)
    dask_local = getattr(args, "dask_local", None)
    workers = check_workers(getattr(args, "workers", None), what="--workers")
    item_timeout = getattr(args, "item_timeout", None)
    if item_timeout is not None:
        if scheduler is not None or dask_local is not None or workers == 0:
            raise ConfigError("--item-timeout needs local worker processes: drop it, or use "
                              "--workers N with N >= 1 instead of --scheduler, --dask-local "
                              "or --workers 0")
        return get_executor("processes", workers=workers, item_timeout=item_timeout)
    if scheduler is not None:
        return get_executor("dask", scheduler=scheduler)
    if dask_local is not None:
        return get_executor("dask", workers=dask_local)
    if workers == 0:
        return get_executor("inprocess")
    return get_executor("processes", workers=workers)
