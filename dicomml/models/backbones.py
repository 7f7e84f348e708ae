"""keras.applications backbones with a dicomml head; nothing is ever downloaded."""

from __future__ import annotations

import os

import keras
from keras import layers

from dicomml.errors import ConfigError
from dicomml.models.reference import output_layer
from dicomml.models.registry import register

__all__ = ["backbone_model", "BACKBONES"]

#: registry name -> keras.applications constructor name
BACKBONES = {
    "resnet50": "ResNet50",
    "densenet121": "DenseNet121",
    "efficientnetb0": "EfficientNetB0",
    "mobilenetv2": "MobileNetV2",
    "vgg16": "VGG16",
}


def backbone_model(arch: str, input_shape=(224, 224, 3), n_classes: int = 2,
                   task: str = "classification", *, weights: str | None = None,
                   dropout: float = 0.0, pooling: str = "avg",
                   trainable_backbone: bool = True) -> keras.Model:
    """A keras.applications backbone (``include_top=False``) plus global pooling and the head.

    Parameters
    ----------
    arch : str
        A key of :data:`BACKBONES`.
    weights : None or path
        ``None`` (random initialization, the default) or the path of a local weights file
        (``.h5`` / ``.weights.h5`` without top). The strings ``"imagenet"`` etc. are refused:
        dicomml never downloads at run time.
    dropout : float
        Dropout before the output layer.
    pooling : {"avg", "max"}
    trainable_backbone : bool
        False freezes the backbone (transfer learning from a local weights file).
    """
    if weights is not None:
        if not os.path.isfile(str(weights)):
            raise ConfigError(
                f"model {arch!r}: weights must be None or the path of an existing local weights "
                "file; dicomml never downloads weights. Copy the file locally and give its path. "
                f"Received: weights={weights!r}")
        weights = os.fspath(weights)
    ctor = getattr(keras.applications, BACKBONES[arch])
    base = ctor(include_top=False, weights=weights, input_shape=tuple(input_shape),
                pooling=pooling)
    base.trainable = bool(trainable_backbone)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = base(inputs)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    outputs = output_layer(n_classes, task)(x)
    return keras.Model(inputs, outputs, name=arch)


def _make(arch):
    def builder(input_shape=(224, 224, 3), n_classes=2, task="classification", **kw):
        return backbone_model(arch, input_shape, n_classes, task, **kw)

    builder.__name__ = f"build_{arch}"
    builder.__doc__ = f"keras.applications.{BACKBONES[arch]} backbone (see backbone_model)."
    return builder


for _arch in BACKBONES:
    register(_arch)(_make(_arch))
