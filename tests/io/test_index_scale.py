"""The Index at scale, on small trees: the walk kept in SQLite, the selections and counts
answered from SQL indexes, results equal to a pandas reference over the whole table."""

from __future__ import annotations

import os
import sqlite3

import pandas as pd
import pytest

from dicomml.errors import ConfigError
from dicomml.io import Index, scan
from dicomml.io.index import INSTANCE_COLUMNS, select_where, series_sql
from dicomml.testing import write_ct_series, write_mr_series
from dicomml.io.scanner import scan_chunk as _SCAN_CHUNK
from tests.io.mixed_export import write_mixed_export

MR_CLASS = "1.2.840.10008.5.1.4.1.1.4"


def _plain(df: pd.DataFrame) -> pd.DataFrame:
    """Objects with None for every missing value (an all-NULL column of a subset reads back
    as None where the whole table's reads as NaN)."""
    df = df.astype(object)
    return df.where(df.notna(), None)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    return root, write_mixed_export(root)


def test_selections_equal_a_pandas_filter_of_every_instance(tree):
    _root, db = tree
    with Index(db) as idx:
        every = idx.instances()
        dates = sorted(every["study_date"].dropna().unique())
        assert len(dates) >= 2, "the generated studies should have different dates"
        ct0 = min(every.loc[every["modality"] == "CT", "study_date"])
        cases = [({"modality": "MR"}, every["modality"] == "MR"),
                 ({"modality": ["CT", "MR"]}, every["modality"].isin(["CT", "MR"])),
                 ({"sop_class_uid": MR_CLASS}, every["sop_class_uid"] == MR_CLASS),
                 ({"study_date": dates[0]}, every["study_date"] == dates[0]),
                 ({"study_date": (dates[1], None)}, every["study_date"] >= dates[1]),
                 ({"study_date": (None, ct0), "modality": "CT"},
                  (every["study_date"] <= ct0) & (every["modality"] == "CT"))]
        for filters, mask in cases:
            got = idx.instances(**filters)
            want = every[mask.fillna(False).astype(bool)].reset_index(drop=True)
            assert len(want) > 0, filters
            pd.testing.assert_frame_equal(_plain(got), _plain(want))
            keys = set(want["series_key"])
            series = idx.series(**filters)
            assert set(series["series_key"]) == keys, filters
            full = idx.series().set_index("series_key").loc[sorted(keys)]
            pd.testing.assert_frame_equal(
                _plain(series.set_index("series_key").loc[sorted(keys)]), _plain(full))
            studies = idx.studies(**filters)
            assert set(studies["study_instance_uid"]) == set(want["study_instance_uid"])
            whole = idx.studies().set_index("study_instance_uid")
            assert (studies.set_index("study_instance_uid")["n_instances"]
                    == whole.loc[studies["study_instance_uid"], "n_instances"]).all()


def test_summary_equals_counts_over_the_instances_frame(tree):
    _root, db = tree
    with Index(db) as idx:
        s = idx.summary()
        df = idx.instances()
    images = df[df["is_image"]]
    assert s["patients"] == df["patient_id"].nunique()
    assert s["studies"] == df["study_instance_uid"].nunique()
    assert s["instances"] == len(df)
    assert s["images"] == len(images)
    assert s["series"] == images["series_key"].nunique()
    assert s["series_by_modality"] == {m: g["series_key"].nunique()
                                       for m, g in sorted(images.groupby("modality"))}
    kinds = df[~df["is_image"]]["object_kind"].value_counts().sort_index().to_dict()
    assert s["non_image_by_kind"] == kinds
    assert s["skipped"] == 1 and sum(s["skipped_by_reason"].values()) == 1, s


