"""dicomml.models: the reference architecture layer by layer, registry, backbones."""

from __future__ import annotations

import numpy as np
import pytest

import keras

from dicomml.errors import ConfigError  # noqa: E402
from dicomml.models import available_models, build_model  # noqa: E402


def _conv_out(n, k=3):
    return n - k + 1


def test_reference_architecture_layer_by_layer():
    m = build_model("reference_cnn", input_shape=(224, 224, 3), n_classes=2)
    kinds = [type(layer).__name__ for layer in m.layers]
    assert kinds == ["InputLayer", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D",
                     "Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dense"]
    convs = [layer for layer in m.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [32, 64, 128]
    assert all(tuple(c.kernel_size) == (3, 3) for c in convs)
    assert all(c.activation.__name__ == "relu" for c in convs)
    assert all(c.padding == "valid" for c in convs)
    pools = [layer for layer in m.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    assert all(tuple(p.pool_size) == (2, 2) for p in pools)
    dense = [layer for layer in m.layers if isinstance(layer, keras.layers.Dense)]
    assert [d.units for d in dense] == [128, 2]
    assert dense[0].activation.__name__ == "relu"
    assert dense[1].activation.__name__ == "softmax"
    # Shapes computed by hand: valid 3x3 conv then floor-halving pool.
    n = 224
    for _ in range(3):
        n = _conv_out(n) // 2
    assert n == 26
    assert m.get_layer("flatten").output.shape[1:] == (26 * 26 * 128,)
    # Parameter count by hand.
    p = (3 * 3 * 3 * 32 + 32) + (3 * 3 * 32 * 64 + 64) + (3 * 3 * 64 * 128 + 128)
    p += 26 * 26 * 128 * 128 + 128 + 128 * 2 + 2
    assert m.count_params() == p


def test_output_shapes_and_softmax():
    rng = np.random.default_rng(0)
    x = rng.random((3, 64, 64, 3), dtype=np.float32)
    m = build_model(input_shape=(64, 64, 3), n_classes=4)
    y = np.asarray(m(x))
    assert y.shape == (3, 4)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)
    r = build_model(input_shape=(64, 64, 3), task="regression")
    assert r.layers[-1].units == 1 and r.layers[-1].activation.__name__ == "linear"
    assert np.asarray(r(x)).shape == (3, 1)


@pytest.mark.parametrize("name, layer_kind", [("reference_cnn_l2", None),
                                              ("reference_cnn_dropout", "Dropout"),
                                              ("reference_cnn_bn", "BatchNormalization")])
def test_regularized_variants(name, layer_kind):
    m = build_model(name, input_shape=(32, 32, 3), n_classes=2)
    kinds = [type(layer).__name__ for layer in m.layers]
    if layer_kind:
        assert layer_kind in kinds
    else:
        convs = [layer for layer in m.layers if isinstance(layer, keras.layers.Conv2D)]
        assert all(c.kernel_regularizer is not None for c in convs)
        assert float(convs[0].kernel_regularizer.l2) == pytest.approx(1e-4)
        assert len(m.losses) == 4  # 3 convs + hidden dense


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.random((2, 48, 48, 3), dtype=np.float32)
    m = build_model("reference_cnn_bn", input_shape=(48, 48, 3), n_classes=3)
    path = tmp_path / "m.keras"
    m.save(path)
    m2 = keras.saving.load_model(path, compile=False)
    np.testing.assert_array_equal(np.asarray(m.predict(x, verbose=0)),
                                  np.asarray(m2.predict(x, verbose=0)))
    assert [type(a).__name__ for a in m.layers] == [type(b).__name__ for b in m2.layers]


def test_unknown_name_suggests():
    with pytest.raises(ConfigError, match="reference_cnn"):
        build_model("referense_cnn")
    with pytest.raises(ConfigError, match="Received: name='nope'"):
        build_model("nope")
    with pytest.raises(ConfigError, match="task"):
        build_model(task="segmentation")
    with pytest.raises(ConfigError, match="weights"):
        build_model("resnet50", weights="imagenet")


def test_registry_lists_backbones():
    names = available_models()
    for n in ("reference_cnn", "resnet50", "densenet121", "efficientnetb0"):
        assert n in names


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet50", "densenet121", "efficientnetb0", "mobilenetv2",
                                  "vgg16"])
def test_backbones_build_without_download(name):
    m = build_model(name, input_shape=(64, 64, 3), n_classes=2, weights=None)
    rng = np.random.default_rng(2)
    y = np.asarray(m(rng.random((1, 64, 64, 3), dtype=np.float32)))
    assert y.shape == (1, 2)
    assert m.layers[-1].dtype_policy.compute_dtype == "float32"


@pytest.mark.slow
def test_backbone_local_weights_file(tmp_path):
    src = keras.applications.MobileNetV2(include_top=False, weights=None,
                                         input_shape=(64, 64, 3), pooling="avg")
    path = tmp_path / "mb.weights.h5"
    src.save_weights(path)
    m = build_model("mobilenetv2", input_shape=(64, 64, 3), weights=str(path))
    base = m.layers[1]
    for a, b in zip(src.weights, base.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_mixed_precision_output_stays_float32():
    policy = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        m = build_model(input_shape=(32, 32, 3), n_classes=2)
        assert m.get_layer("conv1").compute_dtype == "float16"
        assert m.layers[-1].compute_dtype == "float32"
        y = m(np.zeros((1, 32, 32, 3), np.float32))
        assert str(y.dtype) in ("float32", "<dtype: 'float32'>")
    finally:
        keras.mixed_precision.set_global_policy(policy)


@pytest.mark.parametrize("filters", [(8,), (8, 8), (8, 8, 8)])
def test_min_input_size_is_the_smallest_that_builds(filters):
    from dicomml.train.config import min_input_size

    need = min_input_size("reference_cnn", {"filters": filters})
    m = build_model("reference_cnn", input_shape=(need, need, 3), filters=filters,
                    dense_units=4)
    assert m.output_shape == (None, 2)
    with pytest.raises(ValueError):
        build_model("reference_cnn", input_shape=(need - 1, need - 1, 3), filters=filters,
                    dense_units=4)
