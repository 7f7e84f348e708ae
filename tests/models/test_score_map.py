"""The reference CNN's score-map head (``head = "map"``): a patch classifier, its study
pooling, its pooling weights and its explanation (CAM)."""

from __future__ import annotations

import numpy as np
import pytest

import keras

from dicomml.errors import ConfigError
from dicomml.evaluate.grad_cam import feature_geometry, gradcam
from dicomml.models.mil import attention_weights, study_model
from dicomml.models.reference import reference_cnn
from dicomml.train.config import ModelConfig


def _map_model(size=64):
    keras.utils.set_random_seed(3)
    return reference_cnn((size, size, 3), 2, batch_norm=True, head="map")


def test_output_is_the_softmax_of_the_class_maps_maximum():
    model = _map_model()
    names = [la.name for la in model.layers]
    assert names[-4:] == ["class_map", "global_pool", "reference_logit", "output"]
    assert "pool3" not in names
    x = np.random.default_rng(0).random((2, 64, 64, 3)).astype(np.float32)
    maps = keras.Model(model.inputs[0], model.get_layer("class_map").output)(x).numpy()
    assert maps.shape == (2, 12, 12, 1)  # 64 -> 62 -> 31 -> 29 -> 14 -> 12, no last pooling
    z = np.concatenate([np.zeros((2, 1)), maps.max(axis=(1, 2))], axis=1)  # class 0 at 0
    want = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)


def test_bad_head_and_regression_are_config_errors():
    with pytest.raises(ConfigError, match="head must be"):
        reference_cnn((32, 32, 3), 2, head="conv")
    with pytest.raises(ConfigError, match="map_reference"):
        reference_cnn((32, 32, 3), 2, head="map", map_reference=2)
    with pytest.raises(ConfigError, match="classification"):
        reference_cnn((32, 32, 3), 1, "regression", head="map")


def test_saved_and_loaded(tmp_path):
    model = _map_model(32)
    x = np.random.default_rng(2).random((1, 32, 32, 3)).astype(np.float32)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)


def test_study_pooling_defaults_to_max_for_a_score_map():
    assert ModelConfig(level="study", kwargs={"head": "map"}).pooling == "max"
    assert ModelConfig(level="study").pooling == "max"  # the study level's default head
    assert ModelConfig(level="study").kwargs["head"] == "map"
    assert ModelConfig(level="study", kwargs={"head": "dense"}).pooling == "attention"
    assert ModelConfig(level="slice").kwargs.get("head", "dense") == "dense"
    assert ModelConfig(level="study", pooling="mean", kwargs={"head": "map"}).pooling == "mean"
    assert ModelConfig(level="study", kwargs={"head": "map"}).to_dict()["pooling"] == "max"


def test_weights_follow_the_positive_score_and_cam_peaks_on_the_top_patch():
    model = _map_model()
    study = study_model(model, "max")
    bag = np.random.default_rng(1).random((5, 64, 64, 3)).astype(np.float32)
    bag[3, 20:30, 30:40] += 2.0  # one slice differs
    maps = keras.Model(model.inputs[0], model.get_layer("class_map").output)(bag).numpy()
    odds = maps[..., 0]  # class 1 against the reference class 0 (score 0)
    w = attention_weights(study, bag, positive=1)
    assert w.shape == (5,) and w.sum() == pytest.approx(1.0)
    assert int(np.argmax(w)) == int(np.argmax(odds.max(axis=(1, 2))))
    # the same bag explained by the positive and by the negative class
    for cls, o in ((1, odds), (0, -odds)):
        cam = gradcam(study, bag[3], class_index=cls)
        assert cam.shape == (64, 64) and cam.min() == 0.0 and cam.max() == 1.0
        j, k = np.unravel_index(np.argmax(o[3]), o[3].shape)
        (sr, orr), (sc, oc) = feature_geometry(model, "class_map")
        r, c = np.unravel_index(np.argmax(cam), cam.shape)
        assert abs(r - (sr * j + orr)) <= 1 and abs(c - (sc * k + oc)) <= 1
