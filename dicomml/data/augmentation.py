"""The training augmentation of :mod:`dicomml.preprocess.augment` on tensors inside tf.data.

The parameters, their draws and the exact NumPy / SciPy reference live in
:mod:`dicomml.preprocess.augment` (which never imports TensorFlow); this module applies the
same draws to batches of cached tensors with TensorFlow ops, seeded per (seed, batch) so a
resumed run sees the same ones.
"""

from __future__ import annotations

import math

from dicomml.preprocess._options import IMAGENET_MEAN, IMAGENET_STD
from dicomml.preprocess.augment import DRAWS, AugmentConfig, is_identity

__all__ = ["augment_images", "augment_batches"]


def _affine_transforms(tf, u, cfg: AugmentConfig, rows, cols):
    """The (N, 8) projective transforms (output → input pixel, ``x`` = column) of the
    draws ``u``: rotation about the centre, zoom and shift, as :func:`apply_geometry`."""
    angle = (2 * u[:, 2] - 1) * (cfg.rotate_deg * math.pi / 180.0)
    zoom = 1.0 + (2 * u[:, 3] - 1) * cfg.scale
    rows_f, cols_f = tf.cast(rows, tf.float32), tf.cast(cols, tf.float32)
    sr = (2 * u[:, 4] - 1) * cfg.translate * rows_f
    sc = (2 * u[:, 5] - 1) * cfg.translate * cols_f
    cr, cc = (rows_f - 1) / 2.0, (cols_f - 1) / 2.0
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    a2 = cc - (sin * (cr + sr) + cos * (cc + sc))
    b2 = cr - (cos * (cr + sr) - sin * (cc + sc))
    zero = tf.zeros_like(cos)
    return tf.stack([cos, sin, a2, -sin, cos, b2, zero, zero], axis=1)


def augment_images(x, cfg: AugmentConfig, seed, normalize: str = "unit"):
    """Augment a batch of tensors ``x`` (N, rows, columns, channels) with TensorFlow ops.

    Per image, in this order: window centre / width jitter (on unsaturated windowed values,
    see the note above), flips, rotation / zoom / shift about the centre (bilinear, 0 — the
    floor — from outside), contrast / brightness (:func:`apply_intensity`), clipped to
    [0, 1]. ``normalize`` is the pipeline's normalization: ``"imagenet"`` tensors are mapped
    back to [0, 1] and normalized again; ``"zscore"`` tensors get the geometric part only.

    Parameters
    ----------
    x : tf.Tensor
        float32 batch.
    cfg : AugmentConfig
    seed : tf.Tensor
        Shape (2,) int: every draw is ``tf.random.stateless_uniform`` of it, so a batch gets
        the same augmentation whenever it is drawn again (a resumed run).
    """
    import tensorflow as tf

    if is_identity(cfg):
        return x
    shape = tf.shape(x)
    n, rows, cols = shape[0], shape[1], shape[2]
    u = tf.random.stateless_uniform([n, len(DRAWS)], seed=seed)
    mean = std = None
    if normalize == "imagenet":

        mean, std = tf.constant(IMAGENET_MEAN), tf.constant(IMAGENET_STD)
        x = x * std + mean
    floor = 0.0
    if normalize == "zscore":  # no intensity part; the floor is the image minimum
        floor = tf.reduce_min(x, axis=[1, 2, 3], keepdims=True)
        x = x - floor
    else:
        cs = (2 * u[:, 8] - 1)[:, None, None, None] * cfg.window_center
        wf = (1.0 + (2 * u[:, 9] - 1) * cfg.window_width)[:, None, None, None]
        jit = tf.clip_by_value((x - 0.5 - cs) / wf + 0.5, 0.0, 1.0)
        x = tf.where((x <= 0.0) | (x >= 1.0), x, jit)
    f = (u[:, 0] < cfg.flip_lr)[:, None, None, None]
    x = tf.where(f, tf.reverse(x, axis=[2]), x)
    f = (u[:, 1] < cfg.flip_ud)[:, None, None, None]
    x = tf.where(f, tf.reverse(x, axis=[1]), x)
    if cfg.rotate_deg or cfg.scale or cfg.translate:
        x = tf.raw_ops.ImageProjectiveTransformV3(
            images=x, transforms=_affine_transforms(tf, u, cfg, rows, cols),
            output_shape=tf.stack([rows, cols]), fill_value=0.0, interpolation="BILINEAR",
            fill_mode="CONSTANT")
    if normalize == "zscore":
        return x + floor
    if cfg.intensity:
        contrast = (1.0 + (2 * u[:, 6] - 1) * cfg.intensity)[:, None, None, None]
        bright = ((2 * u[:, 7] - 1) * cfg.intensity)[:, None, None, None]
        x = (x - 0.5) * contrast + 0.5 + bright
    x = tf.clip_by_value(x, 0.0, 1.0)
    if mean is not None:
        x = (x - mean) / std
    return x


def augment_batches(ds, cfg: AugmentConfig | None, seed: int = 0, start: int = 0,
                    normalize: str = "unit"):
    """Map ``ds`` (batches ``x`` or ``(x, y, ...)``) through :func:`augment_images`.

    The draws of batch ``b`` (counting from ``start``; ``b`` runs on across epochs, so it
    stands for (epoch, batch)) are stateless functions of ``(seed + cfg.seed, b)``: the same
    seed gives the same augmentation, whatever iterators were created before, and a dataset
    resumed at batch ``b`` (``start=b``, after ``skip(b)``) draws what an uninterrupted one
    draws. ``cfg`` None or all-zero → ``ds`` unchanged. A batch of study bags
    (N, slices, rows, columns, channels) is augmented per slice.
    """
    import tensorflow as tf

    if cfg is None or is_identity(cfg):
        return ds
    seed_t = tf.constant(int(seed) * 1000003 + int(cfg.seed) + 104729, tf.int64)

    def one(b, x):
        s = tf.stack([seed_t, b])
        if x.shape.rank == 5:  # bags: (N, slices, r, c, ch) → per slice
            sh = tf.shape(x)
            flat = tf.reshape(x, tf.concat([[-1], sh[2:]], 0))
            return tf.reshape(augment_images(flat, cfg, s, normalize), sh)
        return augment_images(x, cfg, s, normalize)

    @tf.autograph.experimental.do_not_convert  # plain TensorFlow ops, no Python control flow
    def fn(b, el):
        if isinstance(el, tuple):
            return (one(b, el[0]), *el[1:])
        return one(b, el)

    return ds.enumerate(start=int(start)).map(fn, num_parallel_calls=1)
