"""Per-study aggregation of per-image (per-slice) predictions.

A study is positive when its images are; the model scores images. The study score is the
``"max"`` (one convincing slice is enough: the usual choice for a focal finding such as a
haemorrhage) or the ``"mean"`` of its image probabilities.

* Binary and multi-class probabilities: ``"mean"`` averages the probability vectors;
  ``"max"`` takes, for two classes, the maximum positive-class probability ``m`` and gives
  ``[1 - m, m]``; for more classes, the per-class maximum renormalized to sum to 1.
* Study label: binary, the maximum of the image labels (positive if any image is);
  multi-class, the most frequent image label (ties: the highest class index);
  regression, the image targets aggregated like the predictions (equal to the study's
  value when the labels are per study).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dicomml.errors import ConfigError, did_you_mean

__all__ = ["AGGREGATIONS", "aggregate_studies", "normalize_aggregation"]

AGGREGATIONS = ("max", "mean")


def normalize_aggregation(how) -> tuple[str, ...]:
    """Return the aggregation names as a tuple, checking each is ``"max"`` or ``"mean"``."""
    items = (how,) if isinstance(how, str) else tuple(how)
    out = []
    for h in items:
        h = str(h).strip().lower()
        if h not in AGGREGATIONS:
            hint = did_you_mean(h, AGGREGATIONS)
            raise ConfigError(f"unknown aggregation {h!r}; expected one of {AGGREGATIONS}."
                              f"{hint} Received: aggregation={how!r}")
        if h not in out:
            out.append(h)
    return tuple(out)


def _study_label(values: np.ndarray, task: str, n_classes: int, how: str) -> float:
    if task == "regression":
        v = values.astype(np.float64)
        return float(v.max() if how == "max" else v.mean())
    v = values.astype(np.int64)
    if n_classes <= 2:
        return int(v.max())
    counts = np.bincount(v, minlength=n_classes)
    return int(np.flatnonzero(counts == counts.max())[-1])


def aggregate_studies(predictions: pd.DataFrame, prob_columns: list[str], *, how: str,
                      task: str = "classification", target_column: str = "target",
                      study_column: str = "study_instance_uid",
                      group_column: str = "patient_key") -> pd.DataFrame:
    """Collapse image rows into one row per study.

    Parameters
    ----------
    predictions : pandas.DataFrame
        One row per image/frame with ``study_column``, the probability (or, for regression,
        prediction) columns, ``target_column`` and optionally ``group_column``.
    prob_columns : list of str
        Probability columns in class order (one column for regression).
    how : {"max", "mean"}

    Returns
    -------
    pandas.DataFrame
        One row per study, in order of first appearance: ``study_column``,
        ``group_column`` (when present), the aggregated ``prob_columns``, ``target_column``,
        ``n_images`` and ``best_index`` (the row label of the highest-scoring image of the
        study: positive-class probability, or the predicted class's probability).
    """
    (how,) = normalize_aggregation(how)
    if study_column not in predictions:
        raise ConfigError(f"predictions have no {study_column!r} column to aggregate by")
    k = len(prob_columns)
    rows = []
    for study, df in predictions.groupby(study_column, sort=False):
        p = df[prob_columns].to_numpy(dtype=np.float64)
        if task == "regression" or k == 1:
            agg = p.max(axis=0) if how == "max" else p.mean(axis=0)
            key = p[:, 0]
        else:
            if how == "mean":
                agg = p.mean(axis=0)
            else:
                agg = p.max(axis=0)
                if k > 2:
                    agg = agg / agg.sum()
                else:  # binary: keep the raw max of the positive class as the score
                    agg = np.array([1.0 - agg[1], agg[1]])
            key = p[:, 1] if k == 2 else p[:, int(np.argmax(agg))]
        row = {study_column: study}
        if group_column in df:
            row[group_column] = df[group_column].iloc[0]
        row.update(dict(zip(prob_columns, agg.tolist())))
        if target_column in df:
            row[target_column] = _study_label(df[target_column].to_numpy(), task, k, how)
        row["n_images"] = len(df)
        row["best_index"] = df.index[int(np.argmax(key))]
        rows.append(row)
    return pd.DataFrame(rows)
