"""The Trainer: scan → manifest → patient split → tensor cache → tf.data → Keras fit.

It writes the run folder (see :mod:`dicomml.train`) and resumes after an interruption: every
epoch saves the model with its optimizer state to ``checkpoints/`` and a re-run continues at
the next epoch, with every other piece of training state restored so that it ends as the
uninterrupted run would: the callbacks' counters and best values and the learning rate
(``state.json``), the training batches (the finished epochs' batches are skipped, so epoch
``e`` sees the same examples in the same order with the same augmentation draws) and the
layers' random state (:class:`~dicomml.train.callbacks.EpochSeeds`). A run that early
stopping ended is not continued.

Scaling out (``[train] strategy``)
----------------------------------
``"default"``
    One device (the first GPU, else the CPU).
``"mirrored"``
    ``tf.distribute.MirroredStrategy``: synchronous data parallelism over the GPUs of this
    machine; without a GPU, over the logical CPU devices when the CPU was split with
    ``tf.config.set_logical_device_configuration`` before TensorFlow initialized (useful
    only to test a configuration on a laptop).
``"multi_worker_mirrored"``
    ``tf.distribute.MultiWorkerMirroredStrategy``: one process per machine (or per
    process on one machine), all started with the same configuration and a ``TF_CONFIG``
    environment variable naming the cluster and the process's own place in it, e.g. for
    the second of two workers::

        TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                    "task": {"type": "worker", "index": 1}}'

    Every worker must see the same files (data, Index, cache) at the same paths: scan and
    fill the cache first (``dicomml scan``, ``dicomml preprocess``), or let each worker do
    it (the cache's shards are named by content and written atomically, so concurrent fills
    write identical files).

In every strategy ``train.batch_size`` is the **global** batch: each of the R replicas
computes ``batch_size / R`` examples of the same global batch, the gradients are summed
across replicas and the loss is scaled by ``1 / R`` (Keras), so the run follows the
single-device run step for step (same seed, same data, same global batch) up to the order
of floating-point additions. The examples are sharded by data (each worker builds the same
seeded pipeline and keeps its part of every global batch: ``AutoShardPolicy.DATA``), so
nothing depends on how the cache's shards are spread over files. Two exceptions:
``BatchNormalization`` normalizes with per-replica statistics (use
``synchronized=True`` for identical results) and dropout draws different masks per replica
(so do the ``[preprocess.augment]`` draws). From the cache, epoch ``e`` visits the training examples in
the order ``stateless_shuffle(seed, e)`` (see :func:`dicomml.data.tfdata.cache_dataset`),
whatever the strategy. Keras 3 cannot run ``fit`` under ``MultiWorkerMirroredStrategy`` as
released; :mod:`dicomml.train._compat` patches it for the duration of ``fit``.

The chief (worker 0, or the task of type ``"chief"``) writes the run folder; every other
worker writes the same files into a temporary folder that is deleted at the end, as the
TensorFlow multi-worker guide recommends (saving may involve every worker). A re-run of all
workers resumes from the chief's ``checkpoints/state.json``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dicomml._atomic import atomic_write_text
from dicomml.data.cache import TensorCache
from dicomml.data.labels import KEY_TAGS
from dicomml.data.contract import InputContract
from dicomml.data.manifest import MANIFEST_COLUMNS, Manifest
from dicomml.data.selection import select_examples
from dicomml.errors import ConfigError
from dicomml.train.config import RunConfig, load_config
from dicomml.train.toml_io import write_toml

__all__ = ["Trainer", "TrainResult", "class_weights", "env_cap", "prepare_manifest",
           "is_chief"]

log = logging.getLogger(__name__)


def env_cap(name: str, value: int) -> int:
    """``min(value, int($name))`` when the environment variable is set (smoke runs)."""
    raw = os.environ.get(name)
    if raw:
        try:
            return max(1, min(int(value), int(raw))) if value else max(1, int(raw))
        except ValueError as e:
            raise ConfigError(f"{name} must be an integer. Received: {raw!r}") from e
    return int(value)


def class_weights(targets, n_classes: int, spec, classes=()) -> dict[int, float] | None:
    """Keras ``class_weight`` from ``"none"``, ``"balanced"`` or ``{class name: weight}``.

    ``"balanced"`` is scikit-learn's rule ``n_samples / (n_classes * bincount(y))``; classes
    absent from ``targets`` get weight 0.
    """
    if spec in (None, "none"):
        return None
    t = np.asarray(targets, dtype=np.int64)
    if spec == "balanced":
        counts = np.bincount(t, minlength=n_classes).astype(float)
        w = np.where(counts > 0, len(t) / (n_classes * np.maximum(counts, 1)), 0.0)
        return {i: float(w[i]) for i in range(n_classes)}
    out = {i: 1.0 for i in range(n_classes)}
    for k, v in dict(spec).items():
        if str(k) in classes:
            out[list(classes).index(str(k))] = float(v)
        else:
            raise ConfigError(f"train.class_weights names class {k!r}, not among {list(classes)}")
    return out


def is_chief(tf_config: str | None = None) -> bool:
    """Whether this process writes the run folder under ``TF_CONFIG`` (default: the
    environment variable).

    True without ``TF_CONFIG``, for the task of type ``"chief"``, and for worker 0 of a
    cluster without a ``"chief"`` task (the ``MultiWorkerMirroredStrategy`` convention).
    """
    raw = os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config
    if not raw.strip():
        return True
    try:
        conf = json.loads(raw)
        task = conf.get("task") or {}
        kind, index = task.get("type"), int(task.get("index", 0))
        cluster = conf.get("cluster") or {}
    except (ValueError, TypeError, AttributeError) as e:
        raise ConfigError("the environment variable TF_CONFIG is not valid JSON of the form "
                          '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": '
                          f'"worker", "index": 0}}: fix or unset it ({e})') from e
    if kind in (None, "chief"):
        return True
    return kind == "worker" and index == 0 and "chief" not in cluster


def prepare_manifest(cfg: RunConfig, *, progress: bool = True) -> tuple[Manifest, str]:
    """Scan (or open) the Index, join it with the labels, select slices and split.

    Returns the manifest (with ``split``) and the Index database path.
    """
    from dicomml.io import open_index, scan

    d = cfg.data
    if d.folder:
        res = scan(d.folder, db=d.index or None, workers=d.workers, progress=progress)
        db = res.db_path
    else:
        db = d.index
        if not os.path.exists(db):
            raise ConfigError(f"data.index {db} does not exist; set data.folder to scan")
    with open_index(db=db) as index:
        inst = index.instances()
    m = select_examples(inst, d, labels=d.labels).manifest
    if not len(m.df):
        raise ConfigError(f"no labelled image matches the labels file {d.labels} by "
                          f"{m.key} {KEY_TAGS[m.key]}: check data.key and data.folder")
    return m.with_split(cfg.split), db


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` produced.

    ``history`` is the run's ``history.csv`` (read before a non-chief worker's temporary
    folder is deleted); ``model`` is the trained Keras model (the last epoch's weights).
    """

    run_dir: str
    manifest: pd.DataFrame
    history: pd.DataFrame
    failed: pd.DataFrame
    epochs_run: int
    resumed_from: int | None
    model: object = None
    #: the epoch (1-based) whose weights are ``model.keras`` (None: the last one)
    best_epoch: int | None = None


