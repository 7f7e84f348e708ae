"""Point metrics for classification and regression (numpy only, no TensorFlow).

Every function takes ``y_true`` first, never mutates its inputs, and returns a plain
``float`` (``nan`` where the metric is undefined, e.g. ROC AUC with a single class, or
sensitivity without positives) so that bootstrap resamples with one class can be skipped.

Conventions
-----------
* Binary tasks: ``y_true`` holds 0/1 (1 = the positive class), ``score`` the probability
  of the positive class, predictions are ``score >= threshold``.
* Multi-class tasks: ``y_true`` holds class indices ``0..K-1`` and ``prob`` is (N, K).

The ranking metrics are written in numpy (not scikit-learn) because the bootstrap calls
them thousands of times; the tests check them against scikit-learn.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata

from dicomml.errors import ConfigError

__all__ = [
    "confusion_matrix", "binary_counts", "accuracy", "sensitivity", "specificity",
    "precision", "f1", "roc_auc", "pr_auc", "roc_curve", "pr_curve", "brier",
    "reliability_curve", "expected_calibration_error", "youden_threshold",
    "threshold_for_sensitivity", "choose_threshold", "multiclass_roc_auc",
    "multiclass_brier", "mse", "mae", "r2",
]


def _div(a: float, b: float) -> float:
    return float(a) / float(b) if b else math.nan


def confusion_matrix(y_true, y_pred, n_classes: int | None = None) -> np.ndarray:
    """Counts ``C[i, j]`` of examples of true class ``i`` predicted as class ``j``.

    >>> confusion_matrix([0, 1, 1, 0], [0, 1, 0, 0]).tolist()
    [[2, 0], [1, 1]]
    """
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    if n_classes is None:
        n_classes = int(max(t.max(initial=0), p.max(initial=0))) + 1
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes)


def binary_counts(y_true, y_pred) -> tuple[int, int, int, int]:
    """``(tp, fp, tn, fn)`` of 0/1 labels and 0/1 predictions."""
    t = np.asarray(y_true).astype(bool)
    p = np.asarray(y_pred).astype(bool)
    tp = int(np.count_nonzero(t & p))
    fp = int(np.count_nonzero(~t & p))
    tn = int(np.count_nonzero(~t & ~p))
    fn = int(np.count_nonzero(t & ~p))
    return tp, fp, tn, fn


def accuracy(y_true, y_pred) -> float:
    """Fraction of exact matches (any number of classes)."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    return _div(np.count_nonzero(t == p), t.size)


def sensitivity(y_true, y_pred) -> float:
    """Recall of the positive class, TP / (TP + FN); ``nan`` without positives."""
    tp, _, _, fn = binary_counts(y_true, y_pred)
    return _div(tp, tp + fn)


def specificity(y_true, y_pred) -> float:
    """TN / (TN + FP); ``nan`` without negatives."""
    _, fp, tn, _ = binary_counts(y_true, y_pred)
    return _div(tn, tn + fp)


def precision(y_true, y_pred) -> float:
    """Positive predictive value TP / (TP + FP); ``nan`` when nothing is predicted positive."""
    tp, fp, _, _ = binary_counts(y_true, y_pred)
    return _div(tp, tp + fp)


def f1(y_true, y_pred) -> float:
    """2 TP / (2 TP + FP + FN); ``nan`` when there are neither positives nor positive calls."""
    tp, fp, _, fn = binary_counts(y_true, y_pred)
    return _div(2 * tp, 2 * tp + fp + fn)


