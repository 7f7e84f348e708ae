"""The committed sample_dicom/ export: contents, DICOMDIR, regeneration, learnability."""

from __future__ import annotations

import csv
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.errors import InvalidDicomError

from dicomml.testing.sample import main

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_dicom"

pytestmark = pytest.mark.skipif(not (SAMPLE / "DICOMDIR").is_file(),
                                reason="sample_dicom/ not generated")


#: Kept by hand next to the generated files (the demo's training configuration).
HAND_WRITTEN = ("train.toml",)


def _digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.relative_to(root).as_posix() not in HAND_WRITTEN}


@pytest.mark.slow
def test_regenerates_byte_identical(tmp_path):
    out = tmp_path / "sample_dicom"
    assert main([str(out)]) == 0
    assert _digest(out) == _digest(SAMPLE)
    # Regenerating over a previous export replaces it, still identical.
    assert main([str(out)]) == 0
    assert _digest(out) == _digest(SAMPLE)


def test_main_refuses_a_foreign_folder(tmp_path, capsys):
    (tmp_path / "precious.txt").write_text("keep me")
    assert main([str(tmp_path)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def _dicomdir():
    """(records, paths of the files they reference), read from (0004,1220) directly."""
    dicomdir = pydicom.dcmread(SAMPLE / "DICOMDIR")
    assert dicomdir.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.1.3.10"
    records = list(dicomdir.DirectoryRecordSequence)
    paths = []
    for r in records:
        if "ReferencedFileID" in r:
            fid = r.ReferencedFileID
            parts = [fid] if isinstance(fid, str) else list(fid)
            paths.append(SAMPLE.joinpath(*parts))
    return records, paths


def test_dicomdir_references_every_valid_instance():
    records, paths = _dicomdir()
    task = SAMPLE / "head_ct_task"
    on_disk = {p for p in SAMPLE.rglob("*") if p.is_file() and task not in p.parents
               and p.name not in ("DICOMDIR", "README.md", "IM9TRUNC", "Thumbs.db", *HAND_WRITTEN)}
    assert set(paths) == on_disk
    for p in paths:
        assert "." not in p.name                        # no extensions
        for part in p.relative_to(SAMPLE).parts:        # PS3.10 File ID components
            assert len(part) <= 8 and part.isupper() and part.isalnum()
    datasets = [pydicom.dcmread(p) for p in paths]
    for p, ds in zip(paths, datasets):
        if "PixelData" in ds:
            a = ds.pixel_array                           # decodes with installed plugins
            assert a.size == ds.Rows * ds.Columns * int(ds.get("NumberOfFrames", 1)) * \
                ds.SamplesPerPixel
    assert len({ds.PatientID for ds in datasets}) >= 4
    assert {ds.Modality for ds in datasets} >= {"CT", "MR", "CR", "DX", "SR", "KO", "OT"}
    sops = {ds.SOPClassUID.name for ds in datasets}
    assert "Enhanced CT Image Storage" in sops
    assert "Secondary Capture Image Storage" in sops
    ts = {ds.file_meta.TransferSyntaxUID for ds in datasets}
    assert len(ts) >= 4
    cts = [ds for ds in datasets if ds.SOPClassUID.name == "CT Image Storage"]
    assert any("LOCALIZER" in ds.ImageType for ds in cts)
    assert any([float(v) for v in ds.ImageOrientationPatient] not in
               ([1, 0, 0, 0, 1, 0], [1, 0, 0, 0, 0, -1]) for ds in cts)
    assert any(ds.get("PhotometricInterpretation") == "MONOCHROME1" for ds in datasets)
    # The DICOMDIR's patient records match the files, and each record the file it names.
    patients = {r.PatientID for r in records if r.DirectoryRecordType == "PATIENT"}
    assert patients == {ds.PatientID for ds in datasets}
    by_uid = {ds.SOPInstanceUID: ds for ds in datasets}
    for r in records:
        if "ReferencedFileID" in r:
            assert by_uid[r.ReferencedSOPInstanceUIDInFile].SOPClassUID == \
                r.ReferencedSOPClassUIDInFile


def test_broken_and_non_dicom_files():
    broken = SAMPLE / "PT000000" / "ST000000" / "SE000000" / "IM9TRUNC"
    with pytest.raises(ValueError, match="less than expected"):
        pydicom.dcmread(broken).pixel_array
    with pytest.raises(InvalidDicomError):
        pydicom.dcmread(SAMPLE / "PT000000" / "ST000000" / "SE000000" / "Thumbs.db")


def test_size_budget_and_readme():
    total = sum(p.stat().st_size for p in SAMPLE.rglob("*") if p.is_file())
    assert total <= 25 * 1024 * 1024
    readme = (SAMPLE / "README.md").read_text(encoding="utf-8")
    assert "python -m dicomml.testing.sample sample_dicom" in readme


def _task():
    with open(SAMPLE / "head_ct_task" / "labels.csv", newline="", encoding="utf-8") as f:
        labels = {r["StudyInstanceUID"]: r["label"] for r in csv.DictReader(f)}
    slices = []
    for p in sorted((SAMPLE / "head_ct_task").rglob("IM*")):
        ds = pydicom.dcmread(p)
        hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + \
            float(ds.RescaleIntercept)
        slices.append((ds.StudyInstanceUID, p.parent.name, hu, float(ds.SliceThickness)))
    return labels, slices


@pytest.mark.slow
def test_task_is_learnable_but_not_by_global_cues():
    """A local detector separates the classes; global image statistics do not.

    Study-level ROC AUC (scikit-learn) of (a) the 99.9th percentile of the smoothed brain,
    a lesion detector with no training, must be >= 0.9; (b) a logistic regression on global
    cues (mean and spread of the head, head area, brain mean, slice thickness), evaluated with
    patient-grouped cross-validation, must stay <= 0.75.
    """
    from scipy.ndimage import binary_erosion, gaussian_filter
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold, cross_val_predict

    labels, slices = _task()
    assert len(labels) >= 40 and len(slices) >= 250
    assert sum(v == "haemorrhage" for v in labels.values()) == len(labels) // 2
    g, y, glob, local = [], [], [], []
    for uid, folder, hu, thick in slices:
        head = hu > -200
        brain = binary_erosion(gaussian_filter(((hu > -50) & (hu < 150)) * 1.0, 3) > 0.5,
                               iterations=6)
        glob.append([hu[head].mean(), hu[head].std(), head.sum(), hu[brain].mean(), thick])
        local.append(np.percentile(gaussian_filter(hu, 1.5)[brain], 99.9))
        g.append(folder)
        y.append(labels[uid] == "haemorrhage")
    g, y, local = np.array(g), np.array(y), np.array(local)
    X = np.array(glob)
    X = (X - X.mean(0)) / X.std(0)
    p = cross_val_predict(LogisticRegression(max_iter=2000), X, y, groups=g,
                          cv=GroupKFold(5), method="predict_proba")[:, 1]
    studies = np.unique(g)
    ys = np.array([y[g == s][0] for s in studies])
    auc_global = roc_auc_score(ys, [p[g == s].mean() for s in studies])
    auc_local = roc_auc_score(ys, [local[g == s].mean() for s in studies])
    assert auc_local >= 0.9
    assert auc_global <= 0.75


def test_testing_package_does_not_import_tensorflow():
    code = ("import sys, dicomml.testing, dicomml.testing.sample; "
            "print('tensorflow' in sys.modules or 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
