"""Running a run's model over examples (used by evaluate and predict), and the run folder
reader they share.

A run folder (the contract is in DESIGN.md) is opened with :func:`load_run`, the one reader:
:func:`dicomml.train.run.load_run`, re-exported here with :func:`config_hash` and
:func:`positive_index`; its configuration is the typed
:class:`~dicomml.train.config.RunConfig`.
"""

from __future__ import annotations

import logging
import re
import sys

import numpy as np
import pandas as pd

from dicomml.train.run import Run, config_hash, load_run, positive_index

__all__ = ["Run", "load_run", "prob_columns", "positive_index", "predict_examples",
           "config_hash"]

log = logging.getLogger(__name__)


def prob_columns(classes: list[str], task: str = "classification") -> list[str]:
    """``prob_<class>`` column names (``prediction`` alone for regression)."""
    if task == "regression":
        return ["prediction"]
    out = []
    for c in classes:
        name = "prob_" + (re.sub(r"[^0-9a-zA-Z]+", "_", str(c)).strip("_").lower() or "class")
        while name in out:
            name += "_"
        out.append(name)
    return out


def predict_examples(model, examples: pd.DataFrame, pipeline, *, batch_size: int = 32,
                     workers: int | None = None, cache_dir=None, progress: bool = True,
                     return_status: bool = False):
    """Model outputs for ``examples`` (``path`` and ``frame``), in order.

    Returns a ``float64`` array (N, outputs); rows of examples that could not be decoded
    are NaN. With ``return_status``, returns ``(outputs, status)`` where ``status[i]`` is
    ``""``, ``"unreadable"`` (no tensor) or ``"constant"`` (every channel of the tensor is
    one value: the preprocessing mapped the image to a constant, e.g. the windows miss its
    values); constant rows are then NaN too, never a probability. A study-level
    model gives each example its study's probabilities (:mod:`dicomml.train.study`); its
    status is then only ``""`` or ``"unreadable"``.
    """
    from dicomml.data import predict_tensors
    from dicomml.models.mil import is_study_model

    if is_study_model(model):
        from dicomml.train.study import predict_studies

        out = predict_studies(model, examples, pipeline, workers=workers,
                              cache_dir=cache_dir, progress=progress,
                              batch_size=batch_size).study
        if not return_status:
            return out
        return out, np.where(np.isfinite(out).all(axis=1), "", "unreadable").astype(object)

    n = len(examples)
    outs, states = [], []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc="predict", unit="image", file=sys.stderr, leave=False)
    try:
        for x in predict_tensors(examples, pipeline, batch_size=batch_size, workers=workers,
                                 cache_dir=cache_dir):
            bad = ~np.isfinite(x).reshape(len(x), -1).all(axis=1)
            y = np.asarray(model.predict_on_batch(np.where(bad[:, None, None, None], 0.0, x)),
                           dtype=np.float64).reshape(len(x), -1)
            y[bad] = np.nan
            if return_status:
                per_channel = np.where(bad[:, None, None, None], 0.0, x).reshape(
                    len(x), -1, x.shape[-1])
                flat = ~bad & (np.ptp(per_channel, axis=1).max(axis=1) <= 1e-6)
                y[flat] = np.nan
                states.append(np.where(bad, "unreadable", np.where(flat, "constant", "")))
            outs.append(y)
            if bar is not None:
                bar.update(len(x))
    finally:
        if bar is not None:
            bar.close()
    if not outs:
        out = np.zeros((0, 1))
        return (out, np.zeros(0, dtype=object)) if return_status else out
    out = np.concatenate(outs)[:n]
    if return_status:
        return out, np.concatenate(states).astype(object)[:n]
    return out
