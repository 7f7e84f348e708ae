"""Index.instances(columns=...) and Index.series(columns=...): the narrow frame is the full
frame's columns (values, dtypes, row order), on sample_dicom/ and on a generated export."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from dicomml.errors import ConfigError
from dicomml.io import Index, scan
from dicomml.io.index import ARRAY_COLUMNS, INSTANCE_COLUMNS, SERIES_COLUMNS
from tests.io.mixed_export import write_mixed_export

INSTANCE_SUBSETS = [
    ["path", "series_key", "sop_instance_uid", "instance_number"],  # bench_index's row
    ["path"],
    "modality",  # one name
    ["sop_instance_uid", "path"],  # neither ordering column but the tie-breaker
    list(ARRAY_COLUMNS),  # JSON arrays
    ["conflict", "is_image", "rows", "duplicate_of", "window_center", "study_date"],
    ["rescale_slope", "mtime", "size", "mosaic_images", "echo_time"],  # REAL, Int64
    list(reversed(INSTANCE_COLUMNS)),  # every column, in another order
]
SELECTIONS = [{}, {"modality": "MR"}, {"modality": "CT"}, {"modality": "NOPE"}]


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory):
    """sample_dicom/: CT, MR, SR, DICOMDIR... (columns with and without NULLs)."""
    db = tmp_path_factory.mktemp("sample") / "index.sqlite"
    scan(Path(__file__).resolve().parents[2] / "sample_dicom", db, workers=0,
         progress=False)
    return db


@pytest.fixture(scope="module")
def generated_db(tmp_path_factory):
    """A generated export: two CT series, one MR, one secondary capture, one file that is
    not DICOM."""
    return write_mixed_export(tmp_path_factory.mktemp("gen"))


@pytest.fixture(params=["sample_db", "generated_db"])
def db(request):
    return request.getfixturevalue(request.param)


def _names(columns) -> list[str]:
    return [columns] if isinstance(columns, str) else list(columns)


@pytest.mark.parametrize("select", SELECTIONS, ids=lambda s: str(s.get("modality", "all")))
@pytest.mark.parametrize("decode", [True, False])
def test_narrow_instances_equal_the_full_frames_columns(db, select, decode):
    with Index(db) as idx:
        full = idx.instances(decode=decode, **select)
        if not select:
            assert len(full) > 10 and full["modality"].nunique() >= 2
        for columns in INSTANCE_SUBSETS:
            narrow = idx.instances(decode=decode, columns=columns, **select)
            assert list(narrow.columns) == _names(columns)
            pd.testing.assert_frame_equal(narrow, full[_names(columns)], check_exact=True)


def test_narrow_instances_keep_the_order_of_the_full_frame(generated_db):
    """Ordered by series key, instance number, path even when none of them is read."""
    with Index(generated_db) as idx:
        full = idx.instances()
        uids = idx.instances(columns=["sop_instance_uid"])["sop_instance_uid"]
    assert full["series_key"].nunique() == 4
    assert not full["instance_number"].is_monotonic_increasing  # the order is not trivial
    assert list(uids) == list(full["sop_instance_uid"])


@pytest.mark.parametrize("columns", [
    ["series_key", "n_instances"], "modality", ["mosaic", "is_image", "n_conflicts"],
    ["n_volumes", "echo_number", "rows", "study_date"], list(reversed(SERIES_COLUMNS))])
def test_narrow_series_equal_the_full_frames_columns(db, columns, tmp_path):
    with Index(db) as idx:
        full = idx.series()
        assert list(full.columns) == list(SERIES_COLUMNS)
        for select in ({}, {"modality": "MR"}):
            pd.testing.assert_frame_equal(idx.series(columns=columns, **select),
                                          idx.series(**select)[_names(columns)],
                                          check_exact=True)
    # an Index written before series_summary: the instances are grouped at each call
    old = tmp_path / "old.sqlite"
    shutil.copy(db, old)
    con = sqlite3.connect(old)
    con.execute("DROP TABLE series_summary")
    con.commit()
    con.close()
    with Index(old) as idx:
        grouped = idx.series(columns=columns)
    pd.testing.assert_frame_equal(grouped, full[_names(columns)], check_exact=True)


@pytest.mark.parametrize("columns, match", [
    (["path", "modalty"], r"'modalty' is not a column of the instances table\. "
                          r"Did you mean 'modality'\?"),
    (["series_uid"], r"not a column .*Received: columns=\['series_uid'\]"),
    (["path", "path"], "twice"),
    ([], "Received: columns=\\[\\]"),
    (["path", 3], "must be a string or a list of strings"),
    (3, "must be a string or a list of strings"),
])
def test_unknown_column_is_a_config_error(generated_db, columns, match):
    with Index(generated_db) as idx, pytest.raises(ConfigError, match=match):
        idx.instances(columns=columns)


def test_unknown_series_column_is_a_config_error(generated_db):
    with Index(generated_db) as idx, pytest.raises(
            ConfigError, match=r"'n_instance' is not a column of the series table\. "
                               r"Did you mean 'n_instances'\?"):
        idx.series(columns=["n_instance"])
