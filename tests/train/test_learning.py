"""The learning test: the reference CNN learns the head-CT task, and not shuffled labels.

Scan → manifest → patient split → cache → train with :class:`dicomml.train.Trainer`, then
score the held-out test patients per study (mean of the slice probabilities) with
scikit-learn's ``roc_auc_score``. The same pipeline trained on labels permuted across the
training studies must not reach the bar (control for leakage through the split or the data).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

pytest.importorskip("keras")

from dicomml.data import load_tensors  # noqa: E402
from dicomml.testing.task import write_head_ct_task  # noqa: E402
from dicomml.train import RunConfig, Trainer, load_run  # noqa: E402


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    d = tmp_path_factory.mktemp("learn")
    labels = write_head_ct_task(d / "dicom", n_patients=160, seed=11)
    return d, labels


def _config(d, labels, shuffle_labels=False):
    return RunConfig.from_dict({
        "data": {"folder": str(d / "dicom"), "index": str(d / "index.sqlite"),
                 "labels": str(labels), "cache": str(d / "cache"), "workers": 2,
                 "classes": ["normal", "haemorrhage"], "positive_class": "haemorrhage",
                 "shuffle_labels": shuffle_labels,
                 "slices": {"mode": "central", "n": 3}},
        "split": {"train": 0.6, "val": 0.1, "test": 0.3, "seed": 0},
        "preprocess": {"mode": "replicate", "windows": [[75.0, 40.0]]},
        "model": {"name": "reference_cnn"},
        "train": {"learning_rate": 3e-4, "epochs": 8, "batch_size": 32, "seed": 0,
                  "augment": ["flip_lr", "flip_ud"], "verbose": 0, "tensorboard": False}})


def _test_auc(run_dir, cache_dir) -> float:
    run = load_run(run_dir)
    test = run.manifest[run.manifest["split"] == "test"]
    x = load_tensors(test, run.pipeline, cache_dir=cache_dir, workers=0)
    p = run.model().predict(x, batch_size=32, verbose=0)[:, run.classes.index("haemorrhage")]
    per_study = test.assign(p=p).groupby("study_instance_uid").agg(
        p=("p", "mean"), label=("label", "first"))
    truth = pd.read_csv(run.config["data"]["labels"], dtype=str).set_index(
        "StudyInstanceUID")["label"]
    assert (per_study["label"] == truth[per_study.index]).all()
    assert len(per_study) == 48
    return roc_auc_score(per_study["label"] == "haemorrhage", per_study["p"])


@pytest.mark.slow
def test_reference_cnn_learns_head_ct(task, tmp_path):
    d, labels = task
    Trainer(_config(d, labels)).fit(tmp_path / "run", progress=False)
    auc = _test_auc(tmp_path / "run", d / "cache")
    print(f"test-split per-study ROC AUC: {auc:.3f}")
    assert auc >= 0.90, auc


@pytest.mark.slow
def test_shuffled_labels_do_not_learn(task, tmp_path):
    d, labels = task
    Trainer(_config(d, labels, shuffle_labels=True)).fit(tmp_path / "run", progress=False)
    auc = _test_auc(tmp_path / "run", d / "cache")
    print(f"test-split per-study ROC AUC: {auc:.3f}")
    assert auc < 0.9 and abs(auc - 0.5) < 0.3, auc
