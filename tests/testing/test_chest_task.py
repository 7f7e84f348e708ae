"""The chest-nodule learning task: layout, labels, determinism, masks that match the pixels,
the nodule on a minority of slices, a valid CT IOD (dciodvfy)."""

from __future__ import annotations

import csv
import hashlib
import subprocess

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_rescale

from dicomml.errors import ConfigError
from dicomml.testing import read_task_masks, write_chest_nodule_task
from tests.conftest import require_tool


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    root = tmp_path_factory.mktemp("chest")
    labels = write_chest_nodule_task(root / "a", n_patients=6, seed=5, rows=96, slices=16)
    return root, labels


def _digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_labels_masks_and_minority_slices(task):
    root, labels = task
    study_rows = _rows(labels)
    assert study_rows[0] == ["StudyInstanceUID", "label"]
    study_label = dict(study_rows[1:])
    assert sorted(study_label.values()) == ["nodule"] * 3 + ["normal"] * 3
    slice_label = dict(_rows(root / "a" / "slice_labels.csv")[1:])
    masks = read_task_masks(root / "a")
    assert set(masks) == {k for k, v in slice_label.items() if v == "nodule"}
    per_study: dict[str, list] = {}
    nodule_hu: dict[str, list] = {}
    for p in sorted((root / "a").rglob("IM*")):
        ds = pydicom.dcmread(p)
        assert ds.Modality == "CT" and (ds.Rows, ds.Columns) == (96, 96)
        assert list(ds.WindowCenterWidthExplanation) == ["LUNG", "MEDIASTINUM"]
        hu = apply_rescale(ds.pixel_array, ds)
        uid = ds.SOPInstanceUID
        per_study.setdefault(ds.StudyInstanceUID, []).append(uid in masks)
        if uid in masks:  # the mask is the nodule: soft tissue inside aerated lung
            m = masks[uid]
            assert m.shape == hu.shape and 0 < m.sum() < 0.02 * m.size
            assert hu[m].max() > -400  # even a pole's partial-volume cut stands out
            nodule_hu.setdefault(ds.StudyInstanceUID, []).extend(hu[m].tolist())
    assert len(per_study) == 6
    for study, flags in per_study.items():
        assert len(flags) == 16
        if study_label[study] == "nodule":
            assert 3 <= sum(flags) <= 7  # a minority of the slices
            assert np.median(nodule_hu[study]) > -600  # lung is -860 HU
            assert max(nodule_hu[study]) > -400  # the solid core (partial volume at 96 rows)
        else:
            assert not any(flags)


def test_same_seed_same_bytes(task, tmp_path):
    root, _ = task
    write_chest_nodule_task(tmp_path / "b", n_patients=6, seed=5, rows=96, slices=16)
    assert _digest(root / "a") == _digest(tmp_path / "b")


@pytest.mark.tool
def test_dciodvfy_reports_no_error(task):
    exe = require_tool("dciodvfy")
    path = next((task[0] / "a").rglob("IM*"))
    out = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=120)
    assert [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("Error")] == []


@pytest.mark.parametrize("kw, match", [(dict(n_patients=1), "n_patients"),
                                       (dict(slices=8), "slices"),
                                       (dict(positive_fraction=2.0), "positive_fraction")])
def test_invalid_arguments(tmp_path, kw, match):
    with pytest.raises(ConfigError, match=match):
        write_chest_nodule_task(tmp_path, **kw)
