"""Grad-CAM heatmaps (Selvaraju et al., ICCV 2017) for Keras classification models.

The heatmap of class ``c`` is ``ReLU(sum_k a_k A^k)`` where ``A^k`` are the feature maps of
the last convolutional stage and ``a_k`` the spatial mean of d score_c / d A^k. The score is
the log of the class's softmax probability (its gradient equals that of the pre-softmax
logit minus the log-sum-exp, and does not vanish when the softmax saturates). The map is
scaled to [0, 1] by its maximum and brought to the input's grid bilinearly.

Where a feature cell lies in the input: each value of the feature map is put at the centre
of its receptive field (:func:`feature_geometry`: ``input pixel = stride · index + offset``
per axis, from the kernels, strides, dilations and paddings of the layers between the input
and the feature map). Stretching the feature map over the whole image instead — a plain
resize — is right only for ``"same"`` padding; with ``"valid"`` convolutions (the
reference CNN: 96 px → a 20 × 20 map whose cell centres run from input pixel 8.5 to 84.5)
it moves the peak by up to 8 px towards the border. Models with layers whose geometry is
not known here (resizing, transposed convolutions) keep the plain resize, with a warning.

A finer map (``fine=True``): the magnitude of *gradient ⊙ input* of the same score,
smoothed (Shrikumar et al. 2016), which says which pixels' values the score depends on
most. For a model with a map of class scores (``head = "map"``) that is the whole fine map:
the image's score is its winning patch's (global max pooling), so the gradient is already
confined to that patch's receptive field, and the patch's own centre — the CAM's peak — is
no better a location: a cell of the reference CNN sees 18 px on a 4 px grid, and a trained
map fires where the finding sits anywhere in that field, often at a constant learned offset
(measured on the head-CT task, 3 split seeds: the CAM peak inside the dilated haemorrhage
for 0 of 18 true positives, the fine map's for 18 of 18; ``bench/README.md``, "learning").
For other models, whose gradient spreads over the image, it is the Grad-CAM map times that
saliency (Guided Grad-CAM, Selvaraju et al., with gradient ⊙ input in place of guided
backpropagation): the coarse map says which part raised the score, the saliency where in
it.

This module imports TensorFlow; :func:`dicomml.report.overlay.heatmap_overlay` (no
TensorFlow) draws the PNG overlay.
"""

from __future__ import annotations

import logging

import numpy as np

from dicomml.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["gradcam", "find_gradcam_layer", "save_gradcam_png", "feature_geometry",
           "to_input_grid", "input_saliency"]

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


_WINDOWED = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "MaxPooling2D",
             "AveragePooling2D")


