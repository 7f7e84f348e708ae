"""Status of a node from its queue (works while it runs: SQLite WAL allows a reader)."""

from __future__ import annotations

from pathlib import Path

from dicomml.errors import ConfigError
from dicomml.serve.queue import JobQueue

__all__ = ["status", "trigger"]


def _queue(spool) -> JobQueue:
    path = Path(spool) / "queue.sqlite"
    if not path.is_file():
        raise ConfigError(f"no node queue at {path}; give the --spool of a node that ran")
    return JobQueue(path)


def status(spool) -> dict:
    """Counts per state, spool size, last errors, latencies and the latest studies.

    Studies are named by pseudonymous keys (:func:`dicomml.evaluate.prediction.study_key`).
    """
    q = _queue(spool)
    try:
        return q.status()
    finally:
        q.close()


def trigger(spool, study_uid: str) -> bool:
    """Mark a receiving study complete now (explicit trigger); False if not receiving."""
    q = _queue(spool)
    try:
        return q.trigger(study_uid)
    finally:
        q.close()
