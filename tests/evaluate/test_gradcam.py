"""Grad-CAM: shape, range, layer choice, and that the heat sits on the evidence."""

from __future__ import annotations

import numpy as np
import pytest

import keras

from dicomml.errors import ConfigError  # noqa: E402
from dicomml.evaluate.grad_cam import (_features_and_predictions, find_gradcam_layer,  # noqa: E402
                                      gradcam, save_gradcam_png)

SIZE = 48


def _squares(n, rng):
    """Noise images; label 1 images hold a bright 8x8 square at a random place."""
    x = rng.normal(0.0, 0.1, (n, SIZE, SIZE, 3)).astype(np.float32)
    y = rng.integers(0, 2, n)
    where = rng.integers(4, SIZE - 12, (n, 2))
    for i in np.flatnonzero(y):
        r, c = where[i]
        x[i, r:r + 8, c:c + 8, :] += 1.0
    return x, y, where


def _small_cnn():
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", padding="same")(inp)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(16, 3, activation="relu", padding="same", name="last_conv")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.GlobalMaxPooling2D()(x)
    out = keras.layers.Dense(2, activation="softmax")(x)
    return keras.Model(inp, out)


@pytest.mark.slow
def test_heat_peaks_on_the_square(tmp_path):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x, y, _ = _squares(512, rng)
    model = _small_cnn()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, epochs=6, batch_size=32, verbose=0)
    xt, yt, where = _squares(64, np.random.default_rng(1))
    assert model.evaluate(xt, yt, verbose=0)[1] > 0.9  # the toy task is learned
    assert find_gradcam_layer(model) == "last_conv"  # last Conv2D, not the pooling after it
    hits = total = 0
    for i in np.flatnonzero(yt)[:12]:
        heat = gradcam(model, xt[i], class_index=1)
        assert heat.shape == (SIZE, SIZE) and heat.dtype == np.float32
        assert heat.min() >= 0.0 and heat.max() == pytest.approx(1.0)
        r, c = np.unravel_index(np.argmax(heat), heat.shape)
        cr, cc = where[i] + 4  # square centre
        total += 1
        hits += abs(r - cr) <= 8 and abs(c - cc) <= 8
        # the square holds far more heat per pixel than the rest
        inside = heat[where[i][0]:where[i][0] + 8, where[i][1]:where[i][1] + 8].mean()
        assert inside > 2 * heat.mean()
    assert hits >= total - 1
    png = save_gradcam_png(tmp_path / "cam.png", xt[i], heat)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_shape_range_and_errors():
    keras.utils.set_random_seed(1)
    model = _small_cnn()
    x = np.random.default_rng(2).random((SIZE, SIZE, 3)).astype(np.float32)
    heat = gradcam(model, x[None])
    assert heat.shape == (SIZE, SIZE) and 0.0 <= heat.min() and heat.max() <= 1.0
    with pytest.raises(ConfigError, match="class_index"):
        gradcam(model, x, class_index=5)
    with pytest.raises(ConfigError, match="no layer"):
        gradcam(model, x, layer="nope")
    with pytest.raises(ConfigError, match="one input"):
        gradcam(model, np.stack([x, x]))
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    with pytest.raises(ConfigError, match="no 2-D convolution"):
        find_gradcam_layer(dense)


@pytest.mark.slow
def test_keras_applications_backbones():
    keras.utils.set_random_seed(2)
    x = np.random.default_rng(3).random((64, 64, 3)).astype(np.float32)
    # flat: the rectified output of the last block, after its convolution and BN
    flat = keras.applications.MobileNetV2(input_shape=(64, 64, 3), alpha=0.35, weights=None,
                                          classes=3)
    assert find_gradcam_layer(flat) == "out_relu"
    heat = gradcam(flat, x)
    assert heat.shape == (64, 64) and heat.dtype == np.float32 and heat.max() <= 1.0
    # nested: the backbone used as one layer of a bigger model, with a 4-D output ...
    base = keras.applications.MobileNetV2(input_shape=(64, 64, 3), alpha=0.35, weights=None,
                                          include_top=False)
    inp = keras.Input((64, 64, 3))
    out = keras.layers.Dense(2, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(base(inp)))
    nested = keras.Model(inp, out)
    assert find_gradcam_layer(nested) == f"{base.name}/out_relu"
    heat = gradcam(nested, x, class_index=0)
    assert heat.shape == (64, 64) and 0.0 <= heat.min() and heat.max() <= 1.0
    # ... or pooled inside (pooling="avg"), then dropout and the head, as
    # dicomml.models.backbones builds them
    base = keras.applications.MobileNetV2(input_shape=(64, 64, 3), alpha=0.35, weights=None,
                                          include_top=False, pooling="avg")
    inp = keras.Input((64, 64, 3))
    h = keras.layers.Dropout(0.2)(base(inp))
    pooled = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(h))
    assert find_gradcam_layer(pooled) == f"{base.name}/out_relu"
    heat = gradcam(pooled, x)
    assert heat.shape == (64, 64) and heat.dtype == np.float32
    assert 0.0 <= heat.min() and heat.max() <= 1.0
    # the predictions it differentiates are the model's own
    feats, preds = _features_and_predictions(pooled, f"{base.name}/out_relu")(x[None])
    np.testing.assert_allclose(np.asarray(preds), pooled.predict(x[None], verbose=0),
                               rtol=1e-5, atol=1e-6)
    assert tuple(feats.shape) == (1, 2, 2, 1280)


