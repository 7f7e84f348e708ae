"""The one same-series predicate (dicomml.io.series) on its own and through scan()."""

from __future__ import annotations

import warnings

import numpy as np
import pydicom
import pytest

from dicomml.io import scan
from dicomml.io.index import Index
from dicomml.io.series import (
    first_fit_groups,
    group_instances,
    image_part,
    same_orientation,
    same_series,
    series_keys,
)
from dicomml.testing import write_ct_series


@pytest.mark.parametrize("image_type, cic, part", [
    ("ORIGINAL\\PRIMARY\\M\\ND\\MOSAIC", None, "M"),           # Siemens
    ("ORIGINAL\\PRIMARY\\P\\ND", None, "P"),
    ("ORIGINAL\\PRIMARY\\R\\ND", None, "R"),
    ("ORIGINAL\\PRIMARY\\I\\ND", None, "I"),
    ("ORIGINAL\\PRIMARY\\M_FFE\\M\\FFE", None, "M"),            # Philips
    ("ORIGINAL\\PRIMARY\\PHASE MAP\\P\\FFE", None, "P"),
    ("ORIGINAL\\PRIMARY\\R_IR\\R\\IR", None, "R"),
    ("ORIGINAL\\PRIMARY\\EPI\\NONE", None, None),               # GE: no part
    ("ORIGINAL\\PRIMARY\\M\\NONE", "PHASE", "P"),               # enhanced: (0008,9208) wins
    ("DERIVED\\PRIMARY\\AXIAL", "MIXED", None),
    (None, None, None),
])
def test_image_part(image_type, cic, part):
    assert image_part(image_type, cic) == part


BASE = {"study_instance_uid": "1.2", "series_number": 3, "rows": 64, "columns": 64,
        "pixel_spacing": (1.0, 1.0), "image_orientation": (1.0, 0, 0, 0, 1.0, 0),
        "echo_number": 1, "echo_time": 10.0, "image_type": "ORIGINAL\\PRIMARY\\M\\ND"}


@pytest.mark.parametrize("change, same", [
    ({}, True),
    ({"echo_number": 2}, False),
    ({"echo_time": 12.46}, False),
    ({"echo_time": 10.005}, True),                      # within ECHO_TIME_TOLERANCE
    ({"image_type": "ORIGINAL\\PRIMARY\\P\\ND"}, False),
    ({"series_number": 4}, False),
    ({"rows": 32}, False),
    ({"pixel_spacing": (1.2, 1.2)}, False),
    ({"image_orientation": (1.0, 0, 0, 0, 0, -1.0)}, False),
    ({"image_orientation": (1.0, 2e-8, 0, 0, 1.0, 0)}, True),
    ({"duplicate_rank": 1}, False),
    ({"echo_time": None}, False),                       # missing only matches missing
    ({"acquisition_number": 7}, True),                  # fMRI volumes: one series
])
def test_same_series(change, same):
    assert same_series(BASE, {**BASE, **change}) is same
    assert same_series({**BASE, **change}, BASE) is same


def test_keys_of_a_two_echo_series():
    rows = [{**BASE, "path": f"e{e}-{i}", "sop_instance_uid": f"{e}.{i}",
             "series_instance_uid": "9.9", "object_kind": "image", "instance_number": 2 * i + e,
             "echo_number": e, "echo_time": 5.0 * e} for i in range(4) for e in (1, 2)]
    rows.append({**rows[0], "path": "e2-extra", "sop_instance_uid": "x", "echo_number": 2,
                 "echo_time": 10.0, "instance_number": 99})
    keys = series_keys(rows)
    assert {p for p, k in keys.items() if k == "9.9"} == {f"e2-{i}" for i in range(4)} | {
        "e2-extra"}  # the larger group keeps the plain key
    assert {p for p, k in keys.items() if k == "9.9.1"} == {f"e1-{i}" for i in range(4)}
    groups = group_instances(rows)
    assert [len(g) for g in groups] == [5, 4]


def test_first_fit_groups_orders_by_size_then_first_seen():
    assert first_fit_groups([1, 10, 11, 2, 12], lambda a, b: abs(a - b) < 5) == [
        [10, 11, 12], [1, 2]]
    assert first_fit_groups([1, 10], lambda a, b: abs(a - b) < 5) == [[1], [10]]


def test_orientations_2e8_apart_are_one_key_and_one_volume(tmp_path):
    """Direction cosines 5e-5 ± 1e-8 straddle a rounding boundary at 4 decimals (so that
    ``np.round(..., 4)`` would split them); the tolerance rule keeps one series."""
    files = write_ct_series(tmp_path / "s", seed=5, n_slices=5, rows=16, columns=16,
                            noise=0.0)
    values = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, f in enumerate(files):
            ds = pydicom.dcmread(f)
            c = 5e-5 + (1e-8 if i % 2 else -1e-8)
            ds.ImageOrientationPatient = [1, f"{c:.8g}", 0, 0, 1, 0]
            ds.save_as(f)
            values.append(tuple(float(v) for v in ds.ImageOrientationPatient))
    assert len({tuple(np.round(v, 4)) for v in values}) == 2  # rounding would split them
    assert max(abs(a - b) for a, b in zip(values[0], values[1])) == pytest.approx(2e-8)
    assert same_orientation(values[0], values[1])
    r = scan(tmp_path / "s", tmp_path / "i.sqlite", workers=0, progress=False)
    with Index(r.db_path) as idx:
        series = idx.series()
    assert len(series) == 1
    row = series.iloc[0]
    assert row["n_instances"] == 5 and row["n_volumes"] == 1 and row["n_echoes"] == 1
    assert not row["mosaic"] and row["n_conflicts"] == 0
    assert row["series_key"] == row["series_instance_uid"]


def test_dataset_values_equal_the_index_row():
    """read_series holds datasets: dataset_values gives it the Index's split values."""
    from tests.io.realdata import dataset

    from dicomml.io.header import dataset_values, read_header
    from dicomml.io.series import SPLIT_COLUMNS

    paths = sorted((dataset("dcm_qa_xa30") / "In" / "8_gre_field_mapping").iterdir())
    paths += sorted((dataset("dcm_qa_mosaic") / "In" / "ep2d_Asc_2").iterdir())[:1]
    seen = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in paths:
            got = dataset_values(pydicom.dcmread(path, stop_before_pixels=True),
                                 SPLIT_COLUMNS)
            row = read_header(str(path))
            assert got == {c: row[c] for c in SPLIT_COLUMNS}, path
            seen.add(got["echo_time"])
    assert seen == {10.0, 12.46, 30.0}  # the field map's echoes come from the frames


def test_docstring_examples():
    import doctest

    import dicomml.io.series

    result = doctest.testmod(dicomml.io.series)
    assert result.attempted >= 3 and result.failed == 0