@pytest.mark.parametrize("sql, params, index", [
    ("SELECT * FROM instances WHERE {w}", {"modality": "MR"}, "instances_modality"),
    ("SELECT * FROM instances WHERE {w}", {"sop_class_uid": MR_CLASS}, "instances_sop_class"),
    ("SELECT * FROM instances WHERE {w}", {"study_date": ("20000101", "20000131")},
     "instances_study_date"),
    ("SELECT COUNT(DISTINCT study_instance_uid) FROM instances", {}, "instances_study"),
    ("SELECT COUNT(DISTINCT patient_id) FROM instances", {}, "instances_patient"),
    ("SELECT COUNT(*), COUNT(DISTINCT series_key) FROM instances WHERE is_image = 1", {},
     "instances_image"),
])
def test_queries_of_a_notebook_read_an_index_not_the_table(tree, sql, params, index):
    _root, db = tree
    where, values = select_where(**params)
    con = sqlite3.connect(db)
    try:
        plan = " ".join(r[-1] for r in con.execute("EXPLAIN QUERY PLAN " + sql.format(w=where),
                                                   values))
    finally:
        con.close()
    assert index in plan, plan


@pytest.mark.parametrize("bad", [{"study_date": "2000-01-01"}, {"study_date": ("2000",)},
                                 {"study_date": (20000101, None)}, {"modality": 3},
                                 {"sop_class_uid": []}])
def test_bad_selection_is_a_config_error(tree, bad):
    _root, db = tree
    with Index(db) as idx, pytest.raises(ConfigError, match="Received"):
        idx.instances(**bad)


def _same_bits_now(con) -> dict[str, int]:
    """SAME_COLUMN of every key, from the instances in Python: bit j where every instance
    of the key holds one value in column j of KEY_VALUE_COLUMNS (None only with None)."""
    from dicomml.io.index import KEY_VALUE_COLUMNS

    values: dict[str, list[set]] = {}
    for key, *row in con.execute(f"SELECT series_key, {', '.join(KEY_VALUE_COLUMNS)} "
                                 "FROM instances"):
        sets = values.setdefault(key, [set() for _ in row])
        for s, v in zip(sets, row):
            s.add(v)
    return {k: sum(1 << j for j, s in enumerate(sets) if len(s) == 1)
            for k, sets in values.items()}


def _summary_is_live(db) -> None:
    """The scan's ``series_summary`` table holds what the series query computes now, and
    the SAME_COLUMN bits of the instances as they are now."""
    from dicomml.io.index import SAME_COLUMN, SERIES_COLUMNS

    con = sqlite3.connect(db)
    try:
        kept = con.execute(f"SELECT {', '.join(SERIES_COLUMNS)} FROM series_summary "
                           "ORDER BY series_key").fetchall()
        live = con.execute(series_sql() + " ORDER BY series_key").fetchall()
        bits = dict(con.execute(f"SELECT series_key, {SAME_COLUMN} FROM series_summary"))
        now = _same_bits_now(con)
    finally:
        con.close()
    assert kept == live and len(kept) > 0
    assert bits == now


def test_series_summary_follows_every_scan(tree, tmp_path):
    _summary_is_live(tree[1])
    root = tmp_path / "t"
    paths = write_ct_series(root / "s1", n_slices=4, rows=16, columns=16, seed=7)
    write_mr_series(root / "s2", n_slices=3, rows=16, columns=16, seed=8)
    db = tmp_path / "i.sqlite"
    scan(root, db, workers=0, progress=False)
    _summary_is_live(db)
    os.unlink(paths[0])  # a series loses an image
    write_ct_series(root / "s3", n_slices=2, rows=8, columns=8, seed=9)  # a new series
    (root / "s1" / "copy").write_bytes(paths[1].read_bytes())  # a duplicate copy
    scan(root, db, workers=0, progress=False)
    _summary_is_live(db)
    for p in (root / "s2").iterdir():  # a series disappears
        p.unlink()
    r = scan(root, db, workers=0, progress=False)
    _summary_is_live(db)
    with Index(db) as idx:
        assert set(idx.series()["series_key"]) == set(idx.instances()["series_key"])
        assert len(idx.series()) == r.summary["series"]


def _summary_schema(db) -> list:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT type, name, sql FROM sqlite_master WHERE tbl_name = "
                           "'series_summary' ORDER BY name").fetchall()
    finally:
        con.close()


