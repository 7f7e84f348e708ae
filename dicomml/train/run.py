"""Reading a run folder back: configuration, pipeline, classes, manifest, model."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pandas as pd

from dicomml.data.manifest import read_manifest
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
    run_config : dicomml.train.config.RunConfig
        The same configuration, typed (:meth:`RunConfig.from_run_dir`): ``config`` is its
        TOML content as written.
    """

    run_dir: str
    config: dict
    pipeline: object
    classes: list = field(default_factory=list)
    task: str = "classification"
    positive_class: str | None = None
    manifest: pd.DataFrame = field(default_factory=pd.DataFrame)
    run_config: object = None

    def model(self, path: str | None = None):
        """Load ``model.keras`` (or ``path``) with ``compile=False`` (a study-level model
        too: :mod:`dicomml.models.mil` registers its pooling layer)."""
        import keras

        import dicomml.models.mil  # noqa: F401  (registers MILPooling for loading)

        return keras.saving.load_model(path or os.path.join(self.run_dir, "model.keras"),
                                       compile=False)


def load_run(run_dir) -> Run:
    """Open a run folder written by :class:`dicomml.train.Trainer`."""
    from dicomml.preprocess import Pipeline
    from dicomml.train.config import RunConfig

    run_dir = os.path.abspath(os.fspath(run_dir))
    typed = RunConfig.from_run_dir(run_dir)  # ConfigError when it is not a run folder
    cfg = load_toml(os.path.join(run_dir, "config.toml"))
    man_path = os.path.join(run_dir, "manifest.csv")
    manifest = read_manifest(man_path) if os.path.exists(man_path) else pd.DataFrame()
    return Run(run_dir=run_dir, config=cfg, pipeline=Pipeline(typed.preprocess_config()),
               classes=[str(c) for c in typed.data.classes],
               task=typed.data.task or "classification",
               positive_class=typed.data.positive_class or None, manifest=manifest,
               run_config=typed)
