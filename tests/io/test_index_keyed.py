"""Index.instances() reads the columns that are the same in every instance of a series key
once per key (``series_summary``'s SAME_COLUMN): the frame must be the one read row by row,
whatever varies within a key, whatever the selection, and after every re-scan.

The reference is independent of both paths: ``pd.read_sql_query`` of the instances table,
then the documented conversions (``_reference_frame`` of test_index.py)."""

from __future__ import annotations

import shutil
import sqlite3

import pandas as pd
import pydicom
import pytest

from dicomml.io import Index, index as index_module, scan
from dicomml.io.index import INSTANCE_COLUMNS, KEY_VALUE_COLUMNS, PROVISIONAL, SAME_COLUMN, \
    select_where
from dicomml.testing import write_ct_series
from tests.io.test_index import _reference_frame
from tests.io.test_index_scale import _same_bits_now
from tests.io.test_volume import _rewrite  # set or delete (None) attributes of a file

ORDER = "ORDER BY series_key, instance_number, path"


def _tree(root):
    """Three CT series: one constant in every key column; one whose windows differ from
    slice to slice; one where half the slices lack (0018,0015) Body Part Examined and one
    slice has another Series Description (the same key: the description does not split)."""
    write_ct_series(root / "a", n_slices=5, rows=8, columns=8, seed=1, series_number=1)
    b = sorted(write_ct_series(root / "b", n_slices=6, rows=8, columns=8, seed=2,
                               series_number=2))
    for i, p in enumerate(b):
        _rewrite(p, WindowCenter=str(40 + i), WindowWidth="400")
    c = sorted(write_ct_series(root / "c", n_slices=6, rows=8, columns=8, seed=3,
                               series_number=3))
    for i, p in enumerate(c):
        _rewrite(p, BodyPartExamined="HEAD" if i % 2 else None)
    _rewrite(c[0], SeriesDescription="another")
    return b, c


def _reference(db, **select):
    where, params = select_where(**select)
    for value in params:  # literal values: _reference_frame takes no parameters
        where = where.replace("?", "'" + value.replace("'", "''") + "'", 1)
    con = sqlite3.connect(db)
    try:
        return _reference_frame(con, f"SELECT * FROM instances WHERE {where} {ORDER}")
    finally:
        con.close()


@pytest.fixture
def counted(monkeypatch):
    """How often Index.instances() fell back to reading every value."""
    calls = []
    plain = index_module._decoded_frame
    monkeypatch.setattr(index_module, "_decoded_frame",
                        lambda cur: calls.append(1) or plain(cur))
    return calls


def _same_bits(db) -> dict[str, set[str]]:
    con = sqlite3.connect(db)
    try:
        rows = con.execute(f"SELECT series_key, {SAME_COLUMN} FROM series_summary").fetchall()
    finally:
        con.close()
    return {k: {c for j, c in enumerate(KEY_VALUE_COLUMNS) if bits >> j & 1}
            for k, bits in rows}


@pytest.mark.parametrize("select", [{}, {"modality": "CT"}, {"modality": "MR"},
                                    {"study_date": ("19000101", "29991231")}])
def test_keyed_frame_equals_the_rows(tmp_path, counted, select):
    _tree(tmp_path / "tree")
    db = tmp_path / "index.sqlite"
    scan(tmp_path / "tree", db, workers=0, progress=False)
    bits = _same_bits(db)
    assert len(bits) == 3
    varying = [set(KEY_VALUE_COLUMNS) - same for same in bits.values()]
    # the tree does what the test needs: windows vary in one key, the body part and the
    # description in another, nothing in the third
    assert sorted(map(sorted, varying)) == [
        [], ["body_part_examined", "series_description"], ["window_center"]]
    with Index(db) as idx:
        got = idx.instances(**select)
        assert counted == ([1] if select.get("modality") == "MR" else [])  # none selected
        # three of four columns vary: by key would read about as much, so row by row
        narrow = idx.instances(columns=["window_center", "path", "modality",
                                        "body_part_examined"], **select)
        mr = select.get("modality") == "MR"
        assert len(counted) == 1 + mr
        # one of eleven varies (the path), in the order given: by key
        few = idx.instances(columns=[
            "modality", "study_instance_uid", "series_instance_uid", "path", "rows",
            "sop_class_uid", "columns", "bits_stored", "photometric_interpretation",
            "pixel_spacing", "image_orientation"], **select)
        assert len(counted) == 1 + 2 * mr
    ref = _reference(db, **select)
    assert list(got.columns) == list(INSTANCE_COLUMNS)
    pd.testing.assert_frame_equal(got, ref, check_exact=True)
    for part in (narrow, few):
        pd.testing.assert_frame_equal(part, ref[list(part.columns)], check_exact=True)


