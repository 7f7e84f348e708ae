"""``dicomml deid``."""

from __future__ import annotations

import pandas as pd
import pydicom

from dicomml.cli import main
from dicomml.pacs.deid import remap_uid
from tests.pacs._data import ct_study, header


def test_deid_cli_folder_and_table(tmp_path, capsys, monkeypatch):
    ct = ct_study(tmp_path / "src", seed=51, n_slices=3)
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame([{"StudyInstanceUID": header(p).StudyInstanceUID, "path": str(p),
                   "label": 0} for p in ct]).to_csv(manifest, index=False)
    monkeypatch.setenv("DICOMML_DEID_KEY", "cli-key")
    out = tmp_path / "out"
    assert main(["deid", str(tmp_path / "src"), "--out", str(out), "--table",
                 str(manifest)]) == 0
    text = capsys.readouterr().out
    assert f"de-identified {len(ct)} files" in text
    written = sorted(out.glob("*/*/*.dcm"))
    assert len(written) == len(ct)
    study = remap_uid(str(header(ct[0]).StudyInstanceUID), "cli-key")
    assert {str(pydicom.dcmread(p).StudyInstanceUID) for p in written} == {study}
    table = pd.read_csv(out / "manifest.deid.csv", dtype=str)
    assert list(table.columns) == ["StudyInstanceUID", "label"]
    assert set(table["StudyInstanceUID"]) == {study}
    for p in written:  # names never carry the patient
        assert header(ct[0]).PatientID not in str(p)


def test_deid_cli_flags_burned_in_and_needs_a_key(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DICOMML_DEID_KEY", raising=False)
    (path,) = ct_study(tmp_path / "src", seed=52, n_slices=1)
    assert main(["deid", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "--key" in capsys.readouterr().err
    ds = pydicom.dcmread(path)
    ds.BurnedInAnnotation = "YES"
    ds.save_as(tmp_path / "burned.dcm")
    assert main(["deid", str(tmp_path / "burned.dcm"), "--out", str(tmp_path / "o"), "--key",
                 "k", "--keep-dates"]) == 1
    assert "Burned In Annotation = YES" in capsys.readouterr().err
    table = pd.read_csv(tmp_path / "o" / "deid_manifest.csv", dtype=str)
    assert list(table["BurnedInAnnotation"]) == ["YES"]
