"""Study-level (MIL) training end to end on a tiny chest-nodule task: the configured input
size everywhere, bags without padding, per-study and per-slice predictions from one model,
the evaluate path, the resolved configuration and which epoch model.keras is."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import keras  # noqa: E402 - a hard dependency: a broken install fails

from dicomml.data.bags import example_weights, study_groups, study_targets  # noqa: E402
from dicomml.testing import write_chest_nodule_task  # noqa: E402
from dicomml.train.config import RunConfig  # noqa: E402
from dicomml.train.run import load_run  # noqa: E402
from dicomml.train.trainer import Trainer  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("mil")
    labels = write_chest_nodule_task(d / "dicom", n_patients=8, seed=2, rows=48, slices=12)
    cfg = RunConfig.from_dict({
        "data": {"folder": str(d / "dicom"), "labels": str(labels), "workers": 0,
                 "index": str(d / "index.sqlite"), "cache": str(d / "cache")},
        "split": {"train": 0.5, "val": 0.25, "test": 0.25, "seed": 0},
        "preprocess": {"windows": "lung", "mode": "replicate", "size": 40},
        "model": {"level": "study", "filters": [4, 8, 8], "dense_units": 8},
        "train": {"epochs": 2, "verbose": 0, "tensorboard": False}})
    res = Trainer(cfg).fit(d / "run", progress=False)
    return d, res


def test_run_folder_of_a_study_model(run):
    d, res = run
    r = load_run(d / "run")
    assert r.config.model.level == "study"
    assert r.config.model.kwargs["global_pool"] == "max" and r.config.model.kwargs["batch_norm"]
    assert r.config.train.monitor == "val_auc"  # "auto" resolved
    assert r.config.preprocess["augment"]["rotate_deg"] == 10.0  # recorded in the run
    state = json.loads((d / "run" / "checkpoints" / "state.json").read_text())
    assert state["best_epoch"] + 1 == res.best_epoch and 1 <= res.best_epoch <= 2
    assert "val_auc" in res.history.columns and len(res.history) == 2
    model = r.model()
    assert model.input_shape == (None, None, 40, 40, 3)
    cache_folders = [p for p in (d / "cache").iterdir() if p.is_dir()]
    shard = next(cache_folders[0].glob("shard-*.npy"))
    assert np.load(shard, mmap_mode="r").shape[1:] == (40, 40, 3)


def test_per_study_and_per_slice_predictions(run):
    from dicomml.evaluate.runio import predict_examples
    from dicomml.train.study import predict_studies

    d, _ = run
    r = load_run(d / "run")
    test = r.manifest[r.manifest["split"] == "test"].reset_index(drop=True)
    model = r.model()
    out = predict_studies(model, test, r.pipeline, workers=0, progress=False)
    _, groups = study_groups(test)
    for g in groups:
        assert np.allclose(out.study[g], out.study[g[0]])        # one study output
        assert np.isclose(out.weight[g].sum(), 1.0, atol=1e-5)  # attention over the slices
        assert np.allclose(out.slice[g].sum(axis=1), 1.0, atol=1e-5)
    # the study output is the model applied to the whole bag (the common path gives it)
    from dicomml.data.tfdata import load_tensors

    bag = load_tensors(test.iloc[groups[0]], r.pipeline, workers=0)
    np.testing.assert_allclose(np.asarray(model(bag[None]))[0], out.study[groups[0][0]],
                               rtol=1e-5, atol=1e-6)
    via_common = predict_examples(model, test, r.pipeline, workers=0, progress=False)
    np.testing.assert_allclose(via_common, out.study, rtol=1e-6)


def test_evaluate_run_scores_the_study_output(run):
    from dicomml.evaluate.evaluation import evaluate_run

    d, _ = run
    m = evaluate_run(d / "run", plots=False, progress=False, workers=0, n_resamples=50)
    assert m["study_max"]["counts"]["n"] == m["study_mean"]["counts"]["n"] == 2
    assert m["study_max"]["roc_auc"]["value"] == m["study_mean"]["roc_auc"]["value"]


def test_study_targets_and_balance_weights():
    df = pd.DataFrame({"study_instance_uid": list("aaabbc"), "target": [0, 1, 0, 0, 0, 1]})
    _, groups = study_groups(df)
    assert [g.tolist() for g in groups] == [[0, 1, 2], [3, 4], [5]]
    st = study_targets(df["target"], groups, 2, positive=1)  # slice labels: any positive
    assert st.tolist() == [1, 0, 1]
    # labels per study: each class the same total, each study the same within its class
    df = pd.DataFrame({"study_instance_uid": list("aaabbcd"), "target": [0, 0, 0, 0, 0, 1, 1]})
    w = example_weights(df["target"], df["study_instance_uid"], "study", 2)
    assert np.isclose(w[df["target"] == 0].sum(), w[df["target"] == 1].sum())
    assert np.isclose(w[[0, 1, 2]].sum(), w[[3, 4]].sum()) and np.isclose(w[5], w[6])
    assert np.isclose(w.mean(), 1.0)
    assert example_weights(df["target"], df["study_instance_uid"], "none", 2) is None