def roc_auc(y_true, score) -> float:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks for ties).

    Equal to ``sklearn.metrics.roc_auc_score``; ``nan`` when only one class is present.
    """
    t = np.asarray(y_true).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    n_pos = int(np.count_nonzero(t))
    n_neg = t.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(s)
    return float((ranks[t].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _ranked_counts(y_true, score):
    t = np.asarray(y_true).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, t_sorted = s[order], t[order]
    distinct = np.flatnonzero(np.diff(s_sorted)) if s.size else np.array([], int)
    last = np.r_[distinct, t.size - 1] if s.size else np.array([], int)
    tps = np.cumsum(t_sorted)[last]
    fps = (last + 1) - tps
    return tps, fps, s_sorted[last]


def pr_auc(y_true, score) -> float:
    """Average precision, sum over thresholds of (R_n - R_{n-1}) P_n.

    Equal to ``sklearn.metrics.average_precision_score``; ``nan`` without positives.
    """
    tps, fps, _ = _ranked_counts(y_true, score)
    if tps.size == 0 or tps[-1] == 0:
        return math.nan
    prec = tps / (tps + fps)
    rec = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, rec]) * prec))


def roc_curve(y_true, score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` with a first point (0, 0) at threshold +inf."""
    tps, fps, thr = _ranked_counts(y_true, score)
    n_pos, n_neg = (tps[-1], fps[-1]) if tps.size else (0, 0)
    tpr = np.r_[0.0, tps / n_pos] if n_pos else np.r_[0.0, np.full(tps.size, np.nan)]
    fpr = np.r_[0.0, fps / n_neg] if n_neg else np.r_[0.0, np.full(fps.size, np.nan)]
    return fpr, tpr, np.r_[np.inf, thr]


