"""The scan's value caches (repeated raw values, repeated arrays) never change a row.

Reference: the pydicom reader (``read_header_pydicom``) and the public
:func:`dicomml.io._scan_store.db_values`; the struct reader with its caches must give the
same Index values for files read one after another, including values that compare equal
as numbers but not as text (``-0`` and ``0``: ``(0.0,) == (-0.0,)``).
"""

from __future__ import annotations

import warnings

import pydicom
import pytest

from dicomml.io._scan_store import db_values
from dicomml.io.header import read_header_pydicom
from dicomml.io.scanner import scan_chunk


def _write(path, orientation, position, window_center):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm", download=False))
    ds.ImageOrientationPatient = orientation
    ds.ImagePositionPatient = position
    ds.WindowCenter = window_center
    ds.save_as(path)
    return path


@pytest.fixture
def files(tmp_path):
    specs = [
        (["1", "0", "0", "0", "1", "0"], ["0", "0", "0"], "40"),
        (["1", "-0", "0", "0", "1", "-0"], ["-0", "0", "0"], "-0"),
        (["1", "0", "0", "0", "1", "0"], ["0", "0", "-0"], "40"),
        (["1", "-0", "0", "0", "1", "-0"], ["-0", "0", "0"], "-0"),
        (["1.0", "0.0", "0", "0", "1", "0"], ["0", "0", "1.5"], "40.0"),
    ]
    return [_write(tmp_path / f"f{i}.dcm", *s) for i, s in enumerate(specs)]


def _reference(path):
    import os

    st = os.stat(path)
    return db_values(read_header_pydicom(str(path), st.st_size, st.st_mtime_ns / 1e9))


@pytest.mark.parametrize("cache_items", [4096, 1])
def test_cached_rows_equal_pydicom(files, cache_items):
    import os

    items = [(str(p), os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in files]
    # every file twice in one chunk: the second time from the caches (1: cleared at every miss)
    got = scan_chunk(items + items, cache_items=cache_items)
    assert len(got) == 2 * len(items)
    for item, res in zip(items + items, got):
        assert res[0] == "row", res
        assert res[4] == _reference(item[0])
    rows = {r[1]: r[4] for r in got}
    ori = [rows[str(p)][list(_cols()).index("image_orientation")] for p in files]
    assert ori[0] == "[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]"
    assert ori[1] == "[1.0, -0.0, 0.0, 0.0, 1.0, -0.0]"
    assert ori[3] == ori[1] and ori[2] == ori[0] and ori[4] == ori[0]


def _cols():
    from dicomml.io.index import INSTANCE_COLUMNS

    return INSTANCE_COLUMNS
