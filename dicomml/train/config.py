"""The training configuration: a TOML file loaded into frozen dataclasses.

Tables: ``[data]`` (with ``[data.slices]``), ``[split]``, ``[preprocess]`` (exactly
``PreprocessConfig.to_dict()``), ``[model]`` (``name`` + builder keyword arguments) and
``[train]``. Every default comes from the reference setup of DESIGN.md (Adam, learning
rate 1e-3, categorical cross-entropy or MSE, accuracy, batch 32, 10 epochs). Relative paths
are resolved against the configuration file's folder; the resolved configuration (every
default filled in, absolute paths) is written to ``RUN_DIR/config.toml``.

An optional ``[contract]`` table overrides the input contract learned from the training
set (:meth:`dicomml.data.contract.InputContract.with_overrides`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from dicomml.data.slices import SliceSelection
from dicomml.data.split import SplitConfig
from dicomml.errors import ConfigError, did_you_mean
from dicomml.train.toml_io import load_toml

__all__ = ["DataConfig", "ModelConfig", "TrainConfig", "RunConfig", "load_config"]


def _check_keys(table: Mapping, cls, where: str, extra=()) -> None:
    known = {f.name for f in dataclasses.fields(cls)} | set(extra)
    for k in table:
        if k not in known:
            hint = did_you_mean(k, sorted(known))
            raise ConfigError(f"unknown setting {k!r} in [{where}]; known: {sorted(known)}."
                              f"{hint}")


@dataclass(frozen=True)
class DataConfig:
    """``[data]``: where the images and labels are and how examples are made.

    Attributes
    ----------
    folder : str
        The DICOM folder to scan ("" when ``index`` is an existing Index).
    index : str
        The Index database (SQLite); "" → the default location in the user's cache folder.
    labels : str
        The labels CSV.
    key : str
        The UID column the labels are keyed by (DICOM keyword or snake case); "" → detect.
    label_column : str
    task : {"", "classification", "regression"}
        "" → inferred from the labels.
    classes : list of str
        Class order (index i = softmax output i); empty → sorted label values.
    positive_class : str
        For binary tasks: the class whose probability is the score ("" → the second class).
    modality : str
        Keep only images of this (0008,0060) Modality ("" → all).
    cache : str
        Tensor cache folder; "" → decode on the fly in worker processes.
    workers : int
        Worker processes for caching / on-the-fly decoding (0 → in this process;
        -1 → every CPU).
    shuffle_labels : bool
        Control experiment: permute the labels of the training studies (seeded).
    slices : SliceSelection
    """

    folder: str = ""
    index: str = ""
    labels: str = ""
    key: str = ""
    label_column: str = "label"
    task: str = ""
    classes: tuple = ()
    positive_class: str = ""
    modality: str = ""
    cache: str = ""
    workers: int = -1
    shuffle_labels: bool = False
    slices: SliceSelection = field(default_factory=SliceSelection)

    def __post_init__(self):
        if isinstance(self.slices, Mapping):
            _check_keys(self.slices, SliceSelection, "data.slices")
            object.__setattr__(self, "slices", SliceSelection(**self.slices))
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        if self.task not in ("", "classification", "regression"):
            raise ConfigError("data.task must be 'classification', 'regression' or ''. "
                              f"Received: task={self.task!r}")


@dataclass(frozen=True)
class ModelConfig:
    """``[model]``: ``name`` (see :func:`dicomml.models.available_models`) and the builder's
    keyword arguments as further keys."""

    name: str = "reference_cnn"
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, **dict(self.kwargs)}


@dataclass(frozen=True)
class TrainConfig:
    """``[train]``.

    Attributes
    ----------
    optimizer : {"adam", "sgd", "rmsprop", "adamw"}
    learning_rate : float
    epochs, batch_size : int
    loss : str
        "" → ``categorical_crossentropy`` (classification) or ``mean_squared_error``.
    metrics : list of str
        "" entries are ignored; ``"auc"`` adds ROC AUC (binary).
    class_weights : "none", "balanced" or a table {class name: weight}
        "balanced": ``n / (n_classes * count_c)`` on the training split (scikit-learn's rule).
    seed : int
        ``keras.utils.set_random_seed``; also the tf.data shuffle seed.
    deterministic : bool
        ``tf.config.experimental.enable_op_determinism()`` (slower; process-wide).
    mixed_precision : {"auto", "on", "off"}
        "auto": policy ``mixed_float16`` when a GPU is visible; the output layer stays float32.
    strategy : {"default", "mirrored", "multi_worker_mirrored"}
        ``tf.distribute`` strategy; the multi-worker one reads ``TF_CONFIG`` (see
        :mod:`dicomml.train.trainer`, "Scaling out"). ``batch_size`` is then the global
        batch, split across the replicas.
    monitor : str
        Best-checkpoint metric, e.g. ``"val_loss"`` (min) or ``"val_auc"`` (max).
    early_stopping_patience, reduce_lr_patience : int
        0 disables the callback.
    reduce_lr_factor, min_lr : float
    tensorboard : bool
        TensorBoard logs in ``RUN_DIR/logs``.
    steps_per_epoch : int
        0 → the whole training split; ``KERAS_MAX_STEPS_PER_EPOCH`` caps it too.
    verbose : int
        Keras progress (1: bar, 2: one line per epoch, 0: silent), on stderr.
    augment : list of str
        Augmentations of training batches in tf.data (``"flip_lr"``, ``"flip_ud"``,
        ``"rot90"``); they act on cached tensors too, unlike ``[preprocess.augment]``.
    """

    optimizer: str = "adam"
    learning_rate: float = 1e-3
    epochs: int = 10
    batch_size: int = 32
    loss: str = ""
    metrics: tuple = ("accuracy",)
    class_weights: Any = "none"
    seed: int = 0
    deterministic: bool = False
    mixed_precision: str = "auto"
    strategy: str = "default"
    monitor: str = "val_loss"
    early_stopping_patience: int = 0
    reduce_lr_patience: int = 0
    reduce_lr_factor: float = 0.5
    min_lr: float = 1e-6
    tensorboard: bool = True
    steps_per_epoch: int = 0
    verbose: int = 2
    augment: tuple = ()

    def __post_init__(self):
        from dicomml.data.tfdata import AUGMENTATIONS

        object.__setattr__(self, "augment", tuple(str(a) for a in self.augment))
        bad = [a for a in self.augment if a not in AUGMENTATIONS]
        if bad:
            raise ConfigError(f"train.augment: unknown {bad}; known: {list(AUGMENTATIONS)}. "
                              f"Received: augment={list(self.augment)!r}")
        opt = str(self.optimizer).lower()
        if opt not in ("adam", "sgd", "rmsprop", "adamw"):
            raise ConfigError(f"train.optimizer must be adam, sgd, rmsprop or adamw. "
                              f"Received: optimizer={self.optimizer!r}")
        object.__setattr__(self, "optimizer", opt)
        object.__setattr__(self, "metrics", tuple(str(m) for m in self.metrics if m))
        if self.strategy not in ("default", "mirrored", "multi_worker_mirrored"):
            raise ConfigError("train.strategy must be default, mirrored or "
                              f"multi_worker_mirrored. Received: strategy={self.strategy!r}")
        if self.mixed_precision not in ("auto", "on", "off"):
            raise ConfigError("train.mixed_precision must be auto, on or off. "
                              f"Received: mixed_precision={self.mixed_precision!r}")
        cw = self.class_weights
        if not (cw in ("none", "balanced") or isinstance(cw, Mapping)):
            raise ConfigError("train.class_weights must be 'none', 'balanced' or a table "
                              f"{{class = weight}}. Received: class_weights={cw!r}")
        if int(self.epochs) < 1 or int(self.batch_size) < 1:
            raise ConfigError("train.epochs and train.batch_size must be >= 1. Received: "
                              f"epochs={self.epochs!r}, batch_size={self.batch_size!r}")


@dataclass(frozen=True)
class RunConfig:
    """The whole configuration of a training run."""

    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    preprocess: Mapping[str, Any] = field(default_factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    #: ``[contract]``: overrides of the input contract learned from the training set.
    contract: Mapping[str, Any] = field(default_factory=dict)

    def preprocess_config(self):
        """The :class:`dicomml.preprocess.PreprocessConfig` of ``[preprocess]``."""
        from dicomml.preprocess import PreprocessConfig

        return PreprocessConfig.from_dict(dict(self.preprocess))

    def to_dict(self) -> dict:
        """The resolved configuration (the content of ``RUN_DIR/config.toml``)."""
        data = dataclasses.asdict(self.data)
        data["classes"] = list(self.data.classes)
        train = dataclasses.asdict(self.train)
        train["metrics"] = list(self.train.metrics)
        train["augment"] = list(self.train.augment)
        if isinstance(self.train.class_weights, Mapping):
            train["class_weights"] = {str(k): float(v)
                                      for k, v in self.train.class_weights.items()}
        return {"data": data, "split": self.split.to_dict(),
                "preprocess": self.preprocess_config().to_dict(),
                "model": self.model.to_dict(), "train": train,
                **({"contract": dict(self.contract)} if self.contract else {})}

    def replace(self, **tables) -> "RunConfig":
        """A copy with some tables' fields replaced: ``cfg.replace(train={"epochs": 2})``."""
        new = {}
        for name, changes in tables.items():
            cur = getattr(self, name)
            if name in ("preprocess", "contract"):
                new[name] = {**dict(cur), **changes}
            elif name == "model":
                ch = dict(changes)
                new[name] = ModelConfig(ch.pop("name", cur.name), {**dict(cur.kwargs), **ch})
            else:
                new[name] = dataclasses.replace(cur, **changes)
        return dataclasses.replace(self, **new)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], base_dir: str | os.PathLike | None = None
                  ) -> "RunConfig":
        """Build from parsed TOML; relative paths are resolved against ``base_dir``."""
        _check_keys(d, cls, "top level")
        data = dict(d.get("data", {}))
        _check_keys(data, DataConfig, "data")
        if base_dir is not None:
            for k in ("folder", "index", "labels", "cache"):
                if data.get(k):
                    data[k] = os.path.abspath(os.path.join(os.fspath(base_dir),
                                                           os.path.expanduser(data[k])))
        split = dict(d.get("split", {}))
        _check_keys(split, SplitConfig, "split")
        model = dict(d.get("model", {}))
        name = model.pop("name", "reference_cnn")
        train = dict(d.get("train", {}))
        _check_keys(train, TrainConfig, "train")
        cfg = cls(data=DataConfig(**data), split=SplitConfig(**split),
                  preprocess=dict(d.get("preprocess", {})), model=ModelConfig(name, model),
                  train=TrainConfig(**train), contract=dict(d.get("contract", {})))
        if cfg.contract:  # an unknown or malformed override fails now, not after training
            from dicomml.data.contract import InputContract

            InputContract().with_overrides(cfg.contract)
        # validate now, and keep the canonical form (every default filled in)
        cfg = dataclasses.replace(cfg, preprocess=cfg.preprocess_config().to_dict())
        if not cfg.data.labels:
            raise ConfigError("data.labels (the labels CSV) is required")
        if not (cfg.data.folder or cfg.data.index):
            raise ConfigError("data.folder (to scan) or data.index (an Index database) is "
                              "required")
        return cfg


def load_config(path: str | os.PathLike) -> RunConfig:
    """Load a training configuration TOML file (relative paths: against its folder)."""
    d = load_toml(path)
    return RunConfig.from_dict(d, base_dir=os.path.dirname(os.path.abspath(path)))
