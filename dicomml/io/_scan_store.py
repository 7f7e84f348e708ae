"""The single writer of the Index (the scan's parent process); see :mod:`dicomml.io.index`.

Each batch of worker results is one transaction, so a crash loses only the batch in flight
(its files are not in ``files`` yet and are read again by the next scan).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from typing import Iterable, Iterator

from dicomml.errors import OutputError
from dicomml.io.index import ARRAY_COLUMNS, INSTANCE_COLUMNS, SCHEMA, SCHEMA_VERSION, \
    encode_array
from dicomml.io.series import series_keys

__all__ = ["Store", "db_values"]

_DUP = "duplicate SOP Instance UID"
_INSERT = (f"INSERT OR REPLACE INTO instances ({', '.join(INSTANCE_COLUMNS)}) "
           f"VALUES ({', '.join('?' * len(INSTANCE_COLUMNS))})")
_SOP = INSTANCE_COLUMNS.index("sop_instance_uid")
_SERIES = INSTANCE_COLUMNS.index("series_instance_uid")
_SPLIT_COLS = ("path", "sop_instance_uid", "series_instance_uid", "study_instance_uid",
               "object_kind", "rows", "columns", "image_orientation", "instance_number")


#: Distinct (study, rows, columns, orientation text) among a series' images.
_N_GROUPS_SQL = ("SELECT COUNT(DISTINCT quote(study_instance_uid) || '|' || quote(rows) || '|' "
                 "|| quote(columns) || '|' || quote(image_orientation)) FROM instances "
                 "WHERE series_instance_uid = ? AND object_kind = 'image'")
#: The keys of series_keys() for a series with at most one group of images.
_ONE_GROUP_SQL = ("UPDATE instances SET series_key = CASE WHEN object_kind = 'image' "
                  "THEN series_instance_uid ELSE series_instance_uid || ':' || "
                  "COALESCE(NULLIF(object_kind, ''), 'other') END "
                  "WHERE series_instance_uid = ?")


def db_values(row: dict) -> tuple:
    """An Index row as the tuple of ``instances`` values (JSON arrays, 0/1, no key yet)."""
    values = []
    for col in INSTANCE_COLUMNS:
        v = row.get(col)
        if v is not None and col in ARRAY_COLUMNS:
            v = encode_array(v)
        elif col == "is_image":
            v = int(bool(v))
        values.append(v)
    return tuple(values)


class Store:
    """Open (create) the Index at ``db_path`` for writing."""

    def __init__(self, db_path: str | os.PathLike, root: str):
        self.db_path = os.fspath(db_path)
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.db_path)), exist_ok=True)
            self.con = sqlite3.connect(self.db_path, isolation_level=None)
            self.con.execute("PRAGMA journal_mode=WAL")
            self.con.execute("PRAGMA synchronous=NORMAL")
            version = None
            has_meta = self.con.execute(
                "SELECT name FROM sqlite_master WHERE name='meta'").fetchone()
            if has_meta:
                version = self.con.execute(
                    "SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if has_meta and (version is None or int(version[0]) != SCHEMA_VERSION):
                self._drop_all()
            self.con.execute("BEGIN")
            for stmt in SCHEMA:
                self.con.execute(stmt)
            self.con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                             (str(SCHEMA_VERSION),))
            self.con.execute("INSERT OR REPLACE INTO meta VALUES ('root', ?)", (root,))
            self.con.execute("COMMIT")
        except (sqlite3.Error, OSError) as e:
            raise OutputError(f"cannot open the Index {self.db_path} for writing: {e}. Pass "
                              "--db with a writable file (not a non-Index file).") from e
        self.affected: set[str | None] = set()

    def _drop_all(self) -> None:
        for (name,) in self.con.execute(
                "SELECT name FROM sqlite_master WHERE type='table'").fetchall():
            self.con.execute(f"DROP TABLE IF EXISTS {name}")

    def close(self) -> None:
        self.con.close()

    # -- state ---------------------------------------------------------------------------
    def known(self) -> dict[str, tuple[int, int, str]]:
        """``path -> (size, mtime_ns, status)`` of every file seen by earlier scans
        (status "retry" for files whose reading failed: they are read again)."""
        return {p: (s, m, st) for p, s, m, st in self.con.execute(
            "SELECT path, size, mtime_ns, status FROM files UNION ALL "
            "SELECT path, NULL, NULL, 'retry' FROM skipped "
            "WHERE path NOT IN (SELECT path FROM files)")}

    def remove(self, paths: Iterable[str]) -> int:
        """Forget files that disappeared (one transaction); return how many."""
        paths = list(paths)
        if not paths:
            return 0
        c = self.con
        with self.transaction():
            for p in paths:
                old = c.execute("SELECT series_instance_uid FROM instances WHERE path=?",
                                (p,)).fetchone()
                if old is not None:
                    self.affected.add(old[0])
                c.execute("DELETE FROM instances WHERE path=?", (p,))
                c.execute("DELETE FROM skipped WHERE path=?", (p,))
                c.execute("DELETE FROM files WHERE path=?", (p,))
                c.execute("DELETE FROM dicomdir_refs WHERE dicomdir=?", (p,))
        return len(paths)

    # -- results -------------------------------------------------------------------------
    def write(self, results: list[tuple]) -> None:
        """Store one batch of worker results (one transaction).

        Items: ``("row", path, size, mtime_ns, values, refs)`` with ``values`` from
        :func:`db_values`, or ``("skip", path, size, mtime_ns, category, reason[, status])``.
        Rows whose SOP Instance UID is new go in with a few bulk statements; the others
        (duplicates, DICOMDIRs) one by one.
        """
        with self.transaction():
            rows = [r for r in results if r[0] == "row"]
            for res in results:
                if res[0] != "row":
                    _kind, path, size, mtime_ns, category, reason = res[:6]
                    status = res[6] if len(res) > 6 else "skipped"
                    self._put_skip(path, size, mtime_ns, category, reason, status, None)
            if rows:
                self._put_rows(rows)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One SQLite transaction: committed whole or rolled back whole.

        A full or read-only disk (or any SQLite error) becomes an
        :class:`~dicomml.errors.OutputError` naming the Index; what earlier transactions
        committed stays, so a rerun resumes (WAL journal: the file stays consistent).
        """
        c = self.con
        try:
            c.execute("BEGIN")
            yield
            c.execute("COMMIT")
        except BaseException as e:
            if c.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    c.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):
                raise OutputError(
                    f"cannot write the Index {self.db_path}: {e}. Free some disk space or "
                    "pass --db on a writable disk with room; a rerun resumes where this scan "
                    "stopped.") from e
            raise

    def _select_in(self, sql: str, values: list) -> list[tuple]:
        out = []
        for i in range(0, len(values), 500):
            part = values[i:i + 500]
            out += self.con.execute(sql.format(", ".join("?" * len(part))), part).fetchall()
        return out

    def _put_rows(self, rows: list[tuple]) -> None:
        c = self.con
        paths = [r[1] for r in rows]
        sops = [r[4][_SOP] for r in rows]
        for _path, uid in self._select_in(
                "SELECT path, series_instance_uid FROM instances WHERE path IN ({})", paths):
            self.affected.add(uid)
        taken = {}
        for path, uid in self._select_in(
                "SELECT path, sop_instance_uid FROM instances WHERE sop_instance_uid IN ({})",
                sops):
            taken.setdefault(uid, set()).add(path)
        bulk, single, seen = [], [], set()
        for r in rows:
            uid = r[4][_SOP]
            others = taken.get(uid, set()) - {r[1]}
            if others or uid in seen or r[5]:
                single.append(r)
            else:
                bulk.append(r)
            seen.add(uid)
        if bulk:
            c.executemany("DELETE FROM skipped WHERE path=?", [(r[1],) for r in bulk])
            c.executemany(_INSERT, [r[4] for r in bulk])
            c.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, 'instance')",
                          [(r[1], r[2], r[3]) for r in bulk])
            self.affected.update(r[4][_SERIES] for r in bulk)
        for r in single:
            self._put_row(r)

    def _forget_instance(self, path: str) -> None:
        old = self.con.execute("SELECT series_instance_uid FROM instances WHERE path=?",
                               (path,)).fetchone()
        if old is not None:
            self.affected.add(old[0])
            self.con.execute("DELETE FROM instances WHERE path=?", (path,))

    def _put_skip(self, path, size, mtime_ns, category, reason, status, sop_uid) -> None:
        c = self.con
        self._forget_instance(path)
        c.execute("DELETE FROM dicomdir_refs WHERE dicomdir=?", (path,))
        c.execute("INSERT OR REPLACE INTO skipped VALUES (?, ?, ?, ?, ?, ?)",
                  (path, size, mtime_ns / 1e9, category, reason, sop_uid))
        if status == "retry":
            c.execute("DELETE FROM files WHERE path=?", (path,))
        else:
            c.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)",
                      (path, size, mtime_ns, status))

    def _put_row(self, item: tuple) -> None:
        c = self.con
        _kind, path, size, mtime_ns, values, refs = item
        sop = values[_SOP]
        other = c.execute("SELECT path, size, mtime FROM instances WHERE sop_instance_uid=? "
                          "AND path<>? ORDER BY path LIMIT 1", (sop, path)).fetchone()
        if other is not None:
            opath, osize, omtime = other
            if opath < path:  # the first path in sorted order keeps the instance
                self._put_skip(path, size, mtime_ns, _DUP, f"{_DUP} (also at {opath})", "dup",
                               sop)
                return
            ostat = c.execute("SELECT mtime_ns FROM files WHERE path=?", (opath,)).fetchone()
            self._put_skip(opath, osize, ostat[0] if ostat else int(omtime * 1e9), _DUP,
                           f"{_DUP} (also at {path})", "dup", sop)
        self._forget_instance(path)
        c.execute("DELETE FROM skipped WHERE path=?", (path,))
        c.execute("DELETE FROM dicomdir_refs WHERE dicomdir=?", (path,))
        if refs:
            c.executemany("INSERT INTO dicomdir_refs VALUES (?, ?, ?)",
                          [(path, p, uid) for p, uid in refs])
        c.execute(_INSERT, values)
        c.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, 'instance')",
                  (path, size, mtime_ns))
        self.affected.add(values[_SERIES])

    # -- series keys ---------------------------------------------------------------------
    def update_series_keys(self) -> None:
        """Recompute the series keys of every Series Instance UID touched by this scan,
        and of any row left without a key by an interrupted scan (one transaction)."""
        c = self.con
        uids = set(self.affected)
        uids.update(u for (u,) in c.execute(
            "SELECT DISTINCT series_instance_uid FROM instances WHERE series_key IS NULL"))
        with self.transaction():
            # Fast path, in SQL: a series whose images all share study, size and the exact
            # same orientation text is one group, so every image keeps the plain key (the
            # rule of series_keys); only series that may split are grouped in Python.
            slow = []
            for uid in uids:
                if uid is None:
                    slow.append(uid)
                    continue
                (n,) = c.execute(_N_GROUPS_SQL, (uid,)).fetchone()
                if n <= 1:
                    c.execute(_ONE_GROUP_SQL, (uid,))
                else:
                    slow.append(uid)
            sel = f"SELECT {', '.join(_SPLIT_COLS)} FROM instances WHERE "
            for uid in slow:
                if uid is None:
                    cur = c.execute(sel + "series_instance_uid IS NULL")
                else:
                    cur = c.execute(sel + "series_instance_uid = ?", (uid,))
                rows = []
                for rec in cur.fetchall():
                    d = dict(zip(_SPLIT_COLS, rec))
                    if d["image_orientation"] is not None:
                        from dicomml.io.index import decode_array

                        d["image_orientation"] = decode_array(d["image_orientation"])
                    rows.append(d)
                keys = series_keys(rows)
                c.executemany("UPDATE instances SET series_key=? WHERE path=?",
                              [(k, p) for p, k in keys.items()])
            c.execute("INSERT OR REPLACE INTO meta VALUES ('last_scan', ?)",
                      (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),))
        self.affected.clear()

    def orphan_duplicates(self) -> list[tuple[str, int, int]]:
        """Duplicates whose indexed twin is gone: ``(path, size, mtime_ns)`` to read again."""
        return self.con.execute(
            "SELECT s.path, f.size, f.mtime_ns FROM skipped s JOIN files f ON f.path = s.path "
            "WHERE f.status = 'dup' AND NOT EXISTS (SELECT 1 FROM instances i "
            "WHERE i.sop_instance_uid = s.sop_instance_uid) ORDER BY s.path").fetchall()

    def current_skipped(self) -> list[tuple[str, str]]:
        return self.con.execute("SELECT path, reason FROM skipped ORDER BY path").fetchall()
