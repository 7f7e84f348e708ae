"""DIMSE against a real Orthanc (C-ECHO, C-FIND, C-GET, C-STORE) in a private network namespace."""

from __future__ import annotations

import logging
import time

import pydicom
import pytest

from dicomml.pacs import DimsePacs, PacsError
from tests.conftest import testdata
from tests.pacs._data import (assert_same_instance, by_sop, ct_study, header, jpeg2000_mr,
                              sr_for)
from tests.pacs.orthanc import orthanc, running_orthanc  # noqa: F401 - fixtures

pytestmark = pytest.mark.tool


def client(server, **kw) -> DimsePacs:
    kw.setdefault("timeout", 10)
    kw.setdefault("retries", 1)
    return DimsePacs(server.aet, server.host, server.dicom_port, **kw)


@pytest.fixture(scope="module")
def stored(orthanc, tmp_path_factory):  # noqa: F811
    """A CT study, a JPEG 2000 MR, an RLE Secondary Capture and an SR of the CT study."""
    src = tmp_path_factory.mktemp("src")
    ct = ct_study(src / "ct", seed=21)
    sr = sr_for(ct, src / "sr" / "sr.dcm", seed=21)
    pacs = client(orthanc)
    res = pacs.store([src / "ct", src / "sr", jpeg2000_mr(), testdata("SC_rgb_rle.dcm")])
    return {"ct": ct, "sr": sr, "pacs": pacs, "result": res}


def test_c_store_every_sop_class_and_transfer_syntax(stored, orthanc):  # noqa: F811
    expected = set(by_sop(stored["ct"])) | {str(header(stored["sr"]).SOPInstanceUID),
                                            str(header(jpeg2000_mr()).SOPInstanceUID),
                                            str(header(testdata("SC_rgb_rle.dcm")).SOPInstanceUID)}
    assert set(stored["result"].stored) == expected
    assert orthanc.instance_count() == len(expected)


def test_c_echo(stored):
    assert stored["pacs"].echo() is True


def test_c_find_levels(stored):
    pacs = stored["pacs"]
    ct = header(stored["ct"][0])
    sr = header(stored["sr"])
    study = str(ct.StudyInstanceUID)
    (row,) = pacs.query("study", StudyInstanceUID=study)
    assert row["StudyDate"] == ct.StudyDate and row["PatientID"] == ct.PatientID
    assert row["NumberOfStudyRelatedInstances"] == str(len(stored["ct"]) + 1)
    assert study in {r["StudyInstanceUID"] for r in pacs.query("study", Modality="CT")}
    assert study not in {r["StudyInstanceUID"] for r in pacs.query("study", Modality="MR")}
    year = ct.StudyDate[:4]
    assert study in {r["StudyInstanceUID"]
                     for r in pacs.query("study", StudyDate=f"{year}0101-{year}1231")}
    assert study not in {r["StudyInstanceUID"]
                         for r in pacs.query("study", StudyDate=f"{int(year) + 1}0101-")}
    series = {r["SeriesInstanceUID"]: r["Modality"]
              for r in pacs.query("series", StudyInstanceUID=study)}
    assert series == {str(ct.SeriesInstanceUID): "CT", str(sr.SeriesInstanceUID): "SR"}
    inst = pacs.query("instance", StudyInstanceUID=study, SeriesInstanceUID=sr.SeriesInstanceUID)
    assert [(r["SOPInstanceUID"], r["SOPClassUID"]) for r in inst] == [
        (str(sr.SOPInstanceUID), str(sr.SOPClassUID))]
    patients = {r["PatientID"] for r in pacs.query("patient")}
    assert ct.PatientID in patients
    by_accession = pacs.query("study", AccessionNumber=ct.AccessionNumber)
    assert [r["StudyInstanceUID"] for r in by_accession] == [study]


