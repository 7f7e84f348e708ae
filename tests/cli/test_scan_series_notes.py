"""The scan summary and ``dicomml show SERIES_KEY`` say when a series is a mosaic, 4-D,
multi-echo or holds conflicting duplicates (real exports of ``../shared/realdata``)."""

from __future__ import annotations

import json

from dicomml.cli import main
from tests.io.realdata import dataset


def test_scan_summary_names_mosaics_volumes_and_conflicts(tmp_path, capsys):
    root = dataset("dcm_qa_12bit") / "In"
    db = tmp_path / "i.sqlite"
    assert main(["scan", str(root), "--db", str(db), "--workers", "0", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "series to note: 3" in out
    assert out.count("Siemens mosaic of 35 images") == 3
    assert "conflicting duplicates: 2 files" in out
    first = root / "12bitSigned_0x0F0F.dcm"
    assert f"{root / '12bitUnsigned.dcm'}: conflicts with {first}" in out
    assert main(["scan", str(root), "--db", str(db), "--json", "--no-progress"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [c["duplicate_of"] for c in data["conflicts"]] == [str(first)] * 2
    assert len(data["series_notes"]) == 3 and data["conflicting_duplicates"] == 3
    key = data["series_notes"][0]["series_key"]
    assert main(["show", key, "--db", str(db)]) == 0
    shown = capsys.readouterr().out
    assert "structure:        Siemens mosaic of 35 images; 1 conflicting duplicate" in shown


def test_scan_summary_names_4d_series(tmp_path, capsys):
    root = dataset("dcm_qa_nih") / "In"
    assert main(["scan", str(root), "--db", str(tmp_path / "i.sqlite"), "--workers", "0",
                 "--no-progress"]) == 1  # README files are not DICOM
    out = capsys.readouterr().out
    assert out.count(": 4-D: 10 volumes") == 4  # GE fMRI: 150 slices, 15 positions
    assert out.count(": Siemens mosaic of 5 images; 4-D: 2 volumes") == 4
