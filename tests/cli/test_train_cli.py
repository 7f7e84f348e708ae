"""``dicomml train`` and ``dicomml preprocess``: help, usage errors, and a smoke run."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from dicomml.cli import main

SAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), "sample_dicom")


def test_help_lists_verbs(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--config" in out and "--out" in out and "resumes" in out
    assert main(["preprocess", "--help"]) == 0
    assert "--cache" in capsys.readouterr().out


def test_usage_errors(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path)]) == 2  # --config missing
    assert main(["train", "--config", str(tmp_path / "nope.toml"), "--out", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text('[data]\nfolder = "x"\nlabels = "y"\n[train]\nepochz = 1\n')
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "Did you mean 'epochs'" in capsys.readouterr().err
    assert main(["preprocess"]) == 2
    assert "either --config" in capsys.readouterr().err


def test_sample_config_is_valid():
    from dicomml.train.config import load_config

    cfg = load_config(os.path.join(SAMPLE, "train.toml"))
    assert cfg.data.folder == os.path.join(SAMPLE, "head_ct_task")
    assert cfg.data.cache == os.path.expanduser("~/.cache/dicomml/tensors")
    assert cfg.model.name == "reference_cnn" and cfg.train.batch_size == 32
    assert cfg.preprocess_config().normalize == "unit"


@pytest.mark.slow
def test_train_smoke_on_sample_task(tmp_path, monkeypatch, capsys):
    """The sample configuration end to end, capped to one epoch of two steps."""
    if not os.path.exists(os.path.join(SAMPLE, "head_ct_task", "labels.csv")):
        pytest.skip("sample_dicom/head_ct_task is not generated")
    from dicomml.train.config import load_config
    from dicomml.train.toml_io import write_toml

    cfg = load_config(os.path.join(SAMPLE, "train.toml"))
    cfg = cfg.replace(data={"cache": str(tmp_path / "cache"), "index": str(tmp_path / "i.db"),
                            "workers": 2})
    write_toml(tmp_path / "t.toml", cfg.to_dict())
    monkeypatch.setenv("KERAS_MAX_EPOCHS", "1")
    monkeypatch.setenv("KERAS_MAX_STEPS_PER_EPOCH", "2")
    assert main(["train", "--config", str(tmp_path / "t.toml"), "--out", str(tmp_path / "run"),
                 "--quiet"]) == 0
    assert "trained 1 epochs" in capsys.readouterr().out
    man = pd.read_csv(tmp_path / "run" / "manifest.csv")
    labels = pd.read_csv(os.path.join(SAMPLE, "head_ct_task", "labels.csv"))
    assert man["study_instance_uid"].nunique() == len(labels)
    assert set(man["split"]) == {"train", "val", "test"}


@pytest.mark.slow
def test_preprocess_source_folder(tmp_path, capsys):
    import numpy as np

    from dicomml.data import TensorCache
    from dicomml.io import open_index
    from dicomml.preprocess import Pipeline, PreprocessConfig
    from dicomml.testing.task import write_head_ct_task

    write_head_ct_task(tmp_path / "dicom", n_patients=2, seed=5, slices=(3, 3), rows=64,
                       columns=64)
    (tmp_path / "p.toml").write_text('[preprocess]\nnormalize = "zscore"\n')
    argv = ["preprocess", str(tmp_path / "dicom"), "--cache", str(tmp_path / "cache"),
            "--db", str(tmp_path / "i.db"), "--preprocess", str(tmp_path / "p.toml"),
            "--workers", "0", "--quiet"]
    assert main(argv) == 0
    assert "6 examples, 0 already cached, 6 computed in 1 shards (float16)" in \
        capsys.readouterr().out
    pipe = Pipeline(PreprocessConfig(normalize="zscore"))
    with open_index(db=tmp_path / "i.db") as ix:
        inst = ix.instances()
    inst = inst.assign(frame=0)
    got = TensorCache.for_pipeline(tmp_path / "cache", pipe).get(inst)
    want = np.stack([pipe.from_path(p) for p in inst["path"]]).astype(np.float16)
    np.testing.assert_array_equal(got, want.astype(np.float32))
