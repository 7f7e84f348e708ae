"""Retries with exponential back-off and a bounded total time."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from dicomml.pacs.errors import PacsError

__all__ = ["RetryPolicy", "TransientError", "call_with_retry", "raise_level"]

log = logging.getLogger("dicomml.pacs")
T = TypeVar("T")


class TransientError(Exception):
    """Internal: a fault worth retrying (connection refused/reset, HTTP 5xx/429, abort)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a transient fault.

    Parameters
    ----------
    retries : int
        Retries after the first attempt (0: no retry).
    backoff : float
        First wait in seconds; doubled after each retry, capped at ``max_backoff``.
    max_backoff : float
        Longest single wait in seconds.
    total : float
        Bound on the whole retry loop in seconds: no new attempt starts after it.
    """

    retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 8.0
    total: float = 120.0

    def __post_init__(self):
        if self.retries < 0 or self.backoff < 0 or self.max_backoff < 0 or self.total <= 0:
            from dicomml.errors import ConfigError

            raise ConfigError(f"retry settings must be >= 0 (total > 0). Received: {self}")


def call_with_retry(fn: Callable[[], T], policy: RetryPolicy, what: str) -> T:
    """Call ``fn``; on :class:`TransientError` wait and retry as ``policy`` allows.

    Raises
    ------
    PacsError
        When the retries or the total time are exhausted (``transient=True``); the message
        says ``what`` failed and the last fault.
    """
    start = time.monotonic()
    wait = policy.backoff
    attempt = 0
    while True:
        try:
            return fn()
        except TransientError as e:
            attempt += 1
            elapsed = time.monotonic() - start
            if attempt > policy.retries or elapsed + wait > policy.total:
                raise PacsError(f"{what} failed after {attempt} attempt(s) in {elapsed:.1f} s: "
                                f"{e}. Check that the PACS is running and reachable, then run "
                                "again (a retrieval resumes where it stopped).",
                                transient=True) from e
            log.warning("%s: %s; retry %d/%d in %.1f s", what, e, attempt, policy.retries, wait)
            time.sleep(wait)
            wait = min(wait * 2, policy.max_backoff)


def raise_level(name: str, level: int) -> None:
    """Make logger ``name`` drop records below ``level`` (never lowers it).

    The client libraries log query URLs and identifiers (which may hold a Patient ID) at
    DEBUG; dicomml keeps patient identifiers out of logs.
    """
    lg = logging.getLogger(name)
    if lg.level < level:  # NOTSET (0) too: a lower root level must not let them through
        lg.setLevel(level)
