"""Checks before an Index file is opened for writing: the right database, the right root.

``dicomml scan DIR --db FILE`` writes into FILE. Two mistakes must not cost data:

* FILE is an SQLite database that is not a dicomml Index (an application's database: it may
  have a ``meta`` table of its own): it is refused untouched, never emptied;
* FILE is the Index of another folder: scanning DIR into it would silently replace that
  scan ("283 removed"); it is refused unless the caller asks to replace it.

:func:`check_index_target` is called by :func:`dicomml.io.scan` before the Index is opened.
"""

from __future__ import annotations

import os
import sqlite3

from dicomml.errors import ConfigError
from dicomml.io.index import connect_read_only

__all__ = ["check_index_target", "INDEX_TABLES"]

#: Tables every dicomml Index has (with ``meta`` holding ``schema_version``).
INDEX_TABLES = frozenset({"meta", "files", "instances", "skipped"})


def _tables(db_path: str) -> tuple[set[str], dict[str, str]] | None:
    """Table names and the ``meta`` key/values, or None when it is not an SQLite file."""
    try:
        con = connect_read_only(db_path)
    except sqlite3.Error:
        return None
    try:
        names = {n for (n,) in con.execute(
            "SELECT name FROM sqlite_master WHERE type='table'").fetchall()}
        meta = {}
        if "meta" in names:
            try:
                meta = {str(k): str(v) for k, v in con.execute("SELECT key, value FROM meta")}
            except sqlite3.Error:
                meta = {}
        return names, meta
    except sqlite3.DatabaseError:
        return None
    finally:
        con.close()


def check_index_target(db_path: str | os.PathLike, root: str, *, replace: bool = False) -> None:
    """Refuse to write the Index of ``root`` into ``db_path`` when that would destroy data.

    An absent or empty file, or a dicomml Index of the same ``root``, passes; so does the
    Index of another root when ``replace`` is true (its content is then replaced).

    Raises
    ------
    ConfigError
        ``db_path`` is not an SQLite database, is an SQLite database but not a dicomml Index
        (it is left untouched), or is the Index of another folder (without ``replace``).
    """
    db_path = os.fspath(db_path)
    if not os.path.isfile(db_path) or os.path.getsize(db_path) == 0:
        return
    found = _tables(db_path)
    if found is None:
        raise ConfigError(f"{db_path} is not an SQLite database, so not a dicomml Index; it was "
                          "left untouched. Pass --db with the Index file or a new file name.")
    names, meta = found
    if not names:
        return
    if not (INDEX_TABLES <= names and "schema_version" in meta):
        shown = ", ".join(sorted(names)[:8]) + (", ..." if len(names) > 8 else "")
        raise ConfigError(f"{db_path} is an SQLite database but not a dicomml Index (its "
                          f"tables: {shown}); it was left untouched. Pass --db with the "
                          "Index file or a new file name.")
    old_root = meta.get("root")
    if old_root and os.path.abspath(old_root) != os.path.abspath(root) and not replace:
        raise ConfigError(f"{db_path} is the Index of {old_root}; scanning {root} into it would "
                          "replace that scan. Use another --db for this folder, or pass "
                          "--replace to replace it.")
