"""Metric tables with 95% confidence intervals from a cluster bootstrap by patient.

Images of one patient are correlated, so the resampling unit is the patient
(``patient_key`` of the run manifest), not the image: each resample draws as many patients
as there are, with replacement, and keeps all the examples of each drawn patient. The
interval is the percentile interval of the resampled statistics. Resamples where a metric
is undefined (e.g. a resample with a single class for ROC AUC) are left out of that
metric's interval; the number left out is reported.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import numpy as np

from dicomml.errors import ConfigError
from dicomml.evaluate import metrics as M

__all__ = ["cluster_resamples", "cluster_bootstrap", "classification_metrics",
           "regression_metrics", "metric_entry"]

#: Fewer valid resamples than this give no interval (``ci95: [null, null]``).
MIN_VALID_RESAMPLES = 20


def _num(v) -> float | None:
    """JSON-friendly float: ``nan``/``inf`` become ``None``."""
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def metric_entry(value: float, ci: tuple[float, float] | None) -> dict:
    """``{"value": v, "ci95": [lo, hi]}`` with ``None`` for undefined numbers."""
    lo, hi = ci if ci is not None else (math.nan, math.nan)
    return {"value": _num(value), "ci95": [_num(lo), _num(hi)]}


def cluster_resamples(groups: Sequence, *, n_resamples: int = 1000, seed: int = 0):
    """Yield ``n_resamples`` index arrays, each drawing the clusters of ``groups`` with
    replacement (as many draws as clusters) and keeping every member of a drawn cluster."""
    g = np.asarray(groups)
    _, inverse = np.unique(g, return_inverse=True)
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind="stable")
    counts = np.bincount(inverse)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    n_groups = counts.size
    rng = np.random.default_rng(seed)
    for _ in range(n_resamples):
        drawn = rng.integers(0, n_groups, n_groups)
        lengths = counts[drawn]
        # position j of the output is member (j - start of its draw) of its drawn cluster
        offs = np.repeat(starts[drawn] - np.r_[0, np.cumsum(lengths)[:-1]], lengths)
        yield order[np.arange(lengths.sum()) + offs]


def cluster_bootstrap(stats: Mapping[str, Callable[[np.ndarray], float]], groups: Sequence,
                      *, n_resamples: int = 1000, seed: int = 0,
                      confidence: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile intervals of several statistics under one cluster bootstrap.

    Parameters
    ----------
    stats : mapping of name to callable
        Each callable takes an integer index array into the examples and returns a float
        (``nan`` when undefined on that resample).
    groups : sequence
        The cluster of each example (the patient key); examples sharing a key are drawn
        together.
    n_resamples, seed : int
        Number of resamples and the seed of a local ``numpy.random.default_rng``.
    confidence : float
        Interval coverage, 0.95 by default.

    Returns
    -------
    dict
        name -> ``(low, high)``; ``(nan, nan)`` when fewer than 20 resamples were valid.
    """
    if n_resamples < 1:
        raise ConfigError(f"n_resamples must be >= 1. Received: n_resamples={n_resamples}")
    values = {name: np.full(n_resamples, np.nan) for name in stats}
    for r, idx in enumerate(cluster_resamples(groups, n_resamples=n_resamples, seed=seed)):
        for name, fn in stats.items():
            values[name][r] = fn(idx)
    alpha = (1.0 - confidence) / 2.0
    out = {}
    for name, vals in values.items():
        ok = vals[np.isfinite(vals)]
        if ok.size < min(MIN_VALID_RESAMPLES, n_resamples):
            out[name] = (math.nan, math.nan)
        else:
            lo, hi = np.quantile(ok, [alpha, 1.0 - alpha])
            out[name] = (float(lo), float(hi))
    return out


def _table(point: Mapping[str, Callable[[np.ndarray], float]], n: int, groups,
           n_resamples: int, seed: int) -> dict:
    full = np.arange(n)
    values = {k: fn(full) for k, fn in point.items()}
    if groups is None:
        groups = np.arange(n)
    cis = cluster_bootstrap(point, groups, n_resamples=n_resamples, seed=seed) \
        if n_resamples > 0 and n > 0 else {k: None for k in point}
    return {k: metric_entry(values[k], cis[k]) for k in point}


