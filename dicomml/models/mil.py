"""Study-level models: multiple-instance learning over the slices of a study.

A study is a *bag* of slices with one label; the finding may be on a few of them. The
study model applies one shared slice encoder to every slice (:class:`SliceEncoder`), pools
the slice features over the bag and classifies the pooled vector with the slice model's
own head::

    bag (B, n, rows, columns, 3) → encoder (per slice) → (B, n, d) → pooling → (B, d)
        → Dense(n_classes, softmax)

The encoder runs on the B·n slices of a step at once (:class:`SliceEncoder`), so its batch
normalization sees every slice of the step's studies. (Keras's ``TimeDistributed``, used
before, calls the encoder once per slice *position*: in training each batch-norm batch was
slice ``i`` of the B studies — with one study per step, a single image normalized by its
own statistics, unlike at inference. Models saved with it still load.)

Pooling (``[model] pooling``):

``"attention"`` (default)
    Gated attention (Ilse, Tomczak & Welling, "Attention-based deep multiple instance
    learning", ICML 2018): ``a = softmax_n(w · (tanh(V h) ⊙ sigmoid(U h)))``, pooled
    ``Σ a_i h_i``. The weights ``a`` say which slices the decision rests on.
``"max"``
    Element-wise maximum of the slice features (a finding on any slice).
``"mean"``
    Mean of the slice features (diffuse findings).

The same model predicts per slice: :func:`slice_model_of` is the encoder followed by the
shared head, applied to one slice (what Grad-CAM explains). ``n`` varies from study to
study; the trainer feeds ``[train] studies_per_step`` bags of one length per step, so
nothing is padded.

Slice supervision (:class:`StudyModel`, ``[train] slice_loss`` / ``attention_loss``): when
the labels are per slice, the training batches carry each slice's class next to the study
label, and two terms join the study loss — the class-balanced cross-entropy of the
per-slice predictions of the same encoder and head (an instance-level auxiliary loss), and, for attention
pooling, the cross-entropy between the attention weights of a positive study and the
uniform distribution over its positive slices (attention supervision). Prediction, the
saved model and every consumer are unchanged: the extra terms exist only in training.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from dicomml.errors import ConfigError

__all__ = ["MILPooling", "SliceEncoder", "StudyModel", "study_model", "slice_model_of", "attention_weights",
           "POOLINGS", "is_study_model"]

POOLINGS = ("attention", "max", "mean")


@keras.saving.register_keras_serializable(package="dicomml")
class SliceEncoder(layers.Wrapper):
    """Apply the slice model ``layer`` to every slice of a batch of bags: (B, n, rows,
    columns, channels) → (B, n, d), as one call on the B·n slices (batch statistics over
    all of them; see the module docstring). ``.layer`` is the slice encoder."""

    def call(self, bag, training=None):
        sh = ops.shape(bag)
        flat = ops.reshape(bag, (-1, *bag.shape[2:]))
        h = self.layer(flat, training=training)
        return ops.reshape(h, (sh[0], sh[1], h.shape[-1]))

    def compute_output_shape(self, input_shape):
        out = self.layer.compute_output_shape((None, *input_shape[2:]))
        return (input_shape[0], input_shape[1], out[-1])


@keras.saving.register_keras_serializable(package="dicomml")
class MILPooling(layers.Layer):
    """Pool (B, n, d) slice features over the bag axis → (B, d); see the module docstring.

    Parameters
    ----------
    mode : {"attention", "max", "mean"}
    units : int
        Width of the attention network (``"attention"`` only).
    """

    def __init__(self, mode: str = "attention", units: int = 64, **kwargs):
        super().__init__(**kwargs)
        if mode not in POOLINGS:
            raise ConfigError(f"model.pooling must be one of {list(POOLINGS)}. "
                              f"Received: pooling={mode!r}")
        self.mode, self.units = mode, int(units)
        if mode == "attention":
            self.v = layers.Dense(self.units, activation="tanh", name="attention_v")
            self.u = layers.Dense(self.units, activation="sigmoid", name="attention_u")
            self.w = layers.Dense(1, name="attention_w")

    def build(self, input_shape):
        if self.mode == "attention":
            feat = (None, input_shape[-1])
            self.v.build(feat)
            self.u.build(feat)
            self.w.build((None, self.units))

    def weights_of(self, h):
        """Attention weights (B, n) of slice features ``h`` (B, n, d)."""
        logits = ops.squeeze(self.w(self.v(h) * self.u(h)), -1)
        e = ops.exp(logits - ops.max(logits, axis=-1, keepdims=True))  # softmax over slices
        return e / ops.sum(e, axis=-1, keepdims=True)

    def call(self, h):
        if self.mode == "max":
            return ops.max(h, axis=1)
        if self.mode == "mean":
            return ops.mean(h, axis=1)
        a = self.weights_of(h)
        return ops.sum(h * a[..., None], axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "units": self.units}


@keras.saving.register_keras_serializable(package="dicomml")
class StudyModel(keras.Model):
    """A functional study model (built by :func:`study_model`) whose training loss can add
    slice supervision; see the module docstring.

    Training batches are ``(bag, y, weight)`` (study labels only: the study loss alone) or
    ``(bag, (y, slice_classes), weight)`` with ``slice_classes`` (B, n) the class index of
    each slice, -1 where unknown.

    Parameters
    ----------
    slice_loss : float
        Weight of the cross-entropy of the per-slice predictions, averaged per class then
        over the classes present (0: off).
    attention_loss : float
        Weight of the attention-supervision cross-entropy (attention pooling; 0: off).
    positive : int
        The positive class (whose slices the attention should pick).
    """

    def __init__(self, *args, slice_loss: float = 0.0, attention_loss: float = 0.0,
                 positive: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        self.slice_loss, self.attention_loss = float(slice_loss), float(attention_loss)
        self.positive = int(positive)

    def get_config(self):
        return {**super().get_config(), "slice_loss": self.slice_loss,
                "attention_loss": self.attention_loss, "positive": self.positive}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        extra = {k: config.pop(k) for k in ("slice_loss", "attention_loss", "positive")
                 if k in config}
        model = super().from_config(config, custom_objects)
        model.slice_loss = float(extra.get("slice_loss", 0.0))
        model.attention_loss = float(extra.get("attention_loss", 0.0))
        model.positive = int(extra.get("positive", 1))
        return model

    def supervision_loss(self, bag, slice_classes, training=False):
        """The slice-supervision terms (weighted, summed) of ``bag`` (B, n, rows, columns,
        channels) with the per-slice classes ``slice_classes`` (B, n; -1 unknown)."""
        h = self.get_layer("encode_slices")(bag, training=training)      # (B, n, d)
        cls_ = ops.cast(slice_classes, "int32")
        known = ops.cast(cls_ >= 0, "float32")
        total = ops.zeros((), "float32")
        if self.slice_loss:
            p = ops.cast(self.get_layer("output")(h), "float32")         # (B, n, classes)
            onehot = ops.one_hot(ops.maximum(cls_, 0), p.shape[-1]) * known[..., None]
            ce = -ops.log(ops.clip(p, 1e-7, 1.0)) * onehot               # (B, n, classes)
            # class-balanced: the mean over each class's slices, averaged over the classes
            # present (a lesion on 3 of 24 slices weighs as much as the other 21)
            count = ops.sum(onehot, axis=(0, 1))
            per_class = ops.sum(ce, axis=(0, 1)) / ops.maximum(count, 1.0)
            present = ops.cast(count > 0, "float32")
            total = total + self.slice_loss * ops.sum(per_class * present) / ops.maximum(
                ops.sum(present), 1.0)
        pool = self.get_layer("mil_pooling")
        if self.attention_loss and pool.mode == "attention":
            a = ops.cast(pool.weights_of(h), "float32")                    # (B, n)
            pos = ops.cast(cls_ == self.positive, "float32")
            n_pos = ops.sum(pos, axis=-1)                                  # (B,)
            ce = -ops.sum(pos * ops.log(ops.clip(a, 1e-7, 1.0)), axis=-1) / ops.maximum(
                n_pos, 1.0)
            has = ops.cast(n_pos > 0, "float32")
            total = total + self.attention_loss * ops.sum(ce * has) / ops.maximum(
                ops.sum(has), 1.0)
        return total

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not isinstance(y, (tuple, list)):
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        y_study, slice_classes = y
        loss = super().compute_loss(x, y_study, y_pred, sample_weight, training=training)
        return loss + ops.cast(self.supervision_loss(x, slice_classes, training), loss.dtype)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(y, (tuple, list)):
            y = y[0]
        return super().compute_metrics(x, y, y_pred, sample_weight)


def study_model(slice_model: keras.Model, pooling: str = "attention",
                attention_units: int = 64, *, slice_loss: float = 0.0,
                attention_loss: float = 0.0, positive: int = 1) -> keras.Model:
    """The study (bag) model around ``slice_model`` (a model whose last layer is named
    ``"output"``, as every :func:`dicomml.models.build_model` model): its layers before
    ``output`` become the shared slice encoder, ``output`` the study head.

    slice_loss, attention_loss, positive
        Slice supervision in training (:class:`StudyModel`).

    Returns
    -------
    StudyModel
        Input ``bag`` (B, None, rows, columns, channels); not compiled.
    """
    try:
        head = slice_model.get_layer("output")
    except ValueError as e:
        raise ConfigError(f"model {slice_model.name!r} has no layer named 'output'; a study "
                          "model needs one (dicomml.models.output_layer)") from e
    encoder = keras.Model(slice_model.inputs[0], head.input, name="slice_encoder")
    bag = keras.Input(shape=(None, *slice_model.input_shape[1:]), name="bag")
    h = SliceEncoder(encoder, name="encode_slices")(bag)
    pooled = MILPooling(pooling, attention_units, name="mil_pooling")(h)
    return StudyModel(bag, head(pooled), name=f"study_{pooling}_{slice_model.name}",
                      slice_loss=slice_loss, attention_loss=attention_loss, positive=positive)


def is_study_model(model) -> bool:
    """Whether ``model`` is a :func:`study_model` (input rank 5, a ``mil_pooling`` layer)."""
    return any(getattr(layer, "name", "") == "mil_pooling" for layer in model.layers)


def slice_model_of(model: keras.Model) -> keras.Model:
    """The per-slice model of a study model: shared encoder + shared head, input one slice
    (rows, columns, channels). It shares the study model's weights."""
    encoder = model.get_layer("encode_slices").layer
    head = model.get_layer("output")
    return keras.Model(encoder.inputs[0], head(encoder.outputs[0]), name="slice_model")


