"""The reference CNN of DESIGN.md and its regularized variants."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from dicomml.errors import ConfigError
from dicomml.models.registry import register

__all__ = ["reference_cnn", "output_layer", "ReferenceLogit", "log_odds"]


def output_layer(n_classes: int, task: str, dtype: str | None = "float32") -> layers.Layer:
    """The head: ``Dense(n_classes, softmax)`` for classification, ``Dense(1, linear)`` for
    regression. It is always computed in ``float32`` (needed under mixed precision)."""
    if task == "regression":
        return layers.Dense(1, activation="linear", name="output", dtype=dtype)
    return layers.Dense(n_classes, activation="softmax", name="output", dtype=dtype)


@keras.saving.register_keras_serializable(package="dicomml")
class ReferenceLogit(layers.Layer):
    """(B, n − 1) class scores → (B, n): a 0 inserted at class ``index`` (the reference
    class of a score-map head)."""

    def __init__(self, index: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.index = int(index)

    def call(self, z):
        zero = ops.zeros_like(z[:, :1])
        return ops.concatenate([z[:, :self.index], zero, z[:, self.index:]], axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1] + 1)

    def get_config(self):
        return {**super().get_config(), "index": self.index}


def log_odds(scores, index: int, axis: int = -1) -> np.ndarray:
    """``log p − log(1 − p)`` of class ``index`` under the softmax of ``scores`` along
    ``axis`` (float64, computed stably): its score against the log-sum-exp of the others.
    What the pooling weights and the CAM of a score-map head (``head = "map"``) rank by."""
    from scipy.special import logsumexp

    z = np.asarray(scores, np.float64)
    own = np.take(z, index, axis=axis)
    others = np.delete(z, index, axis=axis)
    return own - logsumexp(others, axis=axis) if others.shape[axis] else own


def reference_cnn(input_shape=(224, 224, 3), n_classes: int = 2, task: str = "classification",
                  *, l2: float = 0.0, dropout: float = 0.0, batch_norm: bool = False,
                  dense_units: int = 128, filters=(32, 64, 128), global_pool: str = "",
                  bn_momentum: float = 0.99, head: str = "dense", map_reference: int = 0,
                  name: str = "reference_cnn") -> keras.Model:
    """The reference CNN (DESIGN.md, "The reference CNN").

    ``Input → [Conv2D(f, 3×3, relu) → MaxPool 2×2] for f in (32, 64, 128) → Flatten →
    Dense(128, relu) → Dense(n_classes, softmax)`` (regression: ``Dense(1, linear)``).
    With the defaults it is exactly the reference; the keyword arguments add regularization.

    Parameters
    ----------
    input_shape : tuple of int
        ``(rows, columns, channels)``, ``(224, 224, 3)`` for dicomml tensors.
    n_classes : int
        Softmax outputs (ignored for regression).
    task : {"classification", "regression"}
    l2 : float
        L2 weight penalty on every Conv2D and Dense kernel (0: none).
    dropout : float
        Dropout rate before the hidden Dense layer and before the output (0: none).
    batch_norm : bool
        Insert ``BatchNormalization`` after each convolution (before the ReLU).
    bn_momentum : float
        Momentum of the batch normalization's moving statistics (Keras default 0.99; lower
        follows the training statistics faster, so that validation tracks training).
    dense_units : int
        Width of the hidden Dense layer (128 in the reference).
    filters : tuple of int
        Filters of the convolutions (32, 64, 128 in the reference).
    global_pool : {"", "max", "avg"}
        "" (the reference): ``Flatten``; ``"max"`` / ``"avg"``: global max / average pooling
        of the last feature maps instead (position-independent features with far fewer
        weights: a small finding anywhere in the image counts the same; the default
        slice encoder of study-level models with ``head = "dense"``).
    head : {"dense", "map"}
        ``"dense"`` (the reference): the pooled or flattened features → ``Dense`` layers.
        ``"map"``: a patch classifier — the last convolution's feature maps (without the
        last max pooling) → ``Conv2D(n_classes − 1, 1×1)``, a map of the scores of every
        class but ``map_reference`` (whose score is 0: the negative class), one per patch
        of the receptive field (18 px with the reference filters) → global max pooling
        (``global_pool`` is ignored) → softmax. An image scores as its most suspicious
        patch, so a small finding counts fully and the image as a whole (body size, the
        patient) cannot (measured on the chest-nodule task with study labels:
        ``bench/README.md``, "learning"). At the study level pool it with ``pooling =
        "max"`` (the default with this head). The explanation is the map itself (CAM).
        Classification only. (Without the fixed reference — a map per class, each pooled by
        its maximum — the reference class's own maximum let a scratch loop learn the
        patients: held-out AUC 0.59 against 0.91 on the chest task.)
    map_reference : int
        ``head = "map"``: the class (index) whose score is fixed at 0, default 0 (the first
        class, e.g. ``normal``); the image scores as the maximum over its patches of each
        other class's score against it.

    Returns
    -------
    keras.Model
        Not compiled.
    """
    reg = keras.regularizers.L2(l2) if l2 else None
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    if head not in ("dense", "map"):
        raise ConfigError(f"head must be 'dense' or 'map'. Received: head={head!r}")
    if head == "map" and task != "classification":
        raise ConfigError("head = 'map' (a map of class scores) is for classification. "
                          f"Received: task={task!r}; use head = 'dense'")
    x = inputs
    for i, f in enumerate(filters, start=1):
        if batch_norm:
            x = layers.Conv2D(f, (3, 3), use_bias=False, kernel_regularizer=reg, name=f"conv{i}")(x)
            x = layers.BatchNormalization(momentum=bn_momentum, name=f"bn{i}")(x)
            x = layers.Activation("relu", name=f"relu{i}")(x)
        else:
            x = layers.Conv2D(f, (3, 3), activation="relu", kernel_regularizer=reg,
                              name=f"conv{i}")(x)
        if head == "map" and i == len(filters):
            break  # the score map is made at the last convolution's resolution
        x = layers.MaxPooling2D((2, 2), name=f"pool{i}")(x)
    if head == "map":
        if dropout:
            x = layers.SpatialDropout2D(dropout, name="dropout1")(x)
        # scores in float32 (under mixed precision too), like output_layer
        ref = int(map_reference)
        if not 0 <= ref < n_classes:
            raise ConfigError(f"map_reference must be a class index in [0, {n_classes}). "
                              f"Received: map_reference={map_reference!r}")
        x = layers.Conv2D(n_classes - 1, (1, 1), kernel_regularizer=reg, name="class_map",
                          dtype="float32")(x)
        x = layers.GlobalMaxPooling2D(name="global_pool", dtype="float32")(x)
        x = ReferenceLogit(ref, name="reference_logit", dtype="float32")(x)
        outputs = layers.Activation("softmax", name="output", dtype="float32")(x)
        return keras.Model(inputs, outputs, name=name)
    if global_pool not in ("", "max", "avg"):
        raise ConfigError("global_pool must be '', 'max' or 'avg'. "
                          f"Received: global_pool={global_pool!r}")
    if global_pool == "max":
        x = layers.GlobalMaxPooling2D(name="global_pool")(x)
    elif global_pool == "avg":
        x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    else:
        x = layers.Flatten(name="flatten")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout1")(x)
    x = layers.Dense(dense_units, activation="relu", kernel_regularizer=reg, name="dense")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout2")(x)
    outputs = output_layer(n_classes, task)(x)
    return keras.Model(inputs, outputs, name=name)


@register("reference_cnn")
def _reference(input_shape=(224, 224, 3), n_classes=2, task="classification", **kw):
    return reference_cnn(input_shape, n_classes, task, **kw)


@register("reference_cnn_l2")
def _reference_l2(input_shape=(224, 224, 3), n_classes=2, task="classification", l2=1e-4, **kw):
    return reference_cnn(input_shape, n_classes, task, l2=l2, name="reference_cnn_l2", **kw)


@register("reference_cnn_dropout")
def _reference_dropout(input_shape=(224, 224, 3), n_classes=2, task="classification",
                       dropout=0.5, **kw):
    return reference_cnn(input_shape, n_classes, task, dropout=dropout,
                         name="reference_cnn_dropout", **kw)


@register("reference_cnn_bn")
def _reference_bn(input_shape=(224, 224, 3), n_classes=2, task="classification", **kw):
    kw.setdefault("batch_norm", True)
    return reference_cnn(input_shape, n_classes, task, name="reference_cnn_bn", **kw)
