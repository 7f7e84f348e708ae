"""Trainer: the run folder contract, resume (in process and after SIGKILL), load_run, CLI."""

from __future__ import annotations

import hashlib
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

from dicomml.data.manifest import MANIFEST_COLUMNS  # noqa: E402
from dicomml.testing.task import write_head_ct_task  # noqa: E402
from dicomml.train.config import RunConfig  # noqa: E402
from dicomml.train.run import load_run  # noqa: E402
from dicomml.train.trainer import Trainer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    d = tmp_path_factory.mktemp("task")
    labels = write_head_ct_task(d / "dicom", n_patients=8, seed=3, slices=(3, 4), rows=64,
                                columns=64)
    return d, labels


def _config(task, cache=True, **train):
    d, labels = task
    t = {"epochs": 2, "batch_size": 4, "verbose": 0, "tensorboard": True, **train}
    return RunConfig.from_dict({
        "data": {"folder": str(d / "dicom"), "index": str(d / "index.sqlite"),
                 "labels": str(labels), "cache": str(d / "cache") if cache else "",
                 "workers": 0, "slices": {"mode": "central", "n": 2}},
        "split": {"train": 0.5, "val": 0.25, "test": 0.25, "seed": 1},
        "model": {"name": "reference_cnn"}, "train": t})


def _sha_patient(pid):
    return hashlib.sha256(("dicomml-patient:" + pid).encode()).hexdigest()[:16]


@pytest.mark.slow
def test_run_folder_contract(task, tmp_path):
    import pydicom

    res = Trainer(_config(task)).fit(tmp_path / "run", progress=False)
    run = tmp_path / "run"
    for name in ("config.toml", "manifest.csv", "model.keras", "history.csv",
                 "checkpoints/state.json", "plots/training_curves.png",
                 "unmatched_labels.csv", "unlabeled_images.csv", "failed.csv"):
        assert (run / name).exists(), name
    assert any((run / "logs").rglob("events.out.tfevents.*"))
    man = pd.read_csv(run / "manifest.csv", dtype=str)
    assert list(man.columns) == MANIFEST_COLUMNS
    assert len(man) == 16 and set(man["split"]) == {"train", "val", "test"}
    # patient pseudonyms, computed independently from the files
    for path, key in zip(man["path"], man["patient_key"]):
        pid = str(pydicom.dcmread(path, stop_before_pixels=True).PatientID)
        assert key == _sha_patient(pid)
        assert pid not in (run / "manifest.csv").read_text()
    assert man.groupby("patient_key")["split"].nunique().max() == 1
    labels = pd.read_csv(task[1], dtype=str).set_index("StudyInstanceUID")["label"]
    assert (man["label"] == man["study_instance_uid"].map(labels)).all()
    hist = pd.read_csv(run / "history.csv")
    assert hist["epoch"].tolist() == [0, 1]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(hist.columns)
    assert res.epochs_run == 2 and res.resumed_from is None
    r = load_run(run)
    assert r.task == "classification" and r.classes == ["haemorrhage", "normal"]
    assert r.positive_class == "normal"  # the second class unless configured
    assert r.config.train.epochs == 2 and r.config.data.key == "study_instance_uid"
    assert r.pipeline.config.config_hash() == _config(task).preprocess_config().config_hash()
    m = r.model()
    assert m.output_shape == (None, 2)
    assert r.manifest["sop_instance_uid"].tolist() == man["sop_instance_uid"].tolist()
    # resume after the last epoch: nothing to do
    again = Trainer(_config(task)).fit(run, progress=False)
    assert again.epochs_run == 0 and again.resumed_from == 2


@pytest.mark.slow
def test_resume_continues_with_optimizer_state(task, tmp_path):
    run = tmp_path / "run"
    Trainer(_config(task, epochs=1)).fit(run, progress=False)
    ck = keras.saving.load_model(run / "checkpoints" / "epoch-0000.keras")
    steps = int(np.ceil((pd.read_csv(run / "manifest.csv").split == "train").sum() / 4))
    assert int(ck.optimizer.iterations.numpy()) == steps
    res = Trainer(_config(task, epochs=3)).fit(run, progress=False)
    assert res.resumed_from == 1 and res.epochs_run == 2
    assert pd.read_csv(run / "history.csv")["epoch"].tolist() == [0, 1, 2]
    ck = keras.saving.load_model(run / "checkpoints" / "epoch-0002.keras")
    assert int(ck.optimizer.iterations.numpy()) == 3 * steps
    assert sorted(os.listdir(run / "checkpoints")) == ["epoch-0002.keras", "state.json"]


@pytest.mark.slow
def test_on_the_fly_mirrored_and_env_caps(task, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_MAX_EPOCHS", "1")
    res = Trainer(_config(task, cache=False, epochs=5, tensorboard=False,
                          strategy="mirrored")).fit(
        tmp_path / "run", progress=False)
    assert res.history["epoch"].tolist() == [0]


@pytest.mark.slow
def test_kill_during_training_then_resume(task, tmp_path):
    cfg_path = tmp_path / "train.toml"
    from dicomml.train.toml_io import write_toml

    write_toml(cfg_path, _config(task, epochs=4).to_dict())
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "dicomml", "train", "--config", str(cfg_path), "--out",
           str(run), "--quiet"]
    env = dict(os.environ, PYTHONPATH=ROOT)
    errlog = tmp_path / "stderr.txt"
    with open(errlog, "wb") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
        state = run / "checkpoints" / "state.json"
        deadline = time.time() + 300
        while time.time() < deadline:
            if state.exists() and json.loads(state.read_text())["epoch"] >= 0:
                break
            if proc.poll() is not None:
                pytest.fail(f"training ended early: {errlog.read_text()[-3000:]}")
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = json.loads(state.read_text())["epoch"]
    assert done < 3
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"resumed at epoch {done + 2}" in out.stdout
    assert pd.read_csv(run / "history.csv")["epoch"].tolist() == [0, 1, 2, 3]
    assert (run / "model.keras").exists()


@pytest.mark.slow
def test_cli_preprocess_fills_cache(task, tmp_path, capsys):
    from dicomml.cli import main
    from dicomml.train.toml_io import write_toml

    cfg = _config(task)
    cfg = cfg.replace(data={"cache": str(tmp_path / "cache")})
    write_toml(tmp_path / "t.toml", cfg.to_dict())
    assert main(["preprocess", "--config", str(tmp_path / "t.toml"), "--workers", "0",
                 "--quiet"]) == 0
    assert "16 examples, 0 already cached, 16 computed" in capsys.readouterr().out
    assert main(["preprocess", "--config", str(tmp_path / "t.toml"), "--quiet"]) == 0
    assert "16 already cached, 0 computed" in capsys.readouterr().out
