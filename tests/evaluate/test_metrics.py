"""Metrics against scikit-learn and hand-computed small cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from dicomml.errors import ConfigError
from dicomml.evaluate import metrics as M
from dicomml.evaluate.aggregate import aggregate_studies, normalize_aggregation
from dicomml.evaluate.bootstrap import classification_metrics, cluster_bootstrap, regression_metrics


def _case(seed, n=200, ties=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    if ties:
        s = np.round(s, 1)
    return y, s


def test_hand_computed_counts():
    y = [1, 1, 1, 0, 0, 0, 0, 1]
    p = [1, 1, 0, 0, 0, 1, 0, 1]
    # tp=3, fn=1, fp=1, tn=3
    assert M.binary_counts(y, p) == (3, 1, 3, 1)
    assert M.sensitivity(y, p) == 0.75
    assert M.specificity(y, p) == 0.75
    assert M.precision(y, p) == 0.75
    assert M.f1(y, p) == 0.75
    assert M.accuracy(y, p) == 0.75
    assert M.confusion_matrix(y, p).tolist() == [[3, 1], [1, 3]]
    assert math.isnan(M.sensitivity([0, 0], [0, 1]))
    assert math.isnan(M.roc_auc([1, 1], [0.2, 0.3]))


def test_hand_computed_auc():
    # positives 0.8, 0.4; negatives 0.5, 0.1 -> pairs won: (0.8>0.5,0.8>0.1,0.4>0.1) = 3/4
    assert M.roc_auc([1, 1, 0, 0], [0.8, 0.4, 0.5, 0.1]) == 0.75
    # tie counts one half
    assert M.roc_auc([1, 0], [0.5, 0.5]) == 0.5
    # AP: ranks 0.8(+) 0.5(-) 0.4(+) 0.1(-): P@R=.5 is 1, P@R=1 is 2/3 -> (1 + 2/3) / 2
    assert M.pr_auc([1, 1, 0, 0], [0.8, 0.4, 0.5, 0.1]) == pytest.approx(5 / 6, abs=1e-15)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ties", [False, True])
def test_ranking_metrics_match_sklearn(seed, ties):
    y, s = _case(seed, ties=ties)
    assert M.roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert M.pr_auc(y, s) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
    fpr, tpr, thr = M.roc_curve(y, s)
    sfpr, stpr, sthr = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sfpr)
    np.testing.assert_allclose(tpr, stpr)
    np.testing.assert_allclose(thr[1:], sthr[1:])
    yhat = (s >= 0.5).astype(int)
    assert M.f1(y, yhat) == pytest.approx(skm.f1_score(y, yhat))
    assert M.precision(y, yhat) == pytest.approx(skm.precision_score(y, yhat))
    assert M.sensitivity(y, yhat) == pytest.approx(skm.recall_score(y, yhat))
    assert M.brier(y, s) == pytest.approx(skm.brier_score_loss(y, s))
    np.testing.assert_array_equal(M.confusion_matrix(y, yhat), skm.confusion_matrix(y, yhat))


def test_calibration_matches_sklearn():
    y, s = _case(5, n=500)
    mean_p, frac, count = M.reliability_curve(y, s, n_bins=10)
    prob_true, prob_pred = calibration_curve(y, s, n_bins=10, strategy="uniform")
    np.testing.assert_allclose(frac, prob_true)
    np.testing.assert_allclose(mean_p, prob_pred)
    assert count.sum() == 500
    # ECE by hand from the same bins
    assert M.expected_calibration_error(y, s, 10) == pytest.approx(
        float(np.sum(count / 500 * np.abs(prob_pred - prob_true))))
    # hand case: two bins, [0.1, 0.1 | 0.9, 0.9] with labels [0, 1 | 1, 1]
    assert M.expected_calibration_error([0, 1, 1, 1], [0.1, 0.1, 0.9, 0.9], 10) == \
        pytest.approx(0.5 * 0.4 + 0.5 * 0.1)


def test_thresholds():
    y = [0, 0, 0, 1, 1, 1]
    s = [0.1, 0.2, 0.6, 0.4, 0.7, 0.9]
    # thresholds 0.7: sens 2/3, spec 1 -> J=.667; 0.4: sens 1, spec 2/3 -> J=.667 (tie, highest)
    assert M.youden_threshold(y, s) == 0.7
    assert M.threshold_for_sensitivity(y, s, 1.0) == 0.4
    assert M.threshold_for_sensitivity(y, s, 0.5) == 0.7
    assert M.choose_threshold(y, s, "sensitivity:1.0") == (0.4, "sensitivity:1")
    assert M.choose_threshold(y, s, 0.3) == (0.3, "fixed")
    with pytest.raises(ConfigError):
        M.choose_threshold(y, s, "best")


def test_multiclass_and_regression_match_sklearn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 150)
    logits = rng.normal(size=(150, 3)) + 1.5 * np.eye(3)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert M.multiclass_roc_auc(y, p, "macro") == pytest.approx(
        skm.roc_auc_score(y, p, multi_class="ovr", average="macro"))
    onehot = np.eye(3)[y]
    assert M.multiclass_roc_auc(y, p, "micro") == pytest.approx(
        skm.roc_auc_score(onehot, p, average="micro"))
    t = rng.normal(size=50)
    q = t + rng.normal(scale=0.3, size=50)
    assert M.mse(t, q) == pytest.approx(skm.mean_squared_error(t, q))
    assert M.mae(t, q) == pytest.approx(skm.mean_absolute_error(t, q))
    assert M.r2(t, q) == pytest.approx(skm.r2_score(t, q))
    out = classification_metrics(y, p, groups=np.arange(150) // 3, n_resamples=50,
                                 classes=["none", "small bleed", "big"])
    assert out["metrics"]["accuracy"]["value"] == pytest.approx(
        skm.accuracy_score(y, p.argmax(1)))
    assert out["metrics"]["f1_macro"]["value"] == pytest.approx(
        skm.f1_score(y, p.argmax(1), average="macro"))
    assert "roc_auc_small_bleed" in out["metrics"]
    assert out["counts"]["groups"] == 50
    reg = regression_metrics(t, q, n_resamples=50)
    lo, hi = reg["metrics"]["mae"]["ci95"]
    assert lo <= reg["metrics"]["mae"]["value"] <= hi


def test_cluster_bootstrap_keeps_patients_together():
    # two patients, each entirely one class: every resample holds 1 or 2 whole patients
    groups = np.array(["a"] * 3 + ["b"] * 5)
    sizes = []
    res = cluster_bootstrap({"n": lambda i: sizes.append(len(i)) or len(i)}, groups,
                            n_resamples=200, seed=1)
    assert set(sizes) <= {6, 8, 10}
    assert set(sizes) == {6, 8, 10}
    assert 6 <= res["n"][0] <= res["n"][1] <= 10
    # resamples with a single class are skipped: AUC needs both patients
    y = np.array([0] * 3 + [1] * 5)
    s = np.linspace(0, 1, 8)
    res = cluster_bootstrap({"auc": lambda i: M.roc_auc(y[i], s[i])}, groups,
                            n_resamples=200, seed=1)
    assert res["auc"] == (1.0, 1.0)


def test_binary_table_json_ready():
    y, s = _case(9, n=120)
    out = classification_metrics(y, s, threshold=0.5, groups=np.arange(120) // 4,
                                 n_resamples=200, seed=0)
    m = out["metrics"]
    assert set(m) == {"roc_auc", "pr_auc", "accuracy", "sensitivity", "specificity",
                      "precision", "f1", "brier", "ece"}
    assert m["roc_auc"]["value"] == pytest.approx(skm.roc_auc_score(y, s))
    for v in m.values():
        lo, hi = v["ci95"]
        assert lo <= v["value"] <= hi
    assert out["counts"] == {"n": 120, "positives": int(y.sum()),
                             "negatives": int(120 - y.sum()), "groups": 30}
    # one class only: AUC undefined -> None, not NaN (valid JSON)
    one = classification_metrics(np.zeros(10, int), np.linspace(0, 1, 10), n_resamples=30)
    assert one["metrics"]["roc_auc"] == {"value": None, "ci95": [None, None]}


@pytest.mark.slow
def test_bootstrap_coverage_binormal():
    """200 replicates of a binormal model with known AUC: the 95% interval covers ~95%."""
    from scipy.stats import norm

    d = 1.0
    true_auc = float(norm.cdf(d / math.sqrt(2)))
    rng = np.random.default_rng(2024)
    covered = 0
    reps = 200
    for r in range(reps):
        n_pat = 60
        y_pat = rng.integers(0, 2, n_pat)
        # 1..3 images per patient, sharing the patient's label, correlated scores
        n_img = rng.integers(1, 4, n_pat)
        groups = np.repeat(np.arange(n_pat), n_img)
        y = np.repeat(y_pat, n_img)
        s = d * y + np.repeat(rng.normal(0, math.sqrt(0.5), n_pat), n_img) \
            + rng.normal(0, math.sqrt(0.5), groups.size)
        ci = cluster_bootstrap({"auc": lambda i: M.roc_auc(y[i], s[i])}, groups,
                               n_resamples=300, seed=r)["auc"]
        covered += ci[0] <= true_auc <= ci[1]
    assert 0.88 <= covered / reps <= 0.99


def test_aggregate_studies():
    df = pd.DataFrame({
        "study_instance_uid": ["1", "1", "1", "2", "2"],
        "patient_key": ["p", "p", "p", "q", "q"],
        "prob_neg": [0.9, 0.2, 0.6, 0.7, 0.5],
        "prob_pos": [0.1, 0.8, 0.4, 0.3, 0.5],
        "target": [0, 1, 0, 0, 0],
    })
    mx = aggregate_studies(df, ["prob_neg", "prob_pos"], how="max")
    assert mx["prob_pos"].tolist() == [0.8, 0.5]
    assert mx["prob_neg"].tolist() == pytest.approx([0.2, 0.5])
    assert mx["target"].tolist() == [1, 0]
    assert mx["best_index"].tolist() == [1, 4]
    assert mx["n_images"].tolist() == [3, 2]
    mean = aggregate_studies(df, ["prob_neg", "prob_pos"], how="mean")
    assert mean["prob_pos"].tolist() == pytest.approx([1.3 / 3, 0.4])
    assert df["prob_pos"].tolist() == [0.1, 0.8, 0.4, 0.3, 0.5]  # input untouched
    assert normalize_aggregation(["max", "mean", "max"]) == ("max", "mean")
    with pytest.raises(ConfigError, match="Did you mean 'mean'"):
        normalize_aggregation("maen")
