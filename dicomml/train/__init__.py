"""dicomml.train: the trainer, its configuration, callbacks and run folders.

The run folder (``RUN_DIR/``) written by :meth:`Trainer.fit`:

* ``config.toml`` — the resolved configuration: ``[data]``, ``[data.slices]``, ``[split]``,
  ``[preprocess]`` (exactly ``PreprocessConfig.to_dict()``), ``[model]``, ``[train]``;
* ``manifest.csv`` — one row per example: patient_key (pseudonym), study/series/SOP
  Instance UIDs, frame, path, label, target, split;
* ``unmatched_labels.csv``, ``unlabeled_images.csv``, ``failed.csv`` — what was left out;
* ``model.keras`` — the best checkpoint (``train.monitor``), saved atomically;
* ``history.csv`` — epoch, loss, metrics, val_* (the CSVLogger format);
* ``checkpoints/`` — ``epoch-NNNN.keras`` (model + optimizer) and ``state.json`` for resume
  (last epoch, best value, learning rate, the early-stopping / learning-rate-schedule
  counters, whether early stopping ended the run, the history). A run killed at any point
  (even with SIGKILL) and re-run ends with the same history, checkpoints and ``model.keras``
  as an uninterrupted one (bit for bit on the CPU with ``train.deterministic``): the
  data order and the ``[preprocess.augment]`` draws depend only on ``(seed, epoch, batch)``, the
  layers' random state (dropout) is reset from ``(seed, epoch)`` at each epoch start;
* ``logs/`` — TensorBoard; ``plots/training_curves.png``.
"""

from __future__ import annotations

from dicomml._lazy import lazy_exports

_LAZY = {
    "Trainer": "dicomml.train.trainer",
    "TrainResult": "dicomml.train.trainer",
    "class_weights": "dicomml.train.trainer",
    "prepare_manifest": "dicomml.train.trainer",
    "is_chief": "dicomml.train.trainer",
    "RunConfig": "dicomml.train.config",
    "DataConfig": "dicomml.train.config",
    "ModelConfig": "dicomml.train.config",
    "TrainConfig": "dicomml.train.config",
    "load_config": "dicomml.train.config",
    "Run": "dicomml.train.run",
    "load_run": "dicomml.train.run",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY, eager=())
