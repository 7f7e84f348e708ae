"""Studies as bags of slices, for study-level (multiple-instance) training.

A bag is every example (slice, frame) of one study, in manifest order. A training step
holds up to ``studies_per_step`` whole bags of the same length (bucketed by length, so
bags of any length need no padding and the batch statistics of a step mix several
patients): ``x`` float32 (k, n, size, size, 3), ``y`` (k, n_classes) and a loss weight
(k,). With ``slice_targets`` (labels per slice, for the slice supervision of
:class:`dicomml.models.mil.StudyModel`) ``y`` is the pair ``(y, slice classes (k, n))``.
The steps of epoch ``e`` (:func:`step_plan`) are a function of ``(seed, e)`` like
:func:`dicomml.data.tfdata.cache_dataset`, their number is the same in every epoch
(:func:`steps_per_epoch`), and the augmentation draws of step ``b`` are a function of
``(seed, b)`` (:func:`dicomml.data.augmentation.augment_batches`), so a resumed run
(``skip_batches``) sees what the uninterrupted one saw.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from dicomml.data.cache import BufferPool
from dicomml.data.tfdata import encode_targets
from dicomml.errors import ConfigError
from dicomml.data.augmentation import augment_batches

__all__ = ["study_groups", "study_targets", "example_weights", "bag_dataset", "step_plan",
           "steps_per_epoch"]

log = logging.getLogger(__name__)


def study_groups(examples: pd.DataFrame) -> tuple[list[str], list[np.ndarray]]:
    """Study Instance UIDs (in order of first appearance) and the row positions of each."""
    uids = examples["study_instance_uid"].astype(str).to_numpy()
    order, groups = [], {}
    for i, u in enumerate(uids):
        if u not in groups:
            groups[u] = []
            order.append(u)
        groups[u].append(i)
    return order, [np.asarray(groups[u], np.int64) for u in order]


def study_targets(targets, groups, n_classes: int, positive: int = 1) -> np.ndarray:
    """One class index per study: for two classes, ``positive`` when any slice is positive
    (labels per slice, e.g. keyed by SOP Instance UID); otherwise every slice of a study
    must have the same label."""
    t = np.asarray(targets).astype(np.int64)
    out = np.empty(len(groups), np.int64)
    for k, g in enumerate(groups):
        v = t[g]
        if n_classes == 2:
            out[k] = positive if (v == positive).any() else v[0]
        elif (v == v[0]).all():
            out[k] = v[0]
        else:
            raise ConfigError("model.level = \"study\" with more than two classes needs one "
                              "label per study; a study has slices labelled "
                              f"{sorted(set(v.tolist()))}")
    return out


def example_weights(targets, studies, how: str, n_classes: int) -> np.ndarray | None:
    """Loss weights of examples (mean 1) for ``[train] balance``.

    ``"study"``: each study weighs the same (its examples share ``1 / n_study``) and each
    class the same in total; ``"class"``: each class the same total; ``"none"`` → None.
    ``studies`` is one study key per example (pass distinct keys at the study level).
    """
    if how == "none":
        return None
    t = np.asarray(targets).astype(np.int64)
    if how == "study":
        s = pd.Series(np.asarray(studies).astype(str))
        w = 1.0 / s.map(s.value_counts()).to_numpy(np.float64)
    else:
        w = np.ones(len(t))
    total = np.bincount(t, weights=w, minlength=n_classes)
    present = total > 0
    w = w / np.where(present, total, 1.0)[t] / max(int(present.sum()), 1)
    return (w * len(t)).astype(np.float32)


def steps_per_epoch(lengths, studies_per_step: int) -> int:
    """Steps of one pass over bags of ``lengths``: per length, ``ceil(count / k)``."""
    k = max(1, int(studies_per_step))
    _, counts = np.unique(np.asarray(lengths, np.int64), return_counts=True)
    return int(sum(-(-int(c) // k) for c in counts))


def step_plan(lengths, studies_per_step: int, shuffle: bool, seed: int = 0,
              epoch: int = 0) -> list[np.ndarray]:
    """The steps of one epoch: lists of bag positions, each of one length (no padding).

    Unshuffled: bags in order, grouped by length. Shuffled: the bags of each length in the
    order of a generator seeded by ``(seed, epoch)``, cut into steps of ``studies_per_step``
    (the last of a length may hold fewer), and the steps in a random order of the same
    generator. Always :func:`steps_per_epoch` steps.
    """
    k = max(1, int(studies_per_step))
    lengths = np.asarray(lengths, np.int64)
    rng = np.random.default_rng([int(seed), int(epoch), 7121]) if shuffle else None
    steps = []
    for n in np.unique(lengths):
        members = np.flatnonzero(lengths == n)
        if rng is not None:
            members = members[rng.permutation(len(members))]
        steps += [members[j:j + k] for j in range(0, len(members), k)]
    if rng is not None:
        steps = [steps[j] for j in rng.permutation(len(steps))]
    return steps


def bag_dataset(cache, examples: pd.DataFrame, *, targets=None, weights=None,
                task: str = "classification", n_classes: int = 2, positive: int = 1,
                shuffle: bool = False, seed: int = 0, repeat: bool = False,
                skip_batches: int = 0, augment=None, normalize: str = "unit",
                prefetch: bool = True, slice_targets=None, studies_per_step: int = 1):
    """A ``tf.data.Dataset`` of study bags read from the tensor ``cache``.

    Parameters
    ----------
    examples : pandas.DataFrame
        Manifest rows (``study_instance_uid``, ``sop_instance_uid``, ``frame``).
    targets : array, optional
        Per-example class indices (aggregated by :func:`study_targets`).
    weights : array, optional
        Per-study loss weights (:func:`example_weights` over studies).
    shuffle, seed, repeat, skip_batches, augment, normalize
        As :func:`dicomml.data.tfdata.cache_dataset` (one "batch" = one step of bags).
    studies_per_step : int
        Bags (of equal length) per step, at most (:func:`step_plan`).
    slice_targets : array, optional
        Per-example class indices (-1: unknown), yielded per bag next to the study target
        (needs ``targets``).
    """
    import tensorflow as tf

    _, groups = study_groups(examples)
    shard_no, rows, names = cache.locate(examples)
    missing = shard_no < 0
    if missing.any():
        log.warning("%d of %d examples are not in the cache (failed to decode?); left out "
                    "of their studies", int(missing.sum()), len(missing))
    groups = [g[~missing[g]] for g in groups]
    keep = [k for k, g in enumerate(groups) if len(g)]
    if len(keep) < len(groups):
        log.warning("%d studies have no cached slice; left out", len(groups) - len(keep))
    y = None
    if targets is not None:
        st = study_targets(targets, [g if len(g) else np.array([0]) for g in groups],
                           n_classes, positive)
        y = encode_targets(st, task, n_classes)[keep]
    w = None if weights is None else np.asarray(weights, np.float32)[keep]
    st_all = None if slice_targets is None or y is None else \
        np.asarray(slice_targets, np.float32)
    groups = [groups[k] for k in keep]
    raw = cache.open_shards(names)  # every memory map opened before threads use them
    pool = BufferPool()

    lengths = np.array([len(g) for g in groups], np.int64)
    n_steps = steps_per_epoch(lengths, studies_per_step)
    plans: dict[int, list] = {}

    def bags_of(b):
        """Bag positions of global step ``b`` (epoch ``b // n_steps``)."""
        e, j = divmod(int(b), n_steps)
        plan = plans.get(e)  # tf.data calls this from several threads: no check-then-read
        if plan is None:
            plan = plans[e] = step_plan(lengths, studies_per_step, shuffle, seed, e)
            for old in [k for k in list(plans) if k < e - 2]:
                plans.pop(old, None)
        return plan[j]

    def gather(b):
        ks = bags_of(b)
        idx = np.concatenate([groups[k] for k in ks])  # the step's bags share one length
        x = cache.gather_raw(shard_no[idx], rows[idx], names, pool=pool)
        x = x.reshape(len(ks), -1, *x.shape[1:])  # a view: still the aligned buffer
        if y is None:
            return x
        ww = np.ones(len(ks), np.float32) if w is None else w[ks]
        if st_all is not None:
            return x, y[ks], st_all[idx].reshape(len(ks), -1), ww
        return x, y[ks], ww

    def decode_tf(x):
        x = tf.cast(x, tf.float32)
        return x / tf.constant(255.0, tf.float32) if raw == np.uint8 else x

    start = int(skip_batches)
    if repeat:
        ds = tf.data.Dataset.counter(start=start, dtype=tf.int64)
    else:
        ds = tf.data.Dataset.range(start, n_steps, output_type=tf.int64)
    tf_raw = tf.as_dtype(raw)
    xshape = (None, None, *cache.shape)

    def tf_gather(b):
        if y is None:
            x = tf.numpy_function(gather, [b], tf_raw, stateful=False)
            x.set_shape(xshape)
            return decode_tf(x)
        if st_all is not None:
            x, yy, ys, ww = tf.numpy_function(
                gather, [b], (tf_raw, tf.float32, tf.float32, tf.float32), stateful=False)
            ys.set_shape((None, None))
        else:
            x, yy, ww = tf.numpy_function(gather, [b], (tf_raw, tf.float32, tf.float32),
                                          stateful=False)
        x.set_shape(xshape)
        yy.set_shape((None, y.shape[1]))
        ww.set_shape((None,))
        return decode_tf(x), ((yy, ys) if st_all is not None else yy), ww

    ds = ds.map(tf_gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = augment_batches(ds, augment, seed, start=skip_batches, normalize=normalize)
    return ds.prefetch(tf.data.AUTOTUNE) if prefetch else ds
