"""An Index of an older schema is refused with a clear message and rebuilt by the next scan."""

from __future__ import annotations

import sqlite3

import pytest

from dicomml.errors import ConfigError
from dicomml.io import scan
from dicomml.io.index import SCHEMA_VERSION, Index
from dicomml.testing import write_ct_series


def test_old_schema_is_rescanned(tmp_path):
    write_ct_series(tmp_path / "s", seed=8, n_slices=3, rows=16, columns=16, noise=0.0)
    db = tmp_path / "i.sqlite"
    scan(tmp_path / "s", db, workers=0, progress=False)
    con = sqlite3.connect(db)
    with con:  # an Index written before the split columns: schema 1, no echo column
        con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
        con.execute("ALTER TABLE instances DROP COLUMN echo_time")
    con.close()
    with pytest.raises(ConfigError, match=f"schema 1, expected {SCHEMA_VERSION}: scan the "
                                          "folder again"):
        Index(db)
    r = scan(tmp_path / "s", db, workers=0, progress=False)
    assert r.files_read == 3 and r.files_unchanged == 0  # every file read again
    with Index(db) as idx:
        assert idx.meta()["schema_version"] == str(SCHEMA_VERSION)
        assert "echo_time" in idx.instances().columns and len(idx.series()) == 1
