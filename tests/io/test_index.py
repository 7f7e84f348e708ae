"""Index: the SQLite file read back as DataFrames, helpers, default location, errors."""

from __future__ import annotations

import json
import os
import sqlite3
import warnings
from pathlib import Path

import pydicom
import pytest

from dicomml.errors import ConfigError
from dicomml.io import Index, default_db_path, open_index, scan
from dicomml.io.index import ARRAY_COLUMNS, INSTANCE_COLUMNS, decode_array, encode_array
from dicomml.testing import write_ct_series


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    root = tmp_path_factory.mktemp("idx")
    paths = write_ct_series(root / "ct", n_slices=4, rows=16, columns=16, seed=11)
    db = root.parent / (root.name + ".sqlite")
    scan(root, db, workers=0, progress=False)
    return root, db, [str(p) for p in paths]


def test_instances_frame(scanned):
    root, db, paths = scanned
    with Index(db) as idx:
        df = idx.instances()
        raw = idx.instances(decode=False)
    assert list(df.columns) == list(INSTANCE_COLUMNS)
    assert sorted(df["path"]) == sorted(paths)
    for _, row in df.iterrows():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(row["path"], stop_before_pixels=True)
        assert row["image_orientation"] == tuple(float(v) for v in ds.ImageOrientationPatient)
        assert row["window_center"] == tuple(float(v) for v in (
            ds.WindowCenter if isinstance(ds.WindowCenter, pydicom.multival.MultiValue)
            else [ds.WindowCenter]))
        assert row["rows"] == ds.Rows and row["bits_stored"] == ds.BitsStored
    # JSON arrays in TEXT columns
    for col in ARRAY_COLUMNS:
        v = raw[col].dropna()
        assert all(isinstance(json.loads(t), list) for t in v)
    con = sqlite3.connect(db)
    typ = con.execute("SELECT typeof(image_position), typeof(rows), typeof(rescale_slope) "
                      "FROM instances LIMIT 1").fetchone()
    con.close()
    assert typ == ("text", "integer", "real")


def test_series_studies_summary_files(scanned):
    _root, db, paths = scanned
    with Index(db) as idx:
        series = idx.series()
        assert len(series) == 1
        key = series["series_key"].iloc[0]
        assert series["n_instances"].iloc[0] == 4 and bool(series["is_image"].iloc[0])
        files = idx.series_files(key)
        # ordered by (0020,0013) Instance Number
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            numbers = [int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber)
                       for p in files]
        assert numbers == sorted(numbers) and sorted(files) == sorted(paths)
        studies = idx.studies()
        assert list(studies["n_instances"]) == [4]
        assert "patient_id" not in studies.columns
        s = idx.summary()
        assert (s["patients"], s["studies"], s["series"], s["instances"]) == (1, 1, 1, 4)
        assert s["series_by_modality"] == {"CT": 1}
        assert idx.skipped().empty
        with pytest.raises(ConfigError, match="no series"):
            idx.series_files("1.2.nope")
        assert idx.instance(paths[0])["path"] == paths[0]
        assert idx.instance("/nope") is None


def test_array_helpers():
    assert decode_array(encode_array((1, 2.5))) == (1.0, 2.5)
    assert encode_array(None) is None and decode_array(None) is None
    v = 0.1 + 0.2  # float text round-trips exactly
    assert decode_array(encode_array([v]))[0] == v
    # the text is json.dumps's (the Index compares it as text), NaN and infinities included
    import json

    import numpy as np

    rng = np.random.default_rng(7)
    cases = [(), (1,), (5e-324, -0.0, 1e300), (float("nan"), 2.0), (float("-inf"),),
             np.float32([1.5, 0.1, -3e-17]), [np.float64(0.3), True],
             *(rng.uniform(-1e3, 1e3, rng.integers(0, 7)) * 10.0 ** rng.integers(-9, 9)
               for _ in range(2000))]
    for c in cases:
        assert encode_array(c) == json.dumps([float(x) for x in c])


def test_default_db_path(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c"))
    p = default_db_path(tmp_path / "data")
    assert p.parent == tmp_path / "c" / "dicomml"
    assert p.name.startswith("index-") and p.suffix == ".sqlite"
    assert default_db_path(str(tmp_path / "data") + "/") == p  # same folder, same file
    assert default_db_path(tmp_path / "other") != p
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_db_path("x").parent == Path(os.path.expanduser("~")) / ".cache" / "dicomml"


def test_open_index(scanned, monkeypatch, tmp_path):
    _root, db, _ = scanned
    with open_index(db) as idx:
        assert idx.summary()["instances"] == 4
    with open_index(db=db) as idx:
        assert len(idx.instances()) == 4
    with pytest.raises(ConfigError, match="no Index"):
        open_index(tmp_path / "missing.sqlite")
    bad = tmp_path / "bad.sqlite"
    bad.write_text("not sqlite" * 100)
    with pytest.raises(ConfigError):
        Index(bad)
    with pytest.raises(ConfigError):
        open_index()


def test_index_readable_while_scanning_db_in_wal_mode(scanned):
    _root, db, _ = scanned
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def _reference_frame(con, sql: str):
    """What Index.instances() returned before it built its frame column by column:
    pd.read_sql_query, then each JSON array decoded with json.loads, the integer columns
    cast to Int64 and is_image / conflict to bool (NULL False)."""
    import pandas as pd

    from dicomml.io.index import INT_COLUMNS

    df = pd.read_sql_query(sql, con)
    for col in ARRAY_COLUMNS:
        df[col] = df[col].map(
            lambda t: tuple(float(v) for v in json.loads(t)) if isinstance(t, str) else None)
    for col in INT_COLUMNS:
        df[col] = df[col].astype("Int64")
    for col in ("is_image", "conflict"):
        df[col] = df[col].fillna(0).astype(bool)
    return df


@pytest.fixture(scope="module")
def sample_index(tmp_path_factory):
    """The Index of sample_dicom/ (CT, MR, SR, DICOMDIR...: columns with and without NULLs)."""
    db = tmp_path_factory.mktemp("sample") / "index.sqlite"
    root = Path(__file__).resolve().parents[2] / "sample_dicom"
    scan(root, db, workers=0, progress=False)
    return db


@pytest.mark.parametrize("select", [{}, {"modality": "CT"}, {"modality": "NOPE"}])
def test_instances_frame_equals_read_sql_query(sample_index, select):
    """The column-wise frame equals the read_sql_query one: values, dtypes, order."""
    import pandas as pd

    from dicomml.io.index import select_where

    where, params = select_where(**select)
    with Index(sample_index) as idx:
        df = idx.instances(**select)
    con = sqlite3.connect(sample_index)
    try:
        sql = (f"SELECT * FROM instances WHERE {where} "
               "ORDER BY series_key, instance_number, path")
        ref = _reference_frame(con, sql.replace("?", "'" + "','".join(params) + "'")
                               if params else sql)
        n_null = con.execute("SELECT COUNT(*) FROM instances WHERE window_center IS NULL"
                             ).fetchone()[0]
    finally:
        con.close()
    if not select:  # the fixture exercises NULLs as well as values
        assert 0 < n_null < len(df) and len(df) > 100
    assert list(df.columns) == list(INSTANCE_COLUMNS)
    pd.testing.assert_frame_equal(df, ref, check_exact=True)
    assert (df.dtypes == ref.dtypes).all()
