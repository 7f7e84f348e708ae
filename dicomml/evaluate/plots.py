"""Evaluation plots as PNG files (matplotlib's Agg canvas; no pyplot state, no TensorFlow).

Every function takes the data first and the output path, writes the PNG atomically and
returns the path.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from dicomml._atomic import atomic_write_bytes
from dicomml.evaluate import metrics as M
from dicomml.evaluate.bootstrap import cluster_resamples

__all__ = ["roc_band", "plot_roc", "plot_pr", "plot_confusion", "plot_calibration",
           "plot_training_curves", "read_history"]


def _figure(size=(5.0, 5.0)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def roc_band(y_true, score, groups=None, *, n_resamples: int = 200, seed: int = 0,
             grid: int = 101) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pointwise 95% band of the ROC curve's TPR on a grid of FPR, by cluster bootstrap.

    Returns ``(fpr_grid, tpr_low, tpr_high)``; resamples with one class are skipped.
    """
    t = np.asarray(y_true).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    fgrid = np.linspace(0.0, 1.0, grid)
    rows = []
    g = np.arange(t.size) if groups is None else np.asarray(groups)
    for idx in cluster_resamples(g, n_resamples=n_resamples, seed=seed):
        ti = t[idx]
        if ti.all() or not ti.any():
            continue
        fpr, tpr, _ = M.roc_curve(ti, s[idx])
        rows.append(np.interp(fgrid, fpr, tpr))
    if not rows:
        return fgrid, np.full(grid, np.nan), np.full(grid, np.nan)
    lo, hi = np.quantile(np.asarray(rows), [0.025, 0.975], axis=0)
    return fgrid, lo, hi


def _operating_point(ax, t, s, threshold, kind: str) -> None:
    """Mark the operating point: the rates of ``score >= threshold`` (binary)."""
    pred = s >= float(threshold)
    pos = t.astype(bool)
    tpr = float((pred & pos).sum() / max(pos.sum(), 1))
    fpr = float((pred & ~pos).sum() / max((~pos).sum(), 1))
    ppv = float((pred & pos).sum() / pred.sum()) if pred.any() else 1.0
    x, y = (fpr, tpr) if kind == "roc" else (tpr, ppv)
    ax.plot([x], [y], marker="o", ms=8, color="red", ls="none",
            label=f"operating point (threshold {float(threshold):.3g})")


def plot_roc(y_true, prob, path, *, groups=None, classes: Sequence[str] | None = None,
             n_resamples: int = 200, seed: int = 0, title: str = "ROC",
             threshold: float | None = None) -> Path:
    """ROC curve (binary: with a 95% cluster-bootstrap band; multi-class: one-vs-rest).

    ``threshold`` (binary): the operating point is marked on the curve.
    """
    p = np.asarray(prob, dtype=np.float64)
    t = np.asarray(y_true, dtype=np.int64)
    fig = _figure()
    ax = fig.add_subplot()
    if p.ndim == 1 or p.shape[1] == 2:
        s = p if p.ndim == 1 else p[:, 1]
        fgrid, lo, hi = roc_band(t, s, groups, n_resamples=n_resamples, seed=seed)
        if np.isfinite(lo).all():
            ax.fill_between(fgrid, lo, hi, alpha=0.25, label="95% CI (bootstrap by patient)")
        fpr, tpr, _ = M.roc_curve(t, s)
        ax.plot(fpr, tpr, lw=2, label=f"AUC = {M.roc_auc(t, s):.3f}")
        if threshold is not None:
            _operating_point(ax, t, s, threshold, "roc")
    else:
        names = classes or [str(k) for k in range(p.shape[1])]
        for k in range(p.shape[1]):
            fpr, tpr, _ = M.roc_curve(t == k, p[:, k])
            ax.plot(fpr, tpr, label=f"{names[k]} (AUC {M.roc_auc(t == k, p[:, k]):.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="gray", lw=1)
    ax.set(xlabel="1 - specificity (FPR)", ylabel="sensitivity (TPR)", xlim=(0, 1),
           ylim=(0, 1.01), title=title)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_pr(y_true, prob, path, *, classes: Sequence[str] | None = None,
            title: str = "Precision-recall", threshold: float | None = None) -> Path:
    """Precision-recall curve(s) with the average precision in the legend.

    ``threshold`` (binary): the operating point is marked on the curve.
    """
    p = np.asarray(prob, dtype=np.float64)
    t = np.asarray(y_true, dtype=np.int64)
    fig = _figure()
    ax = fig.add_subplot()
    if p.ndim == 1 or p.shape[1] == 2:
        s = p if p.ndim == 1 else p[:, 1]
        prec, rec, _ = M.pr_curve(t, s)
        ax.step(rec, prec, where="post", lw=2, label=f"AP = {M.pr_auc(t, s):.3f}")
        if t.size:
            ax.axhline(t.mean(), ls="--", color="gray", lw=1, label="prevalence")
        if threshold is not None:
            _operating_point(ax, t, s, threshold, "pr")
    else:
        names = classes or [str(k) for k in range(p.shape[1])]
        for k in range(p.shape[1]):
            prec, rec, _ = M.pr_curve(t == k, p[:, k])
            ap = M.pr_auc(t == k, p[:, k])
            ax.step(rec, prec, where="post", label=f"{names[k]} (AP {ap:.3f})")
    ax.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", xlim=(0, 1),
           ylim=(0, 1.01), title=title)
    ax.legend(loc="lower left", fontsize=8)
    return _save(fig, path)


