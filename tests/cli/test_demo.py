"""``dicomml demo``: end to end on the committed ``sample_dicom/``, and its privacy."""

from __future__ import annotations

import json
import logging
import re
import time
import zipfile
from pathlib import Path

import pandas as pd
import pydicom
import pytest

from dicomml.cli import main
from dicomml.demo import TASK_FOLDER, find_sample_data

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_dicom"
TEXT_SUFFIXES = {".csv", ".json", ".toml", ".txt", ".log", ".md", ".tsv", ".html"}


def _identifiers(folder: Path) -> dict[str, set[str]]:
    """Every PatientName, PatientID, PatientBirthDate, AccessionNumber value of the export."""
    found = {"name": set(), "id": set(), "date": set(), "accession": set()}
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # not DICOM (README, labels.csv, the deliberately broken files)
            continue
        name = str(ds.get("PatientName", "") or "")
        if name:
            found["name"].add(name)
            found["name"].add(name.replace("^", " ").strip())
            family = name.split("^")[0]
            if len(family) >= 4:
                found["name"].add(family)
        for kw, kind in (("PatientID", "id"), ("PatientBirthDate", "date"),
                         ("AccessionNumber", "accession")):
            v = str(ds.get(kw, "") or "").strip()
            if v:
                found[kind].add(v)
    return found


def _leaks(text: str, ids: dict[str, set[str]], *, dates: bool = True) -> list[str]:
    hits = [v for k in ("name", "id", "accession") for v in ids[k] if v in text]
    if dates:
        for d in ids["date"]:
            variants = {d}
            if re.fullmatch(r"\d{8}", d):
                variants.add(f"{d[:4]}-{d[4:6]}-{d[6:]}")
            # a date as a token of its own, not digits inside a UID or a number
            hits += [v for v in variants
                     if re.search(rf"(?<![\d.]){re.escape(v)}(?!\.?\d)", text)]
    return hits


def _png_text(path: Path) -> str:
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        return "\n".join(f"{k}={v}" for k, v in (getattr(im, "text", {}) or {}).items())


