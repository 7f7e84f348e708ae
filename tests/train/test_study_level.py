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


def test_step_plan_holds_whole_studies_of_one_length():
    from dicomml.data.bags import step_plan, steps_per_epoch

    lengths = np.array([5, 8, 5, 5, 8, 6, 5, 5, 5, 8])
    # per length ceil(count / 3): 6 of length 5 → 2, 3 of 8 → 1, 1 of 6 → 1
    assert steps_per_epoch(lengths, 3) == 4 and steps_per_epoch(lengths, 1) == len(lengths)
    for shuffle, epoch in ((False, 0), (True, 0), (True, 1)):
        plan = step_plan(lengths, 3, shuffle, seed=4, epoch=epoch)
        assert len(plan) == 4 and all(1 <= len(s) <= 3 for s in plan)
        assert sorted(np.concatenate(plan).tolist()) == list(range(len(lengths)))  # each once
        assert all(len(set(lengths[s].tolist())) == 1 for s in plan)               # one length
    assert [s.tolist() for s in step_plan(lengths, 3, False)] == [[0, 2, 3], [6, 7, 8],
                                                                   [5], [1, 4, 9]]
    a, b = step_plan(lengths, 3, True, 4, 0), step_plan(lengths, 3, True, 4, 0)
    assert all((x == y).all() for x, y in zip(a, b))                  # a function of (seed, e)
    c = step_plan(lengths, 3, True, 4, 1)
    assert any(len(x) != len(y) or (x != y).any() for x, y in zip(a, c))  # reshuffled per epoch


def test_bag_dataset_steps_match_the_cache_and_resume(run):
    """Steps of several studies: each bag is its study's cached slices in manifest order,
    with its label; a dataset started at step b yields what the full one yields from b."""
    from dicomml.data.bags import bag_dataset, step_plan
    from dicomml.data.cache import TensorCache

    d, res = run
    r = load_run(d / "run")
    tr = res.manifest[res.manifest["split"] == "train"].reset_index(drop=True)
    cache = TensorCache.for_pipeline(str(d / "cache"), r.pipeline)
    uids, groups = study_groups(tr)
    y = tr["target"].to_numpy()
    kw = dict(targets=y, n_classes=2, shuffle=True, seed=3, repeat=True,
              studies_per_step=2, prefetch=False)
    full = list(bag_dataset(cache, tr, **kw).take(6))
    lengths = [len(g) for g in groups]
    for b, (x, yy, w) in enumerate(full):
        steps = step_plan(lengths, 2, True, 3, b // len(step_plan(lengths, 2, False)))
        ks = steps[b % len(steps)]
        assert x.shape[0] == len(ks) == yy.shape[0] == w.shape[0]
        for i, k in enumerate(ks):
            want = cache.get(tr.iloc[groups[k]])
            np.testing.assert_allclose(x[i].numpy(), want, atol=1e-6)
            assert int(np.argmax(yy[i])) == int(y[groups[k]].max())
    resumed = list(bag_dataset(cache, tr, **kw, skip_batches=3).take(3))
    for (x0, y0, _), (x1, y1, _) in zip(full[3:], resumed):
        np.testing.assert_array_equal(x0.numpy(), x1.numpy())
        np.testing.assert_array_equal(y0.numpy(), y1.numpy())


def test_slice_encoder_normalizes_over_every_slice_of_the_step():
    """In training, batch normalization inside the study encoder sees the B·n slices of
    the step together: the same as the slice encoder on the flattened slices, not one
    slice position at a time (Keras TimeDistributed) — and at inference the same too."""
    from dicomml.models import build_model
    from dicomml.models.mil import study_model

    keras.utils.set_random_seed(0)
    enc = build_model("reference_cnn", input_shape=(32, 32, 3), filters=(4, 4, 4),
                      dense_units=4, global_pool="max", batch_norm=True)
    model = study_model(enc, "max")
    inner = model.get_layer("encode_slices").layer
    rng = np.random.default_rng(1)
    bag = rng.random((3, 5, 32, 32, 3), dtype=np.float32) * np.linspace(0.2, 2, 5)[
        None, :, None, None, None]  # slice positions differ in contrast
    for training in (True, False):
        got = np.asarray(model.get_layer("encode_slices")(bag, training=training))
        want = np.asarray(inner(bag.reshape(15, 32, 32, 3), training=training)).reshape(3, 5, -1)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    per_position = np.stack([np.asarray(inner(bag[:, i], training=True)) for i in range(5)], 1)
    assert not np.allclose(per_position, np.asarray(
        inner(bag.reshape(15, 32, 32, 3), training=True)).reshape(3, 5, -1), atol=1e-3)