def plot_confusion(cm, path, *, classes: Sequence[str] | None = None,
                   title: str = "Confusion matrix") -> Path:
    """Confusion matrix with counts (rows: true class, columns: predicted class)."""
    c = np.asarray(cm)
    names = list(classes) if classes else [str(k) for k in range(c.shape[0])]
    fig = _figure((1.2 + 0.9 * len(names), 1.0 + 0.9 * len(names)))
    ax = fig.add_subplot()
    ax.imshow(c, cmap="Blues")
    for i in range(c.shape[0]):
        for j in range(c.shape[1]):
            ax.text(j, i, str(int(c[i, j])), ha="center", va="center",
                    color="white" if c[i, j] > c.max() / 2 else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return _save(fig, path)


def plot_calibration(y_true, prob, path, *, n_bins: int = 10,
                     title: str = "Calibration") -> Path:
    """Reliability diagram (equal-width bins) of the positive-class probability."""
    mean_p, frac, count = M.reliability_curve(y_true, prob, n_bins)
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls="--", color="gray", lw=1, label="perfect")
    ece = M.expected_calibration_error(y_true, prob, n_bins)
    ax.plot(mean_p, frac, marker="o", label=f"model (ECE {ece:.3f})")
    ax.set(xlabel="mean predicted probability", ylabel="fraction positive", xlim=(0, 1),
           ylim=(0, 1), title=title)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def read_history(history_csv: str | os.PathLike):
    """``history.csv`` as a DataFrame whose ``epoch`` column counts from 1; None if absent.

    Keras' CSVLogger (and so the trainer's ``history.csv``) numbers epochs from 0; every
    picture of dicomml (training curves, the report page, notebook 03) shows them through
    this function, numbered from 1 as the trainer's messages and ``--epochs`` count them.
    """
    import pandas as pd

    try:
        h = pd.read_csv(history_csv)
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return None
    if h.empty:
        return None
    epoch = h["epoch"] + 1 if "epoch" in h else np.arange(1, len(h) + 1)
    return h.assign(epoch=np.asarray(epoch, dtype=np.int64))


def plot_training_curves(history_csv: str | os.PathLike, path) -> Path | None:
    """Loss and metric curves from a Keras CSVLogger file; ``None`` when it is absent or empty.

    Epochs are numbered from 1 (:func:`read_history`).
    """
    h = read_history(history_csv)
    if h is None:
        return None
    x = h["epoch"]
    metrics = [c for c in h.columns if c != "epoch" and not c.startswith("val_")
               and c not in ("lr", "learning_rate")]
    fig = _figure((5.0 * max(1, len(metrics)), 4.0))
    for i, m in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), i + 1)
        ax.plot(x, h[m], marker="o", label=f"train {m}")
        if f"val_{m}" in h:
            ax.plot(x, h[f"val_{m}"], marker="o", label=f"val {m}")
        ax.set(xlabel="epoch (from 1)", ylabel=m, title=m)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=8)
    return _save(fig, path)
