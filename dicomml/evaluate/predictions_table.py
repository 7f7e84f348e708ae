"""The table of predictions (``predictions.csv``) and the operating point that decides it.

Both ``evaluate`` (:mod:`dicomml.evaluate.evaluation`) and ``predict``
(:mod:`dicomml.evaluate.prediction`) build their table with :func:`predictions_table` and
read the run's one decision threshold with :func:`operating_point`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["predictions_table", "operating_point", "LEVEL_IMAGE", "UID_COLUMNS"]

LEVEL_IMAGE = "image"
UID_COLUMNS = ("study_instance_uid", "series_instance_uid", "sop_instance_uid", "frame")


def operating_point(metrics: dict) -> dict:
    """The run's one operating point, from a ``metrics.json`` content.

    The threshold chosen at level ``study_<first aggregation>`` (the level of the SRs), on
    the validation split when ``evaluate`` had one: ``{"threshold", "level", "method",
    "chosen_on"}``; ``{}`` for regression and multi-class runs. ``evaluate`` stores it as
    ``meta.operating_point``; predictions, the SRs and the ROC/PR plots use it.
    """
    meta = metrics.get("meta", {})
    if meta.get("operating_point"):
        return dict(meta["operating_point"])
    aggs = meta.get("aggregation") or ["max"]
    for level in (f"study_{aggs[0]}", LEVEL_IMAGE):
        t = (metrics.get(level) or {}).get("threshold") or {}
        if t.get("value") is not None:
            chosen = t.get("chosen_on")
            if chosen == "threshold_data":
                chosen = meta.get("threshold_data") or "threshold data"
            return {"threshold": float(t["value"]), "level": level,
                    "method": t.get("method"), "chosen_on": chosen}
    return {}


def predictions_table(examples: pd.DataFrame, probs: np.ndarray, classes, task, cols,
                      positive: int, threshold: float | None) -> pd.DataFrame:
    """One row per example: its UIDs (and frame), one probability column per class (``cols``),
    ``label``/``target`` when known and, for classification, ``prediction``: the positive
    class where its probability reaches ``threshold`` (two classes), else the most probable
    class ("" where a probability is not finite). ``predictions.csv`` of ``evaluate`` and of
    ``predict``."""
    out = examples[[c for c in UID_COLUMNS if c in examples]].reset_index(drop=True).copy()
    for j, c in enumerate(cols):
        out[c] = probs[:, j] if probs.shape[1] > j else np.nan
    if "label" in examples:
        out["label"] = examples["label"].to_numpy()
    if "target" in examples:
        out["target"] = examples["target"].to_numpy()
    if task == "regression":
        return out
    p = probs[:, :len(cols)]
    ok = np.isfinite(p).all(axis=1)
    if len(classes) == 2 and threshold is not None:
        pred_idx = np.where(p[:, positive] >= threshold, positive, 1 - positive)
    else:
        pred_idx = np.argmax(np.nan_to_num(p, nan=-1.0), axis=1)
    out["prediction"] = np.where(ok, np.asarray(classes, dtype=object)[pred_idx], "")
    return out
