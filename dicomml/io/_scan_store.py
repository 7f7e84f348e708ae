"""The single writer of the Index (the scan's parent process); see :mod:`dicomml.io.index`.

Each batch of worker results is one transaction, so a crash loses only the batch in flight
(its files are not in ``files`` yet and are read again by the next scan).

Series keys: a row goes in without one (NULL: "written since the last finished scan"),
except in a first scan (an empty Index), where every row is new anyway: there it goes in
with its *provisional* key, the plain key of a series that does not split (the Series
Instance UID; ``UID:kind`` for other objects), so that the end of the scan rewrites only
the rows of series that split or hold duplicates. A ``meta`` row (:data:`PROVISIONAL`)
says so until the end of that scan; a scan that finds it (the first scan was
interrupted) sets every key back to NULL first, and so decides everything again.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator

import numpy as np

from dicomml.errors import OutputError
from dicomml.io.index import ARRAY_COLUMNS, INSTANCE_COLUMNS, PROVISIONAL, SAME_ALL, \
    SAME_COLUMN, SCHEMA, SCHEMA_VERSION, connect_read_only, decode_array, encode_array, \
    has_same_column, same_bits, series_sql, varying_sql
from dicomml.io.series import SPLIT_COLUMNS, series_keys

__all__ = ["Store", "db_values", "DUP_COPY", "PROVISIONAL"]

#: Skip category of a byte-identical copy of an indexed file (same SOP Instance UID).
DUP_COPY = "duplicate copy"


def _plain_key(uid: str, kind: str) -> str:
    """The SQL of the key of a series that does not split (:func:`series_keys`'s rule):
    the Series Instance UID for images, ``UID:kind`` for other objects (``uid`` and
    ``kind`` are SQL expressions)."""
    return (f"CASE WHEN {kind} = 'image' THEN {uid} ELSE {uid} || ':' || "
            f"COALESCE(NULLIF({kind}, ''), 'other') END")


_SOP = INSTANCE_COLUMNS.index("sop_instance_uid")


@functools.lru_cache(maxsize=256)
def _insert_present(nulls: int, keyed: bool) -> tuple[str, tuple[bool, ...]]:
    """The INSERT of ``instances`` rows whose values are None at the bits of ``nulls``
    (bit ``i``: ``INSTANCE_COLUMNS[i]``; 0: any row, its Nones bound), naming only the other
    columns (a column left out is NULL, as a bound None makes it: binding a None costs
    sqlite3 more than a value), with, where ``keyed``, the provisional series key computed
    from the row's own values (a first scan; module docs); and the selector of the values
    bound (``itertools.compress``)."""
    keep = tuple(not (nulls >> i) & 1 and not (keyed and c == "series_key")
                 for i, c in enumerate(INSTANCE_COLUMNS))
    cols = [c for c, k in zip(INSTANCE_COLUMNS, keep) if k]
    refs = {c: f"?{n + 1}" for n, c in enumerate(cols)}
    names, params = list(cols), list(refs.values())
    if keyed:  # the key from the row's own values, whatever value it was given
        names.append("series_key")
        params.append(_plain_key(refs.get("series_instance_uid", "NULL"),
                                 refs.get("object_kind", "NULL")))
    return (f"INSERT OR REPLACE INTO instances ({', '.join(names)}) VALUES "
            f"({', '.join(params)})", keep)


#: The secondary indexes of ``instances``, built after the files of a first scan are in.
_DEFERRED = "CREATE INDEX IF NOT EXISTS instances_"
#: Those the end of a scan needs (duplicates, series keys); the others serve the queries
#: and are built last, after the series keys are written.
_SCAN_INDEXES = tuple(_DEFERRED + name + " " for name in ("sop", "series", "key"))
_SERIES = INSTANCE_COLUMNS.index("series_instance_uid")
_SPLIT_COLS = ("path", "sop_instance_uid", "series_instance_uid", "object_kind",
               "instance_number", "duplicate_of", *SPLIT_COLUMNS)

#: Whether the images of the series whose UID is ``key_uids.uid`` differ in a split column
#: (exact value) from its first image; when none does,
#: :func:`dicomml.io.series.series_keys` makes one group of them. Stops at the first image
#: that differs.
_SPLITS_SQL = (
    "EXISTS(SELECT 1 FROM instances i, (SELECT " + ", ".join(
        ("duplicate_of", *SPLIT_COLUMNS)) + " FROM instances WHERE series_instance_uid = "
    "key_uids.uid AND object_kind = 'image' LIMIT 1) f WHERE i.series_instance_uid = "
    "key_uids.uid AND i.object_kind = 'image' AND (" + " OR ".join(
        f"i.{c} IS NOT f.{c}" for c in ("duplicate_of", *SPLIT_COLUMNS)) + "))")
#: The keys of series_keys() for the series of ``temp.key_uids`` (at most one group of
#: images each; rows that hold their key already, e.g. a first scan's provisional keys, are
#: not written again).
_PLAIN_KEY = _plain_key("series_instance_uid", "object_kind")
_ONE_GROUP_SQL = (f"UPDATE instances SET series_key = {_PLAIN_KEY} WHERE series_instance_uid "
                  f"IN (SELECT uid FROM temp.key_uids) AND series_key IS NOT {_PLAIN_KEY}")
#: SOP Instance UIDs whose duplicates must be (re)decided: written since the last finished
#: scan (no series key yet) and held by several files, or skipped copies left without an
#: indexed twin.
_DUP_CANDIDATES_SQL = (
    "SELECT DISTINCT n.sop_instance_uid FROM instances n WHERE n.series_key IS NULL AND "
    "EXISTS (SELECT 1 FROM instances o WHERE o.sop_instance_uid = n.sop_instance_uid "
    "AND o.path <> n.path) "
    "UNION SELECT s.sop_instance_uid FROM skipped s CROSS JOIN files f ON f.path = s.path "
    "WHERE f.status = 'dup' AND (s.sop_instance_uid IN (SELECT sop_instance_uid FROM "
    "instances WHERE series_key IS NULL) OR NOT EXISTS (SELECT 1 FROM instances i "
    "WHERE i.sop_instance_uid = s.sop_instance_uid))")
#: The same in a first scan (every row is new, none skipped as a copy yet): the SOP
#: Instance UIDs held by several files.
_DUP_CANDIDATES_FIRST_SQL = ("SELECT sop_instance_uid FROM instances GROUP BY "
                             "sop_instance_uid HAVING COUNT(*) > 1")


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
                if not stmt.startswith(_DEFERRED):
                    self.con.execute(stmt)
            # A first scan fills an Index without its secondary indexes and builds them
            # once at the end (ensure_indexes: a sort each, much cheaper than keeping them
            # up to date row by row); an Index that holds rows gets them now.
            if self.con.execute("SELECT EXISTS(SELECT 1 FROM files) OR "
                                "EXISTS(SELECT 1 FROM instances)").fetchone()[0]:
                self._create_indexes()
            self.con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                             (str(SCHEMA_VERSION),))
            self.con.execute("INSERT OR REPLACE INTO meta VALUES ('root', ?)", (root,))
            self.con.execute("COMMIT")
        except (sqlite3.Error, OSError) as e:
            raise OutputError(f"cannot open the Index {self.db_path} for writing: {e}. Pass "
                              "--db with a writable file (not a non-Index file).") from e
        self.affected: set[str | None] = set()
        # A first scan into an empty Index has no earlier rows or skips to replace: the
        # per-row look-ups of _put_rows are left out until something is there.
        self._rows_before, self._skips_before = self.con.execute(
            "SELECT EXISTS(SELECT 1 FROM instances), EXISTS(SELECT 1 FROM skipped)").fetchone()
        #: True when the Index held no file when opened (a first scan).
        self.empty = not (self._rows_before or self._skips_before)
        #: Rows go in with their provisional series key (a first scan; module docs).
        self.provisional = self.empty
        with self.transaction():
            if self.con.execute("SELECT 1 FROM meta WHERE key = ?", (PROVISIONAL,)).fetchone():
                # an interrupted first scan: its keys were never decided
                self.con.execute("UPDATE instances SET series_key = NULL "
                                 "WHERE series_key IS NOT NULL")
                self.con.execute("DELETE FROM meta WHERE key = ?", (PROVISIONAL,))
            if self.provisional:
                self.con.execute("INSERT INTO meta VALUES (?, '1')", (PROVISIONAL,))
        self._gone: list[str] = []  # paths of the Index that record_walk() did not find
        self._counts = (0, 0)  # files found and new files of record_walk()
        self._streamed = False  # the walk was stream_walk()'s
        #: Candidates found by duplicates_to_read(), reused by resolve_duplicates().
        self._dup_sops: list[str] | None = None

    def _create_indexes(self, prefix: str | tuple[str, ...] = _DEFERRED) -> None:
        for stmt in SCHEMA:
            if stmt.startswith(prefix):
                self.con.execute(stmt)

    def ensure_indexes(self, scan_only: bool = False) -> None:
        """Create the secondary indexes of :data:`dicomml.io.index.SCHEMA` that are missing
        (after the files of a first scan are in; see ``__init__``): with ``scan_only``
        those the end of the scan reads, else all of them."""
        with self.transaction():
            self._create_indexes(_SCAN_INDEXES if scan_only else _DEFERRED)

    def _drop_all(self) -> None:
        for (name,) in self.con.execute(
                "SELECT name FROM sqlite_master WHERE type='table'").fetchall():
            self.con.execute(f"DROP TABLE IF EXISTS {name}")

    def close(self) -> None:
        self.con.close()

    # -- state ---------------------------------------------------------------------------
    # -- the walk, merged with ``files`` (flat memory at a million files) ------------------
    def record_walk(self, entries: Iterable, batch: int = 20000, page: int = 8192) -> list:
        """Compare the walk (``FileEntry`` objects, in increasing path order as
        :func:`dicomml.io.files.walk_files` yields them) with the ``files`` table, and
        return the other entries (``Unreadable``) in a list.

        One merge of two sorted streams: the walk, and ``files`` read ``page`` rows at a
        time in path order (its primary key). The files to read (new, changed in size or
        mtime, or whose reading failed before) go into a temporary table, ``batch`` rows
        per transaction, in walk order, for :meth:`todo`; the paths the Index knows that
        the walk did not find are kept for :meth:`gone`. Nothing else of the walk is kept:
        memory stays flat however many files the folder holds, and an unchanged file costs
        one comparison.

        Raises
        ------
        ValueError
            The walk is not in strictly increasing path order (the merge would be wrong).
        """
        c = self.con
        self._streamed = False
        c.execute("DROP TABLE IF EXISTS temp.todo")
        c.execute("CREATE TEMP TABLE todo (path TEXT, size INTEGER, mtime_ns INTEGER, "
                  "new INTEGER)")
        # skipped files to retry are in ``skipped`` only (not in ``files``): few, kept here
        retry = {p for (p,) in c.execute("SELECT path FROM skipped WHERE path NOT IN "
                                         "(SELECT path FROM files)")}
        known = self._known(page)
        end = (None, None, None)  # after the last file of the Index
        kpath, ksize, kmtime = next(known, end)
        other, todo, gone = [], [], []
        seen = new = 0
        last = ""
        for entry in entries:
            if not isinstance(entry, tuple):  # FileEntry is a (path, size, mtime_ns) tuple
                other.append(entry)
                continue
            path = entry[0]
            if path <= last:
                raise ValueError(f"the walk is not in increasing path order at {path!r} "
                                 f"(after {last!r}); walk with dicomml.io.files.walk_files")
            last = path
            seen += 1
            while kpath is not None and kpath < path:  # in the Index, not in the walk
                gone.append(kpath)
                kpath, ksize, kmtime = next(known, end)
            if kpath == path:
                if ksize != entry[1] or kmtime != entry[2]:
                    todo.append((path, entry[1], entry[2], 0))
                kpath, ksize, kmtime = next(known, end)
            else:
                new += 1
                retry.discard(path)
                todo.append((path, entry[1], entry[2], 1))
            if len(todo) >= batch:
                self._insert_todo(todo)
                todo = []
        while kpath is not None:
            gone.append(kpath)
            kpath, ksize, kmtime = next(known, end)
        self._insert_todo(todo)
        self._gone = gone + sorted(retry)
        self._counts = seen, new
        return other

    def stream_walk(self, entries: Iterable, other: list) -> Iterator[tuple[str, int, int]]:
        """A first scan's :meth:`record_walk` (an empty Index: every file is new), as a
        stream: yields the ``(path, size, mtime_ns)`` of every file as the walk finds it, so
        that reading starts before the walk ends; the other entries (``Unreadable``) go to
        ``other``. Nothing is kept: no temporary table, and :meth:`plan` counts the files
        yielded so far.

        Raises
        ------
        ValueError
            The Index is not empty, or the walk is not in strictly increasing path order.
        """
        if not self.empty:
            raise ValueError("stream_walk is for a first scan; use record_walk")
        self._gone = []
        self._streamed = True
        seen = 0
        last = ""
        for entry in entries:
            if not isinstance(entry, tuple):  # FileEntry is a (path, size, mtime_ns) tuple
                other.append(entry)
                continue
            path = entry[0]
            if path <= last:
                raise ValueError(f"the walk is not in increasing path order at {path!r} "
                                 f"(after {last!r}); walk with dicomml.io.files.walk_files")
            last = path
            seen += 1
            self._counts = seen, seen
            yield path, entry[1], entry[2]

    def _known(self, page: int) -> Iterator[tuple[str, int, int]]:
        """``(path, size, mtime_ns)`` of ``files`` in path order, read page by page (each
        page a query of its own, so writes may go on between pages)."""
        c = self.con
        rows = c.execute("SELECT path, size, mtime_ns FROM files ORDER BY path LIMIT ?",
                         (page,)).fetchall()
        while rows:
            yield from rows
            if len(rows) < page:
                return
            rows = c.execute("SELECT path, size, mtime_ns FROM files WHERE path > ? "
                             "ORDER BY path LIMIT ?", (rows[-1][0], page)).fetchall()

    def _insert_todo(self, rows: list) -> None:
        if rows:
            with self.transaction():
                self.con.executemany("INSERT INTO todo VALUES (?, ?, ?, ?)", rows)

    def plan(self) -> tuple[int, int]:
        """After :meth:`record_walk`: ``(files found, files to read)``; the files to read
        are in a temporary table, in walk order, for :meth:`todo`. After (or during)
        :meth:`stream_walk`: the files it yielded, twice."""
        if self._streamed:  # every file found is one to read, none in a table
            return self._counts
        (todo,) = self.con.execute("SELECT COUNT(*) FROM todo").fetchone()
        return self._counts[0], todo

    def todo(self, page: int = 4096) -> Iterator[tuple[str, int, int]]:
        """The ``(path, size, mtime_ns)`` of :meth:`plan`, read page by page (each page a
        query of its own, so writes may go on between pages)."""
        last = 0
        while True:
            rows = self.con.execute("SELECT rowid, path, size, mtime_ns FROM todo WHERE "
                                    "rowid > ? ORDER BY rowid LIMIT ?", (last, page)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            for row in rows:
                yield row[1:]

    def gone(self) -> list[str]:
        """After :meth:`record_walk`: paths the Index knows (files, or skipped and to
        retry) that the walk did not find."""
        return list(self._gone)

    def walked(self, paths: list[str]) -> set[str]:
        """Those of ``paths`` (paths of the Index) that :meth:`record_walk` found."""
        gone = set(self._gone)
        return {p for p in paths if p not in gone}

    def end_walk(self) -> None:
        """Drop the temporary table of :meth:`record_walk`."""
        self.con.execute("DROP TABLE IF EXISTS temp.todo")

    def remove(self, paths: Iterable[str]) -> int:
        """Forget files that disappeared (one transaction); return how many."""
        paths = list(paths)
        if not paths:
            return 0
        c = self.con
        with self.transaction():
            for p in paths:
                old = c.execute("SELECT series_instance_uid, sop_instance_uid, conflict "
                                "FROM instances WHERE path=?", (p,)).fetchone()
                if old is not None:
                    self.affected.add(old[0])
                    if old[2]:
                        self._reopen_conflict(old[1], p)
                c.execute("DELETE FROM instances WHERE path=?", (p,))
                c.execute("DELETE FROM skipped WHERE path=?", (p,))
                c.execute("DELETE FROM files WHERE path=?", (p,))
                c.execute("DELETE FROM dicomdir_refs WHERE dicomdir=?", (p,))
        return len(paths)

    def _reopen_conflict(self, sop: str, path: str) -> None:
        """``path`` (one of a set of conflicting duplicates) goes or changes: the others are
        decided again by :meth:`resolve_duplicates` (a NULL series key marks them, so this
        survives a crash); the last one left conflicts with nothing."""
        c = self.con
        c.execute("UPDATE instances SET series_key = NULL WHERE sop_instance_uid = ? "
                  "AND path <> ?", (sop, path))
        left = c.execute("SELECT COUNT(*) FROM instances WHERE sop_instance_uid = ? "
                         "AND path <> ?", (sop, path)).fetchone()[0]
        if left == 1:
            c.execute("UPDATE instances SET duplicate_of = NULL, conflict = NULL "
                      "WHERE sop_instance_uid = ? AND path <> ?", (sop, path))

    # -- results -------------------------------------------------------------------------
    def write(self, results: list[tuple]) -> None:
        """Store one batch of worker results (one transaction).

        Items: ``("row", path, size, mtime_ns, values, refs[, nulls])`` with ``values``
        from :func:`db_values` (``nulls``, where given: the bits ``1 << i`` of the values
        that are None, so that only the others are bound), or ``("skip", path, size,
        mtime_ns, category, reason[, status])``.
        Rows whose SOP Instance UID is new go in with a few bulk statements; the others
        (duplicates, DICOMDIRs) one by one.
        """
        with self.transaction():
            rows = [r for r in results if r[0] == "row"]
            self._put_skips([(*r[1:6], r[6] if len(r) > 6 else "skipped", None)
                             for r in results if r[0] != "row"])
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
        """Insert rows (a few bulk statements); duplicates are decided at the end of the
        scan by :meth:`resolve_duplicates`, whatever order the files came in."""
        c = self.con
        paths = [r[1] for r in rows]
        changed = []  # files indexed before: their old series and references go
        if self._rows_before:
            for path, uid, sop, conflict in self._select_in(
                    "SELECT path, series_instance_uid, sop_instance_uid, conflict FROM instances "
                    "WHERE path IN ({})", paths):
                self.affected.add(uid)
                changed.append((path,))
                if conflict:
                    self._reopen_conflict(sop, path)
        if self._skips_before:
            c.executemany("DELETE FROM skipped WHERE path=?", [(p,) for p in paths])
        refs = [r for r in rows if r[5] is not None]
        if changed or refs:
            c.executemany("DELETE FROM dicomdir_refs WHERE dicomdir=?",
                          changed + [(r[1],) for r in refs])
        if refs:
            c.executemany("INSERT INTO dicomdir_refs VALUES (?, ?, ?)",
                          [(r[1], p, uid) for r in refs for p, uid in r[5]])
        by_nulls: dict = {}  # rows by the values that are None (the same in most rows)
        for r in rows:  # a row without its None bits: every value bound
            by_nulls.setdefault(r[6] if len(r) > 6 else 0, []).append(r[4])
        for nulls, values in by_nulls.items():
            sql, keep = _insert_present(nulls, self.provisional)
            c.executemany(sql, [tuple(itertools.compress(v, keep)) for v in values])
        c.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, 'instance')",
                      [(r[1], r[2], r[3]) for r in rows])
        self.affected.update(r[4][_SERIES] for r in rows)

    def _put_skips(self, skips: list[tuple]) -> None:
        """Record skipped files, ``(path, size, mtime_ns, category, reason, status,
        sop_uid)`` each, in a few bulk statements: an instance row of the path goes (its
        series is touched), and so do the DICOMDIR references it held; ``status`` "retry"
        leaves the path out of ``files`` (the next scan reads it again)."""
        if not skips:
            return
        c = self.con
        self._skips_before = 1  # a later row of this path replaces this skip
        paths = [(s[0],) for s in skips]
        self.affected.update(u for (u,) in self._select_in(
            "SELECT series_instance_uid FROM instances WHERE path IN ({})",
            [p for (p,) in paths]))
        c.executemany("DELETE FROM instances WHERE path=?", paths)
        c.executemany("DELETE FROM dicomdir_refs WHERE dicomdir=?", paths)
        c.executemany("INSERT OR REPLACE INTO skipped VALUES (?, ?, ?, ?, ?, ?)",
                      [(p, size, mtime_ns / 1e9, category, reason, sop)
                       for p, size, mtime_ns, category, reason, _st, sop in skips])
        c.executemany("DELETE FROM files WHERE path=?",
                      [(s[0],) for s in skips if s[5] == "retry"])
        c.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)",
                      [(s[0], s[1], s[2], s[5]) for s in skips if s[5] != "retry"])

    # -- duplicates ----------------------------------------------------------------------
    def duplicates_to_read(self) -> list[tuple[str, int, int]]:
        """Skipped copies whose SOP Instance UID must be decided again: ``(path, size,
        mtime_ns)`` to read again (their twin changed, disappeared or was added)."""
        sops = self._dup_sops = self._dup_candidates()
        return [tuple(r) for r in self._select_in(
            "SELECT s.path, f.size, f.mtime_ns FROM skipped s CROSS JOIN files f "
            "ON f.path = s.path WHERE f.status = 'dup' AND s.sop_instance_uid IN ({}) "
            "ORDER BY s.path", sops)]

    def _dup_candidates(self) -> list[str]:
        sql = _DUP_CANDIDATES_FIRST_SQL if self.provisional else _DUP_CANDIDATES_SQL
        return [u for (u,) in self.con.execute(sql)]

    def forget_candidates(self) -> None:
        """Make :meth:`resolve_duplicates` look the candidates up again."""
        self._dup_sops = None

    def resolve_duplicates(self) -> None:
        """Decide every SOP Instance UID that several indexed files hold (one transaction).

        The files are taken in path order. The first keeps the instance; a later file with
        the same bytes as a kept one is skipped as a "duplicate copy" whose reason names
        that kept file; a file with other content is a *conflicting duplicate*: it stays
        indexed, with ``duplicate_of`` = the first file and ``conflict`` = 1 (so is the
        first file), and gets a series key of its own when it would join its twin (see
        :func:`dicomml.io.series.same_series`). Independent of the order in which workers
        returned the files.

        The files of every candidate UID come in one query, the decisions go in a few bulk
        statements. The contents are compared here, on one thread: two threads took longer
        (0.40 against 0.27 s for 2,000 pairs of 514 KiB files; the copies compete for the
        memory bandwidth and the CPU cache).
        """
        c = self.con
        with self.transaction():
            sops = self._dup_sops
            if sops is None:
                sops = self._dup_candidates()
            self._dup_sops = None
            members = self._select_in(
                "SELECT i.sop_instance_uid, i.path, i.series_instance_uid, f.size, "
                "f.mtime_ns FROM instances i JOIN files f ON f.path = i.path "
                "WHERE i.sop_instance_uid IN ({}) ORDER BY i.sop_instance_uid, i.path", sops)
            groups = [list(g) for _sop, g in itertools.groupby(members, key=lambda m: m[0])]
            skips, updates = [], []
            for group in groups:
                kept, copies = _decide_copies(group)
                self.affected.update(m[2] for m in group if m[1] in kept)
                for (sop, path, _uid, size, mtime_ns), twin in copies:
                    skips.append((path, size, mtime_ns, DUP_COPY,
                                  f"{DUP_COPY} of {twin} (same SOP Instance UID, identical "
                                  "bytes)", "dup", sop))
                conflict = 1 if len(kept) > 1 else None
                updates += [(None if p == kept[0] else kept[0], conflict, p) for p in kept]
            self._put_skips(skips)
            c.executemany("UPDATE instances SET duplicate_of = ?, conflict = ?, "
                          "series_key = NULL WHERE path = ?", updates)

    def conflicts(self) -> list[tuple[str, str]]:
        """Conflicting duplicates: ``(path, duplicate_of)`` ordered by path."""
        return self.con.execute("SELECT path, duplicate_of FROM instances WHERE duplicate_of "
                                "IS NOT NULL ORDER BY path").fetchall()

    # -- series keys ---------------------------------------------------------------------
    def update_series_keys(self) -> None:
        """Recompute the series keys of every Series Instance UID touched by this scan,
        and of any row left without a key by an interrupted scan; then the series table
        (``series_summary``) and the secondary indexes of the queries
        (:meth:`ensure_indexes`).

        The keys are one transaction. Where the series table is built whole (a first
        scan), its SELECT runs on a second, read-only connection in a thread while this
        one builds the indexes (SQLite releases the GIL in both: two cores busy instead of
        one); the rows are then inserted, and the scan marked finished, in one more
        transaction. Until then the ``meta`` row :data:`PROVISIONAL` stays, so a crash in
        between only means the next scan decides the keys again.
        """
        c = self.con
        uids = set(self.affected)
        uids.update(u for (u,) in c.execute(
            "SELECT DISTINCT series_instance_uid FROM instances WHERE series_key IS NULL"))
        with self.transaction():
            self._write_keys(uids)
        rows = None
        if has_same_column(self.con):  # rows of the touched series replaced below
            self.ensure_indexes()
        else:
            with ThreadPoolExecutor(1, thread_name_prefix="dicomml-series") as pool:
                try:
                    job = pool.submit(_read_only_rows, self.db_path,
                                      (series_sql(), varying_sql()))
                except RuntimeError:  # no thread now (a resource limit, interpreter exit)
                    job = None
                self.ensure_indexes()  # meanwhile: the indexes of the queries
                try:
                    rows = job.result() if job is not None else None
                except sqlite3.Error:  # unreadable from a second connection
                    rows = None
        with self.transaction():
            self._refresh_series(uids, rows)
            c.execute("INSERT OR REPLACE INTO meta VALUES ('last_scan', ?)",
                      (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),))
            c.execute("DELETE FROM meta WHERE key = ?", (PROVISIONAL,))
        self.affected.clear()
        self.provisional = False  # what is written from now on is decided by the next scan

    def _write_keys(self, uids: set) -> None:
        """The series keys of the Series Instance UIDs ``uids`` (in the caller's
        transaction)."""
        c = self.con
        # Fast path, in SQL, for all the series at once: a series whose images all share
        # study, size and the exact same orientation text is one group, so every image
        # keeps the plain key (the rule of series_keys); only series that may split are
        # grouped in Python.
        slow = [None] if None in uids else []
        c.execute("DROP TABLE IF EXISTS temp.key_uids")
        c.execute("CREATE TEMP TABLE key_uids (uid TEXT PRIMARY KEY)")
        c.executemany("INSERT OR IGNORE INTO temp.key_uids VALUES (?)",
                      [(u,) for u in uids if u is not None])
        split = [u for (u,) in c.execute(f"SELECT uid FROM temp.key_uids WHERE {_SPLITS_SQL}")]
        c.executemany("DELETE FROM temp.key_uids WHERE uid = ?", [(u,) for u in split])
        c.execute(_ONE_GROUP_SQL)
        c.execute("DROP TABLE temp.key_uids")
        slow += sorted(split)
        sel = f"SELECT {', '.join(_SPLIT_COLS)} FROM instances WHERE "
        for uid in slow:
            if uid is None:
                cur = c.execute(sel + "series_instance_uid IS NULL")
            else:
                cur = c.execute(sel + "series_instance_uid = ?", (uid,))
            rows = [dict(zip(_SPLIT_COLS, rec)) for rec in cur.fetchall()]
            conflicts: dict[str, list[str]] = {}
            for d in rows:
                for col in ("image_orientation", "pixel_spacing"):
                    d[col] = decode_array(d[col])
                if d["duplicate_of"] is not None:
                    conflicts.setdefault(d["sop_instance_uid"], []).append(d["path"])
            rank = {p: i + 1 for paths in conflicts.values()
                    for i, p in enumerate(sorted(paths))}
            for d in rows:
                d["duplicate_rank"] = rank.get(d["path"], 0)
            keys = series_keys(rows)
            c.executemany("UPDATE instances SET series_key=? WHERE path=?",
                          [(k, p) for p, k in keys.items()])

    def _refresh_series(self, uids: set, rows: list[list[tuple]] | None = None) -> None:
        """Recompute the rows of ``series_summary`` (:meth:`dicomml.io.index.Index.series`
        and :data:`~dicomml.io.index.SAME_COLUMN`) of the Series Instance UIDs ``uids``, in
        the caller's transaction; build the whole table when it does not exist yet (a first
        scan, an Index written before it or before SAME_COLUMN), from ``rows`` when given
        (the results of :func:`~dicomml.io.index.series_sql` and
        :func:`~dicomml.io.index.varying_sql`, read beforehand) or by those SELECTs."""
        c = self.con
        if not has_same_column(self.con):
            c.execute("DROP TABLE IF EXISTS series_summary")  # absent, or of an earlier version
            summary, varying = rows or (c.execute(series_sql()).fetchall(),
                                        c.execute(varying_sql()).fetchall())
            c.execute(f"CREATE TABLE series_summary AS SELECT *, {SAME_ALL} AS {SAME_COLUMN} "
                      f"FROM ({series_sql()}) LIMIT 0")
            if summary:
                bits = same_bits(varying)
                c.executemany(f"INSERT INTO series_summary VALUES "
                              f"({', '.join('?' * (len(summary[0]) + 1))})",
                              [(*r, bits.get(r[0], SAME_ALL)) for r in summary])
            c.execute("CREATE INDEX series_summary_uid ON series_summary(series_instance_uid)")
            c.execute("CREATE INDEX series_summary_key ON series_summary(series_key)")
            return
        if not uids:
            return
        c.execute("DROP TABLE IF EXISTS temp.affected")
        c.execute("CREATE TEMP TABLE affected (uid TEXT PRIMARY KEY)")
        c.executemany("INSERT OR IGNORE INTO affected VALUES (?)",
                      [(u,) for u in uids if u is not None])
        cond = ("(series_instance_uid IN (SELECT uid FROM temp.affected)"
                + (" OR series_instance_uid IS NULL)" if None in uids else ")"))
        c.execute(f"DELETE FROM series_summary WHERE {cond}")
        keys = f"series_key IN (SELECT series_key FROM instances WHERE {cond})"
        c.execute(f"INSERT INTO series_summary SELECT *, {SAME_ALL} FROM "
                  f"({series_sql(keys, cond)})")
        c.executemany(f"UPDATE series_summary SET {SAME_COLUMN} = ? WHERE series_key = ?",
                      [(b, k) for k, b in same_bits(c.execute(varying_sql(keys))).items()])
        c.execute("DROP TABLE temp.affected")

    def current_skipped(self) -> list[tuple[str, str]]:
        return self.con.execute("SELECT path, reason FROM skipped ORDER BY path").fetchall()


def _read_only_rows(db_path: str, queries: tuple[str, ...]) -> list[list[tuple]]:
    """The rows of each SELECT of ``queries``, read in turn through one read-only
    connection of its own (run in a thread while the writer's connection builds indexes:
    two threads busy on two cores; a thread per query made three, which took longer)."""
    con = connect_read_only(db_path)
    try:
        return [con.execute(sql).fetchall() for sql in queries]
    finally:
        con.close()


def _decide_copies(group: list[tuple]) -> tuple[list[str], list[tuple[tuple, str]]]:
    """The files of one SOP Instance UID (rows ``(sop, path, series uid, size, mtime_ns)``
    in path order) → (the kept paths, ``(row, kept twin)`` of each byte-identical copy)."""
    kept: list[str] = []
    copies = []
    for row in group:
        path = row[1]
        twin = next((k for k in kept if _same_bytes(k, path)), None)
        if twin is None:
            kept.append(path)
        else:
            copies.append((row, twin))
    return kept, copies


#: Bytes of each block :func:`_same_bytes` reads; two such buffers per thread. 256 KiB:
#: both blocks stay in the CPU cache while they are compared (a pair of 514 KiB files:
#: 107 µs with blocks of 256 KiB, 163 µs with blocks of 1 MiB; reading both whole, 79 µs).
_BLOCK = 1 << 18
_buffers = threading.local()


def _fill(f, view: memoryview) -> int:
    """Read ``f`` into ``view`` until it is full or the file ends; the bytes read."""
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def _same_bytes(a: str, b: str) -> bool:
    """True when two files have the same content (an unreadable one differs).

    The sizes first, then blocks of :data:`_BLOCK` bytes read into two buffers kept per
    thread and compared (a partial last block as 8-byte words with numpy, its tail byte
    by byte): no 8 KiB Python loop (``filecmp``: 280 µs per pair of 514 KiB files, 107 µs
    here) and no fresh pages per file (``a.read() == b.read()``: 495 µs)."""
    try:
        with open(a, "rb", buffering=0) as fa, open(b, "rb", buffering=0) as fb:
            if os.fstat(fa.fileno()).st_size != os.fstat(fb.fileno()).st_size:
                return False
            bufs = getattr(_buffers, "pair", None)
            if bufs is None:
                bufs = _buffers.pair = (bytearray(_BLOCK), bytearray(_BLOCK))
            x, y = bufs
            vx, vy = memoryview(x), memoryview(y)
            while True:
                n = _fill(fa, vx)
                if n != _fill(fb, vy):
                    return False  # the file changed size while it was read
                if n == _BLOCK:
                    if x != y:
                        return False
                    continue
                k = n // 8
                return bool(np.array_equal(np.frombuffer(x, np.uint64, k),
                                           np.frombuffer(y, np.uint64, k))) \
                    and vx[8 * k:n] == vy[8 * k:n]
    except OSError:
        return False
