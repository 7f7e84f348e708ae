"""The input contract: learned from a real scan, overrides, JSON round trip, every rule."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dicomml.data.contract import RULES, InputContract, SeriesDecision, window_ranges
from dicomml.errors import ConfigError
from dicomml.preprocess import PreprocessConfig

CT = "1.2.840.10008.5.1.4.1.1.2"
SEG = "1.2.840.10008.5.1.4.1.1.66.4"


@pytest.fixture(scope="module")
def head_ct(tmp_path_factory):
    from dicomml.io import scan
    from dicomml.testing.task import write_head_ct_task

    d = tmp_path_factory.mktemp("contract")
    write_head_ct_task(d / "dicom", n_patients=2, seed=5, slices=(2, 3), rows=64, columns=64)
    res = scan(d / "dicom", d / "index.sqlite", progress=False, workers=0)
    with res.index() as idx:
        return idx.instances(), res.db_path


def _base(**kw):
    row = {"series_key": "s", "study_instance_uid": "1.2.3", "series_instance_uid": "1.2.3.4",
           "is_image": True, "object_kind": "image", "modality": "CT", "sop_class_uid": CT,
           "photometric_interpretation": "MONOCHROME2", "body_part_examined": "HEAD",
           "image_type": "ORIGINAL\\PRIMARY\\AXIAL", "pixel_spacing": (0.5, 0.5),
           "rows": 512, "columns": 512, "bits_stored": 12, "pixel_representation": 0,
           "rescale_slope": 1.0, "rescale_intercept": -1024.0}
    row.update(kw)
    return row


def test_learned_from_a_real_scan(head_ct):
    inst, _db = head_ct
    c = InputContract.learn(inst, preprocess=PreprocessConfig())
    assert c.modalities == ("CT",)
    assert c.sop_classes == (CT,)
    assert c.photometric == ("MONOCHROME2",)
    assert c.image_types == ("ORIGINAL",)
    assert "LOCALIZER" in c.excluded_image_types
    assert c.rows == (32, 128) and c.columns == (32, 128)
    sp = {float(v) for t in inst["pixel_spacing"] for v in t}
    assert c.pixel_spacing == (round(min(sp) / 1.5, 4), round(max(sp) * 1.5, 4))
    assert c.windows == ((0.0, 80.0), (-20.0, 180.0), (-500.0, 1300.0))
    assert c.learned_from == len(inst)
    # the training series themselves are all eligible
    decisions = c.check(inst)
    assert len(decisions) == inst["series_key"].nunique()
    assert all(d.eligible and d.rule == "" for d in decisions)


def test_learn_from_index_keeps_only_the_given_instances(head_ct):
    inst, db = head_ct
    one = inst[inst["series_key"] == inst["series_key"].iloc[0]]
    c = InputContract.learn_from_index(db, one["sop_instance_uid"])
    assert c.learned_from == len(one)


def test_json_round_trip_and_run_dir(tmp_path, head_ct):
    c = InputContract.learn(head_ct[0], {"body_parts": ["HEAD", "brain"]},
                            preprocess=PreprocessConfig())
    assert c.body_parts == ("HEAD", "BRAIN") and c.overrides == ("body_parts",)
    c.write(tmp_path)
    d = json.loads((tmp_path / "contract.json").read_text())
    assert d["modalities"] == ["CT"] and d["windows"][0] == [0.0, 80.0]
    assert InputContract.from_run_dir(tmp_path) == c
    assert InputContract.from_dict(c.to_dict()) == c


def test_missing_or_bad_contract_files(tmp_path):
    with pytest.raises(ConfigError, match="contract.json is missing.*--force"):
        InputContract.from_run_dir(tmp_path)
    (tmp_path / "contract.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="not an input contract"):
        InputContract.from_run_dir(tmp_path)
    (tmp_path / "contract.json").write_text('{"modalities": ["CT"], "colour": 1}')
    with pytest.raises(ConfigError, match="unknown keys \\['colour'\\]"):
        InputContract.from_run_dir(tmp_path)


def test_overrides_are_checked():
    with pytest.raises(ConfigError, match="Did you mean 'modalities'"):
        InputContract().with_overrides({"modality": ["CT"]})
    with pytest.raises(ConfigError, match="pixel_spacing must be"):
        InputContract(pixel_spacing="wide")
    with pytest.raises(ConfigError, match="low 2.0 is above high 1.0"):
        InputContract(rows=[2, 1])


def test_config_contract_table_is_validated_and_saved():
    from dicomml.train.config import RunConfig

    base = {"data": {"folder": "/x", "labels": "/x/labels.csv"}}
    cfg = RunConfig.from_dict({**base, "contract": {"body_parts": ["HEAD"]}})
    assert cfg.to_dict()["contract"] == {"body_parts": ["HEAD"]}
    assert "contract" not in RunConfig.from_dict(base).to_dict()
    with pytest.raises(ConfigError, match="unknown setting 'bodyparts' in \\[contract\\]"):
        RunConfig.from_dict({**base, "contract": {"bodyparts": ["HEAD"]}})


CONTRACT = InputContract(modalities=["CT"], sop_classes=[CT], photometric=["MONOCHROME2"],
                         body_parts=["HEAD"], image_types=["ORIGINAL"],
                         pixel_spacing=(0.3, 1.0), rows=(256, 1024), columns=(256, 1024),
                         windows=[(0, 80), (-500, 1300)])


@pytest.mark.parametrize("rule, change, words", [
    ("image", {"is_image": False, "object_kind": "sr"}, "not an image"),
    ("modality", {"modality": "MR"}, "(0008,0060) Modality is 'MR'"),
    ("sop_class", {"sop_class_uid": SEG}, "Segmentation Storage"),
    ("photometric", {"photometric_interpretation": "MONOCHROME1"}, "'MONOCHROME1'"),
    ("body_part", {"body_part_examined": "CHEST"}, "Body Part Examined is 'CHEST'"),
    ("image_type", {"image_type": "DERIVED\\SECONDARY"}, "Image Type is 'DERIVED\\SECONDARY'"),
    ("image_type", {"image_type": "ORIGINAL\\PRIMARY\\LOCALIZER"}, "never 'LOCALIZER'"),
    ("pixel_spacing", {"pixel_spacing": (0.1, 0.1)}, "Pixel Spacing is 0.1\\0.1 mm"),
    ("matrix", {"rows": 64}, "(0028,0010) Rows is 64"),
    ("value_range", {"rescale_intercept": 3000.0}, "every pixel would become one constant"),
])
def test_each_rule(rule, change, words):
    df = pd.DataFrame([_base(), _base(**change), _base()])
    (d,) = CONTRACT.check(df)
    assert isinstance(d, SeriesDecision)
    assert (d.eligible, d.rule) == (False, rule)
    assert words in d.reason and "(1 of 3 instances)" in d.reason
    assert d.study_instance_uid == "1.2.3" and d.n_instances == 3
    assert rule in RULES


def test_first_rule_wins_and_missing_values_are_not_checked():
    df = pd.DataFrame([_base(modality="MR", rows=64, series_key="a"),
                       _base(body_part_examined=None, pixel_spacing=None, image_type="",
                             series_key="b")])
    a, b = CONTRACT.check(df)
    assert a.rule == "modality" and b.eligible
    # a series table (Index.series()) checks the rules it has columns for
    series = pd.DataFrame([{"series_key": "x", "modality": "US", "is_image": True},
                           {"series_key": "y", "modality": "CT", "is_image": True}])
    x, y = CONTRACT.check(series)
    assert x.rule == "modality" and y.eligible
    with pytest.raises(ConfigError, match="series_key or series_instance_uid"):
        CONTRACT.check(pd.DataFrame({"modality": ["CT"]}))


def test_window_ranges():
    assert window_ranges(PreprocessConfig(windows=["brain", "40/400", "bone"])) == (
        (0.0, 80.0), (-160.0, 240.0), (-500.0, 1300.0))
    assert window_ranges(PreprocessConfig(windows=["p1-p99"], mode="replicate")) == ()


@pytest.mark.slow
def test_trainer_writes_the_contract(tmp_path):
    import keras  # noqa: F401 - a hard dependency: a broken install fails
    from dicomml.testing.task import write_head_ct_task
    from dicomml.train.config import RunConfig
    from dicomml.train.trainer import Trainer

    labels = write_head_ct_task(tmp_path / "dicom", n_patients=4, seed=2, slices=(2, 2),
                                rows=48, columns=48)
    cfg = RunConfig.from_dict({
        "data": {"folder": str(tmp_path / "dicom"), "index": str(tmp_path / "i.sqlite"),
                 "labels": str(labels), "workers": 0},
        "split": {"train": 0.5, "val": 0.25, "test": 0.25, "seed": 1},
        "model": {"name": "reference_cnn"},
        "train": {"epochs": 1, "batch_size": 4, "verbose": 0, "tensorboard": False},
        "contract": {"body_parts": ["HEAD", "BRAIN"]}})
    Trainer(cfg).fit(tmp_path / "run", progress=False)
    c = InputContract.from_run_dir(tmp_path / "run")
    man = pd.read_csv(tmp_path / "run" / "manifest.csv")
    assert c.learned_from == man["sop_instance_uid"].nunique()
    assert c.modalities == ("CT",) and c.body_parts == ("HEAD", "BRAIN")
    assert c.overrides == ("body_parts",) and c.rows == (24, 96)


def test_instance_failures_per_row():
    df = pd.DataFrame([_base(), _base(modality="MR"), _base(rows=64, columns=2000)])
    f = CONTRACT.instance_failures(df)
    assert f["rule"].tolist() == ["", "modality", "matrix"]
    assert f["reason"].iloc[0] == "" and "'MR'" in f["reason"].iloc[1]
    assert f["reason"].iloc[2].startswith("(0028,0010) Rows is 64")
