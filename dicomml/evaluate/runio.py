"""Reading a run folder and running its model over examples (used by evaluate and predict).

The run folder contract is in DESIGN.md; :func:`load_run` wraps
:func:`dicomml.train.run.load_run`.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dicomml.errors import ConfigError

__all__ = ["RunView", "load_run", "prob_columns", "positive_index", "predict_examples",
           "config_hash"]

log = logging.getLogger(__name__)


@dataclass
class RunView:
    """What evaluation needs from a run folder."""

    run_dir: Path
    config: dict
    pipeline: Any
    classes: list[str]
    task: str
    manifest: pd.DataFrame
    _model: Any = field(default=None, repr=False)
    _loader: Any = field(default=None, repr=False)

    def model(self):
        """The Keras model of ``model.keras`` (loaded once, ``compile=False``)."""
        if self._model is None:
            self._model = self._loader()
        return self._model


def _classes_from(config: dict, manifest: pd.DataFrame) -> list[str]:
    classes = [str(c) for c in config.get("data", {}).get("classes", []) or []]
    if classes or manifest.empty or "target" not in manifest:
        return classes
    pairs = manifest[["target", "label"]].drop_duplicates()
    try:
        n = int(pairs["target"].astype(int).max()) + 1
    except (TypeError, ValueError):
        return []
    out = [str(i) for i in range(n)]
    for t, lab in pairs.itertuples(index=False):
        out[int(t)] = str(lab)
    return out


def load_run(run_dir: str | os.PathLike) -> RunView:
    """Open a run folder (:func:`dicomml.train.run.load_run`) for evaluation.

    Adds to the training package's view: the classes recovered from the manifest when the
    configuration lists none, and a model loaded once.
    """
    from dicomml.train.run import load_run as train_load_run

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run folder {run_dir} does not exist")
    run = train_load_run(run_dir)
    manifest = run.manifest

    def loader():
        if not (run_dir / "model.keras").is_file():
            raise ConfigError(f"{run_dir}: model.keras is missing; the run did not finish "
                              "an epoch. Train it (again) or give another run folder")
        return run.model()

    return RunView(run_dir, dict(run.config), run.pipeline,
                   [str(c) for c in (run.classes or _classes_from(run.config, manifest))],
                   str(run.task or "classification").lower(), manifest, _loader=loader)


def config_hash(config: dict) -> str:
    """First 12 hex digits of the SHA-256 of the run configuration (canonical JSON)."""
    import hashlib
    import json

    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


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


def positive_index(config: dict, classes: list[str]) -> int:
    """Index of the positive class of a binary task (``data.positive_class``, else 1)."""
    pos = str(config.get("data", {}).get("positive_class") or "")
    if pos:
        if pos not in classes:
            raise ConfigError(f"data.positive_class {pos!r} is not among the classes {classes}")
        return classes.index(pos)
    return 1


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
