"""evaluate_run and predict on a real run folder, checked against independent references
(scikit-learn on probabilities recomputed with the pipeline + Keras; pydicom for the source
instances; dciodvfy / dsrdump / highdicom for the DICOM outputs)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

import keras  # noqa: F401 - a hard dependency: a broken install fails

from dicomml.evaluate.evaluation import evaluate_run  # noqa: E402
from dicomml.evaluate.prediction import predict  # noqa: E402
from dicomml.report.sr import read_sr  # noqa: E402
from tests.evaluate.runfolder import (copy_run, dicom_folder, reference_probabilities,  # noqa: E402
                                      shared_run, source_instances)
from tests.report.helpers import dciodvfy_errors, dsrdump_ok  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return shared_run(tmp_path_factory)


def _no_identifiers(paths, sources: pd.DataFrame):
    secrets = set(sources["patient_id"]) | set(sources["patient_name"])
    for p in paths:
        text = p.read_text(encoding="utf-8")
        for s in secrets:
            assert s not in text, f"{s!r} found in {p.name}"


def test_evaluate_run_matches_reference(shared, tmp_path):
    run = copy_run(shared, tmp_path / "run")
    metrics = evaluate_run(run, threshold=0.5, n_resamples=200, workers=0, progress=False)
    assert json.loads((run / "metrics.json").read_text()) == metrics

    man = pd.read_csv(run / "manifest.csv", dtype=str)
    test = man[man["split"] == "test"].reset_index(drop=True)
    p = reference_probabilities(run, test)
    y = (test["label"] == "haemorrhage").to_numpy().astype(int)
    img = metrics["image"]
    assert img["roc_auc"]["value"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-6)
    assert img["pr_auc"]["value"] == pytest.approx(skm.average_precision_score(y, p), abs=1e-6)
    yhat = (p >= 0.5).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, yhat, labels=[0, 1]).ravel()
    assert img["confusion_matrix"] == [[int(tn), int(fp)], [int(fn), int(tp)]]
    assert img["accuracy"]["value"] == pytest.approx((tp + tn) / len(y))
    assert img["brier"]["value"] == pytest.approx(skm.brier_score_loss(y, p), abs=1e-6)
    assert img["threshold"] == {"value": 0.5, "method": "fixed", "chosen_on": None}
    assert img["counts"]["n"] == len(test) and img["counts"]["positives"] == int(y.sum())
    assert img["counts"]["groups"] == test["patient_key"].nunique()
    for name, how in (("study_max", "max"), ("study_mean", "mean")):
        df = pd.DataFrame({"s": test["study_instance_uid"], "p": p, "y": y})
        g = df.groupby("s").agg({"p": how, "y": "max"})
        assert metrics[name]["roc_auc"]["value"] == pytest.approx(
            skm.roc_auc_score(g["y"], g["p"]), abs=1e-6)
        assert metrics[name]["counts"]["n"] == len(g)
    for level in ("image", "study_max", "study_mean"):
        for key in ("roc_auc", "sensitivity", "specificity", "f1", "ece"):
            v, (lo, hi) = metrics[level][key]["value"], metrics[level][key]["ci95"]
            if v is not None and lo is not None:
                assert lo - 1e-9 <= v <= hi + 1e-9 or math.isclose(lo, hi)

    pred = pd.read_csv(run / "predictions.csv", dtype={"study_instance_uid": str,
                                                       "sop_instance_uid": str})
    assert list(pred.columns) == ["study_instance_uid", "series_instance_uid",
                                  "sop_instance_uid", "frame", "prob_normal",
                                  "prob_haemorrhage", "label", "target", "prediction"]
    np.testing.assert_allclose(pred["prob_haemorrhage"], p, rtol=1e-5, atol=1e-6)
    assert pred["sop_instance_uid"].tolist() == test["sop_instance_uid"].tolist()
    assert (pred["prediction"] == np.where(p >= 0.5, "haemorrhage", "normal")).all()
    _no_identifiers([run / "predictions.csv", run / "metrics.json"],
                    source_instances(shared.parent / "data"))
    assert not any(k in (run / "predictions.csv").read_text() for k in test["patient_key"])
    for name in ("roc_image", "pr_image", "confusion_image", "calibration_image",
                 "roc_study_max", "confusion_study_mean", "training_curves"):
        assert (run / "plots" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_threshold_from_validation_split(shared, tmp_path):
    run = copy_run(shared, tmp_path / "run")
    metrics = evaluate_run(run, threshold="youden", aggregation="max", n_resamples=50,
                           workers=0, progress=False, plots=False)
    assert set(metrics) == {"meta", "image", "study_max"}
    man = pd.read_csv(run / "manifest.csv", dtype=str)
    val = man[man["split"] == "val"].reset_index(drop=True)
    pv = reference_probabilities(run, val)
    yv = (val["label"] == "haemorrhage").to_numpy().astype(int)
    fpr, tpr, thr = skm.roc_curve(yv, pv, drop_intermediate=False)
    j = tpr - fpr
    expected = thr[np.flatnonzero(j >= j.max() - 1e-12)[0]]
    t = metrics["image"]["threshold"]
    assert t["method"] == "youden" and t["chosen_on"] == "threshold_data"
    assert t["value"] == pytest.approx(float(expected), rel=1e-6)
    assert metrics["meta"]["threshold_data"] == "val"


@pytest.mark.tool
def test_evaluate_reports(shared, tmp_path):
    run = copy_run(shared, tmp_path / "run")
    metrics = evaluate_run(run, threshold=0.0, aggregation=("max",), n_resamples=20,
                           workers=0, progress=False, plots=False, reports=True)
    man = pd.read_csv(run / "manifest.csv", dtype=str)
    test = man[man["split"] == "test"]
    srs = sorted((run / "reports").glob("SR_*.dcm"))
    assert len(srs) == test["study_instance_uid"].nunique() == metrics["study_max"]["counts"]["n"]
    # threshold 0 -> every study is positive and gets its Grad-CAM image
    assert len(list((run / "reports").glob("GRADCAM_*.dcm"))) == len(srs)
    src = source_instances(shared.parent / "data")
    for sr_path in srs:
        got = read_sr(sr_path)
        assert got.present is True
        want = test[test["study_instance_uid"] == got.study_instance_uid]
        sop_class = dict(zip(src["sop_instance_uid"], src["sop_class_uid"]))
        assert set(got.references) == {(sop_class[u], u) for u in want["sop_instance_uid"]}
    errors, out = dciodvfy_errors(srs[0])
    assert errors == [], out


def test_evaluate_new_labelled_data(shared, tmp_path):
    run = copy_run(shared, tmp_path / "run")
    data = shared.parent / "data"
    metrics = evaluate_run(run, data=data, labels=data / "labels.csv", threshold=0.5,
                           aggregation=("mean",), n_resamples=50, workers=0, progress=False,
                           plots=False)
    man = pd.read_csv(run / "manifest.csv")
    assert metrics["image"]["counts"]["n"] == len(man)  # every labelled image, all splits
    assert metrics["study_mean"]["counts"]["n"] == man["study_instance_uid"].nunique()
    assert metrics["meta"]["labels"].endswith("labels.csv")


@pytest.mark.tool
def test_predict_writes_valid_reports(shared, tmp_path):
    data = dicom_folder(shared, tmp_path / "incoming")
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    res = predict(shared, data, tmp_path / "out", threshold=0.0, workers=0, progress=False)
    assert res.ok and res.skipped == ()
    src = source_instances(data)
    studies = sorted(src["study_instance_uid"].unique())
    assert res.n_studies == len(studies) == len(res.sr_paths) == len(res.sc_paths)

    pred = pd.read_csv(res.predictions_csv, dtype=str)
    rows = pred.assign(path=[src.set_index("sop_instance_uid").loc[u, "path"]
                             for u in pred["sop_instance_uid"]], frame=0)
    p = reference_probabilities(shared, rows)
    np.testing.assert_allclose(pred["prob_haemorrhage"].astype(float), p, rtol=1e-5, atol=1e-6)
    _no_identifiers([res.predictions_csv], src)

    for sr_path in res.sr_paths:
        errors, out = dciodvfy_errors(sr_path)
        assert errors == [], out
        dsrdump_ok(sr_path)
        got = read_sr(sr_path)
        mine = rows["study_instance_uid"] == got.study_instance_uid
        assert sr_path.name == f"SR_{got.study_instance_uid}.dcm"
        assert (got.finding.value, got.finding.scheme_designator) == ("1386000", "SCT")
        assert got.probability == pytest.approx(p[mine.to_numpy()].max(), rel=1e-5)
        assert got.present is True
        assert got.algorithm.name == "tiny_cnn"
        assert "threshold=0" in got.algorithm.parameters
        want = src[src["study_instance_uid"] == got.study_instance_uid]
        assert set(got.references) == set(zip(want["sop_class_uid"], want["sop_instance_uid"]))
    import pydicom

    for sc_path in res.sc_paths:
        errors, out = dciodvfy_errors(sc_path)
        assert errors == [], out
        sc = pydicom.dcmread(sc_path)
        mine = (rows["study_instance_uid"] == sc.StudyInstanceUID).to_numpy()
        best = rows["sop_instance_uid"].to_numpy()[mine][np.argmax(p[mine])]
        (ref,) = sc.SourceImageSequence
        assert ref.ReferencedSOPInstanceUID == best
        # at the source's resolution (64x64), plus the colour bar and the label banner
        src_ds = pydicom.dcmread(src.set_index("sop_instance_uid").loc[best, "path"])
        assert sc.pixel_array.shape[0] == src_ds.Rows + 14
        assert sc.pixel_array.shape[1] >= src_ds.Columns + 14
        assert sc.BurnedInAnnotation == "YES" and sc.PixelSpacing == src_ds.PixelSpacing
    assert len(res.pm_paths) == len(res.sc_paths)
    for pm_path in res.pm_paths:
        errors, out = dciodvfy_errors(pm_path)
        assert errors == [], out
    assert {p: p.read_bytes() for p in data.rglob("*") if p.is_file()} == before


@pytest.mark.tool
def test_predict_negative_and_skipped(shared, tmp_path):
    data = shared.parent / "data"  # holds labels.csv: not DICOM, so skipped
    res = predict(shared, data, tmp_path / "out", threshold=1.0, write_sc=True, workers=0,
                  progress=False)
    assert [s["path"] for s in res.skipped] == [str(data / "labels.csv")]
    assert not res.ok
    assert res.sc_paths == ()  # nothing reaches probability 1.0
    assert len(res.sr_paths) == res.n_studies
    got = read_sr(res.sr_paths[0])
    assert got.present is False
    errors, out = dciodvfy_errors(res.sr_paths[0])
    assert errors == [], out
