"""De-identification (PS3.15 Annex E Basic Profile) checked against the source files."""

from __future__ import annotations

import datetime
import hashlib
import logging
import subprocess

import pandas as pd
import pydicom
import pytest

from dicomml.pacs.deid import deidentify, deidentify_table, remap_id, remap_uid
from tests.conftest import require_tool, testdata
from tests.pacs._data import ct_study, header, sr_for

IDENTIFYING = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber")


def all_text(ds: pydicom.Dataset):
    """Every element's value as text, recursively, file meta included."""
    meta = getattr(ds, "file_meta", None)
    for d in ([meta] if meta is not None else []) + [ds]:
        for elem in d.iterall():
            if elem.VR in ("SQ", "OB", "OW", "OF", "OD", "OL", "OV", "UN"):
                continue
            v = elem.value
            vals = v if isinstance(v, (list, pydicom.multival.MultiValue)) else [v]
            for x in vals:
                yield elem.tag, str(x)


def digest(paths):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    src = tmp_path_factory.mktemp("deid-src")
    ct = ct_study(src / "ct", seed=31, n_slices=4)
    # One image declares burned-in annotation; the patient also gets an accession number in
    # a free-text element, to check the final scan.
    ds = pydicom.dcmread(ct[0])
    ds.BurnedInAnnotation = "YES"
    ds.ImageComments = f"acc {ds.AccessionNumber} for {ds.PatientName}"
    ds.save_as(ct[0])
    sr = sr_for(ct, src / "sr" / "sr.dcm", seed=31)
    (src / "notes.txt").write_text("not DICOM")
    return {"dir": src, "ct": ct, "sr": sr, "files": ct + [sr, src / "notes.txt"]}


@pytest.fixture(scope="module")
def deid(sources, tmp_path_factory):
    before = digest(sources["ct"] + [sources["sr"]])
    out = tmp_path_factory.mktemp("deid-out")
    res = deidentify([sources["dir"]], out, key="project-key-1")
    assert digest(sources["ct"] + [sources["sr"]]) == before  # sources never modified
    return {"out": out, "res": res}


def originals(sources):
    return [pydicom.dcmread(p) for p in sources["ct"] + [sources["sr"]]]


def test_written_skipped_and_manifest(sources, deid):
    res = deid["res"]
    assert len(res.written) == len(sources["ct"]) + 1
    assert [(p.name, r) for p, r in res.skipped] == [("notes.txt", "not DICOM (InvalidDicomError)")]
    table = pd.read_csv(res.manifest, dtype=str, keep_default_na=False)
    assert sorted(table["file"]) == sorted(p.relative_to(deid["out"]).as_posix()
                                           for p in res.written)
    flagged = table[table["BurnedInAnnotation"] == "YES"]
    assert len(flagged) == 1 and len(res.burned_in) == 1
    assert pydicom.dcmread(res.burned_in[0]).BurnedInAnnotation == "YES"


def test_no_identifier_survives(sources, deid):
    secrets = set()
    for ds in originals(sources):
        for kw in IDENTIFYING:
            v = str(ds.get(kw, "") or "")
            if v:
                secrets.add(v)
        secrets.update(p for p in str(ds.PatientName).split("^") if len(p) >= 3)
    assert secrets
    for path in deid["res"].written:
        out = pydicom.dcmread(path)
        for tag, text in all_text(out):
            for s in secrets:
                assert s not in text, f"{s!r} survives in {tag} of {path.name}"
        assert out.PatientBirthDate == "" and out.PatientIdentityRemoved == "YES"
        codes = [c.CodeValue for c in out.DeidentificationMethodCodeSequence]
        assert codes == ["113100", "113107"]
        assert not any(e.tag.is_private for e in out.iterall())
        assert "ImageComments" not in out


def test_uids_remapped_consistently_and_references_follow(sources, deid):
    src = {str(d.SOPInstanceUID): d for d in originals(sources)}
    out = {str(d.SOPInstanceUID): d for d in map(pydicom.dcmread, deid["res"].written)}
    mapping = {}
    for uid, d in src.items():
        for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                   "FrameOfReferenceUID"):
            if kw in d:
                mapping[str(d[kw].value)] = remap_uid(str(d[kw].value), "project-key-1")
    assert len(set(mapping.values())) == len(mapping)  # injective
    assert set(out) == {mapping[u] for u in src}
    studies = {str(d.StudyInstanceUID) for d in out.values()}
    assert studies == {mapping[str(src[next(iter(src))].StudyInstanceUID)]}
    for uid, d in src.items():
        new = out[mapping[uid]]
        assert new.SOPClassUID == d.SOPClassUID
        assert new.file_meta.MediaStorageSOPInstanceUID == new.SOPInstanceUID
        assert new.file_meta.TransferSyntaxUID == d.file_meta.TransferSyntaxUID
        if "PixelData" in d:
            assert new.PixelData == d.PixelData
    sr_new = out[mapping[str(header(sources["sr"]).SOPInstanceUID)]]
    refs = {str(e.value) for e in sr_new.iterall() if e.keyword == "ReferencedSOPInstanceUID"}
    ct_new = {mapping[str(header(p).SOPInstanceUID)] for p in sources["ct"]}
    assert refs == ct_new


