"""The node's persistent job queue: one SQLite file beside the spool.

Every study the node received has one row in ``studies`` with its state::

    receiving ──(quiet period or trigger)──▶ complete ──▶ inferring ──▶ sending ──▶ done
                                                                  └──────────────▶ failed

and every instance one row in ``instances`` (written after the file is in the spool, so a
row always names a complete file). Each change is one transaction (WAL journal, synchronous
FULL), so a kill -9 at any moment leaves a consistent queue: :meth:`JobQueue.recover` puts
studies caught while ``inferring`` back to ``complete``; studies caught while ``sending``
are sent again (their result UIDs are deterministic, so the PACS replaces, not duplicates).

A study re-opened by new instances after its result began to be sent is inferred again as
a new *version* (``version``; ``sent`` says whether the current version's outputs may
have reached a destination): the revised result takes new SOP Instance UIDs
(:func:`dicomml.evaluate.prediction.result_uids`) and its SR names the previous one, since a
PACS keeps the first copy it stored under a UID.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from dicomml.evaluate.prediction import study_key

__all__ = ["JobQueue", "STATES"]

STATES = ("receiving", "complete", "inferring", "sending", "done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    study_uid TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    outcome TEXT,
    n_instances INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    first_received REAL,
    last_received REAL,
    completed REAL,
    trigger INTEGER NOT NULL DEFAULT 0,
    reopened INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL,
    first_send REAL,
    finished REAL,
    latency REAL,
    decisions TEXT,
    outputs TEXT,
    purged INTEGER NOT NULL DEFAULT 0,
    version INTEGER NOT NULL DEFAULT 0,
    sent INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    sop_class_uid TEXT,
    path TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    received REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_study ON instances(study_uid);
CREATE TABLE IF NOT EXISTS events (
    t REAL NOT NULL, key TEXT, level TEXT, message TEXT
);
"""


