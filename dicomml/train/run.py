"""Reading a run folder back: configuration, pipeline, classes, manifest, model.

:func:`load_run` is the one reader of a run folder (training's resume aside): evaluate,
predict, the per-study reports, the report page, the demo and ``serve`` all open a run with
it and read its typed configuration (:class:`~dicomml.train.config.RunConfig`) by
attribute.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import pandas as pd

from dicomml.data.manifest import read_manifest
from dicomml.errors import ConfigError
from dicomml.train.config import RunConfig
from dicomml.train.toml_io import load_toml

__all__ = ["Run", "load_run", "config_hash", "positive_index"]


def config_hash(config: Mapping[str, Any]) -> str:
    """First 12 hex digits of the SHA-256 of a configuration table (canonical JSON: sorted
    keys, no blanks); :attr:`Run.config_hash` is that of the run's ``config.toml``."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def positive_index(config: RunConfig, classes) -> int:
    """Index in ``classes`` of the positive class of a binary task:
    ``data.positive_class``, else 1.

    Raises
    ------
    ConfigError
        ``data.positive_class`` is not among ``classes``.
    """
    pos = str(config.data.positive_class or "")
    classes = [str(c) for c in classes]
    if pos:
        if pos not in classes:
            raise ConfigError(f"data.positive_class {pos!r} is not among the classes {classes}")
        return classes.index(pos)
    return 1


@dataclass
class Run:
    """A training run folder (see :mod:`dicomml.train` for its contents).

    Attributes
    ----------
    run_dir : str
        Absolute path of the folder.
    config : RunConfig
        The typed configuration the run was trained with (``config.toml``,
        :meth:`RunConfig.from_run_dir`): ``run.config.model.name``,
        ``run.config.data.positive_class``...
    pipeline : dicomml.preprocess.Pipeline
        Built from ``[preprocess]`` exactly as in training.
    classes : list of str
        Index i = softmax output i (empty for regression). From ``data.classes``, else
        recovered from ``manifest.csv``'s labels and targets.
    task : {"classification", "regression"}
    positive_class : str or None
    manifest : pandas.DataFrame
        ``manifest.csv`` (UIDs as strings); empty when the folder has none.
    config_hash : str
        :func:`config_hash` of ``config.toml`` as written (its TOML content, not the
        configuration re-resolved by this version), so that a run keeps its hash, which
        its SRs and report print, whatever defaults later versions add.
    """

    run_dir: str
    config: RunConfig
    pipeline: object
    classes: list = field(default_factory=list)
    task: str = "classification"
    positive_class: str | None = None
    manifest: pd.DataFrame = field(default_factory=pd.DataFrame)
    config_hash: str = ""
    _model: Any = field(default=None, repr=False, compare=False)

    @property
    def positive_index(self) -> int:
        """:func:`positive_index` of this run's classes (binary tasks)."""
        return positive_index(self.config, self.classes)

    def model(self, path: str | None = None):
        """The Keras model of ``model.keras`` (or ``path``), loaded with ``compile=False``
        (a study-level model too: :mod:`dicomml.models.mil` registers its pooling layer);
        ``model.keras`` is loaded once and kept.

        Raises
        ------
        ConfigError
            ``model.keras`` is missing (the run did not finish an epoch).
        """
        if path is None and self._model is not None:
            return self._model
        import keras

        import dicomml.models.mil  # noqa: F401  (registers MILPooling for loading)

        file = path or os.path.join(self.run_dir, "model.keras")
        if path is None and not os.path.isfile(file):
            raise ConfigError(f"{self.run_dir}: model.keras is missing; the run did not "
                              "finish an epoch. Train it (again) or give another run folder")
        model = keras.saving.load_model(file, compile=False)
        if path is None:
            self._model = model
        return model


def _classes(config: RunConfig, manifest: pd.DataFrame) -> list[str]:
    """``data.classes``, else the class names recovered from the manifest's
    (target, label) pairs."""
    classes = [str(c) for c in config.data.classes]
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


def load_run(run_dir) -> Run:
    """Open a run folder written by :class:`dicomml.train.Trainer`.

    Raises
    ------
    ConfigError
        ``run_dir`` does not exist, is not a run folder (no ``config.toml``), or its
        configuration is not valid.
    """
    from dicomml.preprocess import Pipeline

    run_dir = os.path.abspath(os.fspath(run_dir))
    if not os.path.isdir(run_dir):
        raise ConfigError(f"run folder {run_dir} does not exist")
    typed = RunConfig.from_run_dir(run_dir)  # ConfigError when it is not a run folder
    written = load_toml(os.path.join(run_dir, "config.toml"))
    man_path = os.path.join(run_dir, "manifest.csv")
    manifest = read_manifest(man_path) if os.path.exists(man_path) else pd.DataFrame()
    return Run(run_dir=run_dir, config=typed, pipeline=Pipeline(typed.preprocess_config()),
               classes=_classes(typed, manifest),
               task=str(typed.data.task or "classification").lower(),
               positive_class=typed.data.positive_class or None, manifest=manifest,
               config_hash=config_hash(written))
