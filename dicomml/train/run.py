"""Reading a run folder back: configuration, pipeline, classes, manifest, model."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pandas as pd

from dicomml.data.manifest import read_manifest
from dicomml.errors import ConfigError
from dicomml.train.toml_io import load_toml

__all__ = ["Run", "load_run"]


@dataclass
class Run:
    """A training run folder (see :mod:`dicomml.train` for its contents).

    Attributes
    ----------
    run_dir : str
    config : dict
        The resolved ``config.toml``.
    pipeline : dicomml.preprocess.Pipeline
        Built from ``[preprocess]`` exactly as in training.
    classes : list of str
        Index i = softmax output i (empty for regression).
    task : {"classification", "regression"}
    positive_class : str or None
    manifest : pandas.DataFrame
        ``manifest.csv`` (UIDs as strings).
    """

    run_dir: str
    config: dict
    pipeline: object
    classes: list = field(default_factory=list)
    task: str = "classification"
    positive_class: str | None = None
    manifest: pd.DataFrame = field(default_factory=pd.DataFrame)

    def model(self, path: str | None = None):
        """Load ``model.keras`` (or ``path``) with ``compile=False`` (a study-level model
        too: :mod:`dicomml.models.mil` registers its pooling layer)."""
        import keras

        import dicomml.models.mil  # noqa: F401  (registers MILPooling for loading)

        return keras.saving.load_model(path or os.path.join(self.run_dir, "model.keras"),
                                       compile=False)


def load_run(run_dir) -> Run:
    """Open a run folder written by :class:`dicomml.train.Trainer`."""
    from dicomml.preprocess import Pipeline, PreprocessConfig

    run_dir = os.path.abspath(os.fspath(run_dir))
    cfg_path = os.path.join(run_dir, "config.toml")
    if not os.path.exists(cfg_path):
        raise ConfigError(f"{run_dir} is not a run folder (no config.toml); train into it first "
                          "with 'dicomml train --config FILE --out RUN_DIR'")
    cfg = load_toml(cfg_path)
    data = cfg.get("data", {})
    man_path = os.path.join(run_dir, "manifest.csv")
    manifest = read_manifest(man_path) if os.path.exists(man_path) else pd.DataFrame()
    return Run(run_dir=run_dir, config=cfg,
               pipeline=Pipeline(PreprocessConfig.from_dict(cfg.get("preprocess", {}))),
               classes=[str(c) for c in data.get("classes", [])],
               task=data.get("task", "classification"),
               positive_class=data.get("positive_class") or None, manifest=manifest)
