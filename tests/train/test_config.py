"""Training configuration: TOML loading, defaults, resolved round trip, class weights."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight

from dicomml.errors import ConfigError
from dicomml.train.config import RunConfig, load_config
from dicomml.train.toml_io import dumps_toml
from dicomml.train.trainer import class_weights, env_cap


def _write(tmp_path, text):
    p = tmp_path / "t.toml"
    p.write_text(text)
    return p


def test_defaults_generalize_on_small_data(tmp_path):
    cfg = load_config(_write(tmp_path, '[data]\nfolder = "d"\nlabels = "d/l.csv"\n'))
    t = cfg.train
    assert (t.optimizer, t.learning_rate, t.weight_decay, t.lr_schedule, t.epochs,
            t.batch_size) == ("adamw", 1e-3, 1e-4, "cosine", 30, 32)
    assert (t.monitor, t.early_stopping_patience, t.balance) == ("auto", 8, "study")
    assert cfg.monitor("classification") == "val_auc"
    assert cfg.monitor("regression") == "val_loss"
    assert cfg.monitor("classification", has_val=False) == "auc"
    assert t.metrics == ("accuracy",) and t.loss == ""
    assert (cfg.model.name, cfg.model.level) == ("reference_cnn", "slice")
    assert cfg.data.folder == str(tmp_path / "d")  # relative to the config file
    assert cfg.data.labels == str(tmp_path / "d" / "l.csv")


def test_resolved_config_round_trips(tmp_path):
    text = """
[data]
folder = "/x"
labels = "/x/labels.csv"
classes = ["normal", "haemorrhage"]
[data.slices]
mode = "central"
n = 4
[split]
seed = 3
train = 0.6
[preprocess]
windows = ["brain", "subdural", [70.0, 50.0]]
[model]
name = "reference_cnn_dropout"
dropout = 0.25
[train]
epochs = 2
class_weights = {haemorrhage = 2.0, normal = 1.0}
balance = "none"
"""
    cfg = load_config(_write(tmp_path, text))
    d = cfg.to_dict()
    assert d["data"]["slices"] == {"mode": "central", "n": 4, "every": 1}
    assert d["model"] == {"name": "reference_cnn_dropout", "level": "slice", "dropout": 0.25}
    assert d["preprocess"]["windows"] == ["brain", "subdural", [70.0, 50.0]]
    again = RunConfig.from_dict(tomllib.loads(dumps_toml(d)))
    assert again.to_dict() == d
    assert again == cfg


@pytest.mark.parametrize("text, match", [
    ('[data]\nfolder="a"\nlabels="b"\n[train]\nepoch = 3\n', "Did you mean 'epochs'"),
    ('[data]\nfolder="a"\nlabels="b"\n[train]\noptimizer = "adamm"\n', "optimizer"),
    ('[data]\nfolder="a"\nlabels="b"\n[data.slices]\nmode = "middle"\n', "mode"),
    ('[data]\nfolder="a"\n', "labels"),
    ('[data]\nfolder="a"\nlabels="b"\n[preprocess]\nnormalise = "unit"\n', "normalize"),
    # the whole file is checked when it is loaded, before any scan
    ('[data]\nfolder="a"\nlabels="b"\nclasses=["normal", "nodule"]\npositive_class="Nodule"\n',
     "Did you mean 'nodule'"),
    ('[data]\nfolder="a"\nlabels="b"\n[model]\nlevel = "studies"\n', "Did you mean 'study'"),
    ('[data]\nfolder="a"\nlabels="b"\n[model]\nlevel = "study"\npooling = "sum"\n',
     "pooling"),
    ('[data]\nfolder="a"\nlabels="b"\n[train]\naugment = ["flip_lr"]\n',
     r"preprocess\.augment"),
    ('[data]\nfolder="a"\nlabels="b"\n[train]\nclass_weights = "balanced"\n', "balance"),
    ('[data]\nfolder="a"\nlabels="b"\n[train]\nreduce_lr_patience = 2\n', "lr_schedule"),
    ('[data]\nfolder="a"\nlabels="b"\ntask="regression"\n[model]\nlevel="study"\n',
     "classification"),
    ('[data]\nfolder="a"\nlabels="b"\n[preprocess]\nsize = 16\n', "at least 22 x 22"),
    ('[data]\nfolder="a"\nlabels="b"\n[preprocess]\nsize = 24\n[model]\nname = "resnet50"\n',
     "at least 32"),
])
def test_config_errors(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        load_config(_write(tmp_path, text))


def test_balanced_class_weights_match_sklearn():
    y = np.array([0] * 30 + [1] * 10 + [2] * 5)
    want = compute_class_weight("balanced", classes=np.arange(3), y=y)
    got = class_weights(y, 3, "balanced")
    np.testing.assert_allclose([got[i] for i in range(3)], want, rtol=1e-12)
    assert class_weights(y, 3, "none") is None
    assert class_weights(y, 3, {"b": 4.0}, classes=("a", "b", "c")) == {0: 1.0, 1: 4.0, 2: 1.0}
    with pytest.raises(ConfigError):
        class_weights(y, 3, {"z": 1.0}, classes=("a", "b", "c"))


def test_env_cap(monkeypatch):
    monkeypatch.delenv("KERAS_MAX_EPOCHS", raising=False)
    assert env_cap("KERAS_MAX_EPOCHS", 10) == 10
    monkeypatch.setenv("KERAS_MAX_EPOCHS", "2")
    assert env_cap("KERAS_MAX_EPOCHS", 10) == 2
    assert env_cap("KERAS_MAX_EPOCHS", 1) == 1
    monkeypatch.setenv("KERAS_MAX_EPOCHS", "x")
    with pytest.raises(ConfigError):
        env_cap("KERAS_MAX_EPOCHS", 3)


def test_shuffled_labels_are_independent_of_truth():
    import pandas as pd

    from dicomml.train.trainer import _shuffle_train_labels

    rng = np.random.default_rng(0)
    rows = []
    for s in range(40):
        y = int(s < 16)
        split = "train" if s % 5 else "test"
        rows += [{"study_instance_uid": f"s{s:02d}", "target": y, "split": split}] * 3
    df = pd.DataFrame(rows).iloc[rng.permutation(120)].reset_index(drop=True)
    out = _shuffle_train_labels(df, seed=1)
    assert out.loc[df.split == "test", "target"].equals(df.loc[df.split == "test", "target"])
    tr = out[out.split == "train"].groupby("study_instance_uid")["target"].agg(["first",
                                                                                 "nunique"])
    assert (tr["nunique"] == 1).all()  # a study keeps one label
    truth = df[df.split == "train"].groupby("study_instance_uid")["target"].first()
    table = pd.crosstab(truth, tr["first"])
    # 20 negative, 12 positive training studies (overall 62.5 % / 37.5 %): each true class
    # gets that mix, by cumulative rounding (numpy rounds 12.5 and 7.5 to even)
    np.testing.assert_array_equal(table.to_numpy(), [[12, 8], [8, 4]])
    assert _shuffle_train_labels(df, seed=1).equals(out)


def test_shuffled_labels_cover_the_validation_split():
    """The best epoch is chosen on the validation split: its labels are shuffled with the
    training ones (jointly stratified), the test split's are kept."""
    import pandas as pd

    from dicomml.train.trainer import _shuffle_train_labels

    rows = [{"study_instance_uid": f"s{s:02d}", "target": int(s < 20),
             "split": ("test", "val", "train", "train", "train")[s % 5]} for s in range(40)]
    df = pd.DataFrame(rows)
    out = _shuffle_train_labels(df, seed=3)
    assert out.loc[df.split == "test", "target"].equals(df.loc[df.split == "test", "target"])
    fit = df.split != "test"
    table = pd.crosstab(df.loc[fit, "target"], out.loc[fit, "target"]).to_numpy()
    np.testing.assert_array_equal(table, [[8, 8], [8, 8]])  # independent of the truth
    val = df.split == "val"
    assert (out.loc[val, "target"] != df.loc[val, "target"]).any()