def _axis_step(layer, kind: str, a: int, s: float, o: float, n: int):
    """``(s, o, n)`` of axis ``a`` after ``layer``: input pixel of feature index ``j`` is
    ``s·j + o``, the axis has ``n`` cells; None where the layer's geometry is not known."""
    cfg = layer.get_config()
    if kind in _WINDOWED:
        if "pool_size" in cfg:
            k = int(cfg["pool_size"][a])
            st = int((cfg.get("strides") or cfg["pool_size"])[a])
            d = 1
        else:
            k, st = int(cfg["kernel_size"][a]), int(cfg["strides"][a])
            d = int(cfg.get("dilation_rate", (1, 1))[a])
        span = d * (k - 1) + 1
        if cfg.get("padding") == "same":
            out = -(-n // st)
            before = max((out - 1) * st + span - n, 0) // 2
        elif cfg.get("padding") == "valid":
            out, before = (n - span) // st + 1, 0
        else:
            return None
        return s * st, o + s * ((span - 1) / 2 - before), out
    if kind in ("ZeroPadding2D", "Cropping2D"):
        pads = cfg["padding" if kind == "ZeroPadding2D" else "cropping"][a]
        sign = -1 if kind == "ZeroPadding2D" else 1
        return s, o + sign * s * int(pads[0]), n - sign * (int(pads[0]) + int(pads[1]))
    return None


def feature_geometry(model, layer: str | None = None):
    """Where the cells of ``layer``'s 4-D output lie in ``model``'s input: per axis (rows,
    columns) ``(stride, offset)``, feature index ``j`` ↔ input pixel ``stride·j + offset``
    (the centre of its receptive field; pixel ``p`` is centred at ``p``). ``None`` where a
    layer on the way changes the grid in a way not known here (the caller then stretches the
    map over the image). ``layer`` as :func:`gradcam` takes it (``"BACKBONE/LAYER"`` too);
    a study-level model is measured through its slice model."""
    from dicomml.models.mil import is_study_model, slice_model_of

    if is_study_model(model):
        model = slice_model_of(model)
    name = layer or find_gradcam_layer(model)
    if "/" in name:  # inside a nested backbone: its input must be the model's grid
        outer, inner = name.split("/", 1)
        base = model.get_layer(outer)
        if tuple(base.inputs[0].shape[1:3]) != tuple(model.inputs[0].shape[1:3]):
            return None
        return feature_geometry(base, inner)
    try:
        target = _outer_output(model, model.get_layer(name))
    except (ValueError, ConfigError):
        return None
    memo: dict[int, object] = {}

    def walk(t):
        key = id(t)
        if key in memo:
            return memo[key]
        hist = getattr(t, "_keras_history", None)
        op = getattr(hist, "operation", None)
        shape = tuple(t.shape)
        if op is None or op.__class__.__name__ == "InputLayer":
            res = None if len(shape) != 4 else tuple((1.0, 0.0, int(shape[1 + a]))
                                                    for a in (0, 1))
            memo[key] = res
            return res
        node = op._inbound_nodes[hist.node_index]
        ins = [u for u in node.input_tensors if len(tuple(u.shape)) == 4]
        res = None
        if ins:
            geos = [walk(u) for u in ins]
            g = geos[0]
            if g is not None and all(h == g for h in geos[1:]):
                kind = op.__class__.__name__
                if tuple(ins[0].shape[1:3]) == shape[1:3] and kind not in _WINDOWED:
                    res = g  # keeps the grid: BN, activations, add, concatenate, ...
                else:
                    steps = [_axis_step(op, kind, a, *g[a]) for a in (0, 1)]
                    if all(st is not None for st in steps) and \
                            tuple(st[2] for st in steps) == shape[1:3]:
                        res = tuple(steps)
        memo[key] = res
        return res

    try:
        g = walk(target)
    except (AttributeError, IndexError, KeyError, TypeError):
        return None
    return None if g is None else tuple((float(s), float(o)) for s, o, _ in g)


def to_input_grid(cam, shape: tuple[int, int], geometry=None) -> np.ndarray:
    """The (h, w) feature-grid map ``cam`` on the (rows, columns) input grid ``shape``:
    bilinear between cell centres placed by ``geometry`` (:func:`feature_geometry`), the
    edge value beyond the outermost centres; ``None``: stretched over the image (a
    half-pixel bilinear resize), with a warning."""
    cam = np.asarray(cam, dtype=np.float32)
    if geometry is None:
        log.warning("Grad-CAM: where the feature cells lie in the input is not known for "
                    "this model (a layer that resizes?); the map is stretched over the image")
        geometry = tuple((n_in / n, 0.5 * n_in / n - 0.5)
                         for n, n_in in zip(cam.shape, shape))
    out = cam
    for a in (0, 1):
        s, o = geometry[a]
        n = cam.shape[a]
        f = np.clip((np.arange(int(shape[a]), dtype=np.float64) - o) / s, 0.0, n - 1.0)
        i0 = np.floor(f).astype(np.intp)
        i1 = np.minimum(i0 + 1, n - 1)
        w = (f - i0).astype(np.float32)
        w = w[:, None] if a == 0 else w[None, :]
        out = np.take(out, i0, axis=a) * (1 - w) + np.take(out, i1, axis=a) * w
    return out.astype(np.float32)


def _score_map_layer(model):
    """The ``class_map`` layer of a score-map model (``reference_cnn`` with
    ``head = "map"``), or None."""
    try:
        layer = model.get_layer("class_map")
    except ValueError:
        return None
    return layer if layer.__class__.__name__ == "Conv2D" else None


def _class_map(model, x, class_index):
    """CAM (Zhou et al., CVPR 2016) of a score-map model: the model's own map of class
    scores, as the log-odds of ``class_index`` against the other classes, scaled to [0, 1]
    between its minimum and maximum and placed on the input grid. (Grad-CAM of such a
    model is this map's positive part only, which can be empty where the odds are below
    even: the argmax would then be lost.)"""
    import keras

    from dicomml.models.reference import log_odds

    target = _score_map_layer(model)
    maps = keras.Model(model.inputs[0], _outer_output(model, target))
    z = np.asarray(maps(x, training=False), np.float64)[0]  # (h, w, classes but one)
    try:  # the reference class of the map, whose score is 0
        ref = model.get_layer("reference_logit").index
    except ValueError:
        ref = None
    if ref is not None:
        z = np.insert(z, ref, 0.0, axis=-1)
    if class_index is None:
        class_index = int(np.argmax(z.max(axis=(0, 1))))
    if not 0 <= class_index < z.shape[-1]:
        raise ConfigError(f"class_index must be in [0, {z.shape[-1]}). "
                          f"Received: class_index={class_index}")
    odds = log_odds(z, class_index)
    cam = to_input_grid(odds.astype(np.float32), x.shape[1:3],
                        feature_geometry(model, target.name))
    lo, hi = float(cam.min()), float(cam.max())
    return ((cam - lo) / (hi - lo) if hi > lo else np.zeros_like(cam)).astype(np.float32)


def input_saliency(model, x, class_index: int, sigma: float | None = None) -> np.ndarray:
    """``|Σ_channels ∂ log p_c / ∂x · x|`` of the (1, rows, columns, channels) input ``x``,
    smoothed by a Gaussian of ``sigma`` px (default: the input side / 64, at least 1): how
    much the log-probability of class ``class_index`` depends on each pixel's value."""
    import tensorflow as tf
    from scipy.ndimage import gaussian_filter

    xt = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        preds = model(xt, training=False)
        score = tf.math.log(preds[:, class_index] + 1e-12)
    g = tape.gradient(score, xt)
    sal = np.abs((np.asarray(g, np.float64) * np.asarray(x, np.float64))[0].sum(axis=-1))
    if sigma is None:
        sigma = max(1.0, min(sal.shape) / 64.0)
    return gaussian_filter(sal, float(sigma)).astype(np.float32) if sigma > 0 else \
        sal.astype(np.float32)


def gradcam(model, tensor, class_index: int | None = None, layer: str | None = None,
            fine: bool = False) -> np.ndarray:
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
        Name of the layer to use; found by :func:`find_gradcam_layer` by default. A model
        with a map of class scores (``head = "map"``) is explained, by default, by that map
        itself (CAM: the class's log-odds per patch, scaled to [0, 1]).
    fine : bool
        :func:`input_saliency` of the same class — for a score-map model alone, for others
        times the map (see the module docstring) — scaled to [0, 1]: where exactly the
        finding is.

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
    if fine:
        if class_index is None:
            class_index = int(np.argmax(np.asarray(model(x, training=False))[0]))
        heat = input_saliency(model, x, class_index)
        if layer is not None or _score_map_layer(model) is None:
            heat = gradcam(model, x, class_index, layer) * heat
        peak = float(heat.max())
        return (heat / peak if peak > 0 else np.zeros_like(heat)).astype(np.float32)
    if layer is None and _score_map_layer(model) is not None:
        return _class_map(model, x, class_index)
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
    cam = tf.nn.relu(tf.reduce_sum(weights * feats, axis=-1))[0].numpy()
    cam = to_input_grid(cam, x.shape[1:3], feature_geometry(model, name))
    cam = np.maximum(cam, 0.0)
    peak = float(cam.max())
    return (cam / peak if peak > 0 else np.zeros_like(cam)).astype(np.float32)


def save_gradcam_png(path, image, heatmap, *, alpha: float = 0.4):
    """Write the heatmap over ``image`` (2-D, or the model's (rows, columns, 3) tensor) as PNG."""
    from dicomml.report.overlay import heatmap_overlay, save_png

    return save_png(path, heatmap_overlay(image, heatmap, alpha=alpha))