def test_same_key_same_uids_other_key_other_uids(sources, deid, tmp_path):
    again = deidentify(sources["ct"], tmp_path / "a", key="project-key-1")
    other = deidentify(sources["ct"], tmp_path / "b", key="project-key-2")
    first = {p.name for p in deid["res"].written}
    assert {p.name for p in again.written} <= first
    assert not {p.name for p in other.written} & first


def test_dates_shifted_by_one_offset_or_kept(sources, deid, tmp_path):
    src = {remap_uid(str(d.SOPInstanceUID), "project-key-1"): d for d in originals(sources)}
    shifts = set()
    for p in deid["res"].written:
        new = pydicom.dcmread(p)
        old = src[str(new.SOPInstanceUID)]
        day = datetime.date.fromisoformat
        d_old = day(f"{old.StudyDate[:4]}-{old.StudyDate[4:6]}-{old.StudyDate[6:]}")
        d_new = day(f"{new.StudyDate[:4]}-{new.StudyDate[4:6]}-{new.StudyDate[6:]}")
        shifts.add((d_old - d_new).days)
        assert new.LongitudinalTemporalInformationModified == "MODIFIED"
    (shift,) = shifts
    assert 62 <= shift <= 731
    kept = deidentify(sources["ct"], tmp_path, key="project-key-1", shift_dates=False)
    for p in kept.written:
        new = pydicom.dcmread(p)
        old = src[str(new.SOPInstanceUID)]
        assert (new.StudyDate, new.SeriesDate, new.ContentDate) == (
            old.StudyDate, old.SeriesDate, old.ContentDate)
        assert new.PatientBirthDate == ""
        assert [c.CodeValue for c in new.DeidentificationMethodCodeSequence] == ["113100",
                                                                                 "113106"]


def test_burned_in_annotation_warns(sources, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="dicomml.pacs"):
        res = deidentify([sources["ct"][0]], tmp_path, key="k")
    (flagged,) = res.burned_in
    assert any("Burned In Annotation" in r.getMessage() and flagged.stem in r.getMessage()
               for r in caplog.records)
    ds = pydicom.dcmread(sources["ct"][0])
    for r in caplog.records:
        assert str(ds.PatientName) not in r.getMessage() and ds.PatientID not in r.getMessage()


def test_dry_run_writes_nothing(sources, tmp_path):
    res = deidentify(sources["ct"], tmp_path / "out", key="k", dry_run=True)
    assert len(res.written) == len(sources["ct"]) and not (tmp_path / "out").exists()


def test_real_sample_file(tmp_path):
    src = testdata("MR_small.dcm")
    ds = pydicom.dcmread(src)
    (out,) = deidentify([src], tmp_path, key="k").written
    new = pydicom.dcmread(out)
    assert new.PixelData == ds.PixelData
    assert str(new.PatientName) != str(ds.PatientName) and new.PatientID != ds.PatientID
    assert new.PatientID == remap_id(ds.PatientID, "k")


def test_deidentified_files_pass_dciodvfy_like_sources(sources, deid):
    exe = require_tool("dciodvfy")
    src_by_new = {remap_uid(str(header(p).SOPInstanceUID), "project-key-1"): p
                  for p in sources["ct"] + [sources["sr"]]}

    def errors(path):
        r = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
        return {line.split(" - ", 1)[-1] for line in (r.stdout + r.stderr).splitlines()
                if line.startswith("Error")}

    for path in deid["res"].written:
        src = src_by_new[path.stem]
        assert errors(path) <= errors(src), path.name


def test_table_uses_the_same_mapping(sources, deid, tmp_path):
    rows = []
    for p in sources["ct"]:
        d = header(p)
        rows.append({"path": str(p), "PatientID": d.PatientID, "PatientName": str(d.PatientName),
                     "study_uid": d.StudyInstanceUID, "SOPInstanceUID": d.SOPInstanceUID,
                     "label": "1"})
    src = pd.DataFrame(rows)
    keep = src.copy()
    out = deidentify_table(src, tmp_path / "m.csv", key="project-key-1")
    pd.testing.assert_frame_equal(src, keep)  # input not modified
    assert list(out.columns) == ["PatientID", "study_uid", "SOPInstanceUID", "label"]
    written = {str(d.SOPInstanceUID): d for d in map(pydicom.dcmread, deid["res"].written)}
    for _, r in out.iterrows():
        d = written[r["SOPInstanceUID"]]
        assert r["study_uid"] == d.StudyInstanceUID and r["PatientID"] == d.PatientID
    assert pd.read_csv(tmp_path / "m.csv", dtype=str).equals(out.astype(str))


def test_key_is_required(tmp_path):
    from dicomml.errors import ConfigError

    with pytest.raises(ConfigError, match="project key"):
        deidentify([], tmp_path, key="")


def test_malformed_date_never_skips_the_file(sources, tmp_path):
    """A value that is not a date cannot be shifted: it gets the Basic action (Z), and the
    file is written (issue 14: a malformed birth date skipped the whole file)."""
    import warnings

    ds = pydicom.dcmread(sources["ct"][1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pydicom: invalid DA value
        ds.StudyDate = "2017-02-3x"  # not a DA value: it cannot be shifted
        ds.PatientBirthDate = "1971-02-03"
        ds.save_as(tmp_path / "bad.dcm")
        res = deidentify([tmp_path / "bad.dcm", sources["ct"][2]], tmp_path / "out", key="k")
        assert len(res.written) == 2 and not res.skipped
        new = pydicom.dcmread(res.written[0])
    assert new.StudyDate == "" and new.PatientBirthDate == ""