def test_loading_checks_without_importing_tensorflow(tmp_path):
    """The whole file is validated at load, before the scan and the TensorFlow import."""
    import subprocess
    import sys

    p = _write(tmp_path, '[data]\nfolder="a"\nlabels="b"\n[model]\nlevel="study"\n')
    code = ("import sys; from dicomml.train.config import load_config; "
            f"load_config({str(p)!r}); print('keras' in sys.modules, "
            "'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.split() == ["False", "False"], out.stderr[-2000:]


def test_run_config_from_run_dir_is_the_config_training_wrote(tmp_path):
    """``RunConfig.from_run_dir`` reads RUN_DIR/config.toml back as the typed configuration
    (what predict and evaluate use); a folder without it is no run folder."""
    from dicomml.errors import ConfigError
    from dicomml.train.config import RunConfig, load_config
    from dicomml.train.run import load_run
    from dicomml.train.toml_io import write_toml

    cfg = load_config(Path(__file__).resolve().parents[2] / "sample_dicom" / "train.toml")
    write_toml(tmp_path / "config.toml", cfg.to_dict())
    back = RunConfig.from_run_dir(tmp_path)
    assert back == cfg and back.data.classes == ("normal", "haemorrhage")
    run = load_run(tmp_path)
    assert run.config == cfg and run.classes == ["normal", "haemorrhage"]
    assert run.pipeline.config == cfg.preprocess_config()
    with pytest.raises(ConfigError, match="not a run folder"):
        RunConfig.from_run_dir(tmp_path / "nothing")