def classification_metrics(y_true, prob, *, threshold: float = 0.5, groups=None,
                           n_resamples: int = 1000, seed: int = 0, n_bins: int = 10,
                           classes: Sequence[str] | None = None) -> dict:
    """Every classification metric with its 95% cluster-bootstrap interval.

    Parameters
    ----------
    y_true : array of int
        Class indices (binary: 0/1 with 1 the positive class).
    prob : array
        (N, K) class probabilities, or (N,) positive-class probabilities for binary tasks.
    threshold : float
        Binary decision threshold on the positive-class probability (``>=``). Multi-class
        predictions are the arg-max.
    groups : array or None
        Patient key of each example (the bootstrap cluster); ``None`` resamples examples.

    Returns
    -------
    dict
        ``{"metrics": {name: {"value", "ci95"}}, "confusion_matrix": [[...]], "counts": {...}}``.
        Binary names: ``roc_auc``, ``pr_auc``, ``accuracy``, ``sensitivity``,
        ``specificity``, ``precision``, ``f1``, ``brier``, ``ece``. Multi-class names:
        ``accuracy``, ``roc_auc`` (macro one-vs-rest), ``roc_auc_macro``, ``roc_auc_micro``,
        ``f1_macro``, ``brier`` (multi-class), plus ``roc_auc_<class>``,
        ``sensitivity_<class>``, ``precision_<class>``, ``f1_<class>`` one-vs-rest.
    """
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(prob, dtype=np.float64)
    if p.ndim == 1:
        p = np.stack([1.0 - p, p], axis=1)
    n, k = p.shape
    if t.shape != (n,):
        raise ConfigError(f"y_true has shape {t.shape} but prob has {n} rows")
    if k == 2:
        s = p[:, 1]
        yhat = (s >= threshold).astype(np.int64)
        point = {
            "roc_auc": lambda i: M.roc_auc(t[i], s[i]),
            "pr_auc": lambda i: M.pr_auc(t[i], s[i]),
            "accuracy": lambda i: M.accuracy(t[i], yhat[i]),
            "sensitivity": lambda i: M.sensitivity(t[i], yhat[i]),
            "specificity": lambda i: M.specificity(t[i], yhat[i]),
            "precision": lambda i: M.precision(t[i], yhat[i]),
            "f1": lambda i: M.f1(t[i], yhat[i]),
            "brier": lambda i: M.brier(t[i], s[i]),
            "ece": lambda i: M.expected_calibration_error(t[i], s[i], n_bins),
        }
        counts = {"n": n, "positives": int(np.count_nonzero(t == 1)),
                  "negatives": int(np.count_nonzero(t == 0))}
    else:
        yhat = np.argmax(p, axis=1)
        names = list(classes) if classes is not None else [str(c) for c in range(k)]
        point = {
            "accuracy": lambda i: M.accuracy(t[i], yhat[i]),
            "roc_auc": lambda i: M.multiclass_roc_auc(t[i], p[i], "macro"),
            "roc_auc_macro": lambda i: M.multiclass_roc_auc(t[i], p[i], "macro"),
            "roc_auc_micro": lambda i: M.multiclass_roc_auc(t[i], p[i], "micro"),
            "f1_macro": lambda i: float(np.mean([M.f1(t[i] == c, yhat[i] == c)
                                                 for c in range(k)])),
            "brier": lambda i: M.multiclass_brier(t[i], p[i]),
        }
        for c in range(k):
            key = "".join(ch if ch.isalnum() else "_" for ch in names[c].lower())
            point[f"roc_auc_{key}"] = lambda i, c=c: M.roc_auc(t[i] == c, p[i, c])
            point[f"sensitivity_{key}"] = lambda i, c=c: M.sensitivity(t[i] == c, yhat[i] == c)
            point[f"precision_{key}"] = lambda i, c=c: M.precision(t[i] == c, yhat[i] == c)
            point[f"f1_{key}"] = lambda i, c=c: M.f1(t[i] == c, yhat[i] == c)
        counts = {"n": n, "per_class": {names[c]: int(np.count_nonzero(t == c))
                                        for c in range(k)}}
    counts["groups"] = int(np.unique(np.asarray(groups)).size) if groups is not None else n
    return {"metrics": _table(point, n, groups, n_resamples, seed),
            "confusion_matrix": M.confusion_matrix(t, yhat, k).tolist(),
            "counts": counts}


def regression_metrics(y_true, y_pred, *, groups=None, n_resamples: int = 1000,
                       seed: int = 0) -> dict:
    """``mse``, ``mae`` and ``r2`` with 95% cluster-bootstrap intervals."""
    t = np.asarray(y_true, dtype=np.float64)
    y = np.asarray(y_pred, dtype=np.float64).reshape(t.shape[0], -1)[:, 0]
    point = {
        "mse": lambda i: M.mse(t[i], y[i]),
        "mae": lambda i: M.mae(t[i], y[i]),
        "r2": lambda i: M.r2(t[i], y[i]),
    }
    n = t.size
    counts = {"n": n,
              "groups": int(np.unique(np.asarray(groups)).size) if groups is not None else n}
    return {"metrics": _table(point, n, groups, n_resamples, seed), "counts": counts}