def test_reference_cnn_layer():
    import dicomml.models as models
    model = models.build_model("reference_cnn", input_shape=(64, 64, 3), n_classes=2)
    assert find_gradcam_layer(model) == "conv3"
    heat = gradcam(model, np.random.default_rng(4).random((64, 64, 3)).astype(np.float32))
    assert heat.shape == (64, 64) and 0.0 <= heat.min() and heat.max() <= 1.0


def _support_centre(model, layer, j: int, k: int, shape):
    """Centre (row, column) of the input pixels that reach cell (j, k) of ``layer``: the
    extent of the non-zero gradient of the cell's sum with respect to the input (an
    independent measure of the receptive field)."""
    import tensorflow as tf

    feats = keras.Model(model.inputs, model.get_layer(layer).output)
    x = tf.ones((1, *shape, 3))
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(feats(x)[0, j, k])
    g = np.abs(tape.gradient(total, x).numpy()[0]).sum(-1)
    rows, cols = np.flatnonzero(g.any(1)), np.flatnonzero(g.any(0))
    return (rows[0] + rows[-1]) / 2, (cols[0] + cols[-1]) / 2


def _linear_twin(model):
    """``model`` with max pooling replaced by average pooling (same geometry), every
    kernel 1, no ReLU: gradients reach every pixel of a receptive field."""
    def swap(layer):
        cfg = layer.get_config()
        if isinstance(layer, keras.layers.MaxPooling2D):
            return keras.layers.AveragePooling2D.from_config(cfg)
        if isinstance(layer, keras.layers.Conv2D):
            cfg.update(activation="linear", kernel_initializer="ones", use_bias=False)
        return layer.__class__.from_config(cfg)
    return keras.models.clone_model(model, clone_function=swap)