def pr_curve(y_true, score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(precision, recall, thresholds)`` in decreasing threshold order, starting at recall 0."""
    tps, fps, thr = _ranked_counts(y_true, score)
    if tps.size == 0 or tps[-1] == 0:
        return np.array([1.0]), np.array([0.0]), np.array([np.inf])
    prec = tps / (tps + fps)
    rec = tps / tps[-1]
    return np.r_[1.0, prec], np.r_[0.0, rec], np.r_[np.inf, thr]


def brier(y_true, prob) -> float:
    """Mean squared difference between the 0/1 label and the positive-class probability."""
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(prob, dtype=np.float64)
    return float(np.mean((p - t) ** 2)) if t.size else math.nan


def multiclass_brier(y_true, prob) -> float:
    """Mean over examples of sum over classes of (one-hot - probability)^2 (range 0..2)."""
    p = np.asarray(prob, dtype=np.float64)
    onehot = np.eye(p.shape[1])[np.asarray(y_true, dtype=np.int64)]
    return float(np.mean(np.sum((onehot - p) ** 2, axis=1))) if p.shape[0] else math.nan


def _bins(prob, n_bins: int):
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.searchsorted(edges[1:-1], np.asarray(prob, dtype=np.float64))


def reliability_curve(y_true, prob, n_bins: int = 10):
    """Reliability diagram on ``n_bins`` equal-width bins of [0, 1].

    Returns ``(mean_predicted, fraction_positive, count)`` for the non-empty bins, the
    same binning as ``sklearn.calibration.calibration_curve(strategy="uniform")``.
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(prob, dtype=np.float64)
    ids = _bins(p, n_bins)
    total = np.bincount(ids, minlength=n_bins)
    sums = np.bincount(ids, weights=p, minlength=n_bins)
    trues = np.bincount(ids, weights=t, minlength=n_bins)
    nz = total > 0
    return sums[nz] / total[nz], trues[nz] / total[nz], total[nz]


def expected_calibration_error(y_true, prob, n_bins: int = 10) -> float:
    """ECE = sum over bins of (n_b / N) |mean predicted - fraction positive| (equal-width bins)."""
    mean_p, frac, count = reliability_curve(y_true, prob, n_bins)
    n = count.sum()
    return float(np.sum(count / n * np.abs(mean_p - frac))) if n else math.nan


def youden_threshold(y_true, score) -> float:
    """Threshold maximizing Youden's J = sensitivity + specificity - 1 (ties: the highest)."""
    fpr, tpr, thr = roc_curve(y_true, score)
    if np.isnan(fpr).any() or np.isnan(tpr).any():
        return 0.5
    j = tpr - fpr
    best = int(np.flatnonzero(j >= j.max() - 1e-12)[0])
    return float(thr[best]) if np.isfinite(thr[best]) else float(thr[min(best + 1, thr.size - 1)])


def threshold_for_sensitivity(y_true, score, target: float) -> float:
    """Highest threshold whose sensitivity reaches ``target`` (maximal specificity)."""
    if not 0.0 < target <= 1.0:
        raise ConfigError(f"target sensitivity must be in (0, 1]. Received: target={target}")
    fpr, tpr, thr = roc_curve(y_true, score)
    ok = np.flatnonzero(tpr >= target - 1e-12)
    if ok.size == 0:
        return 0.5
    i = int(ok[0])
    return float(thr[i]) if np.isfinite(thr[i]) else float(thr[min(i + 1, thr.size - 1)])


def choose_threshold(y_true, score, method: str | float = "youden") -> tuple[float, str]:
    """Resolve a threshold specification to ``(threshold, method)``.

    ``method`` is a number (used as is), ``"youden"``, or ``"sensitivity:0.9"`` (the highest
    threshold whose sensitivity is at least 0.9).
    """
    if isinstance(method, (int, float)) and not isinstance(method, bool):
        return float(method), "fixed"
    m = str(method).strip().lower()
    try:
        return float(m), "fixed"
    except ValueError:
        pass
    if m == "youden":
        return youden_threshold(y_true, score), "youden"
    if m.startswith("sensitivity"):
        try:
            target = float(m.split(":", 1)[1].split("=")[-1])
        except (IndexError, ValueError):
            raise ConfigError("threshold 'sensitivity' needs a target, e.g. 'sensitivity:0.9'. "
                              f"Received: threshold={method!r}") from None
        return threshold_for_sensitivity(y_true, score, target), f"sensitivity:{target:g}"
    raise ConfigError("threshold must be a number, 'youden' or 'sensitivity:TARGET'. "
                      f"Received: threshold={method!r}")


def multiclass_roc_auc(y_true, prob, average: str = "macro") -> float:
    """One-vs-rest ROC AUC of a (N, K) probability matrix.

    ``"macro"``: mean of the per-class AUCs (``nan`` if a class is absent or is everything);
    ``"micro"``: AUC of the flattened one-hot labels against the flattened probabilities.
    """
    p = np.asarray(prob, dtype=np.float64)
    t = np.asarray(y_true, dtype=np.int64)
    onehot = np.eye(p.shape[1], dtype=bool)[t]
    if average == "micro":
        return roc_auc(onehot.ravel(), p.ravel())
    if average == "macro":
        return float(np.mean([roc_auc(onehot[:, k], p[:, k]) for k in range(p.shape[1])]))
    raise ConfigError(f"average must be 'macro' or 'micro'. Received: average={average!r}")


def mse(y_true, y_pred) -> float:
    """Mean squared error."""
    d = np.asarray(y_pred, dtype=np.float64) - np.asarray(y_true, dtype=np.float64)
    return float(np.mean(d ** 2)) if d.size else math.nan


def mae(y_true, y_pred) -> float:
    """Mean absolute error."""
    d = np.asarray(y_pred, dtype=np.float64) - np.asarray(y_true, dtype=np.float64)
    return float(np.mean(np.abs(d))) if d.size else math.nan


def r2(y_true, y_pred) -> float:
    """Coefficient of determination 1 - SS_res / SS_tot; ``nan`` for constant ``y_true``."""
    t = np.asarray(y_true, dtype=np.float64)
    d = np.asarray(y_pred, dtype=np.float64) - t
    ss_tot = float(np.sum((t - t.mean()) ** 2)) if t.size else 0.0
    return 1.0 - float(np.sum(d ** 2)) / ss_tot if ss_tot > 0 else math.nan
