"""``dicomml series``: one line per series, checked against pydicom's own reading of the files."""

from __future__ import annotations

import csv
import io
import json
import warnings
from collections import Counter
from pathlib import Path

import pydicom
import pytest

from dicomml.cli import main

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_dicom"


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("series") / "index.sqlite"
    assert main(["scan", str(SAMPLE), "--db", str(path), "--no-progress", "--workers", "0"]) \
        in (0, 1)
    return path


def _reference():
    """Instances and frames per image series, read with pydicom (independent of the Index)."""
    inst, frames, ident = Counter(), Counter(), set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for p in SAMPLE.rglob("*"):
            if not p.is_file():
                continue
            try:
                ds = pydicom.dcmread(p)
            except Exception:  # noqa: BLE001 - the export's deliberately broken files
                continue
            if "Rows" not in ds:
                continue
            px = ds.get("PixelData") or b""
            if ds.file_meta.TransferSyntaxUID.is_encapsulated is False and len(px) < (
                    ds.Rows * ds.Columns * ds.get("SamplesPerPixel", 1)
                    * int(ds.get("NumberOfFrames", 1) or 1) * ds.BitsAllocated // 8):
                continue  # truncated pixel data: not an indexed image
            uid = str(ds.SeriesInstanceUID)
            inst[uid] += 1
            frames[uid] += int(ds.get("NumberOfFrames", 1) or 1)
            ident |= {str(ds.get("PatientID", "")), str(ds.get("PatientName", ""))}
    return inst, frames, ident - {""}


def test_series_csv_matches_pydicom(db, capsys):
    assert main(["series", "--db", str(db), "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    inst, frames, _ = _reference()
    assert all(r["modality"] for r in rows)
    # every series of the files is listed, with the same instance and frame counts
    got_inst = Counter()
    got_frames = Counter()
    from dicomml.io.index import Index

    with Index(db) as idx:
        uid_of = dict(zip(idx.series()["series_key"], idx.series()["series_instance_uid"]))
    for r in rows:
        got_inst[uid_of[r["series_key"]]] += int(r["n_instances"])
        got_frames[uid_of[r["series_key"]]] += int(r["n_frames"])
    assert got_inst == inst
    assert got_frames == frames


def test_series_text_reports_geometry_and_no_identifiers(db, capsys):
    assert main(["series", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:6] == ["key", "mod", "inst", "frames", "size", "orient"]
    missing = [ln for ln in lines if "MISSING SLICE" in ln]
    assert len(missing) == 1 and "missing slices x1" in missing[0]
    assert all(ln.rstrip().endswith("ok") for ln in lines if "HEAD AXIAL" in ln)
    assert any(" axial " in ln for ln in lines)
    _, _, ident = _reference()
    assert ident and not any(i in out for i in ident)


def test_series_json_keys_work_with_show(db, capsys):
    assert main(["series", "--db", str(db), "--json"]) == 0
    items = json.loads(capsys.readouterr().out)
    assert {"series_key", "modality", "n_instances", "orientation", "issues"} <= set(items[0])
    key = next(i["series_key"] for i in items if i["modality"] == "CT")
    assert main(["show", key, "--db", str(db)]) == 0
    assert f"series key:       {key}" in capsys.readouterr().out


def test_series_of_a_folder_scans_it(tmp_path, capsys):
    from dicomml.testing import write_ct_series

    write_ct_series(tmp_path / "ct", n_slices=3, rows=16, columns=16, seed=5)
    assert main(["series", str(tmp_path / "ct"), "--db", str(tmp_path / "i.sqlite"),
                 "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and " 3 " in lines[1]


def test_series_empty_index_exits_1(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["series", str(tmp_path / "empty"), "--db", str(tmp_path / "i.sqlite"),
                 "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no image series" in err[0]


def test_series_shows_echoes_volumes_mosaic_when_the_index_has_them():
    """Index.series() columns of the real-scanner work are shown when present."""
    import pandas as pd

    from dicomml.cli.series import format_table

    base = {"series_key": "1.2.3", "modality": "MR", "series_description": "ep2d_diff",
            "n_instances": 40, "n_frames": 40, "rows": 128, "columns": 128,
            "orientation": "axial", "issues": ""}
    plain = format_table(pd.DataFrame([base]))
    assert "echoes" not in plain and "mosaic" not in plain
    rich = format_table(pd.DataFrame([dict(base, n_echoes=2, n_volumes=20, mosaic=True,
                                           n_conflicts=0)]))
    head, row = rich.splitlines()
    assert head.split()[6:10] == ["echoes", "volumes", "mosaic", "conflicts"]
    assert row.split()[6:10] == ["2", "20", "yes", "0"]


def test_show_unknown_key_points_to_series_with_a_suggestion(db, capsys):
    from dicomml.io.index import Index

    with Index(db) as idx:
        key = next(k for k in idx.series()["series_key"] if not k.startswith("sop:"))
    assert main(["show", key[:-1], "--db", str(db)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dicomml series --db" in err[0] and f"'{key}'" in err[0], err
