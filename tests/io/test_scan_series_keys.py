"""The scan's SQL fast path for series keys gives exactly what series_keys() computes."""

from __future__ import annotations

import shutil
from pathlib import Path

from dicomml.io import Index, scan
from dicomml.io.series import series_keys

SAMPLE = Path(__file__).resolve().parents[2] / "sample_dicom"


def _python_keys(index: Index) -> dict[str, str]:
    df = index.instances()
    rows = []
    for r in df.to_dict("records"):
        r = {k: (None if (isinstance(v, float) and v != v) else v) for k, v in r.items()}
        rows.append(r)
    return series_keys(rows)


def test_series_keys_of_the_sample_export_equal_series_keys(tmp_path):
    res = scan(SAMPLE, tmp_path / "i.sqlite", workers=1, progress=False)
    with Index(res.db_path) as index:
        df = index.instances()
        got = dict(zip(df["path"], df["series_key"]))
        assert got == _python_keys(index)
    # the sample holds a localizer inside an axial series and non-image objects
    assert any(k.endswith(".1") for k in got.values())
    assert any(k.endswith(":sr") for k in got.values())


def test_rescan_after_adding_a_differently_sized_image_splits_the_series(tmp_path):
    from dicomml.testing import write_ct_series

    src = tmp_path / "src"
    files = write_ct_series(src / "a", seed=3, n_slices=4, rows=32, columns=32)
    db = tmp_path / "i.sqlite"
    scan(src, db, workers=1, progress=False)
    # a fifth instance of the same series with another matrix size arrives later
    import pydicom

    ds = pydicom.dcmread(files[0])
    extra = write_ct_series(tmp_path / "b", seed=3, n_slices=1, rows=16, columns=16)
    ds2 = pydicom.dcmread(extra[0])
    ds2.SeriesInstanceUID = ds.SeriesInstanceUID
    ds2.StudyInstanceUID = ds.StudyInstanceUID
    ds2.SOPInstanceUID = ds.SOPInstanceUID + ".9"
    ds2.file_meta.MediaStorageSOPInstanceUID = ds2.SOPInstanceUID
    ds2.save_as(src / "a" / "EXTRA")
    scan(src, db, workers=1, progress=False)
    with Index(db) as index:
        df = index.instances()
        got = dict(zip(df["path"], df["series_key"]))
        assert got == _python_keys(index)
        assert sorted(set(got.values())) == [ds.SeriesInstanceUID, ds.SeriesInstanceUID + ".1"]
    shutil.rmtree(tmp_path / "b")


def test_a_first_scan_interrupted_after_its_inserts_is_decided_by_the_next(tmp_path):
    """A first scan writes provisional series keys; one that stops before its end step
    (here: the Store is closed after the inserts) leaves a marker, and the next scan sets
    every key back and decides them all again: the same Index as one scan."""
    from dicomml.io._scan_store import PROVISIONAL, Store
    from dicomml.io.files import walk_files
    from dicomml.io.scanner import scan_chunk

    src = tmp_path / "src"
    shutil.copytree(SAMPLE, src)
    db = tmp_path / "i.sqlite"
    store = Store(db, str(src))
    try:
        items = [tuple(e) for e in walk_files(str(src)) if isinstance(e, tuple)]
        store.write(scan_chunk(items))
        # a conflicting key the end step would have corrected, as an interruption leaves it
        store.con.execute("UPDATE instances SET series_key = 'stale' WHERE rowid = 1")
        assert store.con.execute("SELECT COUNT(*) FROM meta WHERE key = ?",
                                 (PROVISIONAL,)).fetchone() == (1,)
    finally:
        store.close()
    again = scan(src, db, workers=1, progress=False)
    assert again.files_read == 0  # the files are in; only their keys are decided again
    fresh = scan(src, tmp_path / "fresh.sqlite", workers=1, progress=False)
    with Index(db) as a, Index(fresh.db_path) as b:
        assert a.instances().equals(b.instances())
        assert a.series().equals(b.series())
        assert not a.instances()["series_key"].eq("stale").any()
    with _sqlite(db) as con:
        assert con.execute("SELECT COUNT(*) FROM meta WHERE key = ?",
                           (PROVISIONAL,)).fetchone() == (0,)


def _sqlite(db):
    import contextlib
    import sqlite3

    return contextlib.closing(sqlite3.connect(db))
