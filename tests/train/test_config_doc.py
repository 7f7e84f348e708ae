"""The configuration reference covers every key, parses as the real config, and is current."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from dicomml.train.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from dicomml.train.config_doc import EXAMPLES, config_reference, markdown

ROOT = Path(__file__).resolve().parents[2]


def test_every_key_is_documented_with_its_default():
    text = config_reference()
    for cls, skip in ((DataConfig, {"slices"}), (ModelConfig, {"kwargs"}), (TrainConfig, ())):
        for f in dataclasses.fields(cls):
            if f.name in skip:
                continue
            m = re.search(rf"^  {f.name} = (.*?)(    #|$)", text, re.M)
            assert m, f.name
            line = text[m.end():].split("\n", 2)
            assert len(line[1].strip()) > 10, f"{f.name} has no description"


def test_examples_are_valid_configurations(tmp_path):
    for title, body in EXAMPLES.items():
        cfg = RunConfig.from_dict(tomllib.loads(body), base_dir=tmp_path)
        assert cfg.data.labels, title
    assert RunConfig.from_dict(tomllib.loads(list(EXAMPLES.values())[0])).model.level == "study"


def test_docs_file_is_current_and_train_help_shows_it():
    assert (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8") == markdown()
    out = subprocess.run([sys.executable, "-m", "dicomml", "train", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    assert "--split-seed" in out.stdout and "[train]" in out.stdout
    assert "  level = \"slice\"" in out.stdout