class Trainer:
    """Train a model from a :class:`~dicomml.train.config.RunConfig`.

    >>> Trainer.from_toml("sample_dicom/train.toml").fit("runs/head_ct")  # doctest: +SKIP
    """

    def __init__(self, config: RunConfig):
        self.config = config

    @classmethod
    def from_toml(cls, path) -> "Trainer":
        return cls(load_config(path))

    # ------------------------------------------------------------------------------------
    def _resolved(self, manifest: Manifest, db: str) -> RunConfig:
        d = self.config.data
        changes = {"index": os.path.abspath(db), "key": manifest.key, "task": manifest.task,
                   "classes": tuple(manifest.classes)}
        if manifest.task == "classification" and len(manifest.classes) == 2 \
                and not d.positive_class:
            changes["positive_class"] = manifest.classes[1]
            # an assumption: say it (config.toml records it as data.positive_class)
            print(f"dicomml train: assuming positive class {manifest.classes[1]!r} (the "
                  f"second of the classes {list(manifest.classes)}), recorded as "
                  "data.positive_class in config.toml; set data.positive_class to choose",
                  file=sys.stderr)
        if d.positive_class and d.positive_class not in manifest.classes:
            raise ConfigError(f"data.positive_class {d.positive_class!r} is not among the "
                              f"classes {manifest.classes}")
        return self.config.replace(data=changes,
                                   train={"monitor": self.config.monitor(manifest.task)})

    def _strategy(self):
        """The ``tf.distribute`` strategy of ``train.strategy`` (see the module docstring).

        Created before any other TensorFlow operation: ``MultiWorkerMirroredStrategy``
        configures the collective ops at start-up.
        """
        import tensorflow as tf

        s = self.config.train.strategy
        if s == "mirrored":
            if tf.config.list_logical_devices("GPU"):
                return tf.distribute.MirroredStrategy()
            cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
            return tf.distribute.MirroredStrategy(devices=cpus if len(cpus) > 1 else None)
        if s == "multi_worker_mirrored":
            if not os.environ.get("TF_CONFIG", "").strip():
                log.warning("train.strategy is multi_worker_mirrored but TF_CONFIG is not "
                            "set: training on this process alone")
            return tf.distribute.MultiWorkerMirroredStrategy()
        return tf.distribute.get_strategy()

    @staticmethod
    def _distribute(ds, strategy):
        """Shard by data (every worker keeps its part of each global batch)."""
        import tensorflow as tf

        if ds is None or strategy.num_replicas_in_sync == 1:
            return ds
        opts = tf.data.Options()
        opts.experimental_distribute.auto_shard_policy = \
            tf.data.experimental.AutoShardPolicy.DATA
        return ds.with_options(opts)

    def _compile(self, model, task: str, n_classes: int, total_steps: int = 0):
        """Compile with the optimizer, learning-rate schedule, loss and metrics of
        ``[train]``; ``"auc"`` (added when the monitor needs it) is the ROC AUC averaged over
        the classes one-vs-rest — for two classes, the binary ROC AUC."""
        import keras

        t = self.config.train
        opt = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD,
               "rmsprop": keras.optimizers.RMSprop, "adamw": keras.optimizers.AdamW}[t.optimizer]
        loss = t.loss or ("mean_squared_error" if task == "regression"
                          else "categorical_crossentropy")
        names = list(t.metrics)
        if "auc" in self.config.monitor(task) and "auc" not in names and task == "classification":
            names.append("auc")
        metrics = []
        for m in names:
            if m == "auc":
                metrics.append(keras.metrics.AUC(name="auc", multi_label=True,
                                                 num_labels=n_classes))
            elif m == "accuracy" and task == "regression":
                continue
            else:
                metrics.append(m)
        lr = t.learning_rate
        if t.lr_schedule == "cosine" and total_steps > 0:
            lr = keras.optimizers.schedules.CosineDecay(t.learning_rate, int(total_steps),
                                                        alpha=0.05)
        kw = {"weight_decay": t.weight_decay} if t.optimizer == "adamw" else {}
        model.compile(optimizer=opt(learning_rate=lr, **kw), loss=loss, metrics=metrics)
        return model

    def _n_batches(self, df: pd.DataFrame, split: str) -> int:
        """Steps of one pass over ``split``: batches of images, or studies (study level)."""
        part = df[df["split"] == split]
        if self.config.model.level == "study":
            from dicomml.data.bags import steps_per_epoch

            return steps_per_epoch(part.groupby("study_instance_uid").size().to_numpy(),
                                   self.config.train.studies_per_step)
        return -(-len(part) // self.config.train.batch_size)

    def _datasets(self, df: pd.DataFrame, pipeline, task: str, n_classes: int, stack,
                  skip_batches: int = 0, positive: int = 1):
        """Endless training and validation datasets; the training one starts
        ``skip_batches`` batches in (a resumed run: the batches the finished epochs used).
        Only the training one is augmented (``[preprocess.augment]``) and weighted
        (``[train] balance``)."""
        from dicomml.data.bags import example_weights, study_groups, study_targets
        from dicomml.data.tfdata import augment_for

        d, t = self.config.data, self.config.train
        tr, va = df[df["split"] == "train"], df[df["split"] == "val"]
        ytr, yva = tr["target"].to_numpy(), va["target"].to_numpy()
        aug, norm = augment_for(pipeline)
        study = self.config.model.level == "study"
        weights = None
        if task == "classification" and study:
            _, groups = study_groups(tr)
            st = study_targets(ytr, groups, n_classes, positive)
            weights = example_weights(st, np.arange(len(st)), t.balance, n_classes)
        elif task == "classification":
            weights = example_weights(ytr, tr["study_instance_uid"], t.balance, n_classes)
        if study:
            from dicomml.data.bags import bag_dataset

            if not d.cache:
                raise ConfigError("model.level = \"study\" reads the tensor cache: set "
                                  "data.cache (a folder)")
            cache = TensorCache.for_pipeline(d.cache, pipeline)

            supervised = bool(t.slice_loss or t.attention_loss)  # labels per slice

            def mk(ex, y, sh):
                return bag_dataset(cache, ex, targets=y, weights=weights if sh else None,
                                   task=task, n_classes=n_classes, positive=positive,
                                   shuffle=sh, seed=t.seed, augment=aug if sh else None,
                                   normalize=norm, repeat=True,
                                   skip_batches=skip_batches if sh else 0,
                                   slice_targets=y if sh and supervised else None,
                                   studies_per_step=t.studies_per_step)
        elif d.cache:
            from dicomml.data.tfdata import cache_dataset

            cache = TensorCache.for_pipeline(d.cache, pipeline)

            def mk(ex, y, sh):
                return cache_dataset(cache, ex, targets=y, task=task, n_classes=n_classes,
                                     batch_size=t.batch_size, shuffle=sh, seed=t.seed,
                                     augment=aug if sh else None, normalize=norm,
                                     repeat=True, skip_batches=skip_batches if sh else 0,
                                     weights=weights if sh else None)
        else:
            from dicomml.data.tfdata import OnTheFly

            def mk(ex, y, sh):
                otf = stack.enter_context(OnTheFly(ex, pipeline, workers=d.workers))
                return otf.dataset(targets=y, task=task, n_classes=n_classes,
                                   batch_size=t.batch_size, shuffle=sh, seed=t.seed,
                                   augment=aug if sh else None, repeat=True,
                                   skip_batches=skip_batches if sh else 0,
                                   weights=weights if sh else None)
        train_ds = mk(tr, ytr, True)
        val_ds = mk(va, yva, False) if len(va) else None
        n_batches = (self._n_batches(df, "train"), self._n_batches(df, "val"))
        # Keras warns when a dataset of unknown length (a generator) ends, or when a capped
        # number of steps runs past a finite one: both datasets are endless (repeated) and
        # fit() gets the steps. Each repetition reshuffles the training examples; from the
        # cache, epoch e's order depends only on (seed, e), with or without tf.distribute,
        # and a resumed run skips the batches of the finished epochs (same order, same
        # augmentation draws as the uninterrupted run).
        return train_ds, val_ds, ytr, n_batches

    def _fill_cache(self, m: Manifest, pipeline, progress) -> pd.DataFrame:
        d = self.config.data
        if not d.cache:
            return pd.DataFrame(columns=["sop_instance_uid", "frame", "path", "reason"])
        cache = TensorCache.for_pipeline(d.cache, pipeline)
        rep = cache.fill(m.df, pipeline, workers=d.workers, progress=progress)
        return rep.failed

    # ------------------------------------------------------------------------------------
    def fit(self, run_dir, *, progress: bool = True) -> TrainResult:
        """Run (or resume) the training into ``run_dir``; see the module docstring.

        Under ``strategy = "multi_worker_mirrored"`` every worker calls ``fit`` with the same
        configuration and ``run_dir``; only the chief writes ``run_dir``.
        """
        import keras
        import tensorflow as tf

        t = self.config.train
        strategy = self._strategy()  # first: the multi-worker one configures TensorFlow
        keras.utils.set_random_seed(int(t.seed))
        if t.deterministic:
            tf.config.experimental.enable_op_determinism()
        run_dir = os.path.abspath(os.fspath(run_dir))
        chief = t.strategy != "multi_worker_mirrored" or is_chief()
        if chief:
            os.makedirs(run_dir, exist_ok=True)
            return self._fit(run_dir, run_dir, strategy, progress)
        scratch = tempfile.mkdtemp(prefix="dicomml-worker-")
        try:  # a non-chief worker writes into a scratch folder, deleted at the end
            res = self._fit(scratch, run_dir, strategy, False)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        res.run_dir = run_dir
        return res

    def _fit(self, run_dir: str, state_dir: str, strategy, progress) -> TrainResult:
        """:meth:`fit` writing into ``run_dir`` and resuming from ``state_dir``'s state."""
        import keras
        import tensorflow as tf

        from dicomml.models import build_model
        from dicomml.preprocess import Pipeline
        from dicomml.train.callbacks import (EpochSeeds, ResumableEarlyStopping,
                                             ResumableReduceLROnPlateau, RunState,
                                             plot_history, read_state)

        t = self.config.train

        manifest, db = prepare_manifest(self.config, progress=progress)
        resolved = self._resolved(manifest, db)
        pipeline = Pipeline(resolved.preprocess_config())
        failed = self._fill_cache(manifest, pipeline, progress)
        df = manifest.df
        if len(failed):
            bad = set(zip(failed["sop_instance_uid"].astype(str), failed["frame"].astype(int)))
            df = df[[(s, f) not in bad for s, f in zip(df["sop_instance_uid"], df["frame"])]]
            log.warning("%d examples could not be decoded; listed in failed.csv", len(failed))
        manifest = Manifest(df.reset_index(drop=True), manifest.key, manifest.task,
                            manifest.classes, manifest.unmatched_labels, manifest.unlabeled)
        write_toml(os.path.join(run_dir, "config.toml"), resolved.to_dict())
        InputContract.learn_from_index(db, manifest.df["sop_instance_uid"], resolved.contract,
                                       preprocess=resolved.preprocess_config()).write(run_dir)
        summary = manifest.write(run_dir)
        atomic_write_text(os.path.join(run_dir, "failed.csv"), failed.to_csv(index=False))
        print(f"dicomml train: {summary['examples']} examples, {summary['studies']} studies, "
              f"{summary['patients']} patients; split " + ", ".join(
                  f"{k} {v}" for k, v in summary["splits"].items()), file=sys.stderr)
        if summary["unmatched_labels"] or summary["unlabeled_images"]:
            print(f"dicomml train: {summary['unmatched_labels']} labels matched no image and "
                  f"{summary['unlabeled_images']} images have no label; see "
                  "unmatched_labels.csv and unlabeled_images.csv", file=sys.stderr)

        task, n_classes = manifest.task, manifest.n_classes
        if (t.slice_loss or t.attention_loss) and manifest.key != "sop_instance_uid":
            raise ConfigError("train.slice_loss / train.attention_loss need labels per "
                              "slice (keyed by SOPInstanceUID); the labels are keyed by "
                              f"{manifest.key}. Set them to 0 or give slice labels.")
        train_df = manifest.df.copy()
        if resolved.data.shuffle_labels:  # control: labels of train and val at random
            train_df = _shuffle_train_labels(train_df, t.seed)
        if not (train_df["split"] == "train").any():
            raise ConfigError("the training split is empty: check the split fractions")

        epochs = env_cap("KERAS_MAX_EPOCHS", t.epochs)
        steps = env_cap("KERAS_MAX_STEPS_PER_EPOCH", t.steps_per_epoch) or None
        state = read_state(state_dir)
        initial_epoch, resumed = 0, None
        if state is not None:
            initial_epoch = resumed = int(state["epoch"]) + 1
            if state.get("stopped"):  # early stopping ended the run: nothing more to do
                epochs = min(epochs, initial_epoch)
        n_tr_batches = self._n_batches(train_df, "train")
        skip = initial_epoch * (min(n_tr_batches, steps) if steps else n_tr_batches)
        pos = (manifest.classes.index(resolved.data.positive_class)
               if resolved.data.positive_class in manifest.classes else 1)
        policy = keras.mixed_precision.global_policy().name
        use_mp = t.mixed_precision == "on" or (t.mixed_precision == "auto"
                                               and tf.config.list_physical_devices("GPU"))
        with contextlib.ExitStack() as stack:
            if use_mp:
                keras.mixed_precision.set_global_policy("mixed_float16")
                stack.callback(keras.mixed_precision.set_global_policy, policy)
            train_ds, val_ds, ytr, (n_tr, n_va) = self._datasets(
                train_df, pipeline, task, n_classes, stack, skip_batches=skip, positive=pos)
            train_ds = self._distribute(train_ds, strategy)
            val_ds = self._distribute(val_ds, strategy)
            tr_steps = min(n_tr, steps) if steps else n_tr
            va_steps = min(n_va, steps) if steps else n_va
            with strategy.scope():
                if state is not None:
                    ck = os.path.join(state_dir, "checkpoints", state["checkpoint"])
                    model = keras.saving.load_model(ck, compile=True)
                    if state.get("learning_rate") is not None and \
                            t.lr_schedule == "constant":  # a schedule: in the optimizer
                        model.optimizer.learning_rate = float(state["learning_rate"])
                    print(f"dicomml train: resuming after epoch {initial_epoch} "
                          f"from {os.path.relpath(ck, state_dir)}", file=sys.stderr)
                else:
                    model = build_model(resolved.model.name, input_shape=(
                        pipeline.config.size, pipeline.config.size, 3),
                        n_classes=n_classes, task=task, **dict(resolved.model.kwargs))
                    if resolved.model.level == "study":
                        from dicomml.models.mil import study_model

                        model = study_model(model, resolved.model.pooling,
                                            resolved.model.attention_units,
                                            slice_loss=t.slice_loss,
                                            attention_loss=t.attention_loss, positive=pos)
                    self._compile(model, task, n_classes, total_steps=epochs * tr_steps)
            run_state = RunState(run_dir, resolved.monitor(task, val_ds is not None),
                                 history=state["history"] if state else None,
                                 best=state["best"] if state else None,
                                 best_epoch=(state or {}).get("best_epoch"))
            # Every piece of training state is restored at a resume: weights, optimizer and
            # learning rate (checkpoint), the callbacks' counters and best values
            # (state.json), the data order and augmentation draws (skip_batches), the
            # layers' random state (EpochSeeds: a function of seed and epoch in every run).
            saved = (state or {}).get("callbacks", {})
            callbacks = [EpochSeeds(t.seed)]
            mon = run_state.monitor
            if t.reduce_lr_patience:
                run_state.resumables["reduce_lr"] = ResumableReduceLROnPlateau(
                    monitor=mon, factor=t.reduce_lr_factor, patience=t.reduce_lr_patience,
                    min_lr=t.min_lr, mode=run_state.mode, resume=saved.get("reduce_lr"))
            if t.early_stopping_patience:
                run_state.resumables["early_stopping"] = ResumableEarlyStopping(
                    monitor=mon, patience=t.early_stopping_patience, mode=run_state.mode,
                    start_from_epoch=t.early_stopping_start,
                    resume=saved.get("early_stopping"))
            callbacks += list(run_state.resumables.values())
            if t.tensorboard and importlib.util.find_spec("tensorboard") is None:
                log.warning("train.tensorboard is on but the tensorboard package is not "
                            "installed; no TensorBoard logs (pip install tensorboard)")
            elif t.tensorboard:
                callbacks.append(keras.callbacks.TensorBoard(os.path.join(run_dir, "logs"),
                                                             write_graph=False))
            callbacks.append(run_state)  # last: it saves the others' end-of-epoch state
            cw = (class_weights(ytr, n_classes, t.class_weights, manifest.classes)
                  if task == "classification" and t.balance == "none" else None)
            if initial_epoch < epochs:
                from dicomml.train._compat import multi_worker_fit_patches

                with contextlib.redirect_stdout(sys.stderr), \
                        multi_worker_fit_patches(model, strategy, train_ds.element_spec):
                    model.fit(train_ds, validation_data=val_ds, epochs=epochs,
                              initial_epoch=initial_epoch, steps_per_epoch=tr_steps,
                              validation_steps=va_steps if val_ds is not None else None,
                              class_weight=cw, callbacks=callbacks, verbose=t.verbose,
                              shuffle=False)  # the tf.data pipeline shuffles
        rows = run_state.rows
        if not os.path.exists(os.path.join(run_dir, "model.keras")):
            from dicomml.train.callbacks import save_model_atomic

            save_model_atomic(model, os.path.join(run_dir, "model.keras"))
        _report_best(run_state, rows)
        if rows:
            plot_history(rows, os.path.join(run_dir, "plots", "training_curves.png"))
        hist = pd.read_csv(os.path.join(run_dir, "history.csv")) if rows else pd.DataFrame()
        return TrainResult(run_dir, manifest.df[MANIFEST_COLUMNS], hist, failed,
                           epochs_run=max(0, epochs - initial_epoch), resumed_from=resumed,
                           model=model, best_epoch=(None if run_state.best_epoch is None
                                                    else int(run_state.best_epoch) + 1))


def _report_best(run_state, rows: list) -> None:
    """Say which epoch ``model.keras`` holds (1-based, with its monitored value); warn when
    it is the first or second of several (the later epochs did not improve on it)."""
    if run_state.best_epoch is None or not rows:
        return
    e = int(run_state.best_epoch) + 1
    value = run_state.best
    msg = (f"dicomml train: model.keras is epoch {e} of {len(rows)} "
           f"({run_state.monitor} = {value:.4g})" if isinstance(value, (int, float))
           else f"dicomml train: model.keras is epoch {e} of {len(rows)}")
    print(msg, file=sys.stderr)
    if e <= 2 < len(rows):
        log.warning("model.keras is epoch %d of %d: %s did not improve after it; the model "
                    "may not have learned (check the validation curves, the learning rate "
                    "and the labels)", e, len(rows), run_state.monitor)


def _shuffle_train_labels(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Control experiment: reassign the training and validation studies' targets at
    random, independently of the true ones; the test split keeps its labels.

    The validation labels are shuffled too: the best epoch is chosen on them, and with true
    validation labels a model trained on noise was still picked for whatever chance
    sensitivity to the finding it had (the score-map head on the bundled head task, 30
    epochs: held-out AUC 1.0 from shuffled training labels).

    A plain permutation keeps a chance correlation with the truth (for 100 studies the
    agreement is 50 % ± 5 %), which a CNN that finds the lesion turns into an AUC far from
    0.5. Here, within each true class, the studies get the other classes' targets in the
    overall proportions (a stratified permutation), so the shuffled targets carry no
    information about the true ones. Regression targets are permuted plainly.
    """
    from dicomml.data.split import allocate

    df = df.copy()
    tr = df["split"].isin(("train", "val"))
    studies = df.loc[tr].groupby("study_instance_uid", sort=True)["target"].first()
    rng = np.random.default_rng(seed + 7919)
    if not np.issubdtype(np.asarray(studies).dtype, np.integer):
        mapping = dict(zip(studies.index, studies.to_numpy()[rng.permutation(len(studies))]))
    else:
        values, counts = np.unique(studies.to_numpy(), return_counts=True)
        fractions = counts / counts.sum()
        mapping = {}
        for v in values:
            members = studies.index[studies.to_numpy() == v].to_numpy()
            members = members[rng.permutation(len(members))]
            new = np.repeat(values, allocate(len(members), fractions))
            new = new[rng.permutation(len(new))]
            mapping.update(zip(members, new))
    df.loc[tr, "target"] = df.loc[tr, "study_instance_uid"].map(mapping).to_numpy()
    return df