def test_first_scan_reads_the_series_table_beside_the_index_builds(tree, tmp_path,
                                                                  monkeypatch):
    """A first scan computes ``series_summary`` on a read-only connection while the query
    indexes are built; the table is the one the writer's own ``CREATE TABLE ... AS``
    makes (the path taken where that reader fails), schema and rows."""
    from dicomml.io import _scan_store

    root, _db = tree
    reads = []
    real = _scan_store._read_only_rows

    def spy(db_path, queries):
        reads.append((db_path, len(queries)))
        return real(db_path, queries)

    monkeypatch.setattr(_scan_store, "_read_only_rows", spy)
    db = tmp_path / "parallel.sqlite"
    scan(root, db, workers=0, progress=False)
    # one reader beside the index builds: the series table, then the SAME_COLUMN bits
    assert reads == [(str(db), 2)]
    _summary_is_live(db)
    scan(root, db, workers=0, progress=False)  # a re-scan updates the table in place
    assert reads == [(str(db), 2)]

    def fails(db_path, queries):
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(_scan_store, "_read_only_rows", fails)
    alone = tmp_path / "alone.sqlite"
    scan(root, alone, workers=0, progress=False)
    _summary_is_live(alone)

    class NoThreads(_scan_store.ThreadPoolExecutor):
        def submit(self, *args, **kwargs):
            raise RuntimeError("can't start new thread")

    monkeypatch.setattr(_scan_store, "ThreadPoolExecutor", NoThreads)
    unthreaded = tmp_path / "unthreaded.sqlite"
    scan(root, unthreaded, workers=0, progress=False)
    _summary_is_live(unthreaded)
    assert _summary_schema(unthreaded) == _summary_schema(alone)
    assert _summary_schema(db) == _summary_schema(alone)
    con_a, con_b = sqlite3.connect(db), sqlite3.connect(alone)
    try:
        rows = [c.execute("SELECT * FROM series_summary ORDER BY series_key").fetchall()
                for c in (con_a, con_b)]
        indexes = [c.execute("SELECT name FROM sqlite_master WHERE type = 'index' "
                             "ORDER BY name").fetchall() for c in (con_a, con_b)]
        provisional = [c.execute("SELECT COUNT(*) FROM meta WHERE key = ?",
                                 (_scan_store.PROVISIONAL,)).fetchone()[0]
                       for c in (con_a, con_b)]
    finally:
        con_a.close()
        con_b.close()
    assert rows[0] == rows[1] and len(rows[0]) > 3
    assert indexes[0] == indexes[1] and len(indexes[0]) >= 12
    assert provisional == [0, 0]


def test_an_index_in_a_folder_named_with_uri_characters(tree, tmp_path):
    """The read-only connections (the Index, the scan's checks, the series table's reader)
    open the file itself when its folder's name holds ``?``, ``#`` or ``%``."""
    root, db = tree
    odd = tmp_path / "a?b#c%20d" / "index.sqlite"
    first = scan(root, odd, workers=0, progress=False)
    again = scan(root, odd, workers=0, progress=False)  # the target check reads it
    assert first.files_read > 0 and again.files_read == 0
    _summary_is_live(odd)
    with Index(odd) as idx, Index(db) as ref:
        assert idx.summary() == ref.summary()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a?b#c%20d"]


def test_rescan_finds_added_changed_and_removed_files(tmp_path):
    root = tmp_path / "tree"
    paths = write_ct_series(root / "s1", n_slices=4, rows=16, columns=16, seed=5)
    db = tmp_path / "i.sqlite"
    first = scan(root, db, workers=0, progress=False)
    assert (first.files_seen, first.files_read) == (4, 4)
    same = scan(root, db, workers=0, progress=False)
    assert (same.files_seen, same.files_read, same.files_removed) == (4, 0, 0)
    os.unlink(paths[0])
    data = paths[1].read_bytes()
    paths[1].write_bytes(data)  # same bytes, new mtime: read again
    st = paths[1].stat()
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    write_ct_series(root / "s2", n_slices=2, rows=16, columns=16, seed=6)
    again = scan(root, db, workers=0, progress=False)
    assert (again.files_seen, again.files_read, again.files_removed) == (5, 3, 1)
    with Index(db) as idx:
        assert sorted(idx.instances()["path"]) == sorted(
            os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)
    con = sqlite3.connect(db)
    try:  # the walk's temporary tables do not outlive the scan
        names = {n for (n,) in con.execute("SELECT name FROM sqlite_master")}
    finally:
        con.close()
    assert not names & {"walk", "todo"}