def attention_weights(model: keras.Model, bag, positive: int = 1):
    """Per-slice pooling weights of one bag (n, rows, columns, channels) → (n,) numpy.

    Attention pooling: the attention weights; max pooling: the share of feature maxima each
    slice holds, or, when the pooled features are the class scores themselves (a slice
    model with ``head = "map"``: the head is only the softmax), the softmax over the slices
    of the ``positive`` class's score against the others (the slice that sets the study's
    score weighs most); mean pooling: uniform.
    """
    import numpy as np

    encoder = model.get_layer("encode_slices").layer
    pool = model.get_layer("mil_pooling")
    h = encoder(np.asarray(bag, np.float32), training=False)
    if pool.mode == "attention":
        return np.asarray(pool.weights_of(h[None])[0])
    h = np.asarray(h, np.float64)
    if pool.mode == "max" and not model.get_layer("output").weights and h.shape[1] > 1:
        from dicomml.models.reference import log_odds

        odds = log_odds(h, positive, axis=1)
        w = np.exp(odds - odds.max())
        return w / w.sum()
    if pool.mode == "max":
        counts = np.bincount(np.argmax(h, axis=0), minlength=len(h)).astype(float)
        return counts / max(counts.sum(), 1.0)
    return np.full(len(h), 1.0 / len(h))
