"""Grad-CAM heatmaps (Selvaraju et al., ICCV 2017) for Keras classification models.

The heatmap of class ``c`` is ``ReLU(sum_k a_k A^k)`` where ``A^k`` are the feature maps of
the last convolutional stage and ``a_k`` the spatial mean of d score_c / d A^k. The score is
the log of the class's softmax probability (its gradient equals that of the pre-softmax
logit minus the log-sum-exp, and does not vanish when the softmax saturates). The map is
scaled to [0, 1] by its maximum and resized bilinearly to the input's height and width.

This module imports TensorFlow; :func:`dicomml.report.overlay.heatmap_overlay` (no
TensorFlow) draws the PNG overlay.
"""

from __future__ import annotations

import numpy as np

from dicomml.errors import ConfigError

__all__ = ["gradcam", "find_gradcam_layer", "save_gradcam_png"]

_CONV_TYPES = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose")


def _is_4d(tensor) -> bool:
    shape = getattr(tensor, "shape", None)
    return shape is not None and len(shape) == 4


def _outer_output(model, layer):
    """The symbolic output of ``layer`` in ``model``'s graph (also for nested models)."""
    try:
        out = layer.output
        import keras

        keras.Model(model.inputs, out)  # connected to the outer inputs?
        return out
    except (ValueError, AttributeError):
        nodes = getattr(layer, "_inbound_nodes", [])
        for node in reversed(nodes):
            outs = node.output_tensors
            if outs:
                return outs[0]
    raise ConfigError(f"cannot find the output of layer {layer.name!r} in model {model.name!r}")


def _is_nested(layer) -> bool:
    return hasattr(layer, "layers") and hasattr(layer, "inputs") and bool(layer.layers)


def find_gradcam_layer(model) -> str:
    """Name of the layer whose output Grad-CAM uses.

    The last convolution (Conv2D and variants) of the top level, followed forward through
    layers that keep the same 4-D shape (batch normalization, activation, residual add), so
    that ResNet-style backbones use the block's rectified output. When the last
    convolutional stage is inside a nested backbone (a ``keras.applications`` model used as
    one layer, as :func:`dicomml.models.backbones.backbone_model` builds), the name is
    ``"BACKBONE/LAYER"``.

    Raises
    ------
    dicomml.errors.ConfigError
        When the model has no 2-D convolution.
    """
    layers = model.layers
    for i in range(len(layers) - 1, -1, -1):
        layer = layers[i]
        if _is_nested(layer):
            try:
                return f"{layer.name}/{find_gradcam_layer(layer)}"
            except ConfigError:
                continue
        if layer.__class__.__name__ in _CONV_TYPES:
            shape = tuple(_outer_output(model, layer).shape)
            j = i
            while j + 1 < len(layers) and layers[j + 1].__class__.__name__ not in _CONV_TYPES:
                if _is_nested(layers[j + 1]):
                    break
                nxt = _outer_output(model, layers[j + 1])
                if not _is_4d(nxt) or tuple(nxt.shape)[1:3] != shape[1:3]:
                    break
                j += 1
            return layers[j].name
    raise ConfigError(f"model {model.name!r} has no 2-D convolution layer for Grad-CAM; "
                      "pass layer='NAME' of a layer with a 4-D (batch, rows, columns, "
                      "channels) output")


def _features_and_predictions(model, name: str):
    """A callable ``x -> (feature maps of layer name, predictions)`` for GradientTape."""
    import keras

    def get(m, n):
        try:
            return m.get_layer(n)
        except ValueError as e:
            raise ConfigError(f"model {m.name!r} has no layer {n!r}. Received: layer={name!r}"
                              ) from e

    if "/" not in name:
        target = get(model, name)
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        return keras.Model(inputs, [_outer_output(model, target), model.output])
    outer_name, inner_name = name.split("/", 1)
    base = get(model, outer_name)
    inner = _features_and_predictions(base, inner_name)
    pos = [id(la) for la in model.layers].index(id(base))
    before = [la for la in model.layers[:pos] if la.__class__.__name__ != "InputLayer"]
    after = model.layers[pos + 1:]
    for la in before + after:
        if _is_nested(la) or len(getattr(la, "_inbound_nodes", [None])) > 1:
            raise ConfigError(f"Grad-CAM inside {outer_name!r} needs a simple chain of layers "
                              f"around it; layer {la.name!r} is not. Pass layer='NAME' of a "
                              "top-level layer instead")

    def run(x, training=False):
        for la in before:
            x = la(x, training=training)
        feats, h = inner(x, training=training)
        for la in after:
            h = la(h, training=training)
        return feats, h

    return run


def gradcam(model, tensor, class_index: int | None = None, layer: str | None = None) -> np.ndarray:
    """Grad-CAM heatmap of one input.

    Parameters
    ----------
    model : keras.Model
        A functional classification model ending in a softmax (or any probabilities); a
        study-level (MIL) model is explained through its slice model (its shared encoder).
    tensor : numpy.ndarray
        One input, (rows, columns, channels) or (1, rows, columns, channels), float32.
    class_index : int, optional
        The class to explain; the predicted class (arg-max) by default.
    layer : str, optional
        Name of the layer to use; found by :func:`find_gradcam_layer` by default.

    Returns
    -------
    numpy.ndarray
        ``float32`` (rows, columns) in [0, 1]; all zeros when no location raises the score.
    """
    import tensorflow as tf

    from dicomml.models.mil import is_study_model, slice_model_of

    if is_study_model(model):  # a study-level (MIL) model explains a slice by its encoder
        model = slice_model_of(model)
    x = np.asarray(tensor, dtype=np.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[0] != 1:
        raise ConfigError("gradcam takes one input of shape (rows, columns, channels). "
                          f"Received: tensor.shape={np.shape(tensor)}")
    name = layer or find_gradcam_layer(model)
    grad_model = _features_and_predictions(model, name)
    xt = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        feats, preds = grad_model(xt, training=False)
        tape.watch(feats)
        if class_index is None:
            class_index = int(tf.argmax(preds[0]))
        if not 0 <= class_index < preds.shape[-1]:
            raise ConfigError(f"class_index must be in [0, {preds.shape[-1]}). "
                              f"Received: class_index={class_index}")
        score = tf.math.log(preds[:, class_index] + 1e-12)
    grads = tape.gradient(score, feats)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * feats, axis=-1))[0]
    cam = tf.image.resize(cam[..., None], x.shape[1:3], method="bilinear")[..., 0].numpy()
    cam = np.maximum(cam, 0.0)
    peak = float(cam.max())
    return (cam / peak if peak > 0 else np.zeros_like(cam)).astype(np.float32)


def save_gradcam_png(path, image, heatmap, *, alpha: float = 0.4):
    """Write the heatmap over ``image`` (2-D, or the model's (rows, columns, 3) tensor) as PNG."""
    from dicomml.report.overlay import heatmap_overlay, save_png

    return save_png(path, heatmap_overlay(image, heatmap, alpha=alpha))
