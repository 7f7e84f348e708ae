"""``dicomml scan`` and ``dicomml show``: exit codes, JSON, and no patient identifiers."""

from __future__ import annotations

import json
import shutil
import warnings

import pydicom
import pytest

from dicomml.cli import main
from dicomml.testing import write_ct_series, write_sr


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    good = root / "good"
    ct = write_ct_series(good / "ct", n_slices=3, rows=16, columns=16, seed=21)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(ct[0], stop_before_pixels=True)
        write_sr(good / "sr" / "report", [ds], seed=21)
    mixed = root / "mixed"
    shutil.copytree(good, mixed)
    (mixed / "readme.txt").write_text("not DICOM\n" * 5)
    return {"good": good, "mixed": mixed, "ct": [str(p) for p in ct],
            "name": str(ds.PatientName), "family": str(ds.PatientName).split("^")[0],
            "id": str(ds.PatientID), "series": ds.SeriesInstanceUID}


def _no_identifiers(text, export):
    assert export["id"] not in text
    assert export["name"] not in text and export["family"] not in text


def test_scan_exit_0_and_summary(export, tmp_path, capsys):
    rc = main(["scan", str(export["good"]), "--db", str(tmp_path / "i.sqlite"),
               "--workers", "0"])
    out, err = capsys.readouterr()
    assert rc == 0
    assert "patients: 1" in out and "instances: 4 (3 images)" in out
    assert "CT 1" in out and "sr 1" in out
    _no_identifiers(out + err, export)


def test_scan_json_exit_1_when_skipped(export, tmp_path, capsys):
    rc = main(["scan", str(export["mixed"]), "--db", str(tmp_path / "i.sqlite"), "--json",
               "--workers", "1", "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 1
    data = json.loads(out)
    assert (data["patients"], data["studies"], data["series"], data["instances"]) == (1, 1, 1, 4)
    assert data["skipped"] == [{"path": str(export["mixed"] / "readme.txt"),
                                "reason": "not DICOM (no DICM prefix and no valid element at "
                                          "offset 0)"}]
    _no_identifiers(out + err, export)
    # the text summary lists it too
    rc = main(["scan", str(export["mixed"]), "--db", str(tmp_path / "i.sqlite"),
               "--no-progress"])
    out, _ = capsys.readouterr()
    assert rc == 1 and "readme.txt" in out and "not DICOM" in out


def test_scan_exit_2_on_missing_path(tmp_path, capsys):
    assert main(["scan", str(tmp_path / "nope"), "--db", str(tmp_path / "i.sqlite")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["scan"]) == 2  # usage error
    capsys.readouterr()


def test_show_file_and_series(export, tmp_path, capsys):
    db = tmp_path / "i.sqlite"
    assert main(["scan", str(export["good"]), "--db", str(db), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["show", export["ct"][0]]) == 0
    out = capsys.readouterr().out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(export["ct"][0], stop_before_pixels=True)
    assert "CT Image Storage" in out and "Explicit VR Little Endian" in out
    assert f"{ds.Rows} x {ds.Columns}" in out
    assert f"intercept {float(ds.RescaleIntercept):g}" in out
    explanations = ds.WindowCenterWidthExplanation
    for ex in ([explanations] if isinstance(explanations, str) else explanations):
        assert ex in out  # windows with their (0028,1055) explanations
    _no_identifiers(out, export)
    assert main(["show", export["series"], "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "instances:        3" in out
    _no_identifiers(out, export)
    assert main(["show", "1.2.3.4"]) == 2  # a series key needs --db
    assert main(["show", "1.2.3.4", "--db", str(db)]) == 2  # unknown key
    capsys.readouterr()
