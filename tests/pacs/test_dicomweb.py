"""DICOMweb against a real Orthanc (QIDO-RS, WADO-RS, STOW-RS) in a private network namespace."""

from __future__ import annotations

import logging
import time

import pydicom
import pytest

from dicomml.pacs import DicomwebPacs, PacsError
from tests.pacs._data import (assert_same_instance, by_sop, ct_study, header, jpeg2000_mr,
                              sr_for)
from tests.pacs.orthanc import orthanc, running_orthanc  # noqa: F401 - fixtures

pytestmark = pytest.mark.tool


@pytest.fixture(scope="module")
def stored(orthanc, tmp_path_factory):  # noqa: F811
    """A CT study and a JPEG 2000 MR stored with STOW-RS."""
    src = tmp_path_factory.mktemp("src")
    ct = ct_study(src / "ct", seed=11)
    pacs = DicomwebPacs(orthanc.url, timeout=10, retries=1)
    res = pacs.store([src / "ct", jpeg2000_mr()])
    return {"ct": ct, "pacs": pacs, "result": res}


def test_store_reports_every_instance(stored):
    expected = set(by_sop(stored["ct"])) | {str(header(jpeg2000_mr()).SOPInstanceUID)}
    assert set(stored["result"].stored) == expected
    assert stored["result"].skipped == []


def test_echo(stored):
    assert stored["pacs"].echo() is True


def test_retrieve_same_instances_and_pixels(stored, tmp_path):
    ct = stored["ct"]
    study = str(header(ct[0]).StudyInstanceUID)
    res = stored["pacs"].retrieve(study, tmp_path, progress=False)
    assert res.listed == len(ct) and len(res.fetched) == len(ct) and res.present == 0
    got = by_sop(res.paths)
    src = by_sop(ct)
    assert set(got) == set(src)
    for uid, path in src.items():
        assert_same_instance(got[uid], path)
        assert got[uid] == tmp_path / study / str(header(path).SeriesInstanceUID) / f"{uid}.dcm"
    again = stored["pacs"].retrieve(study, tmp_path, progress=False)
    assert again.fetched == [] and again.present == len(ct) and again.listed == len(ct)


def test_retrieve_keeps_compressed_transfer_syntax(stored, tmp_path):
    mr = header(jpeg2000_mr())
    res = stored["pacs"].retrieve(str(mr.StudyInstanceUID), tmp_path, progress=False)
    (path,) = res.paths
    assert_same_instance(path, jpeg2000_mr())
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"


def test_qido_by_study_uid_modality_and_dates(stored):
    pacs = stored["pacs"]
    ct = header(stored["ct"][0])
    mr = header(jpeg2000_mr())
    study = str(ct.StudyInstanceUID)
    (row,) = pacs.query("study", StudyInstanceUID=study)
    assert row["StudyInstanceUID"] == study
    assert row["StudyDate"] == ct.StudyDate
    assert row["NumberOfStudyRelatedInstances"] == str(len(stored["ct"]))
    assert row["ModalitiesInStudy"] == "CT"
    ct_studies = {r["StudyInstanceUID"] for r in pacs.query("study", Modality="CT")}
    mr_studies = {r["StudyInstanceUID"] for r in pacs.query("study", Modality="MR")}
    assert study in ct_studies and study not in mr_studies
    assert str(mr.StudyInstanceUID) in mr_studies
    year = ct.StudyDate[:4]
    inside = pacs.query("study", StudyDate=f"{year}0101-{year}1231")
    assert study in {r["StudyInstanceUID"] for r in inside}
    before = pacs.query("study", StudyDate=f"{int(year) - 2}0101-{int(year) - 1}1231")
    assert study not in {r["StudyInstanceUID"] for r in before}
    (series,) = pacs.query("series", StudyInstanceUID=study)
    assert series["SeriesInstanceUID"] == ct.SeriesInstanceUID and series["Modality"] == "CT"
    patients = {r["PatientID"] for r in pacs.query("patient")}
    assert {ct.PatientID, mr.PatientID} <= patients


