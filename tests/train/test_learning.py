"""The learning test: on the committed sample task the study model learns; shuffled labels not.

On ``sample_dicom/head_ct_task/`` (56 patients) with the demo's own training configuration
``sample_dicom/train.toml`` (the default brain / subdural / bone windows, study level,
a score-map patch classifier pooled by its maximum): scan → manifest → patient split (60/15/25 %, 14 held-out test patients)
→ cache → train with :class:`dicomml.train.Trainer`, then score the held-out test patients
per study through the common prediction path (``predict_examples``: the study model's own
study output) with scikit-learn's ``roc_auc_score``. The same pipeline trained on labels
permuted across the training studies must not reach the bar (control for leakage through
the split or the data). Figures for three split seeds: ``bench/bench_learning.py``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import keras  # noqa: F401 - a hard dependency: a broken install fails

from dicomml.evaluate.runio import predict_examples  # noqa: E402
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
    p = predict_examples(run.model(), test, run.pipeline, cache_dir=cache_dir, workers=0,
                         progress=False)[:, run.classes.index("haemorrhage")]
    per_study = test.assign(p=p).groupby("study_instance_uid").agg(
        p=("p", "first"), spread=("p", "std"), label=("label", "first"))
    assert (per_study["spread"].fillna(0) == 0).all()  # one study output per study
    truth = pd.read_csv(SAMPLE / "head_ct_task" / "labels.csv", dtype=str).set_index(
        "StudyInstanceUID")["label"]
    assert (per_study["label"] == truth[per_study.index]).all()
    assert len(per_study) == 14
    assert 0 < (per_study["label"] == "haemorrhage").sum() < 14
    return roc_auc_score(per_study["label"] == "haemorrhage", per_study["p"])


@pytest.mark.slow
def test_study_model_learns_the_sample_task_with_default_windows(cache, tmp_path):
    res = Trainer(_config(cache)).fit(tmp_path / "run", progress=False)
    auc = _test_auc(tmp_path / "run", cache / "cache")
    print(f"test-split per-study ROC AUC: {auc:.3f}; model.keras is epoch {res.best_epoch}")
    assert auc >= 0.95, auc
    assert res.best_epoch > 2  # the kept epoch is not an untrained one


@pytest.mark.slow
def test_shuffled_labels_do_not_learn(cache, tmp_path):
    Trainer(_config(cache, shuffle_labels=True)).fit(tmp_path / "run", progress=False)
    auc = _test_auc(tmp_path / "run", cache / "cache")
    print(f"test-split per-study ROC AUC: {auc:.3f}")
    assert auc < 0.9 and abs(auc - 0.5) < 0.3, auc