def test_chunks_are_larger_on_dask_and_made_lazily():
    from dicomml.io.scanner import CHUNK_SIZE, _chunks, chunk_size

    class Dask:
        kind = "dask"

    assert chunk_size(1_000_000, 2) == CHUNK_SIZE
    assert chunk_size(1_000_000, 2, Dask()) == 8 * CHUNK_SIZE
    assert chunk_size(200, 2) == 25 and chunk_size(10, 2) == 16  # ~4 chunks per worker
    pulled = []

    class Items:  # sized, iterated once: what a scan's temporary table gives
        def __len__(self):
            return 10_000

        def __iter__(self):
            for i in range(10_000):
                pulled.append(i)
                yield i

    chunks = _chunks(Items(), 2)
    first = next(chunks)
    assert first == list(range(CHUNK_SIZE)) and len(pulled) == CHUNK_SIZE
    assert sum(len(c) for c in chunks) == 10_000 - CHUNK_SIZE


def _whole_rows(items, *args, **kwargs):
    """``scan_chunk`` as a producer that gives no ``nulls`` (the rows bound whole)."""
    return [r[:6] if r[0] == "row" else r for r in _SCAN_CHUNK(items, *args, **kwargs)]


def _every_row(db) -> list:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT * FROM instances ORDER BY path").fetchall()
    finally:
        con.close()


def test_rows_bound_without_their_nones_equal_rows_bound_whole(tmp_path, monkeypatch):
    """The scan's workers say which values of a row are None (``scan_chunk``'s ``nulls``)
    and the Index binds only the others, one INSERT per set of Nones: the table is the one
    the whole rows make (every column, the provisional series keys of a first scan, a
    re-scan that replaces rows), on the mixed export (CT, MR, a DICOMDIR, SR, broken
    files), in-process and with worker processes."""
    from dicomml.io import _scan_store, scanner

    root = tmp_path / "export"
    write_mixed_export(root)
    write_ct_series(root / "long", seed=3, n_slices=300, rows=16, columns=16)  # > 1 chunk
    tables = {}
    before_keys = []  # the rows as written, before the end of the scan decides the keys
    real_keys = _scan_store.Store.update_series_keys

    def snapshot(store):
        before_keys.append(_every_row(store.db_path))
        return real_keys(store)

    monkeypatch.setattr(_scan_store.Store, "update_series_keys", snapshot)
    for how in ("nulls", "whole"):
        monkeypatch.setattr(scanner, "scan_chunk", _SCAN_CHUNK if how == "nulls" else
                            _whole_rows)
        for workers in (1, 2):
            db = tmp_path / f"{how}-{workers}.sqlite"
            scan(root, db, workers=workers, progress=False)
            first = (before_keys.pop(), _every_row(db))
            touched = sorted(p for p in root.rglob("*") if p.is_file())[::3]
            times = {p: (p.stat().st_atime_ns, p.stat().st_mtime_ns) for p in touched}
            for p, (a, m) in times.items():  # a re-scan reads them again, replaces rows
                os.utime(p, ns=(a, m + 10**9))
            scan(root, db, workers=workers, progress=False)
            for p, t in times.items():  # as they were, for the next pass
                os.utime(p, ns=t)
            tables[how, workers] = (*first, before_keys.pop(), _every_row(db))
    provisional = tables["whole", 1][0]
    assert len(provisional) > 300
    assert any(v is None for row in provisional for v in row)
    assert all(row[INSTANCE_COLUMNS.index("series_key")] is not None for row in provisional)
    for workers in (1, 2):
        for got, want in zip(tables["nulls", workers], tables["whole", workers]):
            assert len(got) == len(want)
            bad = [(a, b) for a, b in zip(got, want) if a != b]
            assert not bad, (workers, bad[:1])
    assert _scan_store._insert_present.cache_info().currsize >= 2  # several sets of Nones