def test_pushed_sr_is_found_in_its_study(stored, tmp_path):
    pacs = stored["pacs"]
    sr_path = sr_for(stored["ct"], tmp_path / "sr.dcm", seed=5)
    sr = header(sr_path)
    res = pacs.store([sr_path])
    assert res.stored == [str(sr.SOPInstanceUID)]
    study = str(sr.StudyInstanceUID)
    series = {r["SeriesInstanceUID"]: r for r in pacs.query("series", StudyInstanceUID=study)}
    assert series[str(sr.SeriesInstanceUID)]["Modality"] == "SR"
    inst = pacs.query("instance", StudyInstanceUID=study, SeriesInstanceUID=sr.SeriesInstanceUID)
    assert [(r["SOPInstanceUID"], r["SOPClassUID"]) for r in inst] == [
        (str(sr.SOPInstanceUID), "1.2.840.10008.5.1.4.1.1.88.34")]


def test_rejected_object_names_sop_uid_and_status(stored, tmp_path):
    ds = pydicom.dcmread(stored["ct"][0])
    ds.SOPInstanceUID = pydicom.uid.generate_uid(prefix="1.2.826.0.1.3680043.10.999.")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    del ds.SeriesInstanceUID  # Orthanc refuses an instance without (0020,000E)
    ds.save_as(tmp_path / "bad.dcm")
    with pytest.raises(PacsError) as info:
        stored["pacs"].store([tmp_path / "bad.dcm"])
    assert info.value.failures == [(ds.SOPInstanceUID, "0xC000")]
    msg = str(info.value)
    assert ds.SOPInstanceUID in msg and "0xC000" in msg
    assert str(ds.PatientName) not in msg and ds.PatientID not in msg


def test_missing_study_is_an_empty_retrieval(stored, tmp_path):
    res = stored["pacs"].retrieve("1.2.3.4.5.6.7.8.9", tmp_path, progress=False)
    assert res.listed == 0 and res.paths == []


def test_killed_mid_transfer_then_resumed(running_orthanc, stored, tmp_path):
    """Orthanc dies after k instances: PacsError fast; after a restart only the rest come."""
    ct = ct_study(tmp_path / "src", seed=12)
    study = str(header(ct[0]).StudyInstanceUID)
    k = 2
    pacs = DicomwebPacs(running_orthanc.url, timeout=3, retries=2, backoff=0.2, total=10)
    pacs.store(ct)
    tmp_path = tmp_path / "out"
    seen = []

    def kill_after_k(path):
        seen.append(path)
        if len(seen) == k:
            running_orthanc.kill()

    t0 = time.monotonic()
    with pytest.raises(PacsError) as info:
        pacs.retrieve(study, tmp_path, progress=False, callback=kill_after_k)
    assert time.monotonic() - t0 < 10
    assert info.value.transient and running_orthanc.url in str(info.value)
    present = sorted(p for p in tmp_path.rglob("*.dcm"))
    assert present == sorted(seen) and len(present) == k
    assert not list(tmp_path.rglob("*.tmp"))
    running_orthanc.start()
    res = pacs.retrieve(study, tmp_path, progress=False)
    assert res.present == k and len(res.fetched) == len(ct) - k
    assert not set(res.fetched) & set(seen)
    got, src = by_sop(res.paths), by_sop(ct)
    assert set(got) == set(src)
    for uid in src:
        assert_same_instance(got[uid], src[uid])


def test_no_patient_identifiers_in_logs(stored, tmp_path, caplog):
    ct = header(stored["ct"][0])
    with caplog.at_level(logging.DEBUG):
        rows = stored["pacs"].query("study", PatientID=ct.PatientID)
        stored["pacs"].retrieve(str(ct.StudyInstanceUID), tmp_path, progress=False)
    assert {r["PatientID"] for r in rows} == {ct.PatientID}
    assert caplog.records
    for r in caplog.records:
        text = r.getMessage()
        for secret in (ct.PatientID, str(ct.PatientName), ct.AccessionNumber):
            assert secret not in text, r.name


def test_orthanc_is_isolated_in_a_loopback_only_namespace(running_orthanc):
    import os
    import subprocess

    ns = os.readlink(f"/proc/{running_orthanc.proc.pid}/ns/net")
    assert ns != running_orthanc.outer_netns  # not the namespace the tests started in
    assert ns == os.readlink("/proc/thread-self/ns/net")  # the tests' client namespace
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                           check=True, timeout=30).stdout.splitlines()
    assert [line.split(":")[1].strip() for line in links] == ["lo"]
