"""Keras 3 + ``tf.distribute.MultiWorkerMirroredStrategy``: two workarounds for ``fit``.

Keras 3 (checked with 3.15) cannot run ``model.fit`` under ``MultiWorkerMirroredStrategy``
(tensorflow/tensorflow#72388, the workaround given there being Keras 2):

1. before the first epoch, ``Trainer._maybe_symbolic_build`` pulls one batch and averages it
   across workers with ``strategy.reduce("MEAN", (x, y), axis=None)``, which the collective
   strategy cannot do on a nested structure ("Attempt to convert a value (PerReplica...)");
2. after every step, ``reduce_per_replica`` averages the scalar logs with
   ``strategy.reduce("MEAN", v, axis=0)``: "Invalid reduction dimension 0 for input with 0
   dimensions".

:func:`multi_worker_fit_patches` fixes both for one ``fit`` call: the model is built from
the dataset's ``element_spec`` (no batch is pulled), and the logs of a step are averaged
over this worker's replicas only, as under ``MirroredStrategy``. That is exact: the logs are
metric results, whose variables Keras creates with ``aggregation="sum"`` under the strategy,
so every update is already all-reduced across workers and every replica holds the global
value. Nothing changes when the strategy is not the multi-worker one.
"""

from __future__ import annotations

import contextlib

__all__ = ["multi_worker_fit_patches", "is_multi_worker"]


def is_multi_worker(strategy) -> bool:
    """Whether ``strategy`` is a ``MultiWorkerMirroredStrategy`` spanning several workers."""
    import tensorflow as tf

    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and getattr(strategy.extended, "_num_workers", 1) > 1)


@contextlib.contextmanager
def multi_worker_fit_patches(model, strategy, element_spec):
    """Within the ``with`` block, ``model.fit`` works under a multi-worker strategy.

    Parameters
    ----------
    model : keras.Model
        Created and compiled in ``strategy.scope()``.
    strategy : tf.distribute.Strategy
    element_spec : structure of tf.TensorSpec
        The training dataset's ``element_spec`` (``(x, y)`` batches).
    """
    if not is_multi_worker(strategy):
        yield
        return
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy_, reduction):
        if reduction in ("auto", "mean") and is_multi_worker(strategy_):
            def local_mean(v):
                if not isinstance(v, tf.distribute.DistributedValues):
                    return v
                return tf.reduce_mean(strategy_.experimental_local_results(v), axis=0)

            return tree.map_structure(local_mean, values)
        return original(values, strategy_, reduction)

    def build(iterator=None, data_batch=None):
        with strategy.scope():
            model._symbolic_build(data_batch=element_spec)

    tf_trainer.reduce_per_replica = reduce_per_replica
    model._maybe_symbolic_build = build
    try:
        yield
    finally:
        tf_trainer.reduce_per_replica = original
        del model._maybe_symbolic_build