@pytest.mark.parametrize("build", ["reference", "mixed"])
def test_feature_geometry_is_the_receptive_field_centre(build):
    from dicomml.evaluate.grad_cam import feature_geometry
    import dicomml.models as models

    if build == "reference":  # valid convolutions: 96 px -> 20 x 20, centres 8.5 .. 84.5
        model = models.build_model("reference_cnn", input_shape=(96, 96, 3), n_classes=2)
        layer, shape = "conv3", (96, 96)
    else:  # same padding with stride 2 (TF pads after), zero padding, dilation, non-square
        inp = keras.Input((61, 80, 3))
        x = keras.layers.ZeroPadding2D(((3, 1), (2, 0)))(inp)
        x = keras.layers.Conv2D(4, 5, strides=2, padding="same")(x)
        x = keras.layers.Conv2D(4, 3, dilation_rate=2, padding="valid")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, padding="same")(x)
        x = keras.layers.Cropping2D(((1, 0), (0, 2)))(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Conv2D(4, 3, strides=(1, 2), padding="valid", name="last")(x)
        out = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalMaxPooling2D()(x))
        model, layer, shape = keras.Model(inp, out), "last", (61, 80)
    (sr, orr), (sc, oc) = feature_geometry(model, layer)
    twin = _linear_twin(model)
    h, w = model.get_layer(layer).output.shape[1:3]
    for j, k in [(0, 0), (h // 2, w // 3), (h - 1, w - 1)]:
        r, c = _support_centre(twin, layer, j, k, shape)
        if 0 < j < h - 1:  # inner cells: the whole receptive field is inside the image
            assert sr * j + orr == pytest.approx(r)
        if 0 < k < w - 1:
            assert sc * k + oc == pytest.approx(c)
    if build == "reference":
        assert (sr, orr, sc, oc) == (4.0, 8.5, 4.0, 8.5)


def test_to_input_grid_puts_each_cell_at_its_centre():
    from dicomml.evaluate.grad_cam import to_input_grid

    cam = np.zeros((20, 20), np.float32)
    cam[3, 10] = 1.0  # a cell of the reference CNN at 96 px: input pixel (20.5, 48.5)
    up = to_input_grid(cam, (96, 96), ((4.0, 8.5), (4.0, 8.5)))
    r, c = np.unravel_index(np.argmax(up), up.shape)
    assert r in (20, 21) and c in (48, 49) and up[20, 48] == pytest.approx(0.875 ** 2)
    cam[:] = 0
    cam[0, 19] = 1.0  # a corner cell, (8.5, 84.5): its value holds out to the corner
    up = to_input_grid(cam, (96, 96), ((4.0, 8.5), (4.0, 8.5)))
    assert up[:9, 85:].min() == 1.0 and up[9:, :].max() < 1.0 and up[:, :84].max() < 1.0
    # None: the plain half-pixel stretch (tf.image.resize bilinear)
    import tensorflow as tf

    cam = np.random.default_rng(0).random((6, 5)).astype(np.float32)
    ref = tf.image.resize(cam[..., None], (48, 40), method="bilinear")[..., 0].numpy()
    np.testing.assert_allclose(to_input_grid(cam, (48, 40), None), ref, atol=1e-5)


def test_input_saliency_is_gradient_times_input_by_finite_differences():
    from dicomml.evaluate.grad_cam import input_saliency

    keras.utils.set_random_seed(3)
    inp = keras.Input((12, 12, 3))
    h = keras.layers.Conv2D(4, 3, activation="tanh")(inp)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(h))
    x = np.random.default_rng(0).uniform(0.2, 1.0, (1, 12, 12, 3)).astype(np.float32)
    sal = input_saliency(model, x, 1, sigma=0)

    def logp(z):
        return float(np.log(np.asarray(model(z.astype(np.float32)), np.float64)[0, 1]))

    eps = 1e-2
    for (r, c) in [(0, 0), (5, 7), (11, 3), tuple(np.unravel_index(sal.argmax(), sal.shape))]:
        g = 0.0
        for ch in range(3):  # Σ_channels ∂ log p / ∂x · x, central differences
            up, dn = x.copy(), x.copy()
            up[0, r, c, ch] += eps
            dn[0, r, c, ch] -= eps
            g += (logp(up) - logp(dn)) / (2 * eps) * float(x[0, r, c, ch])
        assert abs(g) == pytest.approx(float(sal[r, c]), rel=0.05, abs=1e-5), (r, c)


def test_fine_map_finds_the_spot_within_a_coarse_cell():
    """A score map whose cells average 9 × 9 px on a stride of 4: every cell that covers a
    2 × 2 spot scores the same, so the coarse map (CAM) is a plateau whose peak can be 4 px
    off; the fine map is on the spot."""
    from dicomml.models.reference import ReferenceLogit

    inp = keras.Input((32, 32, 3))
    z = keras.layers.Conv2D(1, 9, strides=4, name="class_map", use_bias=False,
                            kernel_initializer=keras.initializers.Constant(1 / 243))(inp)
    z = keras.layers.GlobalMaxPooling2D()(z)
    z = ReferenceLogit(0, name="reference_logit")(z)
    model = keras.Model(inp, keras.layers.Activation("softmax")(z))
    x = np.zeros((32, 32, 3), np.float32)
    x[14:16, 18:20] = 5.0  # the spot, centre (14.5, 18.5)
    coarse = gradcam(model, x, class_index=1)
    fine = gradcam(model, x, class_index=1, fine=True)
    assert fine.shape == coarse.shape == (32, 32)
    assert 0.0 <= fine.min() and fine.max() == pytest.approx(1.0)
    d = [np.hypot(*(np.array(np.unravel_index(h.argmax(), h.shape)) - (14.5, 18.5)))
         for h in (coarse, fine)]
    assert d[1] <= 1.0 < d[0], d  # the coarse peak is off the spot, the fine one on it
    # no evidence: the fine map of a blank image is all zeros, never a random peak
    assert not gradcam(model, np.zeros_like(x), class_index=1, fine=True).any()


def test_fine_map_of_other_models_is_gradcam_times_the_saliency():
    from dicomml.evaluate.grad_cam import input_saliency

    keras.utils.set_random_seed(5)
    model = _small_cnn()
    x = np.random.default_rng(4).random((SIZE, SIZE, 3)).astype(np.float32)
    want = gradcam(model, x, class_index=1) * input_saliency(model, x[None], 1)
    want /= want.max()
    np.testing.assert_allclose(gradcam(model, x, class_index=1, fine=True), want, rtol=1e-5,
                               atol=1e-6)
    # the default class is the predicted one, as for the coarse map
    pred = int(np.argmax(model.predict(x[None], verbose=0)[0]))
    np.testing.assert_allclose(gradcam(model, x, fine=True),
                               gradcam(model, x, class_index=pred, fine=True), atol=1e-6)
