"""One example selection and one run reader, through the three callers.

On one DICOM folder (the head-CT task plus an MR image of another modality) and one run
configuration ([data] modality = "CT", two central slices per series), the trainer
(prepare_manifest), evaluation on new labelled data and prediction choose the same
examples, equal to an oracle computed from the files with pydicom alone. The run folder's
config.toml is written as the previous version wrote it (``workers = -1``): load_run reads
it, its config_hash is that of the file as written (sha256 of its canonical JSON, computed
here independently) and the SRs print it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

import keras  # noqa: F401 - a hard dependency: a broken install fails

from dicomml.errors import ConfigError
from tests.conftest import testdata
from tests.evaluate.runfolder import copy_run, dicom_folder, shared_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from dicomml.data.slices import SliceSelection
    from dicomml.train.config import RunConfig
    from dicomml.train.toml_io import write_toml

    shared = shared_run(tmp_path_factory)
    root = tmp_path_factory.mktemp("one_selection")
    run = copy_run(shared, root / "run")
    data = dicom_folder(shared, root / "data")
    shutil.copy(testdata("MR_small.dcm"), data / "other_modality.dcm")
    labels = Path(RunConfig.from_run_dir(run).data.labels)
    cfg = RunConfig.from_run_dir(run).replace(data={
        "folder": str(data), "index": str(root / "train_index.sqlite"),
        "slices": SliceSelection("central", n=2)})
    written = cfg.to_dict()
    written["data"]["workers"] = -1  # what the previous version wrote
    write_toml(run / "config.toml", written)
    return run, cfg, data, labels, root


def _oracle(data: Path, labels: Path) -> set:
    """(SOP Instance UID, frame 0) of the two central slices (along the slice normal) of
    every labelled CT series, from the files read by pydicom."""
    studies = set(pd.read_csv(labels, dtype=str)["StudyInstanceUID"])
    series: dict[str, list] = {}
    for path in sorted(p for p in data.rglob("*") if p.is_file()):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if ds.Modality != "CT" or ds.StudyInstanceUID not in studies:
            continue
        o = np.asarray(ds.ImageOrientationPatient, float)
        z = float(np.dot(np.asarray(ds.ImagePositionPatient, float), np.cross(o[:3], o[3:])))
        series.setdefault(ds.SeriesInstanceUID, []).append((z, ds.SOPInstanceUID))
    out = set()
    for rows in series.values():
        rows.sort()
        start = (len(rows) - 2) // 2
        out |= {(sop, 0) for _, sop in rows[start:start + 2]}
    return out


def _rows(df: pd.DataFrame) -> set:
    return set(zip(df["sop_instance_uid"].astype(str), df["frame"].astype(int)))


def test_the_three_callers_choose_the_same_examples(setup, tmp_path):
    from dicomml.data.selection import select_examples
    from dicomml.evaluate.evaluation import evaluate_run
    from dicomml.evaluate.prediction import predict
    from dicomml.io import open_index
    from dicomml.train.trainer import prepare_manifest

    run, cfg, data, labels, root = setup
    expected = _oracle(data, labels)
    assert len(expected) >= 2 * 10

    manifest, db = prepare_manifest(cfg, progress=False)  # the trainer
    trained = manifest.df
    assert _rows(trained) == expected and len(trained) == len(expected)

    with open_index(db=db) as idx:
        inst = idx.instances()
    plain = select_examples(inst, cfg.data).examples  # no labels: what predict selects
    assert _rows(plain) == expected
    # same order (study, series, slice position) and the same patient pseudonyms
    pd.testing.assert_frame_equal(
        plain, trained[list(plain.columns)].reset_index(drop=True))
    assert plain["patient_key"].str.fullmatch(r"[0-9a-f]{16}").all()

    evaluate_run(run, data=data, labels=labels, workers=0, plots=False, n_resamples=20,
                 progress=False)
    evaluated = pd.read_csv(run / "predictions.csv", dtype={"sop_instance_uid": str})
    assert _rows(evaluated) == expected

    res = predict(run, data, tmp_path / "out", workers=0, progress=False, write_sc=False)
    predicted = pd.read_csv(res.predictions_csv, dtype={"sop_instance_uid": str})
    assert _rows(predicted) == expected
    # the MR image was left out by the input contract, with its rule
    assert any(s["modality"] == "MR" and s["decision"] == "skipped" for s in res.series)


def test_a_run_folder_of_the_previous_version_keeps_its_config_hash(setup, tmp_path):
    from dicomml.evaluate.prediction import predict
    from dicomml.train.run import config_hash, load_run

    run_dir, cfg, data, _, _ = setup
    with open(run_dir / "config.toml", "rb") as f:
        as_written = tomllib.load(f)
    assert as_written["data"]["workers"] == -1
    text = json.dumps(as_written, sort_keys=True, separators=(",", ":"), default=str)
    expected = hashlib.sha256(text.encode()).hexdigest()[:12]

    run = load_run(run_dir)
    assert run.config_hash == expected
    assert run.config.data.workers is None  # -1 read as "every CPU"
    assert run.config == cfg  # the typed configuration, read by attribute
    assert config_hash(run.config.to_dict()) != expected  # the file's hash, not a re-resolve
    assert run.positive_index == run.classes.index("haemorrhage") == 1
    assert run.model() is run.model()  # loaded once

    res = predict(run_dir, data, tmp_path / "out", workers=0, progress=False, write_sc=False)
    assert res.sr_paths
    from dicomml.report.sr import read_sr

    version = read_sr(res.sr_paths[0]).algorithm.version  # TID 4019 DCM 111003
    assert version.endswith(f" config {expected}"), version


def test_predict_and_evaluate_refuse_a_bad_workers_value(setup, tmp_path):
    from dicomml.evaluate.evaluation import evaluate_run
    from dicomml.evaluate.prediction import predict

    run, _, data, labels, _ = setup
    with pytest.raises(ConfigError, match="every CPU"):
        predict(run, data, tmp_path / "out", workers=-2, progress=False)
    with pytest.raises(ConfigError, match="every CPU"):
        evaluate_run(run, data=data, labels=labels, workers=-2, plots=False, progress=False)


def test_load_run_of_a_folder_that_is_no_run():
    from dicomml.evaluate.runio import load_run

    with pytest.raises(ConfigError, match="not a run folder"):
        load_run(Path(testdata("MR_small.dcm")).parent)
