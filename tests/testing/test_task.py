"""The head-CT learning task: layout, labels, determinism, lesion visibility."""

from __future__ import annotations

import csv
import hashlib

import pydicom
import pytest
from pydicom.pixels import apply_rescale
from scipy.ndimage import distance_transform_edt

from dicomml.errors import ConfigError
from dicomml.testing import write_head_ct_task


def _tree_digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _studies(root):
    """{StudyInstanceUID: [datasets sorted by Instance Number]} and the folder of each."""
    out, folders = {}, {}
    for p in sorted(root.rglob("IM*")):
        ds = pydicom.dcmread(p)
        out.setdefault(ds.StudyInstanceUID, []).append(ds)
        folders.setdefault(ds.StudyInstanceUID, set()).add(p.parent.name)
    for v in out.values():
        v.sort(key=lambda d: int(d.InstanceNumber))
    return out, folders


def test_layout_labels_and_determinism(tmp_path):
    kw = dict(n_patients=6, seed=3, rows=64, columns=64, slices=(3, 4))
    csv_a = write_head_ct_task(tmp_path / "a", **kw)
    csv_b = write_head_ct_task(tmp_path / "b", **kw)
    assert csv_a == tmp_path / "a" / "labels.csv"
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")
    with open(csv_a, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["StudyInstanceUID", "label"]
    labels = dict(rows[1:])
    assert len(labels) == 6
    assert sorted(labels.values()) == ["haemorrhage"] * 3 + ["normal"] * 3
    studies, folders = _studies(tmp_path / "a")
    assert set(studies) == set(labels)
    assert all(len(f) == 1 for f in folders.values())          # one folder per study
    assert len({next(iter(f)) for f in folders.values()}) == 6
    assert len({v[0].PatientID for v in studies.values()}) == 6   # one patient per study
    for dss in studies.values():
        assert 3 <= len(dss) <= 4
        assert len({d.SeriesInstanceUID for d in dss}) == 1
        d = dss[0]
        assert d.Modality == "CT" and (d.Rows, d.Columns) == (64, 64)
        assert list(d.WindowCenterWidthExplanation) == ["BRAIN", "SUBDURAL", "BONE"]
        assert [float(v) for v in d.WindowCenter] == [40.0, 80.0, 600.0]
        assert [float(v) for v in d.WindowWidth] == [80.0, 200.0, 2800.0]


def test_every_positive_slice_shows_the_lesion(tmp_path):
    """Noise-free: a 60-90 HU blob away from bone on every positive slice, none on negatives.

    Brain tissue is at most 40 HU; only a lesion (or bone partial volume, excluded by the
    distance to bone) can exceed 52 HU inside the head.
    """
    csv_path = write_head_ct_task(tmp_path, n_patients=8, seed=5, rows=224, columns=224,
                                  noise=(0.0, 0.0))
    with open(csv_path, newline="", encoding="utf-8") as f:
        labels = {r["StudyInstanceUID"]: r["label"] for r in csv.DictReader(f)}
    studies, _ = _studies(tmp_path)
    for uid, dss in studies.items():
        for ds in dss:
            hu = apply_rescale(ds.pixel_array, ds)
            far_from_bone = distance_transform_edt(hu < 150) > 5
            hot = far_from_bone & (hu >= 52) & (hu <= 92)
            if labels[uid] == "haemorrhage":
                assert hot.sum() >= 3, (uid, int(ds.InstanceNumber))
            else:
                assert hot.sum() == 0, (uid, int(ds.InstanceNumber))


def test_invalid_arguments(tmp_path):
    with pytest.raises(ConfigError, match="n_patients"):
        write_head_ct_task(tmp_path, n_patients=1)
    with pytest.raises(ConfigError, match="positive_fraction"):
        write_head_ct_task(tmp_path, n_patients=4, positive_fraction=1.5)
