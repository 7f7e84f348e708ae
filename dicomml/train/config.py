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

from dicomml.data.config import DataConfig
from dicomml.data.config import check_keys as _check_keys
from dicomml.data.labels import normalize_key
from dicomml.data.split import SplitConfig
from dicomml.errors import ConfigError, did_you_mean
from dicomml.train.toml_io import load_toml

__all__ = ["DataConfig", "ModelConfig", "TrainConfig", "ReportConfig", "RunConfig",
           "load_config"]


def min_input_size(name: str, kwargs=None) -> int:
    """The smallest square input side model ``name`` accepts (checked at load time, without
    importing TensorFlow).

    The reference CNN: each of its ``len(filters)`` blocks is a 3×3 convolution without
    padding (side − 2) and a 2×2 max pooling (halved), down to at least 1; the
    ``keras.applications`` backbones need 32.
    """
    if str(name).lower().strip().startswith("reference_cnn"):
        side = 1
        for _ in range(len(tuple((kwargs or {}).get("filters", (32, 64, 128))))):
            side = 2 * side + 2
        return side
    return 32


LEVELS = ("slice", "study")
POOLINGS = ("attention", "max", "mean")
SCHEDULES = ("cosine", "constant")
BALANCES = ("study", "class", "none")
#: Defaults of the reference CNN as the slice encoder of a study model: a patch classifier
#: (``head = "map"``: a 1×1 map of class scores at the last convolution, the reference
#: class's score fixed at 0, pooled by its maximum over the patches and, with
#: ``pooling = "max"``, over the slices), batch normalization whose moving statistics
#: follow quickly (momentum 0.9: with 0.99 the validation AUC lagged the training one by
#: ~6 epochs). Measured (bench/README.md, "learning"): the chest-nodule task from study
#: labels, where a dense head over globally max-pooled features memorises the patients
#: (held-out AUC 0.52), and the bundled head-CT task with the default windows. Without
#: batch normalization the features stay near 0 and the study output near 0.5.
#: ``head = "dense"`` gives the previous encoder (``global_pool = "max"``, attention
#: pooling).
STUDY_ENCODER = {"head": "map", "global_pool": "max", "batch_norm": True, "bn_momentum": 0.9}


@dataclass(frozen=True)
class ModelConfig:
    """``[model]``: ``name`` (see :func:`dicomml.models.available_models`), the level, and
    the builder's keyword arguments as further keys.

    Attributes
    ----------
    name : str
        The (slice) model; at the study level, its layers before ``output`` are the shared
        slice encoder.
    level : {"slice", "study"}
        ``"slice"``: one prediction per image, trained on the image's label (the study
        label copied to its slices). ``"study"``: multiple-instance learning over the
        slices of each study (:mod:`dicomml.models.mil`), trained on study labels,
        predicting per study and per slice. With labels keyed by SOP Instance UID, a
        study's label is positive when any of its slices is.
    pooling : {"attention", "max", "mean"}
        Study level: how slice outputs are pooled over the study. Default (empty):
        ``"max"`` when the slice model's head is a score map (``head = "map"``, the
        default of the study level), ``"attention"`` otherwise; config.toml records the
        value used.
    attention_units : int
        Study level, attention pooling: width of the attention network.
    kwargs : table
        Builder options (``filters``, ``dense_units``, ``global_pool``, ``l2``...). At the
        study level ``reference_cnn`` defaults to a patch classifier, ``head = "map"``, with
        ``batch_norm = true`` (:data:`STUDY_ENCODER`); ``head = "dense"`` gives globally
        max-pooled features and a dense head (:func:`dicomml.models.reference.reference_cnn`).
    """

    name: str = "reference_cnn"
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    level: str = "slice"
    pooling: str = ""
    attention_units: int = 64

    def __post_init__(self):
        if self.level not in LEVELS:
            raise ConfigError(f"model.level must be one of {list(LEVELS)}. Received: "
                              f"level={self.level!r}{did_you_mean(str(self.level), LEVELS)}")
        if self.level == "study" and self.name == "reference_cnn":
            object.__setattr__(self, "kwargs", {**STUDY_ENCODER, **dict(self.kwargs)})
        if not self.pooling:  # scores are pooled by their maximum, features by attention
            object.__setattr__(self, "pooling", "max" if dict(self.kwargs).get("head")
                               == "map" else "attention")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"model.pooling must be one of {list(POOLINGS)}. Received: "
                              f"pooling={self.pooling!r}"
                              f"{did_you_mean(str(self.pooling), POOLINGS)}")

    def to_dict(self) -> dict:
        d = {"name": self.name, "level": self.level}
        if self.level == "study":
            d.update(pooling=self.pooling, attention_units=int(self.attention_units))
        return {**d, **dict(self.kwargs)}

    @classmethod
    def from_dict(cls, table: Mapping) -> "ModelConfig":
        t = dict(table)
        own = {k: t.pop(k) for k in ("name", "level", "pooling", "attention_units") if k in t}
        return cls(kwargs=t, **own)


