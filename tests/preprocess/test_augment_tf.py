"""The training augmentation on tensors (tf.data): seeded, resumable, checked against
scipy.ndimage (geometry) and against exact re-windowing with apply_window (window jitter)."""

from __future__ import annotations

import numpy as np
import pytest

from dicomml.data.augmentation import augment_batches, augment_images
from dicomml.preprocess.augment import (DRAWS, AugmentConfig, AugmentParams, apply_geometry,
                                        is_identity)
from dicomml.preprocess.window import apply_window

OFF = dict(flip_lr=0.0, flip_ud=0.0, rotate_deg=0.0, scale=0.0, translate=0.0, intensity=0.0,
           window_center=0.0, window_width=0.0)


def _draws(n, seed):
    import tensorflow as tf

    return tf.random.stateless_uniform([n, len(DRAWS)], seed=seed).numpy()


def test_identity_config_changes_nothing():
    cfg = AugmentConfig(**OFF)
    assert is_identity(cfg) and not is_identity(AugmentConfig())
    ds = object()
    assert augment_batches(ds, cfg) is ds and augment_batches(ds, None) is ds


def test_flips_are_exact_mirrors_and_seeded():
    import tensorflow as tf

    rng = np.random.default_rng(4)
    x = rng.random((32, 8, 8, 3), dtype=np.float32)
    y = np.arange(32, dtype=np.float32)[:, None]
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    cfg = AugmentConfig(**{**OFF, "flip_lr": 0.5, "flip_ud": 0.5})
    out = [(a.numpy(), b.numpy()) for a, b in augment_batches(ds, cfg, seed=3)]
    xa = np.concatenate([o[0] for o in out])
    np.testing.assert_array_equal(np.concatenate([o[1] for o in out]), y)  # labels untouched
    kinds = []
    for i in range(32):
        cands = {(lr, ud): (x[i][:, ::-1] if lr else x[i])[::-1] if ud else
                 (x[i][:, ::-1] if lr else x[i]) for lr in (0, 1) for ud in (0, 1)}
        match = [k for k, v in cands.items() if np.array_equal(xa[i], v)]
        assert match, i
        kinds.append(match[0])
    assert len(set(kinds)) == 4
    again = np.concatenate([a.numpy() for a, _ in augment_batches(ds, cfg, seed=3)])
    np.testing.assert_array_equal(again, xa)
    other = np.concatenate([a.numpy() for a, _ in augment_batches(ds, cfg, seed=4)])
    assert not np.array_equal(other, xa)
    # a dataset resumed at batch 2 draws what the uninterrupted one drew there
    resumed = np.concatenate([a.numpy() for a, _ in augment_batches(ds.skip(2), cfg, seed=3,
                                                                    start=2)])
    np.testing.assert_array_equal(resumed, xa[16:])


def test_rotation_zoom_shift_match_scipy_reference():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:48]
    base = np.stack([np.sin(xx / 5.0) * np.cos(yy / 7.0) * 0.4 + 0.5,
                     (xx + yy) / 94.0, np.exp(-((xx - 20) ** 2 + (yy - 28) ** 2) / 60.0)],
                    -1).astype(np.float32)
    x = np.stack([base, base[::-1], base[:, ::-1], base.transpose(1, 0, 2)])
    x = np.clip(x + rng.normal(0, 0.01, x.shape).astype(np.float32), 0, 1)
    cfg = AugmentConfig(**{**OFF, "rotate_deg": 20.0, "scale": 0.2, "translate": 0.1})
    seed = tf.constant([7, 1], tf.int64)
    got = augment_images(tf.constant(x), cfg, seed).numpy()
    u = _draws(len(x), seed)
    for i in range(len(x)):
        p = AugmentParams(angle_deg=float((2 * u[i, 2] - 1) * 20.0),
                          zoom=float(1 + (2 * u[i, 3] - 1) * 0.2),
                          shift_rows=float((2 * u[i, 4] - 1) * 0.1),
                          shift_cols=float((2 * u[i, 5] - 1) * 0.1))
        want = apply_geometry(x[i], p)
        inner = (slice(8, 40), slice(8, 40))
        np.testing.assert_allclose(got[i][inner], want[inner], atol=2e-3)
        assert abs(p.angle_deg) > 0.5  # a real rotation was drawn


def test_window_jitter_equals_exact_rewindowing_on_unsaturated_pixels():
    import tensorflow as tf

    rng = np.random.default_rng(1)
    hu = rng.uniform(-1200, 400, (4, 16, 16)).astype(np.float32)
    c, w = -600.0, 1500.0
    y = np.repeat(apply_window(hu, c, w)[..., None], 3, -1)
    cfg = AugmentConfig(**{**OFF, "window_center": 0.1, "window_width": 0.2})
    seed = tf.constant([3, 9], tf.int64)
    got = augment_images(tf.constant(y), cfg, seed).numpy()
    u = _draws(4, seed)
    for i in range(4):
        cs, wf = (2 * u[i, 8] - 1) * 0.1, 1 + (2 * u[i, 9] - 1) * 0.2
        exact = apply_window(hu[i], c + cs * w, w * wf)
        ok = (y[i, ..., 0] > 0) & (y[i, ..., 0] < 1)
        assert ok.mean() > 0.5
        np.testing.assert_allclose(got[i, ..., 0][ok], exact[ok], atol=2e-3)
        # clipped pixels stay clipped (the approximation: their HU is gone after windowing)
        np.testing.assert_array_equal(got[i, ..., 0][~ok], y[i, ..., 0][~ok])


@pytest.mark.parametrize("normalize", ["imagenet", "zscore"])
def test_other_normalizations_keep_their_range(normalize):
    import tensorflow as tf

    from dicomml.preprocess import normalize as norm_fn

    rng = np.random.default_rng(2)
    x = np.stack([norm_fn(rng.random((24, 24, 3), dtype=np.float32), normalize)
                  for _ in range(3)])
    got = augment_images(tf.constant(x), AugmentConfig(), tf.constant([1, 2], tf.int64),
                         normalize).numpy()
    assert got.shape == x.shape and np.isfinite(got).all()
    if normalize == "imagenet":  # back in [0, 1] for the augmentation, then normalized again
        from dicomml.preprocess import IMAGENET_MEAN, IMAGENET_STD

        lo, hi = -IMAGENET_MEAN / IMAGENET_STD, (1 - IMAGENET_MEAN) / IMAGENET_STD
        assert (got >= lo - 1e-5).all() and (got <= hi + 1e-5).all()
        assert not np.allclose(got, x)
    else:  # geometry only; the floor is the image minimum
        assert got.min() >= x.min() - 1e-5 and got.max() <= x.max() + 1e-5


def test_bags_are_augmented_per_slice():
    import tensorflow as tf

    x = np.random.default_rng(3).random((1, 5, 8, 8, 3), dtype=np.float32)
    ds = tf.data.Dataset.from_tensors(x)
    cfg = AugmentConfig(**{**OFF, "flip_lr": 0.5})
    out = next(iter(augment_batches(ds, cfg, seed=1))).numpy()
    assert out.shape == x.shape
    flipped = [np.array_equal(out[0, k], x[0, k, :, ::-1]) for k in range(5)]
    same = [np.array_equal(out[0, k], x[0, k]) for k in range(5)]
    assert all(f or s for f, s in zip(flipped, same))
