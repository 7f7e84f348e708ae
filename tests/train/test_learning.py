"""The learning test: on the committed sample task the reference CNN learns; shuffled labels not.

Issue 4's bar, on ``sample_dicom/head_ct_task/`` (56 patients) with the demo's own training
configuration ``sample_dicom/train.toml``: scan → manifest → patient split (60/15/25 %, 14
held-out test patients) → cache → train with :class:`dicomml.train.Trainer`, then score the
held-out test patients per study (mean of the slice probabilities) with scikit-learn's
``roc_auc_score``. The same pipeline trained on labels permuted across the training studies
must not reach the bar (control for leakage through the split or the data).

Measured while tuning the task (2 CPU cores, about a minute per training): test study AUC
1.00 / 0.98 / 0.92 for split seeds 0 / 1 / 2 (study-max aggregation in ``dicomml evaluate``);
the test uses seed 0, the committed configuration's.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import keras  # noqa: F401 - a hard dependency: a broken install fails

from dicomml.data import load_tensors  # noqa: E402
from dicomml.train import Trainer, load_run  # noqa: E402
from dicomml.train.config import load_config  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "sample_dicom"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Index and tensor cache shared by both trainings (the data are the same)."""
    return tmp_path_factory.mktemp("learn")


def _config(d, shuffle_labels=False):
    cfg = load_config(SAMPLE / "train.toml")
    assert Path(cfg.data.folder) == SAMPLE / "head_ct_task"
    return cfg.replace(
        data={"index": str(d / "index.sqlite"), "cache": str(d / "cache"), "workers": 0,
              "shuffle_labels": shuffle_labels},
        train={"verbose": 0, "tensorboard": False})


def _test_auc(run_dir, cache_dir) -> float:
    run = load_run(run_dir)
    test = run.manifest[run.manifest["split"] == "test"]
    x = load_tensors(test, run.pipeline, cache_dir=cache_dir, workers=0)
    p = run.model().predict(x, batch_size=32, verbose=0)[:, run.classes.index("haemorrhage")]
    per_study = test.assign(p=p).groupby("study_instance_uid").agg(
        p=("p", "mean"), label=("label", "first"))
    truth = pd.read_csv(SAMPLE / "head_ct_task" / "labels.csv", dtype=str).set_index(
        "StudyInstanceUID")["label"]
    assert (per_study["label"] == truth[per_study.index]).all()
    assert len(per_study) == 14
    assert 0 < (per_study["label"] == "haemorrhage").sum() < 14
    return roc_auc_score(per_study["label"] == "haemorrhage", per_study["p"])


@pytest.mark.slow
def test_reference_cnn_learns_the_sample_task(cache, tmp_path):
    Trainer(_config(cache)).fit(tmp_path / "run", progress=False)
    auc = _test_auc(tmp_path / "run", cache / "cache")
    print(f"test-split per-study ROC AUC: {auc:.3f}")
    assert auc >= 0.90, auc


@pytest.mark.slow
def test_shuffled_labels_do_not_learn(cache, tmp_path):
    Trainer(_config(cache, shuffle_labels=True)).fit(tmp_path / "run", progress=False)
    auc = _test_auc(tmp_path / "run", cache / "cache")
    print(f"test-split per-study ROC AUC: {auc:.3f}")
    assert auc < 0.9 and abs(auc - 0.5) < 0.3, auc
