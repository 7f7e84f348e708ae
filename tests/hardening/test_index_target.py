"""``--db`` never destroys a database that is not this folder's Index (issue 14, item 10)."""

from __future__ import annotations

import sqlite3

import pytest

from dicomml.errors import ConfigError
from dicomml.io import scan
from tests.hardening._export import write_export


def _app_db(path):
    con = sqlite3.connect(path)
    con.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
                      "INSERT INTO meta VALUES ('owner', 'billing');"
                      "CREATE TABLE invoices (id INTEGER, total REAL);"
                      "INSERT INTO invoices VALUES (1, 9.5);")
    con.commit()
    con.close()


def _dump(path) -> list:
    con = sqlite3.connect(path)
    try:
        return list(con.iterdump())
    finally:
        con.close()


def test_a_foreign_sqlite_file_is_refused_untouched(tmp_path, capsys):
    from dicomml.cli import main

    src = tmp_path / "src"
    write_export(src, 3)
    db = tmp_path / "app.db"
    _app_db(db)
    before = _dump(db)
    with pytest.raises(ConfigError, match="not a dicomml Index"):
        scan(src, db, progress=False, workers=0)
    assert main(["scan", str(src), "--db", str(db), "--workers", "0", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a dicomml Index" in err[0] and "invoices" in err[0]
    assert _dump(db) == before  # nothing dropped, nothing added
    junk = tmp_path / "notes.db"
    junk.write_bytes(b"not a database at all" * 50)
    with pytest.raises(ConfigError, match="not an SQLite database"):
        scan(src, junk, progress=False, workers=0)
    assert junk.read_bytes() == b"not a database at all" * 50


def test_an_index_remembers_its_root(tmp_path, capsys):
    from dicomml.cli import main

    a, b = tmp_path / "a", tmp_path / "b"
    write_export(a, 4)
    write_export(b, 2)
    db = tmp_path / "i.sqlite"
    assert scan(a, db, progress=False, workers=0).summary["instances"] == 4
    assert scan(a, db, progress=False, workers=0).files_read == 0  # same root: a rescan
    with pytest.raises(ConfigError, match="is the Index of"):
        scan(b, db, progress=False, workers=0)
    assert scan(a, db, progress=False, workers=0).summary["instances"] == 4  # intact
    assert main(["scan", str(b), "--db", str(db), "--workers", "0", "--no-progress"]) == 2
    assert "--replace" in capsys.readouterr().err
    assert main(["scan", str(b), "--db", str(db), "--workers", "0", "--no-progress",
                 "--replace"]) == 0
    assert scan(b, db, progress=False, workers=0).summary["instances"] == 2
