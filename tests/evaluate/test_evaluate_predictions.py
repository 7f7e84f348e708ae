"""evaluate_predictions (the pure part of evaluate_run) on small fixed tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from dicomml.errors import ConfigError
from dicomml.evaluate.evaluation import evaluate_predictions, headline


def _binary_table(seed=0, n_studies=30, per=3):
    rng = np.random.default_rng(seed)
    y_study = rng.integers(0, 2, n_studies)
    rows = []
    for s in range(n_studies):
        for k in range(per):
            p = float(np.clip(rng.normal(0.35 + 0.3 * y_study[s], 0.2), 0, 1))
            rows.append({"patient_key": f"p{s // 2}", "study_instance_uid": f"1.2.{s}",
                         "prob_neg": 1 - p, "prob_pos": p, "target": int(y_study[s])})
    return pd.DataFrame(rows)


def test_binary_levels_against_sklearn():
    df = _binary_table()
    m = evaluate_predictions(df, classes=["neg", "pos"], n_resamples=100, threshold=0.5)
    assert set(m) == {"meta", "image", "study_max", "study_mean"}
    json.dumps(m, allow_nan=False)  # strict JSON
    assert m["image"]["roc_auc"]["value"] == pytest.approx(
        skm.roc_auc_score(df["target"], df["prob_pos"]))
    g = df.groupby("study_instance_uid").agg(p=("prob_pos", "max"), y=("target", "max"),
                                             q=("prob_pos", "mean"))
    assert m["study_max"]["roc_auc"]["value"] == pytest.approx(skm.roc_auc_score(g.y, g.p))
    assert m["study_mean"]["roc_auc"]["value"] == pytest.approx(skm.roc_auc_score(g.y, g.q))
    assert m["study_max"]["sensitivity"]["value"] == pytest.approx(
        skm.recall_score(g.y, g.p >= 0.5))
    assert m["study_max"]["counts"]["groups"] == 15
    assert m["meta"]["positive_class"] == "pos"
    assert "roc_auc" in headline(m) and "study_mean" in headline(m)


def test_threshold_rule_and_undecodable_rows():
    df = _binary_table(1)
    df.loc[0, ["prob_neg", "prob_pos"]] = np.nan
    m = evaluate_predictions(df, classes=["neg", "pos"], n_resamples=20,
                             threshold="sensitivity:0.9", aggregation="max")
    assert m["meta"]["excluded_undecodable"] == 1
    t = m["image"]["threshold"]
    assert t["method"] == "sensitivity:0.9" and t["chosen_on"] == "evaluated"
    ok = df.iloc[1:]
    assert m["image"]["sensitivity"]["value"] >= 0.9
    assert m["image"]["sensitivity"]["value"] == pytest.approx(
        skm.recall_score(ok["target"], ok["prob_pos"] >= t["value"]))
    # the positive class can be the first output (class order pos, neg: targets flip)
    m2 = evaluate_predictions(df.assign(target=1 - df["target"]),
                              classes=["pos", "neg"], positive=0, n_resamples=20,
                              threshold=0.5, aggregation="max")
    assert m2["image"]["roc_auc"]["value"] == pytest.approx(
        evaluate_predictions(df, classes=["neg", "pos"], n_resamples=20, threshold=0.5,
                             aggregation="max")["image"]["roc_auc"]["value"])


def test_a_table_where_no_example_was_decoded_is_a_clear_error():
    # every prediction NaN (every tensor failed): an error that says so, not a KeyError
    df = _binary_table(2)
    df[["prob_neg", "prob_pos"]] = np.nan
    with pytest.raises(ConfigError, match="none of the 90 predictions is a number"):
        evaluate_predictions(df, classes=["neg", "pos"], n_resamples=20)


def test_multiclass_and_regression():
    rng = np.random.default_rng(4)
    n = 90
    y = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3)) + 2 * np.eye(3)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    df = pd.DataFrame({"patient_key": np.arange(n) // 3, "study_instance_uid": np.arange(n),
                       "prob_a": p[:, 0], "prob_b": p[:, 1], "prob_c": p[:, 2], "target": y})
    m = evaluate_predictions(df, classes=["a", "b", "c"], n_resamples=20, aggregation="mean")
    assert m["image"]["roc_auc_macro"]["value"] == pytest.approx(
        skm.roc_auc_score(y, p, multi_class="ovr"))
    assert m["image"]["threshold"]["method"] == "argmax"
    assert np.array(m["image"]["confusion_matrix"]).sum() == n
    t = rng.normal(size=40)
    reg = pd.DataFrame({"patient_key": np.arange(40), "study_instance_uid": np.arange(40) // 2,
                        "prediction": t + 0.1, "target": t})
    r = evaluate_predictions(reg, classes=[], task="regression", n_resamples=20)
    assert r["image"]["mae"]["value"] == pytest.approx(0.1)
    assert r["study_max"]["mse"]["value"] == pytest.approx(0.01)
    assert "mae" in headline(r)
    with pytest.raises(ConfigError, match="lacks columns"):
        evaluate_predictions(reg.drop(columns="target"), classes=[], task="regression")
