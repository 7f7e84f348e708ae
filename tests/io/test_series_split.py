"""Series splitting: localizers, mixed sizes, non-image objects (hand-built cases and a scan)."""

from __future__ import annotations

import warnings

import pydicom
import pytest

from dicomml.io import Index, scan
from dicomml.io.series import same_orientation, series_keys
from dicomml.testing import write_ct_series

AX = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
COR = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)


def _row(path, n, *, rows=512, cols=512, orient=AX, kind="image", series="1.2.3", study="9"):
    return {"path": path, "sop_instance_uid": f"sop{path}", "series_instance_uid": series,
            "study_instance_uid": study, "object_kind": kind, "rows": rows, "columns": cols,
            "image_orientation": orient, "instance_number": n}


def test_localizer_and_mixed_sizes_split():
    rows = [_row(f"ax{i}", i + 2) for i in range(5)]
    rows.append(_row("loc", 1, orient=COR))
    rows += [_row(f"small{i}", 10 + i, rows=256, cols=256) for i in range(2)]
    rows.append(_row("sr", 1, kind="sr"))
    keys = series_keys(rows)
    assert {keys[f"ax{i}"] for i in range(5)} == {"1.2.3"}  # the largest group
    assert keys["small0"] == keys["small1"] == "1.2.3.1"  # second largest
    assert keys["loc"] == "1.2.3.2"
    assert keys["sr"] == "1.2.3:sr"  # never joins an image series


def test_orientation_tolerance():
    tilted = tuple(v + 5e-4 for v in AX)
    assert same_orientation(AX, tilted)
    assert not same_orientation(AX, tuple(v + 5e-3 for v in AX))
    assert same_orientation(None, None) and not same_orientation(AX, None)
    keys = series_keys([_row("a", 1), _row("b", 2, orient=tilted), _row("c", 3, orient=None)])
    assert keys["a"] == keys["b"] == "1.2.3" and keys["c"] == "1.2.3.1"


def test_ties_go_to_the_group_seen_first_and_no_series_uid():
    keys = series_keys([_row("a", 2, rows=10), _row("b", 1, rows=20),
                        _row("x", 1, series=None)])
    assert keys["b"] == "1.2.3" and keys["a"] == "1.2.3.1"  # b has the lower instance number
    assert keys["x"] == "sop:sopx"


def test_same_series_uid_in_two_studies_splits():
    keys = series_keys([_row("a", 1, study="s1"), _row("b", 2, study="s1"),
                        _row("c", 1, study="s2")])
    assert keys["a"] == keys["b"] == "1.2.3" and keys["c"] == "1.2.3.1"


@pytest.mark.parametrize("workers", [0])
def test_scan_splits_a_series_with_localizer_and_other_size(tmp_path, workers):
    ax = write_ct_series(tmp_path / "src" / "s", n_slices=6, rows=32, columns=32,
                         localizer=True, seed=5, file_names="A%03d")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = pydicom.dcmread(ax[0], stop_before_pixels=True)
        locs = [p for p in ax if "LOCALIZER" in pydicom.dcmread(p, stop_before_pixels=True)
                .ImageType]
    assert len(locs) == 1
    # two reconstructions of another size in the same series (written with pydicom)
    small = []
    for i in range(2):
        ds = pydicom.dcmread(ax[1])
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.Rows = ds.Columns = 16
        ds.PixelData = b"\0" * (16 * 16 * 2)
        ds.InstanceNumber = 100 + i
        p = tmp_path / "src" / "s" / f"B{i}"
        ds.save_as(p)
        small.append(str(p))
    r = scan(tmp_path / "src", tmp_path / "i.sqlite", workers=workers, progress=False)
    uid = first.SeriesInstanceUID
    with Index(r.db_path) as idx:
        series = idx.series().set_index("series_key")
        assert series.loc[uid, "n_instances"] == 6
        assert series.loc[f"{uid}.1", "n_instances"] == 2
        assert series.loc[f"{uid}.1", "rows"] == 16
        assert series.loc[f"{uid}.2", "n_instances"] == 1
        assert idx.series_files(f"{uid}.2") == [str(p) for p in locs]
        assert sorted(idx.series_files(f"{uid}.1")) == sorted(small)
    assert r.summary["series"] == 3


def test_read_of_an_index_key_regroups_only_files_changed_since_the_scan(tmp_path,
                                                                        monkeypatch):
    """read_series((key, Index)) leaves out the same-series grouping that the scan did from
    the same files, and only while they are unchanged: a file rewritten since (another
    orientation, a new mtime), or a scan writing the keys, and it groups them again."""
    import os
    import sqlite3

    import numpy as np

    import dicomml.io.volume as volume
    from dicomml.io import read_series
    from dicomml.io.index import PROVISIONAL

    paths = write_ct_series(tmp_path / "s", n_slices=5, rows=16, columns=16, seed=3)
    r = scan(tmp_path / "s", tmp_path / "i.sqlite", workers=0, progress=False)
    calls = []
    real = volume.one_series
    monkeypatch.setattr(volume, "one_series", lambda *a: calls.append(1) or real(*a))
    with Index(r.db_path) as idx:
        (key,) = idx.series()["series_key"]
        files, grouped = idx.series_group(key)
        assert grouped and files == idx.series_files(key)
        vol = read_series((key, idx))
        assert calls == [] and vol.pixels.shape == (5, 16, 16) and not vol.issues
        ref = read_series(tmp_path / "s")  # a folder: grouped here
        assert calls == [1]
        np.testing.assert_array_equal(vol.pixels, ref.pixels)
        assert vol.origin == ref.origin
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(paths[2])
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
        ds.save_as(paths[2])
        st = os.stat(paths[2])
        os.utime(paths[2], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        assert idx.series_group(key) == (files, False)
        vol = read_series((key, idx))
        assert calls == [1, 1] and vol.pixels.shape == (4, 16, 16)
        # the middle slice is left out: a gap where it was
        assert [i.kind for i in vol.issues] == ["mixed_orientation", "missing_slices"]
    r = scan(tmp_path / "s", tmp_path / "i.sqlite", workers=0, progress=False)
    with Index(r.db_path) as idx:
        (key4, key1) = idx.series()["series_key"]
        assert idx.series_group(key4)[1] and len(idx.series_files(key4)) == 4
        with sqlite3.connect(r.db_path) as con:  # as while a scan writes the keys
            con.execute("INSERT INTO meta VALUES (?, '1')", (PROVISIONAL,))
        assert idx.series_group(key4) == (idx.series_files(key4), False)
        with pytest.raises(Exception, match="no series with key"):
            idx.series_group("1.2.nothing")