def test_c_get_same_instances_and_pixels(stored, tmp_path):
    pacs = stored["pacs"]
    study = str(header(stored["ct"][0]).StudyInstanceUID)
    res = pacs.retrieve(study, tmp_path, progress=False)
    src = by_sop(stored["ct"] + [stored["sr"]])
    got = by_sop(res.paths)
    assert set(got) == set(src) and res.listed == len(src) and len(res.fetched) == len(src)
    for uid in src:
        assert_same_instance(got[uid], src[uid])
    again = pacs.retrieve(study, tmp_path, progress=False)
    assert again.fetched == [] and again.present == len(src)


def test_c_get_one_series_keeps_jpeg2000(stored, tmp_path):
    mr = header(jpeg2000_mr())
    res = stored["pacs"].retrieve(str(mr.StudyInstanceUID), tmp_path,
                                  series_uid=str(mr.SeriesInstanceUID), progress=False)
    (path,) = res.paths
    assert_same_instance(path, jpeg2000_mr())


def test_c_get_secondary_capture_in_rle(stored, tmp_path):
    sc = header(testdata("SC_rgb_rle.dcm"))
    (path,) = stored["pacs"].retrieve(str(sc.StudyInstanceUID), tmp_path, progress=False).paths
    assert_same_instance(path, testdata("SC_rgb_rle.dcm"))
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.5"


def test_association_rejected_names_the_ae(stored, orthanc):  # noqa: F811
    bad = DimsePacs("NOT-ORTHANC", orthanc.host, orthanc.dicom_port, timeout=5, retries=3)
    t0 = time.monotonic()
    with pytest.raises(PacsError) as info:
        bad.echo()
    assert time.monotonic() - t0 < 3  # a permanent rejection is not retried
    msg = str(info.value)
    assert "NOT-ORTHANC" in msg and f"{orthanc.host}:{orthanc.dicom_port}" in msg
    assert "rejected the association" in msg and not info.value.transient


def test_rejected_object_names_sop_uid_and_status(stored, tmp_path):
    ds = pydicom.dcmread(stored["ct"][0])
    ds.SOPInstanceUID = pydicom.uid.generate_uid(prefix="1.2.826.0.1.3680043.10.998.")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    del ds.SeriesInstanceUID
    ds.save_as(tmp_path / "bad.dcm")
    with pytest.raises(PacsError) as info:
        stored["pacs"].store([tmp_path / "bad.dcm"])
    assert info.value.failures == [(ds.SOPInstanceUID, "0xA700")]
    assert ds.SOPInstanceUID in str(info.value) and ds.PatientID not in str(info.value)


def test_killed_mid_c_get_then_resumed(running_orthanc, tmp_path):  # noqa: F811
    ct = ct_study(tmp_path / "src", seed=22, n_slices=8)
    study = str(header(ct[0]).StudyInstanceUID)
    pacs = client(running_orthanc, timeout=3, retries=2, backoff=0.2, total=10)
    pacs.store(ct)
    out = tmp_path / "out"
    k = 3
    seen = []

    def kill_after_k(path):
        seen.append(path)
        if len(seen) == k:
            running_orthanc.kill()

    t0 = time.monotonic()
    with pytest.raises(PacsError) as info:
        pacs.retrieve(study, out, progress=False, callback=kill_after_k)
    assert time.monotonic() - t0 < 15
    assert info.value.transient and running_orthanc.aet in str(info.value)
    present = sorted(out.rglob("*.dcm"))
    assert present == sorted(seen) and k <= len(present) < len(ct)
    assert not list(out.rglob("*.tmp"))
    running_orthanc.start()
    res = pacs.retrieve(study, out, progress=False)
    assert res.present == len(present) and len(res.fetched) == len(ct) - len(present)
    assert not set(res.fetched) & set(present)
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
    assert caplog.records  # our own INFO line at least
    for r in caplog.records:
        text = r.getMessage()
        for secret in (ct.PatientID, str(ct.PatientName), ct.AccessionNumber):
            assert secret not in text, r.name