class JobQueue:
    """Thread-safe access to ``queue.sqlite`` (one connection, one lock)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._con = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                    check_same_thread=False)
        self._con.row_factory = sqlite3.Row
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=FULL")
        self._con.executescript(_SCHEMA)
        have = {r[1] for r in self._con.execute("PRAGMA table_info(studies)")}
        for col in ("version", "sent"):  # a queue written by an earlier dicomml
            if col not in have:
                self._con.execute(f"ALTER TABLE studies ADD COLUMN {col} INTEGER NOT NULL "
                                  "DEFAULT 0")

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def _tx(self, fn):
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                out = fn(self._con)
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")
            return out

    # -- receiving ---------------------------------------------------------------------
    def has_instance(self, sop_uid: str) -> bool:
        with self._lock:
            return self._con.execute("SELECT 1 FROM instances WHERE sop_uid = ?",
                                     (sop_uid,)).fetchone() is not None

    def add_instance(self, study_uid: str, series_uid: str, sop_uid: str, sop_class_uid: str,
                     path: str, size: int, now: float | None = None) -> bool:
        """Record a received instance (its file is already in the spool); False if known.

        A new instance re-opens a study that was complete, done or failed (it is inferred
        again: as a new version when its result had begun to be sent, see
        :meth:`begin_inference`); one arriving while the study is inferred or sent marks it
        to be re-opened when that ends.
        """
        now = time.time() if now is None else now

        def tx(con):
            cur = con.execute("INSERT OR IGNORE INTO instances VALUES (?,?,?,?,?,?,?)",
                              (sop_uid, study_uid, series_uid, sop_class_uid, path, size, now))
            if cur.rowcount == 0:
                return False
            row = con.execute("SELECT state FROM studies WHERE study_uid = ?",
                              (study_uid,)).fetchone()
            if row is None:
                con.execute("INSERT INTO studies (study_uid, key, state, n_instances, bytes, "
                            "first_received, last_received) VALUES (?,?,?,?,?,?,?)",
                            (study_uid, study_key(study_uid), "receiving", 1, size, now, now))
                return True
            busy = row["state"] in ("inferring", "sending")
            con.execute("UPDATE studies SET n_instances = n_instances + 1, bytes = bytes + ?, "
                        "last_received = ?, purged = 0, "
                        "reopened = CASE WHEN ? THEN 1 ELSE reopened END, "
                        "state = CASE WHEN ? THEN state ELSE 'receiving' END, "
                        "trigger = CASE WHEN ? THEN trigger ELSE 0 END "
                        "WHERE study_uid = ?", (size, now, busy, busy, busy, study_uid))
            return True

        return self._tx(tx)

    def spool_bytes(self) -> int:
        with self._lock:
            (n,) = self._con.execute("SELECT COALESCE(SUM(bytes), 0) FROM studies "
                                     "WHERE purged = 0").fetchone()
            return int(n)

    # -- completion and claims -----------------------------------------------------------
    def trigger(self, study_uid: str) -> bool:
        """Ask for a receiving study to be treated as complete now; False if unknown."""
        return self._tx(lambda con: con.execute(
            "UPDATE studies SET trigger = 1 WHERE study_uid = ? AND state = 'receiving'",
            (study_uid,)).rowcount > 0)

    def complete_quiet(self, stable_seconds: float, now: float | None = None) -> list[str]:
        """Receiving studies quiet for ``stable_seconds`` (or triggered) become complete."""
        now = time.time() if now is None else now

        def tx(con):
            rows = con.execute("SELECT study_uid FROM studies WHERE state = 'receiving' AND "
                               "(trigger = 1 OR last_received <= ?)",
                               (now - stable_seconds,)).fetchall()
            for r in rows:
                con.execute("UPDATE studies SET state = 'complete', completed = ? "
                            "WHERE study_uid = ?", (now, r[0]))
            return [r[0] for r in rows]

        return self._tx(tx)

    def claim(self, limit: int, now: float | None = None) -> list[tuple[str, str]]:
        """Up to ``limit`` jobs: ``(study_uid, "infer")`` for complete studies (now
        ``inferring``) and ``(study_uid, "send")`` for studies due to be sent."""
        now = time.time() if now is None else now
        if limit <= 0:
            return []

        def tx(con):
            out = []
            for r in con.execute("SELECT study_uid FROM studies WHERE state = 'sending' AND "
                                 "next_attempt IS NOT NULL AND next_attempt <= ? "
                                 "ORDER BY next_attempt LIMIT ?", (now, limit)).fetchall():
                con.execute("UPDATE studies SET next_attempt = NULL WHERE study_uid = ?",
                            (r[0],))
                out.append((r[0], "send"))
            for r in con.execute("SELECT study_uid FROM studies WHERE state = 'complete' "
                                 "ORDER BY completed LIMIT ?",
                                 (limit - len(out),)).fetchall():
                con.execute("UPDATE studies SET state = 'inferring', reopened = 0 "
                            "WHERE study_uid = ?", (r[0],))
                out.append((r[0], "infer"))
            return out

        return self._tx(tx)

    def recover(self, now: float | None = None) -> dict[str, int]:
        """After a crash: inferring → complete, sending → due now, and a receiving study's
        quiet period starts again at ``now`` (the node was not listening: a sender whose
        association the crash broke sends the rest again, and a study made complete on a
        quiet time counted while the node was down would be inferred on part of its
        instances); counts of each."""
        now = time.time() if now is None else now

        def tx(con):
            a = con.execute("UPDATE studies SET state = 'complete' "
                            "WHERE state = 'inferring'").rowcount
            b = con.execute("UPDATE studies SET next_attempt = 0 "
                            "WHERE state = 'sending'").rowcount
            c = con.execute("UPDATE studies SET last_received = MAX(last_received, ?) "
                            "WHERE state = 'receiving'", (now,)).rowcount
            return {"inferring": a, "sending": b, "receiving": c}

        return self._tx(tx)

    # -- results -------------------------------------------------------------------------
    def instances(self, study_uid: str) -> list[sqlite3.Row]:
        with self._lock:
            return self._con.execute("SELECT * FROM instances WHERE study_uid = ? "
                                     "ORDER BY series_uid, sop_uid", (study_uid,)).fetchall()

    def study(self, study_uid: str) -> sqlite3.Row | None:
        with self._lock:
            return self._con.execute("SELECT * FROM studies WHERE study_uid = ?",
                                     (study_uid,)).fetchone()

    def begin_inference(self, study_uid: str) -> int:
        """The result version the study's inference now writes: the current one, or the
        next when the current version's outputs may have reached a destination
        (:meth:`mark_sent`)."""
        def tx(con):
            con.execute("UPDATE studies SET version = version + sent, sent = 0 "
                        "WHERE study_uid = ?", (study_uid,))
            row = con.execute("SELECT version FROM studies WHERE study_uid = ?",
                              (study_uid,)).fetchone()
            return int(row[0]) if row is not None else 0

        return self._tx(tx)

    def mark_sent(self, study_uid: str) -> None:
        """The study's outputs are about to be stored (committed before the first byte is
        sent, so a crash meanwhile cannot reuse their UIDs for a different result)."""
        self._tx(lambda con: con.execute("UPDATE studies SET sent = 1 WHERE study_uid = ? "
                                         "AND sent = 0", (study_uid,)))

    def to_sending(self, study_uid: str, decisions: list[dict], outputs: list[str],
                   outcome: str) -> None:
        self._tx(lambda con: con.execute(
            "UPDATE studies SET state = 'sending', decisions = ?, outputs = ?, outcome = ?, "
            "attempts = 0, next_attempt = NULL, first_send = NULL, reason = NULL "
            "WHERE study_uid = ?", (json.dumps(decisions), json.dumps(outputs), outcome,
                                    study_uid)))

    def requeue(self, study_uid: str) -> None:
        """Back to ``complete`` (to be inferred again)."""
        self._tx(lambda con: con.execute(
            "UPDATE studies SET state = 'complete', completed = ? WHERE study_uid = ?",
            (time.time(), study_uid)))

    def send_failed(self, study_uid: str, reason: str, retry_at: float | None) -> None:
        """A send failed: retry at ``retry_at`` (state stays ``sending``) or fail for good."""
        now = time.time()
        if retry_at is None:
            self.finish(study_uid, "failed", reason=reason)
            return
        self._tx(lambda con: con.execute(
            "UPDATE studies SET attempts = attempts + 1, next_attempt = ?, reason = ?, "
            "first_send = COALESCE(first_send, ?) WHERE study_uid = ?",
            (retry_at, reason, now, study_uid)))

    def finish(self, study_uid: str, state: str, *, reason: str | None = None,
               decisions: list[dict] | None = None, outcome: str | None = None,
               latency: float | None = None) -> None:
        """``done`` or ``failed``; a study re-opened meanwhile goes back to ``receiving``."""
        now = time.time()

        def tx(con):
            con.execute(
                "UPDATE studies SET state = CASE WHEN reopened = 1 THEN 'receiving' ELSE ? END,"
                " reason = ?, finished = ?, latency = COALESCE(?, latency), "
                "decisions = COALESCE(?, decisions), outcome = COALESCE(?, outcome), "
                "next_attempt = NULL WHERE study_uid = ?",
                (state, reason, now, latency, None if decisions is None else
                 json.dumps(decisions), outcome, study_uid))

        self._tx(tx)

    def log_event(self, key: str, level: str, message: str) -> None:
        self._tx(lambda con: (
            con.execute("INSERT INTO events VALUES (?,?,?,?)", (time.time(), key, level,
                                                                 message[:2000])),
            con.execute("DELETE FROM events WHERE rowid <= (SELECT MAX(rowid) - 200 "
                        "FROM events)")))

    # -- retention and status ------------------------------------------------------------
    def expired(self, retention_seconds: float, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        with self._lock:
            return [r[0] for r in self._con.execute(
                "SELECT study_uid FROM studies WHERE state IN ('done', 'failed') AND "
                "purged = 0 AND finished <= ?", (now - retention_seconds,)).fetchall()]

    def mark_purged(self, study_uid: str) -> None:
        self._tx(lambda con: (
            con.execute("UPDATE studies SET purged = 1, bytes = 0 WHERE study_uid = ?",
                        (study_uid,)),
            con.execute("DELETE FROM instances WHERE study_uid = ?", (study_uid,))))

    def status(self, n_recent: int = 20) -> dict:
        """Queue counts, the last errors and the latest studies (pseudonymous keys only)."""
        with self._lock:
            counts = {s: 0 for s in STATES}
            for state, n in self._con.execute("SELECT state, COUNT(*) FROM studies "
                                              "GROUP BY state"):
                counts[state] = n
            recent = [{
                "key": r["key"], "state": r["state"], "outcome": r["outcome"],
                "reason": r["reason"], "n_instances": r["n_instances"],
                "attempts": r["attempts"], "latency_s": r["latency"],
                "version": r["version"],
                "decisions": [{k: d.get(k) for k in ("modality", "n_instances", "decision",
                                                     "rule", "reason")}
                              for d in json.loads(r["decisions"] or "[]")],
            } for r in self._con.execute("SELECT * FROM studies ORDER BY last_received DESC "
                                         "LIMIT ?", (n_recent,))]
            errors = [{"time": t, "key": k, "message": m} for t, k, lv, m in self._con.execute(
                "SELECT * FROM events WHERE level IN ('ERROR', 'WARNING') "
                "ORDER BY rowid DESC LIMIT 10")]
            lat = [r[0] for r in self._con.execute("SELECT latency FROM studies WHERE "
                                                   "latency IS NOT NULL")]
            spool = self.spool_bytes()
        return {"counts": counts, "spool_bytes": spool, "last_errors": errors,
                "latency_s": {"n": len(lat), "median": _median(lat),
                              "max": max(lat) if lat else None},
                "studies": recent}


def _median(v: list[float]) -> float | None:
    if not v:
        return None
    s = sorted(v)
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2
