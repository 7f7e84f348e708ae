"""One operating point: chosen on validation, in metrics.json, printed, on the ROC/PR plots,
in predictions.csv and in the SR's algorithm parameters."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dicomml.evaluate.evaluation import headline, operating_point
from dicomml.evaluate.plots import plot_pr, plot_roc


def _red_pixels(path) -> int:
    from matplotlib import image as mpimg

    a = mpimg.imread(path)[..., :3]
    return int(((a[..., 0] > 0.9) & (a[..., 1] < 0.15) & (a[..., 2] < 0.15)).sum())


def test_plots_mark_the_operating_point(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.clip(y * 0.3 + rng.random(200) * 0.7, 0, 1)
    for fn, name in ((plot_roc, "roc"), (plot_pr, "pr")):
        plain = fn(y, s, tmp_path / f"{name}.png")
        marked = fn(y, s, tmp_path / f"{name}_t.png", threshold=0.5)
        assert _red_pixels(plain) == 0 and _red_pixels(marked) > 20


def test_operating_point_from_metrics():
    metrics = {"meta": {"aggregation": ["max", "mean"], "threshold_data": "val"},
               "image": {"threshold": {"value": 0.3, "method": "youden",
                                       "chosen_on": "threshold_data"}},
               "study_max": {"threshold": {"value": 0.6, "method": "youden",
                                           "chosen_on": "threshold_data"}}}
    op = operating_point(metrics)
    assert op == {"threshold": 0.6, "level": "study_max", "method": "youden",
                  "chosen_on": "val"}
    assert "operating point: threshold 0.6 (youden on val, study_max)" in headline(
        {**metrics, "meta": {**metrics["meta"], "operating_point": op}})
    assert operating_point({"meta": {}}) == {}


@pytest.mark.slow
def test_evaluate_then_predict_use_one_threshold(tmp_path_factory, tmp_path):
    import keras  # noqa: F401 - a hard dependency: a broken install fails
    from dicomml.evaluate.evaluation import evaluate_run
    from dicomml.evaluate.prediction import predict
    from dicomml.report.sr import read_sr
    from tests.evaluate.runfolder import copy_run, dicom_folder, shared_run

    shared = shared_run(tmp_path_factory)
    run = copy_run(shared, tmp_path / "run")
    metrics = evaluate_run(run, aggregation=("max",), n_resamples=20, workers=0,
                           progress=False)
    op = metrics["meta"]["operating_point"]
    assert op["level"] == "study_max" and op["chosen_on"] == "val"
    assert op["threshold"] == metrics["study_max"]["threshold"]["value"]
    assert json.loads((run / "metrics.json").read_text())["meta"]["operating_point"] == op
    assert (run / "plots" / "roc_image.png").is_file()
    assert _red_pixels(run / "plots" / "roc_study_max.png") > 20
    pred = pd.read_csv(run / "predictions.csv")
    want = np.where(pred["prob_haemorrhage"] >= op["threshold"], "haemorrhage", "normal")
    assert (pred["prediction"].to_numpy() == want).all()

    res = predict(run, dicom_folder(shared, tmp_path / "in"), tmp_path / "out", workers=0,
                  progress=False, write_sc=False)
    assert res.threshold == op["threshold"] and res.operating_point == op
    table = pd.read_csv(res.predictions_csv)
    assert (table["image_threshold"] == op["threshold"]).all()
    assert (table["study_threshold"] == op["threshold"]).all()
    for p in res.sr_paths:
        params = read_sr(p).algorithm.parameters
        assert f"threshold={op['threshold']:.6g}" in params
        assert "operating_point=youden on val (study_max)" in params
