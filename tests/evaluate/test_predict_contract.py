"""predict on a mixed PACS export: the input contract, honest skips, --force, --json, PHI.

The run is the shared tiny head-CT run (tests/evaluate/runfolder.py, with its
contract.json); the export is dicomml.testing.mixed (head CT plus everything a real export
mixes in). Every written SR / SC / Parametric Map is checked with dciodvfy and read back
with highdicom.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pydicom
import pytest

import keras  # noqa: F401 - a hard dependency: a broken install fails

from dicomml.cli import main  # noqa: E402
from dicomml.evaluate.prediction import predict  # noqa: E402
from dicomml.report.sr import read_sr  # noqa: E402
from dicomml.testing.mixed import write_mixed_export  # noqa: E402
from tests.evaluate.runfolder import shared_run  # noqa: E402
from tests.pacs.orthanc import orthanc  # noqa: E402,F401 - fixture
from tests.report.helpers import dciodvfy_errors  # noqa: E402

NAMES = ["localizer", "rendering_3d", "ct_monochrome1", "ct_out_of_window",
         "secondary_capture", "segmentation", "structured_report", "head_ct_256",
         "head_ct_fine", "chest_ct", "cr_monochrome1", "mr", "us_colour"]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return shared_run(tmp_path_factory)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    return write_mixed_export(root / "export", seed=3, rows=64)


@pytest.fixture(scope="module")
def result(shared, mixed, tmp_path_factory):
    out = tmp_path_factory.mktemp("mixed_out")
    return predict(shared, mixed.root, out, threshold=0.0, workers=0, progress=False)


def _series(result, mixed, name):
    uid = mixed.by_name(name).series_instance_uid
    (s,) = [s for s in result.series if s["series_instance_uid"] == uid]
    return s


@pytest.mark.parametrize("name", NAMES)
def test_each_other_series_is_listed_with_its_rule(result, mixed, name):
    want = mixed.by_name(name)
    s = _series(result, mixed, name)
    assert (s["decision"], s["rule"]) == ("skipped", want.rule), s
    rows = [k for k in result.skipped if k["series_instance_uid"] == want.series_instance_uid
            and k["level"] == "series"]
    assert len(rows) == 1 and rows[0]["rule"] == want.rule and rows[0]["reason"]
    csv = pd.read_csv(result.skipped_csv, dtype=str).fillna("")
    assert ((csv["series_instance_uid"] == want.series_instance_uid)
            & (csv["rule"] == want.rule)).sum() == 1


@pytest.mark.tool
def test_only_head_ct_gets_predictions_and_srs(result, mixed):
    head = mixed.by_name("head_ct")
    assert _series(result, mixed, "head_ct")["decision"] == "predict"
    pred = pd.read_csv(result.predictions_csv, dtype={"series_instance_uid": str})
    ok = pred["prob_haemorrhage"].notna()
    assert set(pred.loc[ok, "series_instance_uid"]) == {head.series_instance_uid}
    assert [read_sr(p).study_instance_uid for p in result.sr_paths] == [
        head.study_instance_uid]
    assert result.n_studies == 1 and not result.forced
    for p in (*result.sr_paths, *result.sc_paths, *result.pm_paths):
        errors, out = dciodvfy_errors(p)
        assert errors == [], (p.name, out)
    import highdicom as hd

    assert len(result.pm_paths) == len(result.sc_paths) == 1
    pm = hd.imread(result.pm_paths[0])
    assert pm.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30"
    ref = pm.ReferencedImageSequence[0].ReferencedSOPInstanceUID
    src = pydicom.dcmread(next(p for p in head.paths
                               if pydicom.dcmread(p).SOPInstanceUID == ref))
    assert pm.pixel_array.shape == (src.Rows, src.Columns)  # the source grid, not 224
    assert pm.FrameOfReferenceUID == src.FrameOfReferenceUID
    sc = hd.imread(result.sc_paths[0])
    assert sc.BurnedInAnnotation == "YES"
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == ref
    # the source's pixels keep their place: the top-left block is the source's size
    assert sc.pixel_array.shape[0] > src.Rows and sc.pixel_array.shape[1] > src.Columns


def test_constant_images_are_skipped_never_a_probability(result, mixed):
    air = mixed.by_name("above_head")
    assert _series(result, mixed, "above_head")["decision"] == "predict"  # headers are fine
    images = [k for k in result.skipped if k["series_instance_uid"] == air.series_instance_uid]
    assert {k["rule"] for k in images} == {"constant"} and len(images) == len(air.paths)
    # its study has nothing else to predict: a study-level skip, no SR
    assert any(k["level"] == "study" and k["study_instance_uid"] == air.study_instance_uid
               for k in result.skipped)
    pred = pd.read_csv(result.predictions_csv, dtype=str, keep_default_na=False)
    rows = pred[pred["series_instance_uid"] == air.series_instance_uid]
    assert len(rows) == len(air.paths)
    assert (rows["prob_haemorrhage"] == "").all() and rows["reason"].str.contains(
        "one constant value").all()


def test_predictions_csv_decisions_and_thresholds(result):
    pred = pd.read_csv(result.predictions_csv, keep_default_na=False)
    for col in ("image_prediction", "image_threshold", "study_probability",
                "study_prediction", "study_threshold", "aggregation", "input_contract",
                "reason"):
        assert col in pred, col
    nan = pred["prob_haemorrhage"] == ""
    assert (pred.loc[nan, "reason"] != "").all()        # no NaN without a reason
    assert (pred.loc[~nan, "reason"] == "").all()
    good = pred[~nan]
    assert (good["image_threshold"].astype(float) == 0.0).all()
    assert (good["study_prediction"] == "present").all()
    assert (good["image_prediction"] == "haemorrhage").all()
    assert (good["input_contract"] == "met").all()
    sr = read_sr(result.sr_paths[0])
    assert "threshold=0" in sr.algorithm.parameters
    assert "input_contract=met" in sr.algorithm.parameters
    assert sr.probability == pytest.approx(good["study_probability"].astype(float).max())


@pytest.mark.slow
def test_force_predicts_outside_the_contract_and_says_so(shared, mixed, tmp_path):
    res = predict(shared, mixed.root, tmp_path / "out", threshold=0.0, workers=0,
                  progress=False, force=True, write_sc=False)
    decisions = {s["series_instance_uid"]: s for s in res.series}
    for name in ("head_ct_256", "head_ct_fine", "chest_ct", "localizer", "mr",
                 "cr_monochrome1"):
        assert decisions[mixed.by_name(name).series_instance_uid]["decision"] == "forced"
    for name in ("segmentation", "us_colour", "structured_report"):  # never given
        d = decisions[mixed.by_name(name).series_instance_uid]
        assert d["decision"] == "skipped" and "never given to the model" in d["reason"]
    assert res.forced
    srs = {read_sr(p).study_instance_uid: read_sr(p) for p in res.sr_paths}
    chest = srs[mixed.by_name("chest_ct").study_instance_uid]
    assert any(p.startswith("input_contract=FORCED") and "body_part" in p
               for p in chest.algorithm.parameters)
    ds = pydicom.dcmread(next(p for p in res.sr_paths
                              if read_sr(p).study_instance_uid
                              == mixed.by_name("chest_ct").study_instance_uid))
    assert "FORCED" in ds.SeriesDescription
    pred = pd.read_csv(res.predictions_csv, dtype=str, keep_default_na=False)
    chest_rows = pred[pred["series_instance_uid"] == mixed.by_name("chest_ct")
                      .series_instance_uid]
    assert (chest_rows["input_contract"] == "forced (body_part)").all()


def _identifiers(root) -> set[str]:
    out = set()
    for p in root.rglob("*"):
        if p.is_file():
            ds = pydicom.dcmread(p, stop_before_pixels=True)
            out |= {str(ds.PatientName), str(ds.PatientID)}
            out |= {v for v in str(ds.PatientName).split("^") if len(v) > 3}
    return {v for v in out if v}


@pytest.mark.slow
def test_cli_json_exit_status_stderr_and_no_identifiers(shared, mixed, tmp_path, capsys,
                                                        caplog, monkeypatch):
    from dicomml.cli import predict as predict_cli

    monkeypatch.setattr(predict_cli, "SHOW_SKIPPED", 3)
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "out"
    status = main(["predict", str(shared), str(mixed.root), "--out", str(out), "--workers",
                   "0", "--threshold", "0", "--no-progress", "--json"])
    cap = capsys.readouterr()
    assert status == 1  # something was skipped
    doc = json.loads(cap.out)
    assert {"studies", "series", "skipped", "threshold", "operating_point"} <= set(doc)
    assert len(doc["series"]) == len(mixed.series)
    assert len(doc["skipped"]) == len(pd.read_csv(out / "skipped.csv"))
    assert doc["studies"][0]["study_key"] and len(doc["studies"]) == 1
    # stderr: the count by rule, a few lines, and where the full list is (never cut silently)
    assert f"skipped {len(doc['skipped'])} inputs" in cap.err
    assert f"more (all in {out / 'skipped.csv'})" in cap.err
    assert "series modality" in cap.err.split("\n")[0]
    secrets = _identifiers(mixed.root)
    assert secrets
    texts = {"stdout": cap.out, "stderr": cap.err,
             "logs": "\n".join(r.getMessage() for r in caplog.records)}
    texts |= {p.name: p.read_text(encoding="utf-8") for p in out.glob("*.csv")}
    for where, text in texts.items():
        leaks = sorted(s for s in secrets if s in text)
        assert not leaks, (where, leaks)


def test_run_without_contract_needs_force(shared, mixed, tmp_path):
    from tests.evaluate.runfolder import copy_run

    from dicomml.errors import ConfigError

    run = copy_run(shared, tmp_path / "run")
    (run / "contract.json").unlink()
    with pytest.raises(ConfigError, match="contract.json is missing.*--force"):
        predict(run, mixed.by_name("head_ct").paths[0].parent, tmp_path / "o", workers=0,
                progress=False)


@pytest.mark.slow
def test_index_database_as_input(shared, mixed, tmp_path):
    from dicomml.io import scan

    head = mixed.by_name("head_ct")
    res = scan(head.paths[0].parent, tmp_path / "i.sqlite", progress=False, workers=0)
    out = predict(shared, res.db_path, tmp_path / "o", threshold=0.0, workers=0,
                  progress=False, write_sc=False)
    assert out.ok and out.n_studies == 1 and len(out.sr_paths) == 1
    assert np.isfinite(pd.read_csv(out.predictions_csv)["prob_haemorrhage"]).all()


@pytest.mark.tool
@pytest.mark.slow
def test_results_round_trip_through_orthanc(orthanc, result, mixed, tmp_path):  # noqa: F811
    """Orthanc stores the SR, the Secondary Capture and the Parametric Map, returns them."""
    import highdicom as hd

    from dicomml.pacs import DicomwebPacs
    from dicomml.pacs.remote import store_results

    head = mixed.by_name("head_ct")
    pacs = DicomwebPacs(orthanc.url, timeout=30, retries=1)
    pacs.store(list(head.paths))
    objects = [*result.sr_paths, *result.sc_paths, *result.pm_paths]
    stored = store_results(pacs, objects, head.study_instance_uid, progress=False)
    sent = {str(pydicom.dcmread(p).SOPInstanceUID) for p in objects}
    assert set(stored.stored) == sent
    back = pacs.retrieve(head.study_instance_uid, tmp_path / "back", progress=False)
    got = {}
    for p in back.fetched:
        ds = pydicom.dcmread(p)
        got[str(ds.SOPInstanceUID)] = p
    assert sent <= set(got)
    for p in objects:
        uid = str(pydicom.dcmread(p).SOPInstanceUID)
        again = hd.imread(got[uid]) if "SR_" not in p.name else hd.sr.srread(got[uid])
        assert again.SOPInstanceUID == uid
    assert read_sr(got[str(pydicom.dcmread(result.sr_paths[0]).SOPInstanceUID)]) \
        .study_instance_uid == head.study_instance_uid


#: pydicom's and pydicom-data's CT image files (CT Image Storage and Enhanced CT).
REAL_CT = ["CT_small.dcm", "J2K_pixelrep_mismatch.dcm", "bad_sequence.dcm",
           "eCT_Supplemental.dcm", "explicit_VR-UN.dcm", "693_J2KI.dcm", "693_J2KR.dcm",
           "693_UNCI.dcm", "693_UNCR.dcm", "2062", "6293"]


@pytest.mark.tool
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # bad_sequence.dcm's UIDs
def test_real_ct_samples_get_an_sr_each_or_a_reasoned_skip(shared, tmp_path):
    """Real files: enhanced CT (geometry in functional groups), Patient Orientation L\\PF,
    UN elements, a malformed birth date; outside the tiny run's contract, so forced."""
    import shutil

    from tests.conftest import testdata

    data = tmp_path / "real"
    data.mkdir()
    for k, name in enumerate(REAL_CT):
        shutil.copy(testdata(name), data / f"{k:02d}_{name}")
    # a malformed optional attribute, as real exports have them
    bad = data / "99_bad_birth_date.dcm"
    ds = pydicom.dcmread(testdata("CT_small.dcm"))
    ds.PatientBirthDate = "19010203"  # made malformed in the bytes below, as writers do
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.3"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(bad)
    raw = bad.read_bytes()
    assert raw.count(b"19010203") == 1
    bad.write_bytes(raw.replace(b"19010203", b"19XX0203"))
    studies = {}
    for p in data.iterdir():
        studies.setdefault(str(pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID),
                           []).append(p.name)

    plain = predict(shared, data, tmp_path / "plain", workers=0, progress=False)
    assert plain.sr_paths == () and all(s["decision"] == "skipped" for s in plain.series)
    assert all(s["rule"] and s["reason"] for s in plain.series)  # listed, with the rule

    res = predict(shared, data, tmp_path / "out", threshold=0.0, workers=0, progress=False,
                  force=True)
    with_sr = {read_sr(p).study_instance_uid for p in res.sr_paths}
    reasons = {k["study_instance_uid"]: k["reason"] for k in res.skipped
               if k["level"] == "study"}
    for study, names in studies.items():
        assert study in with_sr or reasons.get(study), (names, res.skipped)
    for reason in reasons.values():  # never an exception name alone
        assert len(reason) > 40 and not reason.rstrip(")").endswith("Error")
    enhanced = str(pydicom.dcmread(testdata("eCT_Supplemental.dcm"),
                                   stop_before_pixels=True).StudyInstanceUID)
    assert enhanced in with_sr
    birth = "1.2.826.0.1.3680043.8.498.1"
    assert birth in with_sr
    note = [n for n in res.notes if "PatientBirthDate (0010,0030)" in n]
    assert note and note[0].startswith("study ") and "19XX" not in note[0]
    sr = pydicom.dcmread(next(p for p in res.sr_paths if birth in p.name))
    assert sr.PatientBirthDate == ""
    from pydicom.uid import UID

    assert len(res.sc_paths) == len(res.sr_paths) and len(res.pm_paths) >= 4
    for p in (*res.sr_paths, *res.sc_paths, *res.pm_paths):
        if UID(str(pydicom.dcmread(p).StudyInstanceUID)).is_valid:  # else: as the PACS has it
            errors, out = dciodvfy_errors(p)
            assert errors == [], (p.name, out)
    # no output names a patient: not the skips, not the notes, not the tables
    secrets = set()
    for p in data.iterdir():
        d = pydicom.dcmread(p, stop_before_pixels=True)
        secrets |= {v for v in (str(d.get("PatientName", "")), str(d.get("PatientID", "")))
                    if len(v) > 4}  # not "0010": a tag group in the notes
    text = json.dumps([res.skipped, res.notes]) + "".join(
        q.read_text() for q in (tmp_path / "out").glob("*.csv"))
    assert secrets and not [s for s in secrets if s in text]


def test_an_undecodable_image_is_skipped_with_the_decoders_reason(shared, mixed, tmp_path):
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless

    src = sorted(mixed.by_name("head_ct").paths)
    data = tmp_path / "in"
    data.mkdir()
    for p in src:
        (data / p.name).write_bytes(p.read_bytes())
    ds = pydicom.dcmread(src[0])
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51 this is not a JPEG 2000 codestream" * 4])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.save_as(data / src[0].name, enforce_file_format=True)
    res = predict(shared, data, tmp_path / "out", threshold=0.0, workers=0, progress=False,
                  write_sc=False)
    (bad,) = [k for k in res.skipped if k["level"] == "image"]
    assert bad["rule"] == "unreadable" and bad["path"] == str(data / src[0].name)
    assert bad["reason"].startswith("frame 0 could not be read: ") and len(bad["reason"]) > 40
    assert len(res.sr_paths) == 1  # the study's other images still make its SR
    pred = pd.read_csv(res.predictions_csv, keep_default_na=False)
    assert (pred.loc[pred["prob_haemorrhage"] == "", "reason"] == bad["reason"]).all()
