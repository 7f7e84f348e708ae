"""Slice supervision of study-level models: the extra loss terms against their definitions
(computed from the model's own per-slice predictions and attention weights), saved and
restored with the model, validated at load, and a tiny chest run trained end to end with
slice labels, then scored by the localisation check on its lesion masks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import keras

from dicomml.errors import ConfigError
from dicomml.models import build_model
from dicomml.models.mil import StudyModel, attention_weights, slice_model_of, study_model
from dicomml.testing import read_task_masks, write_chest_nodule_task
from dicomml.train.config import RunConfig
from dicomml.train.run import load_run
from dicomml.train.trainer import Trainer


def _model(**kw):
    keras.utils.set_random_seed(1)
    enc = build_model("reference_cnn", input_shape=(32, 32, 3), filters=(4, 8, 8),
                      dense_units=8, global_pool="max", batch_norm=True)
    return study_model(enc, "attention", 16, **kw)


def _batch():
    rng = np.random.default_rng(0)
    bag = rng.random((1, 6, 32, 32, 3), dtype=np.float32)
    y = np.array([[0.0, 1.0]], np.float32)
    classes = np.array([[0, 0, 1, 1, 0, -1]], np.float32)   # -1: slice label unknown
    return bag, y, classes


def test_supervision_terms_match_their_definitions():
    bag, y, classes = _batch()
    m = _model(slice_loss=0.5, attention_loss=2.0)
    p = np.asarray(slice_model_of(m)(bag[0], training=False))          # (n, 2)
    a = attention_weights(m, bag[0])                                  # (n,)
    known = classes[0] >= 0
    c = classes[0].astype(int)
    ce = -np.log(p[np.arange(6), np.maximum(c, 0)])
    slice_ce = (ce[known & (c == 0)].mean() + ce[known & (c == 1)].mean()) / 2  # balanced
    att_ce = -np.mean(np.log(a[c == 1]))
    got = float(m.supervision_loss(bag, classes, training=False))
    assert got == pytest.approx(0.5 * slice_ce + 2.0 * att_ce, rel=1e-4)
    only_att = _model(attention_loss=1.0)
    assert float(only_att.supervision_loss(bag, classes)) == pytest.approx(att_ce, rel=1e-4)
    # a negative study has no positive slice: no attention term
    assert float(only_att.supervision_loss(bag, np.zeros_like(classes))) == 0.0


def test_supervision_changes_the_training_loss_only_with_slice_labels():
    import tensorflow as tf

    bag, y, classes = _batch()
    losses = {}
    for name, kw, with_slices in (("plain", {}, False), ("plain+labels", {}, True),
                                  ("supervised", {"slice_loss": 1.0,
                                                  "attention_loss": 1.0}, True),
                                  ("supervised-no-labels", {"slice_loss": 1.0}, False)):
        m = _model(**kw)
        m.compile(optimizer=keras.optimizers.SGD(0.0), loss="categorical_crossentropy")
        target = (y, classes) if with_slices else y
        ds = tf.data.Dataset.from_tensors((bag, target, np.ones(1, np.float32)))
        losses[name] = m.evaluate(ds, verbose=0, return_dict=True)["loss"]
    # the same initial weights (same seed): the study loss alone is identical...
    assert losses["plain"] == pytest.approx(losses["plain+labels"], rel=1e-6)
    assert losses["plain"] == pytest.approx(losses["supervised-no-labels"], rel=1e-6)
    # ...and the supervision adds exactly its terms
    m = _model(slice_loss=1.0, attention_loss=1.0)
    extra = float(m.supervision_loss(bag, classes))
    assert extra > 0
    assert losses["supervised"] == pytest.approx(losses["plain"] + extra, rel=1e-4)


def test_supervision_weights_are_saved_with_the_model(tmp_path):
    bag, _, _ = _batch()
    m = _model(slice_loss=0.25, attention_loss=0.75, positive=1)
    m.save(tmp_path / "m.keras")
    back = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(back, StudyModel)
    assert (back.slice_loss, back.attention_loss, back.positive) == (0.25, 0.75, 1)
    np.testing.assert_allclose(back.predict(bag, verbose=0), m.predict(bag, verbose=0),
                               rtol=1e-5)


def _cfg(d, labels, **train):
    return {"data": {"folder": str(d / "dicom"), "labels": str(labels), "workers": 0,
                     "key": "SOPInstanceUID", "index": str(d / "index.sqlite"),
                     "cache": str(d / "cache"), "classes": ["normal", "nodule"],
                     "positive_class": "nodule"},
            "split": {"train": 0.5, "val": 0.25, "test": 0.25, "seed": 0},
            "preprocess": {"windows": "lung", "mode": "replicate", "size": 40},
            "model": {"level": "study", "filters": [4, 8, 8], "dense_units": 8},
            "train": {"epochs": 2, "verbose": 0, "tensorboard": False, **train}}


def test_supervision_is_checked_at_load(tmp_path):
    cfg = _cfg(tmp_path, tmp_path / "labels.csv", slice_loss=0.5)
    cfg["data"]["key"] = "StudyInstanceUID"
    with pytest.raises(ConfigError, match="labels per slice"):
        RunConfig.from_dict(cfg)
    cfg = _cfg(tmp_path, tmp_path / "labels.csv", attention_loss=1.0)
    cfg["model"]["pooling"] = "max"
    with pytest.raises(ConfigError, match="pooling"):
        RunConfig.from_dict(cfg)
    del cfg["model"]["pooling"]  # the default head (a score map) is pooled by its maximum
    with pytest.raises(ConfigError, match='head = "dense"'):
        RunConfig.from_dict(cfg)
    cfg = _cfg(tmp_path, tmp_path / "labels.csv", slice_loss=-1)
    with pytest.raises(ConfigError, match="slice_loss"):
        RunConfig.from_dict(cfg)


def test_tiny_chest_run_with_slice_supervision_end_to_end(tmp_path):
    from dicomml.data.tfdata import load_tensors
    from dicomml.evaluate.localisation import localise_studies

    write_chest_nodule_task(tmp_path / "dicom", n_patients=8, seed=2, rows=48, slices=12)
    raw = _cfg(tmp_path, tmp_path / "dicom" / "slice_labels.csv", slice_loss=0.5,
               attention_loss=1.0)
    raw["model"]["head"] = "dense"  # attention pooling (the default head pools by the max)
    cfg = RunConfig.from_dict(raw)
    assert cfg.model.pooling == "attention"
    res = Trainer(cfg).fit(tmp_path / "run", progress=False)
    assert len(res.history) == 2 and np.isfinite(res.history["loss"]).all()
    r = load_run(tmp_path / "run")
    assert r.config.train.slice_loss == 0.5
    model = r.model()
    assert isinstance(model, StudyModel) and model.attention_loss == 1.0
    # every study's label is "nodule" when any slice is: the study labels of the task
    study_labels = pd.read_csv(tmp_path / "dicom" / "labels.csv")
    truth = dict(zip(study_labels["StudyInstanceUID"], study_labels["label"] == "nodule"))
    per_study = r.manifest.groupby("study_instance_uid")["target"].max()
    assert {k: bool(v) for k, v in per_study.items()} == truth
    test = r.manifest[r.manifest["split"] == "test"].reset_index(drop=True)
    x = load_tensors(test, r.pipeline, workers=0)
    loc = localise_studies(model, test, x, read_task_masks(tmp_path / "dicom"),
                           r.pipeline.config, threshold=0.0)   # every positive study
    n_pos = int(test.groupby("study_instance_uid")["target"].max().sum())
    assert loc["true_positives"] == n_pos == len(loc["studies"])
    assert 0 <= loc["peak_in_lesion"] <= loc["slice_in_lesion"] <= n_pos
