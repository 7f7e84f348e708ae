"""dicomml.models: the reference CNN of DESIGN.md and a registry of other builders.

>>> from dicomml.models import build_model
>>> model = build_model("reference_cnn", input_shape=(224, 224, 3), n_classes=2)  # doctest: +SKIP
"""

from __future__ import annotations

import keras

from dicomml.errors import ConfigError
from dicomml.models import backbones as _backbones  # noqa: F401  (registers the backbones)
from dicomml.models.reference import reference_cnn
from dicomml.models.registry import available_models, get_builder, register

__all__ = ["build_model", "available_models", "register", "reference_cnn", "TASKS"]

TASKS = ("classification", "regression")


def build_model(name: str = "reference_cnn", input_shape=(224, 224, 3), n_classes: int = 2,
                task: str = "classification", **kwargs) -> keras.Model:
    """Build the model registered as ``name`` (not compiled).

    Parameters
    ----------
    name : str
        ``"reference_cnn"`` (default), ``"reference_cnn_l2"``, ``"reference_cnn_dropout"``,
        ``"reference_cnn_bn"``, ``"resnet50"``, ``"densenet121"``, ``"efficientnetb0"``,
        ``"mobilenetv2"``, ``"vgg16"``; see :func:`available_models`.
    input_shape : tuple of int
    n_classes : int
        Number of softmax outputs for classification (≥ 2).
    task : {"classification", "regression"}
        Regression ends in ``Dense(1, linear)``.
    **kwargs
        Builder options (``l2``, ``dropout``, ``batch_norm``, ``weights``...).
    """
    task = str(task).lower()
    if task not in TASKS:
        raise ConfigError(f"task must be one of {TASKS}. Received: task={task!r}")
    if task == "classification" and int(n_classes) < 2:
        raise ConfigError("classification needs n_classes >= 2 (binary tasks use 2 softmax "
                          f"outputs). Received: n_classes={n_classes!r}")
    builder = get_builder(name)
    try:
        return builder(input_shape=tuple(input_shape), n_classes=int(n_classes), task=task,
                       **kwargs)
    except TypeError as e:
        raise ConfigError(f"model {name!r} does not accept these options ({e}). "
                          f"Received: kwargs={kwargs!r}") from e
