"""``dicomml evaluate`` through the real CLI entry point."""

from __future__ import annotations

import json

import pytest

import keras  # noqa: F401 - a hard dependency: a broken install fails

from dicomml.cli import main  # noqa: E402
from tests.evaluate.runfolder import copy_run, shared_run  # noqa: E402


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return shared_run(tmp_path_factory)


def test_help_has_example(capsys):
    assert main(["evaluate", "--help"]) == 0
    out = capsys.readouterr().out
    assert "dicomml evaluate runs/" in out and "--labels" in out and "--threshold" in out


@pytest.mark.slow
def test_evaluate_prints_headline(shared, tmp_path, capsys):
    run = copy_run(shared, tmp_path / "run")
    status = main(["evaluate", str(run), "--workers", "0", "--resamples", "50",
                   "--threshold", "0.5", "--no-progress"])
    out = capsys.readouterr().out
    assert status == 0
    metrics = json.loads((run / "metrics.json").read_text())
    auc = metrics["image"]["roc_auc"]
    lo, hi = auc["ci95"]
    assert f"roc_auc {auc['value']:.3f} [{lo:.3f}, {hi:.3f}]" in out
    assert "study_max" in out and "study_mean" in out and "specificity" in out
    assert "operating point 0.5 (fixed)" in out
    assert (run / "predictions.csv").is_file() and (run / "plots" / "roc_image.png").is_file()


def test_errors_are_one_line_exit_2(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    (tmp_path / "run").mkdir()
    assert main(["evaluate", str(tmp_path / "run")]) == 2
    assert "config.toml" in capsys.readouterr().err


@pytest.mark.slow
def test_data_needs_labels(shared, tmp_path, capsys):
    run = copy_run(shared, tmp_path / "run")
    assert main(["evaluate", str(run), "--data", str(shared.parent / "data"),
                 "--no-progress"]) == 2
    assert "--labels" in capsys.readouterr().err