@dataclass(frozen=True)
class TrainConfig:
    """``[train]``.

    Attributes
    ----------
    optimizer : {"adamw", "adam", "sgd", "rmsprop"}
        Default ``"adamw"`` (Adam with decoupled weight decay).
    learning_rate : float
        The initial learning rate (default 1e-3, the reference's).
    weight_decay : float
        Decoupled weight decay of ``adamw`` (default 1e-4; ignored by the others).
    lr_schedule : {"cosine", "constant"}
        ``"cosine"`` (default): cosine decay from ``learning_rate`` to 5 % of it over all
        training steps (resumes exactly: it depends on the optimizer's step count, which the
        checkpoint holds; a re-run with more ``epochs`` keeps the schedule the run started
        with). Cannot be combined with ``reduce_lr_patience``.
    epochs : int
        Maximum number of epochs (early stopping may end the run sooner).
    batch_size : int
        Images per step at the slice level (the study level: ``studies_per_step``).
    studies_per_step : int
        Study level: whole studies per training step (default 1), of equal length
        (bucketed by their number of slices, so nothing is padded; a length with fewer
        studies gives a smaller step). More than one mixes patients in the batch
        statistics but gives fewer steps per epoch: on the bundled head task 4 stopped
        early at chance with the default epochs and learning rate, 1 reaches AUC 1.0.
    loss : str
        "" → ``categorical_crossentropy`` (classification) or ``mean_squared_error``.
    metrics : list of str
        "" entries are ignored; ``"auc"`` adds ROC AUC (binary).
    class_weights : "none", "balanced" or a table {class name: weight}
        "balanced": ``n / (n_classes * count_c)`` on the training split (scikit-learn's rule).
        Only with ``balance = "none"``.
    balance : {"study", "class", "none"}
        Per-example loss weights on the training split. ``"study"`` (default): every study
        weighs the same whatever its number of slices, and both classes weigh the same in
        total (the expectation of sampling a class, then a study, then a slice);
        ``"class"``: each class the same total weight; ``"none"``.
    seed : int
        The training seed: ``keras.utils.set_random_seed``, the tf.data order and the
        augmentation draws. The split has its own, ``[split] seed``.
    deterministic : bool
        ``tf.config.experimental.enable_op_determinism()`` (slower; process-wide).
    mixed_precision : {"auto", "on", "off"}
        "auto": policy ``mixed_float16`` when a GPU is visible; the output layer stays float32.
    strategy : {"default", "mirrored", "multi_worker_mirrored"}
        ``tf.distribute`` strategy; the multi-worker one reads ``TF_CONFIG`` (see
        :mod:`dicomml.train.trainer`, "Scaling out"). ``batch_size`` is then the global
        batch, split across the replicas.
    monitor : str
        Best-checkpoint (and early-stopping) metric: ``"auto"`` (default) is ``"val_auc"``
        (ROC AUC on the validation split, max) for classification and ``"val_loss"`` for
        regression; or e.g. ``"val_loss"`` (min), ``"val_accuracy"`` (max).
    early_stopping_patience : int
        Stop after this many epochs without improvement of ``monitor`` (default 8; 0
        disables).
    early_stopping_start : int
        Epochs early stopping lets pass before it watches ``monitor`` (default 10; the best
        checkpoint is kept from the first epoch regardless): a study model can sit at
        chance for several epochs before it finds the finding (measured on the chest-nodule
        task without geometric augmentation: stopped at epoch 10 with epoch 2 best,
        held-out AUC 0.53; ``bench/README.md``, "learning").
    reduce_lr_patience : int
        ``ReduceLROnPlateau`` patience (default 0: off; needs ``lr_schedule = "constant"``):
        epochs without an improvement of the monitor, by the rule of the best checkpoint
        (a tied ROC AUC with a lower validation loss is an improvement).
    reduce_lr_factor, min_lr : float
    tensorboard : bool
        TensorBoard logs in ``RUN_DIR/logs``.
    steps_per_epoch : int
        0 → the whole training split; ``KERAS_MAX_STEPS_PER_EPOCH`` caps it too.
    verbose : int
        Keras progress (1: bar, 2: one line per epoch, 0: silent), on stderr.
    slice_loss : float
        Study level with labels per slice (``data.key = "SOPInstanceUID"``): weight of an
        instance-level loss, the cross-entropy of each slice's prediction by the shared
        encoder and head against its own label, balanced between the classes (default
        0: off; e.g. 0.5).
    attention_loss : float
        Study level, attention pooling, labels per slice: weight of the attention
        supervision, the cross-entropy between a positive study's attention weights and
        its positive slices (default 0: off; e.g. 1.0). Both only shape the training;
        validation, the checkpoint choice and prediction use the study output alone.

    The training augmentation is ``[preprocess.augment]`` (applied to the training split
    only, on the tensors in tf.data); ``[train] augment`` of earlier versions is gone.
    """

    optimizer: str = "adamw"
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    lr_schedule: str = "cosine"
    epochs: int = 30
    batch_size: int = 32
    studies_per_step: int = 1
    loss: str = ""
    metrics: tuple = ("accuracy",)
    class_weights: Any = "none"
    balance: str = "study"
    seed: int = 0
    deterministic: bool = False
    mixed_precision: str = "auto"
    strategy: str = "default"
    monitor: str = "auto"
    early_stopping_patience: int = 8
    early_stopping_start: int = 10
    reduce_lr_patience: int = 0
    reduce_lr_factor: float = 0.5
    min_lr: float = 1e-6
    tensorboard: bool = True
    steps_per_epoch: int = 0
    verbose: int = 2
    slice_loss: float = 0.0
    attention_loss: float = 0.0

    def __post_init__(self):
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
        if self.lr_schedule not in SCHEDULES:
            raise ConfigError(f"train.lr_schedule must be one of {list(SCHEDULES)}. "
                              f"Received: lr_schedule={self.lr_schedule!r}")
        if self.balance not in BALANCES:
            raise ConfigError(f"train.balance must be one of {list(BALANCES)}. "
                              f"Received: balance={self.balance!r}")
        if self.balance != "none" and self.class_weights != "none":
            raise ConfigError("train.class_weights needs train.balance = \"none\" (both "
                              f"weight the loss). Received: balance={self.balance!r}, "
                              f"class_weights={self.class_weights!r}")
        if self.reduce_lr_patience and self.lr_schedule != "constant":
            raise ConfigError("train.reduce_lr_patience needs train.lr_schedule = "
                              "\"constant\" (a schedule already sets the learning rate). "
                              f"Received: lr_schedule={self.lr_schedule!r}")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise ConfigError("train.weight_decay must be a number >= 0. "
                              f"Received: weight_decay={self.weight_decay!r}")
        for k in ("slice_loss", "attention_loss"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise ConfigError(f"train.{k} must be a number >= 0. Received: {k}={v!r}")
        v = self.early_stopping_start
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ConfigError("train.early_stopping_start must be an integer >= 0 (epochs). "
                              f"Received: early_stopping_start={v!r}")
        if int(self.epochs) < 1 or int(self.batch_size) < 1 or int(self.studies_per_step) < 1:
            raise ConfigError("train.epochs, train.batch_size and train.studies_per_step must "
                              f"be >= 1. Received: epochs={self.epochs!r}, batch_size="
                              f"{self.batch_size!r}, studies_per_step={self.studies_per_step!r}")


@dataclass(frozen=True)
class ReportConfig:
    """``[report]``: how the run's finding is coded in the DICOM SR.

    Attributes
    ----------
    finding_code : str
        The positive class's finding, ``"SCHEME:VALUE"`` or ``"SCHEME:Keyword"`` from
        pydicom's PS3.16 codes, e.g. ``"SCT:27925004"`` (Nodule); "" → from the class name
        (a known name's SNOMED CT code, else a private ``99DICOMML`` code).
    finding_site : str
        The finding site, e.g. ``"SCT:39607008"`` (Lung); "" → none.
    """

    finding_code: str = ""
    finding_site: str = ""

    def __post_init__(self):
        from dicomml.train.findings import parse_code

        if self.finding_code:
            parse_code(self.finding_code, "report.finding_code")
        if self.finding_site:
            parse_code(self.finding_site, "report.finding_site")


@dataclass(frozen=True)
class RunConfig:
    """The whole configuration of a training run."""

    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    preprocess: Mapping[str, Any] = field(default_factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
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
        if isinstance(self.train.class_weights, Mapping):
            train["class_weights"] = {str(k): float(v)
                                      for k, v in self.train.class_weights.items()}
        return {"data": data, "split": self.split.to_dict(),
                "preprocess": self.preprocess_config().to_dict(),
                "model": self.model.to_dict(), "train": train,
                "report": dataclasses.asdict(self.report),
                **({"contract": dict(self.contract)} if self.contract else {})}

    def replace(self, **tables) -> "RunConfig":
        """A copy with some tables' fields replaced: ``cfg.replace(train={"epochs": 2})``."""
        new = {}
        for name, changes in tables.items():
            cur = getattr(self, name)
            if name in ("preprocess", "contract"):
                new[name] = {**dict(cur), **changes}
            elif name == "model":
                new[name] = ModelConfig.from_dict({**cur.to_dict(), **dict(changes)})
            else:
                new[name] = dataclasses.replace(cur, **changes)
        return dataclasses.replace(self, **new)

    @classmethod
    def from_run_dir(cls, run_dir: str | os.PathLike) -> "RunConfig":
        """The typed configuration a run was trained with: ``RUN_DIR/config.toml`` (the
        resolved configuration :class:`dicomml.train.Trainer` writes), as training read it.

        Raises
        ------
        ConfigError
            ``run_dir`` holds no ``config.toml`` (not a run folder), or the file is not a
            valid configuration.
        """
        path = os.path.join(os.path.abspath(os.fspath(run_dir)), "config.toml")
        if not os.path.isfile(path):
            raise ConfigError(f"{os.fspath(run_dir)} is not a run folder (no config.toml); "
                              "train into it first with 'dicomml train --config FILE --out "
                              "RUN_DIR'")
        return load_config(path)

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
        train = dict(d.get("train", {}))
        if "augment" in train:
            raise ConfigError("[train] augment is gone: the training augmentation is "
                              "[preprocess.augment] (flip_lr, flip_ud, rotate_deg, scale, "
                              "translate, intensity, window_center, window_width; applied to "
                              "the training split only). Remove the key. Received: "
                              f"augment={train['augment']!r}")
        _check_keys(train, TrainConfig, "train")
        report = dict(d.get("report", {}))
        _check_keys(report, ReportConfig, "report")
        cfg = cls(data=DataConfig(**data), split=SplitConfig(**split),
                  preprocess=dict(d.get("preprocess", {})),
                  model=ModelConfig.from_dict(d.get("model", {})),
                  train=TrainConfig(**train), report=ReportConfig(**report),
                  contract=dict(d.get("contract", {})))
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
        cfg.check()
        return cfg

    def check(self) -> None:
        """The checks that need more than one table (run at load time, before any scan)."""
        d = self.data
        if d.positive_class and d.classes and d.positive_class not in d.classes:
            raise ConfigError(f"data.positive_class {d.positive_class!r} is not among "
                              f"data.classes {list(d.classes)}"
                              f"{did_you_mean(d.positive_class, list(d.classes))}")
        if d.task == "regression" and (d.positive_class or d.classes):
            raise ConfigError("data.classes / data.positive_class are for classification; "
                              "remove them for task = \"regression\"")
        if self.model.level == "study" and d.task == "regression":
            raise ConfigError("model.level = \"study\" needs a classification task")
        sup = [k for k in ("slice_loss", "attention_loss") if getattr(self.train, k)]
        if sup and (self.model.level != "study" or (
                d.key and normalize_key(d.key) != "sop_instance_uid")):
            raise ConfigError(f"train.{sup[0]} supervises the slices of a study model: it "
                              "needs model.level = \"study\" and labels per slice "
                              "(data.key = \"SOPInstanceUID\"). Received: level="
                              f"{self.model.level!r}, key={d.key!r}")
        if self.train.attention_loss and self.model.pooling != "attention":
            raise ConfigError("train.attention_loss needs model.pooling = \"attention\" "
                              "(the study level's reference CNN is a score map pooled by "
                              "its maximum unless [model] sets head = \"dense\"). "
                              f"Received: pooling={self.model.pooling!r}")
        size = int(self.preprocess.get("size", 224))
        need = min_input_size(self.model.name, self.model.kwargs)
        if size < need:
            raise ConfigError(f"preprocess.size {size} is too small for model "
                              f"{self.model.name!r} (it needs at least {need} x {need}); "
                              "raise [preprocess] size")

    def monitor(self, task: str, has_val: bool = True) -> str:
        """``train.monitor`` resolved (``"auto"`` → ``val_auc`` / ``val_loss``), without the
        ``val_`` prefix when there is no validation split."""
        m = self.train.monitor
        if m == "auto":
            m = "val_auc" if task == "classification" else "val_loss"
        return m if has_val else m.removeprefix("val_")


def load_config(path: str | os.PathLike) -> RunConfig:
    """Load a training configuration TOML file (relative paths: against its folder)."""
    d = load_toml(path)
    return RunConfig.from_dict(d, base_dir=os.path.dirname(os.path.abspath(path)))
