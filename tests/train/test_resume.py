"""Resume after SIGKILL reproduces the uninterrupted run (issue 9): history, weights of
``model.keras`` and of the last checkpoint, predictions; callback counters survive."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

import keras

from dicomml.testing.task import write_head_ct_task  # noqa: E402
from dicomml.train.callbacks import (EpochSeeds, ResumableEarlyStopping, improves,  # noqa: E402
                                     tie_break_of,
                                     ResumableReduceLROnPlateau, seed_generators)
from dicomml.train.config import RunConfig  # noqa: E402
from dicomml.train.trainer import Trainer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# CPU float32 with op determinism (``train.deterministic``): the same ops on the same
# inputs in the same order give bit-identical results, in this process or another (the
# resumed weights here differ from the uninterrupted ones by exactly 0.0). The tolerance
# is a margin for other BLAS/oneDNN builds, far below what a missed piece of state does:
# measured on this task, the largest weight difference after 4 epochs is 1.2e-2 without
# EpochSeeds (dropout), 2.0e-3 without skipping the finished epochs' batches (data order
# and augmentation), 4.8e-4 without the callbacks' counters (learning rate schedule).
RTOL, ATOL = 1e-6, 1e-7


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    d = tmp_path_factory.mktemp("task")
    labels = write_head_ct_task(d / "dicom", n_patients=8, seed=3, slices=(3, 4), rows=64,
                                columns=64)
    return d, labels


def _config(task, **train):
    d, labels = task
    t = {"epochs": 4, "batch_size": 4, "verbose": 0, "tensorboard": False, "seed": 5,
         "deterministic": True, "lr_schedule": "constant",
         "reduce_lr_patience": 1, "reduce_lr_factor": 0.5, "early_stopping_patience": 3,
         **train}
    return RunConfig.from_dict({
        "data": {"folder": str(d / "dicom"), "index": str(d / "index.sqlite"),
                 "labels": str(labels), "cache": str(d / "cache"), "workers": 0,
                 "slices": {"mode": "central", "n": 2}},
        "split": {"train": 0.5, "val": 0.25, "test": 0.25, "seed": 1},
        # the default [preprocess.augment]: flips, rotation, zoom, shift, intensity, window
        "preprocess": {"size": 64},
        "model": {"name": "reference_cnn_dropout"}, "train": t})


def _weights(path):
    return [np.asarray(w) for w in keras.saving.load_model(path, compile=False).get_weights()]


def _predict_test(run, cache):
    from dicomml.data.tfdata import load_tensors
    from dicomml.train.run import load_run

    r = load_run(run)
    test = r.manifest[r.manifest["split"] == "test"]
    x = load_tensors(test, r.pipeline, cache_dir=cache, workers=0)
    return np.asarray(r.model().predict(x, verbose=0))


def _assert_same_run(a, b, cache):
    ha, hb = pd.read_csv(a / "history.csv"), pd.read_csv(b / "history.csv")
    assert list(ha.columns) == list(hb.columns)
    assert ha["epoch"].tolist() == hb["epoch"].tolist()
    for col in ha.columns:
        np.testing.assert_allclose(hb[col].to_numpy(float), ha[col].to_numpy(float),
                                   rtol=RTOL, atol=0, err_msg=col)
    sa = json.loads((a / "checkpoints" / "state.json").read_text())
    sb = json.loads((b / "checkpoints" / "state.json").read_text())
    assert sa["checkpoint"] == sb["checkpoint"] and sa["epoch"] == sb["epoch"]
    assert sb["best"] == pytest.approx(sa["best"], rel=RTOL)
    assert sb["callbacks"].keys() == sa["callbacks"].keys() == {"reduce_lr", "early_stopping"}
    for name in ("model.keras", f"checkpoints/{sa['checkpoint']}"):
        wa, wb = _weights(a / name), _weights(b / name)
        assert len(wa) == len(wb)
        for x, y in zip(wa, wb):
            np.testing.assert_allclose(y, x, rtol=RTOL, atol=ATOL, err_msg=name)
    pa, pb = _predict_test(a, cache), _predict_test(b, cache)
    assert pa.shape[0] > 0
    np.testing.assert_allclose(pb, pa, rtol=RTOL, atol=ATOL)


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted_run(task, tmp_path, monkeypatch):
    from dicomml.train import callbacks as cb_mod
    from dicomml.train.toml_io import write_toml

    cfg = _config(task)
    a = tmp_path / "a"
    Trainer(cfg).fit(a, progress=False)  # the reference: uninterrupted
    assert pd.read_csv(a / "history.csv")["epoch"].tolist() == [0, 1, 2, 3]

    # B: `dicomml train` in a subprocess, SIGKILLed once epoch 1's state is written
    cfg_path = tmp_path / "train.toml"
    write_toml(cfg_path, cfg.to_dict())
    b = tmp_path / "b"
    cmd = [sys.executable, "-m", "dicomml", "train", "--config", str(cfg_path), "--out",
           str(b), "--quiet"]
    env = dict(os.environ, PYTHONPATH=ROOT)
    errlog = tmp_path / "stderr.txt"
    state = b / "checkpoints" / "state.json"
    with open(errlog, "wb") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=err)
        deadline = time.time() + 300
        while time.time() < deadline:
            try:
                if json.loads(state.read_text())["epoch"] >= 1:
                    break
            except (OSError, ValueError):
                pass
            if proc.poll() is not None:
                pytest.fail(f"training ended early: {errlog.read_text()[-3000:]}")
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = json.loads(state.read_text())["epoch"]
    assert 1 <= done < 3
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"resumed at epoch {done + 2}" in out.stdout
    _assert_same_run(a, b, task[0] / "cache")

    # C: killed between writing epoch 1's checkpoint and its state.json: the state still
    # names epoch 0 (whose checkpoint is still there), epoch 1 is trained again
    class Killed(BaseException):
        pass

    real = cb_mod.atomic_write_text

    def dies_at_state_1(path, text, *args, **kwargs):
        if str(path).endswith("state.json") and json.loads(text)["epoch"] == 1:
            raise Killed
        return real(path, text, *args, **kwargs)

    c = tmp_path / "c"
    monkeypatch.setattr(cb_mod, "atomic_write_text", dies_at_state_1)
    with pytest.raises(Killed):
        Trainer(cfg).fit(c, progress=False)
    monkeypatch.setattr(cb_mod, "atomic_write_text", real)
    st = json.loads((c / "checkpoints" / "state.json").read_text())
    assert st["epoch"] == 0
    assert {"epoch-0000.keras", "epoch-0001.keras"} <= set(os.listdir(c / "checkpoints"))
    res = Trainer(cfg).fit(c, progress=False)
    assert res.resumed_from == 1 and res.epochs_run == 3
    _assert_same_run(a, c, task[0] / "cache")

    # a run that early stopping ended is not continued by a re-run with more epochs
    st = json.loads((c / "checkpoints" / "state.json").read_text())
    (c / "checkpoints" / "state.json").write_text(json.dumps({**st, "stopped": True}))
    res = Trainer(_config(task, epochs=6)).fit(c, progress=False)
    assert res.epochs_run == 0 and res.history["epoch"].tolist() == [0, 1, 2, 3]


@pytest.mark.slow
def test_resume_on_the_fly_with_capped_steps(task, tmp_path, monkeypatch):
    """Decoding on the fly, 1 of the 2 batches per epoch (epochs and passes over the data
    no longer coincide): the resumed run still skips exactly the batches already used."""
    monkeypatch.setenv("KERAS_MAX_STEPS_PER_EPOCH", "1")
    cfg = _config(task).replace(data={"cache": ""})
    a, c = tmp_path / "a", tmp_path / "c"
    Trainer(cfg).fit(a, progress=False)
    Trainer(cfg.replace(train={"epochs": 1})).fit(c, progress=False)
    res = Trainer(cfg).fit(c, progress=False)
    assert res.resumed_from == 1
    ha, hc = pd.read_csv(a / "history.csv"), pd.read_csv(c / "history.csv")
    assert ha["epoch"].tolist() == hc["epoch"].tolist() == [0, 1, 2, 3]
    for col in ha.columns:
        np.testing.assert_allclose(hc[col].to_numpy(float), ha[col].to_numpy(float),
                                   rtol=RTOL, atol=0, err_msg=col)
    for x, y in zip(_weights(a / "checkpoints" / "epoch-0003.keras"),
                    _weights(c / "checkpoints" / "epoch-0003.keras")):
        np.testing.assert_allclose(y, x, rtol=RTOL, atol=ATOL)


@pytest.mark.slow
def test_study_level_resume_with_cosine_schedule(task, tmp_path, monkeypatch):
    """Study bags, the cosine learning-rate schedule (in the optimizer's step count) and
    the augmentation draws of every bag: a run killed after epoch 1 and resumed ends as the
    uninterrupted one."""
    from dicomml.train import callbacks as cb_mod

    cfg = _config(task, lr_schedule="cosine", reduce_lr_patience=0).replace(
        model={"name": "reference_cnn", "level": "study", "pooling": "attention",
               "filters": [4, 8, 8], "dense_units": 8},
        data={"slices": {"mode": "all"}})
    a, c = tmp_path / "a", tmp_path / "c"
    Trainer(cfg).fit(a, progress=False)

    class Killed(BaseException):
        pass

    real = cb_mod.atomic_write_text

    def dies_after_state_1(path, text, *args, **kwargs):
        real(path, text, *args, **kwargs)
        if str(path).endswith("state.json") and json.loads(text)["epoch"] == 1:
            raise Killed

    monkeypatch.setattr(cb_mod, "atomic_write_text", dies_after_state_1)
    with pytest.raises(Killed):  # the same configuration (same schedule), killed
        Trainer(cfg).fit(c, progress=False)
    monkeypatch.setattr(cb_mod, "atomic_write_text", real)
    res = Trainer(cfg).fit(c, progress=False)
    assert res.resumed_from == 2
    ha, hc = pd.read_csv(a / "history.csv"), pd.read_csv(c / "history.csv")
    assert ha["epoch"].tolist() == hc["epoch"].tolist() == [0, 1, 2, 3]
    assert ha["learning_rate"].is_monotonic_decreasing  # the cosine schedule
    for col in ha.columns:
        np.testing.assert_allclose(hc[col].to_numpy(float), ha[col].to_numpy(float),
                                   rtol=RTOL, atol=0, err_msg=col)
    for x, y in zip(_weights(a / "checkpoints" / "epoch-0003.keras"),
                    _weights(c / "checkpoints" / "epoch-0003.keras")):
        np.testing.assert_allclose(y, x, rtol=RTOL, atol=ATOL)


def _tiny_model():
    inp = keras.Input((3,))
    out = keras.layers.Dense(1)(keras.layers.Dropout(0.5)(inp))
    m = keras.Model(inp, out)
    m.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    return m


def _counters(values, resume_after=None, restore=True):
    """Drive ReduceLROnPlateau + EarlyStopping through ``values`` (val_loss per epoch);
    with ``resume_after``, start over after that epoch (new model and callbacks, the
    learning rate from the "checkpoint", the counters from the JSON state when
    ``restore``). Returns the learning rate after each epoch and the stopping epoch."""
    lrs, stop, saved, lr = [], None, {}, 0.1
    spans = [range(len(values))] if resume_after is None else \
        [range(resume_after + 1), range(resume_after + 1, len(values))]
    for span in spans:
        m = _tiny_model()
        m.optimizer.learning_rate = lr
        rl = ResumableReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1,
                                        min_lr=0.0, resume=saved.get("lr"))
        es = ResumableEarlyStopping(monitor="val_loss", patience=3, resume=saved.get("es"))
        for c in (rl, es):
            c.set_model(m)
            c.on_train_begin()
        for e in span:
            rl.on_epoch_end(e, {"val_loss": values[e]})
            es.on_epoch_end(e, {"val_loss": values[e]})
            lrs.append(float(m.optimizer.learning_rate.numpy()))
            if m.stop_training and stop is None:
                stop = e
        lr = lrs[-1]
        if restore:
            saved = json.loads(json.dumps({"lr": rl.state(), "es": es.state()}))
    return lrs, stop


def test_callback_counters_survive_a_resume():
    values = [1.0, 0.9, 0.95, 0.97, 0.8, 0.85, 0.86, 0.87, 0.88]
    lrs, stop = _counters(values)
    # by hand (min_delta 1e-4, patience 1, cooldown 0): no improvement at epochs 2, 3, 5,
    # 6, 7, 8 → the rate halves each time; early stopping's wait reaches 3 at epoch 7
    np.testing.assert_allclose(lrs, [0.1, 0.1, 0.05, 0.025, 0.025, 0.0125, 0.00625,
                                     0.003125, 0.0015625], rtol=1e-6)
    assert stop == 7
    for k in (1, 3, 5):
        assert _counters(values, resume_after=k) == (lrs, stop), k
    # without the saved counters the resumed runs differ (so the check above is not void)
    assert _counters(values, resume_after=1, restore=False)[0] != lrs
    assert _counters(values, resume_after=5, restore=False)[1] != stop


def test_epoch_seeds_make_dropout_a_function_of_seed_and_epoch(tmp_path):
    import tensorflow as tf

    def masks(model, epoch):
        cb = EpochSeeds(11)
        cb.set_model(model)
        cb.on_epoch_begin(epoch)
        x = tf.ones((4, 3))
        return [model.layers[1](x, training=True).numpy() for _ in range(2)]

    keras.utils.set_random_seed(1)
    m = _tiny_model()
    assert len(seed_generators(m)) == 1
    a2 = masks(m, 2)
    a3 = masks(m, 3)
    m.save(tmp_path / "m.keras")
    keras.utils.set_random_seed(99)  # another global state: a loaded model draws elsewhere
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(masks(loaded, 2)[0], a2[0])
    np.testing.assert_array_equal(masks(loaded, 2)[1], a2[1])
    np.testing.assert_array_equal(masks(loaded, 3)[0], a3[0])
    assert not np.array_equal(a2[0], a3[0])  # another epoch, other draws


def test_skip_batches_continues_the_same_stream(tmp_path):
    """cache_dataset / OnTheFly with ``skip_batches=k``: batch i is batch k + i of the
    unskipped endless stream (order and augmentation), across epoch boundaries."""
    from dicomml.data.cache import TensorCache
    from dicomml.data.tfdata import OnTheFly, cache_dataset
    from tests.data._fake import FakePipeline, write_files

    ex = write_files(tmp_path / "src", range(6))
    pipe = FakePipeline()
    cache = TensorCache.for_pipeline(tmp_path / "cache", pipe, shard_size=4)
    cache.fill(ex, pipe, executor="inprocess", progress=False)
    from dicomml.preprocess.augment import AugmentConfig

    kw = dict(targets=ex["seed"].to_numpy() % 2, batch_size=4, shuffle=True, seed=3,
              repeat=True, augment=AugmentConfig(flip_ud=0.5))

    def take(ds, n):
        it = iter(ds)
        return [tuple(t.numpy() for t in next(it)) for _ in range(n)]

    full = take(cache_dataset(cache, ex, **kw), 8)  # 4 epochs of 4 + 2 examples
    with OnTheFly(ex, pipe, workers=0) as otf:
        otf_full = take(otf.dataset(**kw), 8)
        for k in (1, 2, 5):
            for got, want in zip(take(otf.dataset(skip_batches=k, **kw), 8 - k),
                                 otf_full[k:]):
                np.testing.assert_array_equal(got[0], want[0])
                np.testing.assert_array_equal(got[1], want[1])
    for k in (1, 2, 5):
        for got, want in zip(take(cache_dataset(cache, ex, skip_batches=k, **kw), 8 - k),
                             full[k:]):
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])
    # the stream is not trivially constant: epochs differ, images are transformed
    assert not np.array_equal(full[0][0], full[2][0])


def test_improves_is_one_rule_with_the_loss_breaking_auc_ties():
    assert improves(0.9, None, "max") and not improves(None, 0.9, "max")
    assert improves(0.95, 0.9, "max") and not improves(0.85, 0.9, "max")
    assert improves(0.85, 0.9, "min") and not improves(0.95, 0.9, "min")
    assert improves(1.0, 1.0, "max", tie=0.2, best_tie=0.3)  # same AUC, lower loss
    assert not improves(1.0, 1.0, "max", tie=0.3, best_tie=0.2)
    assert not improves(1.0, 1.0, "max")  # a tie without losses does not
    assert (tie_break_of("val_auc"), tie_break_of("auc"), tie_break_of("val_loss")) == \
        ("val_loss", "loss", None)


def _auc_stopping(rows, resume_after=None):
    """Early stopping on val_auc (patience 2) through ``rows`` of (val_auc, val_loss);
    the epoch it stops at, and its best epoch."""
    stop, saved = None, None
    spans = [range(len(rows))] if resume_after is None else \
        [range(resume_after + 1), range(resume_after + 1, len(rows))]
    for span in spans:
        m = _tiny_model()
        es = ResumableEarlyStopping(monitor="val_auc", patience=2, mode="max", resume=saved)
        es.set_model(m)
        es.on_train_begin()
        for e in span:
            es.on_epoch_end(e, {"val_auc": rows[e][0], "val_loss": rows[e][1]})
            if m.stop_training and stop is None:
                stop = e
        saved = json.loads(json.dumps(es.state()))
    return stop, es.best_epoch


def test_early_stopping_counts_a_tied_auc_with_a_lower_loss_as_the_checkpoint_does():
    # the AUC saturates at 1.0 at epoch 1 while the loss falls until epoch 4
    rows = [(0.8, 0.6), (1.0, 0.5), (1.0, 0.4), (1.0, 0.3), (1.0, 0.2), (1.0, 0.25),
            (1.0, 0.3), (1.0, 0.35), (1.0, 0.4)]
    # Keras alone would stop at epoch 3 (two epochs without a higher AUC after epoch 1)
    assert _auc_stopping(rows) == (6, 4)
    assert _auc_stopping(rows, resume_after=4) == (6, 4)  # best_tie survives the resume
    # and the checkpoint rule picks the same epoch
    rs_best, best = None, None
    for e, (auc, loss) in enumerate(rows):
        if improves(auc, best, "max", loss, rs_best):
            best, rs_best, best_epoch = auc, loss, e
    assert best_epoch == 4


def test_early_stopping_waits_its_start_epochs():
    """A model at chance for its first epochs (the best AUC at epoch 0 by luck) is not
    stopped before ``start_from_epoch`` (``[train] early_stopping_start``)."""
    rows = [(0.7, 0.69), (0.5, 0.7), (0.55, 0.7), (0.6, 0.69), (0.65, 0.68), (0.9, 0.5),
            (0.95, 0.4), (0.95, 0.45), (0.9, 0.5), (0.9, 0.5), (0.9, 0.5)]

    def stop_at(start):
        m = _tiny_model()
        es = ResumableEarlyStopping(monitor="val_auc", patience=2, mode="max",
                                    start_from_epoch=start)
        es.set_model(m)
        es.on_train_begin()
        for e, (auc, loss) in enumerate(rows):
            es.on_epoch_end(e, {"val_auc": auc, "val_loss": loss})
            if m.stop_training:
                return e, es.best_epoch
        return None, es.best_epoch

    assert stop_at(0) == (2, 0)  # stopped before the model took off at epoch 5
    assert stop_at(3) == (8, 6)


def test_early_stopping_start_is_checked():
    from dicomml.errors import ConfigError
    from dicomml.train.config import TrainConfig

    assert TrainConfig().early_stopping_start == 10
    for bad in (-1, 2.5, True, "3"):
        with pytest.raises(ConfigError, match="early_stopping_start"):
            TrainConfig(early_stopping_start=bad)


def test_reduce_lr_counts_a_tied_auc_with_a_lower_loss_as_an_improvement():
    """The rate is cut by the rule of the best checkpoint (:func:`improves`): a validation
    AUC that stays at 1.0 while the loss falls is no plateau (Keras's own callback halves
    the rate at epochs 2, 3 and 4 here: 0.1, 0.1, 0.05, 0.025, 0.0125); a tie with a higher
    loss is one."""
    m = _tiny_model()
    rl = ResumableReduceLROnPlateau(monitor="val_auc", factor=0.5, patience=1, min_lr=0.0,
                                    mode="max")
    rl.set_model(m)
    rl.on_train_begin()
    lrs = []
    for auc, loss in [(0.9, 0.5), (1.0, 0.4), (1.0, 0.3), (1.0, 0.2), (1.0, 0.25)]:
        rl.on_epoch_end(len(lrs), {"val_auc": auc, "val_loss": loss})
        lrs.append(float(m.optimizer.learning_rate.numpy()))
    np.testing.assert_allclose(lrs, [0.1, 0.1, 0.1, 0.1, 0.05], rtol=1e-6)
    assert (rl.best, rl.best_tie) == (1.0, 0.2)
    state = json.loads(json.dumps(rl.state()))
    assert state["best_tie"] == 0.2 and state["wait"] == 0 and state["cooldown_counter"] == 0