def test_keyed_frame_follows_a_rescan(tmp_path, counted):
    """A column the same in every instance of a key stops being so (an edited file, a new
    file), and becomes so again (the odd file removed): each re-scan rewrites the bits."""
    b, c = _tree(tmp_path / "tree")
    db = tmp_path / "index.sqlite"
    scan(tmp_path / "tree", db, workers=0, progress=False)
    a = sorted((tmp_path / "tree" / "a").iterdir())
    _rewrite(a[2], RescaleIntercept="-1000")
    scan(tmp_path / "tree", db, workers=0, progress=False)
    with Index(db) as idx:
        pd.testing.assert_frame_equal(idx.instances(), _reference(db), check_exact=True)
    _bits_are_live(db)
    key_a = pydicom.dcmread(a[0]).SeriesInstanceUID
    assert "rescale_intercept" not in _same_bits(db)[key_a]
    a[2].unlink()
    c[0].unlink()
    scan(tmp_path / "tree", db, workers=0, progress=False)
    bits = _same_bits(db)
    assert "rescale_intercept" in bits[key_a]
    assert "series_description" in bits[pydicom.dcmread(c[1]).SeriesInstanceUID]
    _bits_are_live(db)
    with Index(db) as idx:
        pd.testing.assert_frame_equal(idx.instances(), _reference(db), check_exact=True)
    assert counted == []


def _bits_are_live(db):
    con = sqlite3.connect(db)
    try:
        now = _same_bits_now(con)
    finally:
        con.close()
    assert {k: {c for j, c in enumerate(KEY_VALUE_COLUMNS) if bits >> j & 1}
            for k, bits in now.items()} == _same_bits(db)


def test_rows_the_keys_do_not_describe_are_read_row_by_row(tmp_path, counted):
    """A row without a key (written by a scan that has not finished), a key without a
    series_summary row, a first scan in progress: every value is read from the rows."""
    _tree(tmp_path / "tree")
    db = tmp_path / "index.sqlite"
    scan(tmp_path / "tree", db, workers=0, progress=False)
    cases = {
        "no key": "UPDATE instances SET series_key = NULL WHERE rowid = 3",
        "no summary row": "DELETE FROM series_summary WHERE rowid = 1",
        "provisional": f"INSERT INTO meta VALUES ('{PROVISIONAL}', '1')",
        "bits of other columns": "ALTER TABLE series_summary DROP COLUMN " + SAME_COLUMN,
    }
    for name, sql in cases.items():
        copy = tmp_path / f"{name}.sqlite"
        shutil.copy(db, copy)
        con = sqlite3.connect(copy)
        con.execute(sql)
        con.commit()
        con.close()
        counted.clear()
        with Index(copy) as idx:
            got = idx.instances()
        pd.testing.assert_frame_equal(got, _reference(copy), check_exact=True)
        assert counted == [1], name


def test_a_summary_of_an_earlier_version_is_rebuilt(tmp_path, counted):
    """A scan of an Index whose series_summary lacks SAME_COLUMN (written by an earlier
    version) builds the table again, whole; the frames then read by key."""
    _tree(tmp_path / "tree")
    db = tmp_path / "index.sqlite"
    scan(tmp_path / "tree", db, workers=0, progress=False)
    con = sqlite3.connect(db)
    con.execute("ALTER TABLE series_summary DROP COLUMN " + SAME_COLUMN)
    con.commit()
    con.close()
    with Index(db) as idx:
        before = idx.series()
    scan(tmp_path / "tree", db, workers=0, progress=False)
    assert len(_same_bits(db)) == 3
    counted.clear()
    with Index(db) as idx:
        pd.testing.assert_frame_equal(idx.series(), before, check_exact=True)
        pd.testing.assert_frame_equal(idx.instances(), _reference(db), check_exact=True)
    assert counted == []


def test_keys_of_one_instance_are_read_row_by_row(tmp_path, counted):
    """Radiographs: each key holds one instance, so reading by key would read every value
    and a query more; the rows are read as they are (the same frame)."""
    for i in range(6):
        write_ct_series(tmp_path / "tree" / f"s{i}", n_slices=1, rows=8, columns=8,
                        seed=20 + i, series_number=i + 1)
    db = tmp_path / "index.sqlite"
    scan(tmp_path / "tree", db, workers=0, progress=False)
    assert len(_same_bits(db)) == 6
    with Index(db) as idx:
        got = idx.instances()
    assert counted == [1]
    pd.testing.assert_frame_equal(got, _reference(db), check_exact=True)
