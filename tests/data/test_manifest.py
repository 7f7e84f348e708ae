"""Labels, manifest join, slice selection and patient-level splits."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from dicomml.data import (SliceSelection, SplitConfig, build_manifest, detect_key, patient_key,
                          read_labels, select_slices, split_by_patient)
from dicomml.errors import ConfigError


def _instances(n_patients=4, n_slices=5, rng=None, oblique=False):
    """A fake Index.instances(): one study/series per patient, slices shuffled."""
    rng = rng or np.random.default_rng(0)
    rows = []
    ori = [1, 0, 0, 0, 1, 0]
    normal = np.array([0, 0, 1.0])
    if oblique:
        c, s = np.cos(0.3), np.sin(0.3)
        ori = [1, 0, 0, 0, c, s]
        normal = np.cross(ori[:3], ori[3:])
    for p in range(n_patients):
        z = rng.permutation(n_slices)
        for k, zi in enumerate(z):
            pos = np.array([5.0, -3.0, 0.0]) + normal * (2.5 * zi)
            rows.append({"path": f"/d/p{p}/{k}.dcm", "patient_id": f"PID{p}",
                         "study_instance_uid": f"1.2.{p}", "series_instance_uid": f"1.2.{p}.1",
                         "sop_instance_uid": f"1.2.{p}.1.{zi}", "is_image": True,
                         "number_of_frames": 1, "instance_number": n_slices - zi,
                         "image_position": "\\".join(str(v) for v in pos),
                         "image_orientation": "\\".join(str(v) for v in ori)})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("col, canon", [("StudyInstanceUID", "study_instance_uid"),
                                        ("series_instance_uid", "series_instance_uid"),
                                        ("SOPInstanceUID", "sop_instance_uid"),
                                        ("PatientID", "patient_id")])
def test_detect_key_spellings(col, canon):
    assert detect_key(["label", col]) == (col, canon)


def test_detect_key_prefers_most_specific_and_errors():
    assert detect_key(["StudyInstanceUID", "SOPInstanceUID", "label"])[1] == "sop_instance_uid"
    with pytest.raises(ConfigError, match="key column"):
        detect_key(["foo", "label"])


def test_read_labels(tmp_path):
    p = tmp_path / "l.csv"
    p.write_text("StudyInstanceUID,diagnosis,Split\n1.2.0, normal ,TRAIN\n1.2.1,bleed,test\n"
                 "1.2.1,bleed,test\n")
    df, key = read_labels(p, label_column="diagnosis")
    assert key == "study_instance_uid"
    assert df.to_dict("list") == {"study_instance_uid": ["1.2.0", "1.2.1"],
                                  "label": ["normal", "bleed"], "split": ["train", "test"]}
    p.write_text("StudyInstanceUID,label\n1.2.0,a\n1.2.0,b\n")
    with pytest.raises(ConfigError, match="conflicting"):
        read_labels(p)
    with pytest.raises(ConfigError, match="label column"):
        read_labels(p, label_column="nope")


def test_patient_key_is_sha256_pseudonym():
    want = hashlib.sha256(b"dicomml-patient:PID7").hexdigest()[:16]
    assert patient_key("PID7") == want and len(want) == 16


def test_manifest_join_reports_unmatched_and_unlabeled():
    inst = _instances(4, 3)
    labels = pd.DataFrame({"study_instance_uid": ["1.2.0", "1.2.1", "1.2.2", "9.9.9"],
                           "label": ["normal", "haemorrhage", "normal", "normal"]})
    m = build_manifest(inst, labels, "study_instance_uid")
    assert m.task == "classification" and m.classes == ["haemorrhage", "normal"]
    assert len(m.df) == 9
    assert m.unmatched_labels.to_dict("list") == {"study_instance_uid": ["9.9.9"],
                                                  "label": ["normal"]}
    assert sorted(m.unlabeled["study_instance_uid"].unique()) == ["1.2.3"]
    assert len(m.unlabeled) == 3
    assert "patient_id" not in m.unlabeled.columns
    assert set(m.df["patient_key"]) == {patient_key(f"PID{i}") for i in range(3)}
    t = dict(zip(m.df["label"], m.df["target"]))
    assert t == {"haemorrhage": 0, "normal": 1}
    s = m.summary()
    assert s["unmatched_labels"] == 1 and s["unlabeled_images"] == 3 and s["examples"] == 9


def test_manifest_patient_key_labels_never_leak_ids(tmp_path):
    inst = _instances(2, 2)
    labels = pd.DataFrame({"patient_id": ["PID0", "SECRET"], "label": ["1.5", "2.25"]})
    m = build_manifest(inst, labels, "patient_id")
    assert m.task == "regression" and m.df["target"].tolist() == [1.5, 1.5]
    m.write(tmp_path)
    for name in ("manifest.csv", "unmatched_labels.csv", "unlabeled_images.csv"):
        text = (tmp_path / name).read_text()
        assert "PID" not in text and "SECRET" not in text
    assert patient_key("SECRET") in (tmp_path / "unmatched_labels.csv").read_text()


@pytest.mark.parametrize("oblique", [False, True])
def test_slices_ordered_along_normal(oblique):
    inst = _instances(1, 7, oblique=oblique)
    out = select_slices(inst, SliceSelection("all"))
    assert out["sop_instance_uid"].tolist() == [f"1.2.0.1.{z}" for z in range(7)]
    central = select_slices(inst, SliceSelection("central", n=3))
    assert central["sop_instance_uid"].tolist() == ["1.2.0.1.2", "1.2.0.1.3", "1.2.0.1.4"]
    every = select_slices(inst, SliceSelection("every", every=3))
    assert every["sop_instance_uid"].tolist() == ["1.2.0.1.0", "1.2.0.1.3", "1.2.0.1.6"]


def test_slices_fallback_instance_number_and_multiframe():
    inst = _instances(1, 4).drop(columns=["image_position"])
    out = select_slices(inst, SliceSelection())
    assert out["instance_number"].tolist() == [1, 2, 3, 4]
    mf = pd.DataFrame([{"path": "/x", "series_instance_uid": "1", "sop_instance_uid": "1.1",
                        "number_of_frames": 5}])
    out = select_slices(mf, SliceSelection("central", n=2))
    assert out["frame"].tolist() == [1, 2]
    with pytest.raises(ConfigError, match="did you mean|mode"):
        SliceSelection("middle")


def _patients_df(n_patients=60, seed=3):
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        lab = "pos" if p % 3 == 0 else "neg"
        for s in range(int(rng.integers(1, 6))):
            rows.append({"patient_key": f"p{p:03d}", "label": lab, "target": int(lab == "pos")})
    return pd.DataFrame(rows)


def test_split_by_patient_no_overlap_stratified_reproducible():
    df = _patients_df()
    cfg = SplitConfig(train=0.6, val=0.2, test=0.2, seed=11)
    s = split_by_patient(df, cfg)
    per_patient = s.groupby(df["patient_key"]).nunique()
    assert (per_patient == 1).all()  # no patient in two splits
    pat = df.assign(split=s).groupby("patient_key").first()
    counts = pat["split"].value_counts()
    assert counts.to_dict() == {"train": 36, "val": 12, "test": 12}
    for name in ("train", "val", "test"):  # 1/3 positive overall
        frac = (pat[pat.split == name].label == "pos").mean()
        assert abs(frac - 1 / 3) <= 0.1
    assert s.equals(split_by_patient(df, cfg))
    assert not s.equals(split_by_patient(df, SplitConfig(train=0.6, val=0.2, test=0.2, seed=12)))


def test_split_small_strata_keep_every_split():
    df = _patients_df(10)
    s = split_by_patient(df, SplitConfig(train=0.6, val=0.2, test=0.2, seed=0))
    pat = df.assign(split=s).groupby("patient_key").first()
    assert pat["split"].value_counts().to_dict() == {"train": 6, "val": 2, "test": 2}


def test_split_column():
    df = pd.DataFrame({"patient_key": ["a", "a", "b"], "label": ["x", "x", "y"],
                       "split": ["train", "train", "validation"]})
    s = split_by_patient(df, SplitConfig(method="column"))
    assert s.tolist() == ["train", "train", "val"]
    df.loc[1, "split"] = "test"
    with pytest.raises(ConfigError, match="more than one split"):
        split_by_patient(df, SplitConfig(method="column"))


def test_regression_split_stratifies_by_quantile():
    rng = np.random.default_rng(5)
    df = pd.DataFrame({"patient_key": [f"p{i}" for i in range(40)],
                       "target": rng.normal(size=40)})
    df["label"] = df["target"].astype(str)
    s = split_by_patient(df, SplitConfig(train=0.5, val=0.25, test=0.25), task="regression")
    assert s.value_counts().to_dict() == {"train": 20, "val": 10, "test": 10}