def test_find_sample_data_default_and_explicit(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no ./sample_dicom here: the repository's copy
    assert find_sample_data() == SAMPLE.resolve()
    assert find_sample_data(SAMPLE) == SAMPLE.resolve()
    (tmp_path / "sample_dicom").mkdir()  # ./sample_dicom wins, but must hold the task
    from dicomml.errors import ConfigError

    with pytest.raises(ConfigError, match="head_ct_task/labels.csv"):
        find_sample_data()


def test_demo_refuses_output_inside_the_export(capsys):
    before = sorted(p.name for p in SAMPLE.iterdir())
    assert main(["demo", "--out", str(SAMPLE / "demo-out"), "--no-progress"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "inside the sample export" in err[0], err
    assert sorted(p.name for p in SAMPLE.iterdir()) == before


def test_demo_bad_epochs_is_a_usage_error(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--epochs", "0"]) == 2
    assert "--epochs must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capfd, caplog):
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "demo"
    t0 = time.perf_counter()
    status = main(["demo", "--out", str(out), "--log-level", "INFO"])
    elapsed = time.perf_counter() - t0
    cap = capfd.readouterr()
    assert status == 0, cap.err[-3000:]
    print(f"dicomml demo took {elapsed:.0f} s")  # shown with -s / -rP

    # the run folder (DESIGN.md's contract) and the reports
    run, reports = out / "run", out / "reports"
    for name in ("config.toml", "model.keras", "history.csv", "manifest.csv", "metrics.json",
                 "predictions.csv", "plots/training_curves.png", "plots/roc_image.png",
                 "plots/roc_study_max.png", "report.html"):
        assert (run / name).is_file(), name
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "file not indexed by the scan: not DICOM" in page  # head_ct_task/labels.csv
    assert page.count('alt="Grad-CAM ') >= 1
    manifest = pd.read_csv(run / "manifest.csv", dtype=str)
    test = manifest[manifest["split"] == "test"]
    test_studies = set(test["study_instance_uid"])
    assert test_studies
    # patient-level split: no patient in two splits
    assert manifest.groupby("patient_key")["split"].nunique().max() == 1

    srs = sorted(reports.glob("SR_*.dcm"))
    assert {p.name[3:-4] for p in srs} == test_studies
    for p in srs:
        ds = pydicom.dcmread(p)
        assert ds.Modality == "SR"
        assert ds.StudyInstanceUID == p.name[3:-4]
    studies = pd.read_csv(reports / "studies.csv", dtype={"study_instance_uid": str})
    assert set(studies["study_instance_uid"]) == test_studies
    labels = pd.read_csv(SAMPLE / TASK_FOLDER / "labels.csv", dtype=str).set_index(
        "StudyInstanceUID")["label"]
    assert (studies["label"].to_numpy() == labels[studies["study_instance_uid"]].to_numpy()
            ).all()
    positives = set(studies.loc[studies["present"].astype(bool), "study_instance_uid"])
    scs = sorted(reports.glob("GRADCAM_*.dcm"))
    assert {p.name[8:-4] for p in scs} == positives
    for p in scs:
        assert pydicom.dcmread(p).SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"

    # headline metrics with intervals on stdout, equal to an independent computation
    from sklearn.metrics import roc_auc_score

    pred = pd.read_csv(reports / "predictions.csv", dtype={"sop_instance_uid": str})
    truth = pd.read_csv(run / "manifest.csv", dtype=str).set_index("sop_instance_uid")
    y = (truth.loc[pred["sop_instance_uid"], "label"].to_numpy() == "haemorrhage")
    auc = roc_auc_score(y.astype(int), pred["prob_haemorrhage"].to_numpy())
    m = re.search(r"^\s*image\s+n=(\d+): roc_auc (\d\.\d{3}) \[(\d\.\d{3}), (\d\.\d{3})\]",
                  cap.out, re.M)
    assert m, cap.out
    assert int(m.group(1)) == len(test)
    assert float(m.group(2)) == pytest.approx(auc, abs=5e-4)
    assert float(m.group(3)) <= float(m.group(2)) <= float(m.group(4))
    assert re.search(r"study_max\s+n=%d: roc_auc" % len(test_studies), cap.out)
    assert str(run) in cap.out and str(reports) in cap.out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["image"]["roc_auc"]["value"] == pytest.approx(auc, abs=1e-9)

    # privacy: nothing printed, logged or written (besides the DICOM reports and the Index,
    # which carry identifiers by design) holds a patient identifier of the sample export
    ids = _identifiers(SAMPLE)
    assert ids["id"] and ids["name"] and ids["date"] and ids["accession"]
    assert not _leaks(cap.out, ids), "stdout"
    assert not _leaks(cap.err, ids), "stderr"
    assert not _leaks(caplog.text, ids), "log records"
    checked = 0
    for path in out.rglob("*"):
        if not path.is_file() or path.suffix == ".dcm" or ".sqlite" in path.name \
                or path.relative_to(out).parts[0] == "cache":
            continue
        if path.suffix in TEXT_SUFFIXES:
            text = path.read_text(encoding="utf-8", errors="replace")
            assert not _leaks(text, ids), path
        elif path.suffix == ".png":
            assert not _leaks(_png_text(path), ids), path
        elif zipfile.is_zipfile(path):  # .keras: the members, uncompressed
            with zipfile.ZipFile(path) as z:
                for member in z.namelist():
                    text = z.read(member).decode("latin-1")
                    assert not _leaks(text, ids, dates=member.endswith(".json")), (path, member)
        else:  # TensorBoard logs and other binaries: search the bytes for textual ids
            text = path.read_bytes().decode("latin-1")
            assert not _leaks(text, ids, dates=False), path
        checked += 1
    assert checked >= 10


def test_demo_config_is_train_toml_with_the_demo_folders(tmp_path):
    from dicomml.demo import _config
    from dicomml.train.config import load_config

    cfg = _config(SAMPLE, tmp_path, epochs=3, workers=0)
    ref = load_config(SAMPLE / "train.toml")
    assert cfg.data.cache == str(tmp_path / "cache")
    assert cfg.data.index == str(tmp_path / "head_ct_index.sqlite")
    assert (cfg.train.epochs, cfg.data.workers) == (3, 0)
    assert cfg.data.folder == str(SAMPLE / TASK_FOLDER)
    assert cfg.preprocess == ref.preprocess and cfg.split == ref.split
    assert cfg.model == ref.model
    assert cfg.replace(train={"epochs": ref.train.epochs}).train == ref.train


def test_demo_without_train_toml_names_the_file(tmp_path):
    """The demo's training configuration is the export's train.toml, never a copy in code."""
    import shutil

    from dicomml.demo import _config
    from dicomml.errors import ConfigError

    data = tmp_path / "export"
    (data / TASK_FOLDER).mkdir(parents=True)
    shutil.copy(SAMPLE / TASK_FOLDER / "labels.csv", data / TASK_FOLDER / "labels.csv")
    with pytest.raises(ConfigError, match="train.toml not found"):
        _config(data, tmp_path / "out", None, None)
