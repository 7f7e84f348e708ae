"""scan(): nested exports, DICOMDIR, SR, bad files, links, re-scans, duplicates, crash safety."""

from __future__ import annotations

import os
import shutil
import stat
import sys
import warnings
from pathlib import Path

import pydicom
import pytest

import dicomml.io._scan_store as scan_store
from dicomml.io import Index, scan
from dicomml.testing import write_ct_series, write_sr

scan_mod = sys.modules["dicomml.io.scanner"]
DICOMDIR_TESTS = os.path.join(os.path.dirname(pydicom.data.get_testdata_file(
    "CT_small.dcm", download=False)), "dicomdirtests")


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under root (links not followed) with size and mtime_ns."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(folder, name)
            st = os.lstat(p)
            out[p] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> dict:
    """A nested export without extensions: CT + localizer, SR, DICOMDIR set, bad files."""
    root = tmp_path_factory.mktemp("export")
    ct_dir = root / "PAT1" / "STUDY1" / "SER2"
    ct = write_ct_series(ct_dir, n_slices=5, rows=32, columns=32, localizer=True, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refs = [pydicom.dcmread(p, stop_before_pixels=True) for p in ct[:2]]
    sr = write_sr(root / "PAT1" / "STUDY1" / "SR" / "report", refs, seed=3)
    dd = root / "media"
    shutil.copytree(DICOMDIR_TESTS, dd, ignore=lambda d, names: [
        n for n in names if n.startswith("DICOMDIR-") or n in ("README.txt", "TINY_ALPHA")])
    bad = root / "bad"
    bad.mkdir()
    (bad / "empty").write_bytes(b"")
    (bad / "notes").write_text("not a DICOM file\n" * 20)
    (bad / "bare").write_bytes(b"\0" * 128 + b"DICM")
    data = Path(ct[0]).read_bytes()
    cut = data.index(b"MONOCHROME2") + 2
    (bad / "cut").write_bytes(data[:cut])
    os.symlink(root, root / "PAT1" / "loop")  # a loop back to the root
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        patient = pydicom.dcmread(ct[0], stop_before_pixels=True)
    return {"root": root, "ct": [str(p) for p in ct], "sr": str(sr), "dd": dd,
            "patient_name": str(patient.PatientName), "patient_id": str(patient.PatientID),
            "bad": {str(bad / "empty"): "empty file",
                    str(bad / "notes"): "not DICOM (no DICM prefix and no valid element at "
                                        "offset 0)",
                    str(bad / "bare"): "bare preamble",
                    str(bad / "cut"): "truncated header"}}


def _dicomdir_files(dd: Path) -> list[str]:
    ds = pydicom.dcmread(dd / "DICOMDIR")
    out = []
    for rec in ds.DirectoryRecordSequence:
        if "ReferencedFileID" in rec:
            fid = rec.ReferencedFileID
            parts = [fid] if isinstance(fid, str) else list(fid)
            out.append(os.path.join(dd, *parts))
    return out


def test_scan_export(export, tmp_path):
    before = _snapshot(export["root"])
    r = scan(export["root"], tmp_path / "i.sqlite", workers=0, progress=False)
    assert _snapshot(export["root"]) == before  # nothing written in the source folder
    referenced = _dicomdir_files(export["dd"])
    assert len(referenced) > 5
    n_real = len(export["ct"]) + 1 + 1 + len(referenced) + len(export["bad"])
    assert r.files_seen == n_real  # the loop is not followed twice
    assert r.files_read == n_real
    with Index(r.db_path) as idx:
        inst = idx.instances().set_index("path")
        skipped = idx.skipped().set_index("path")
    assert set(inst.index) == {*export["ct"], export["sr"], str(export["dd"] / "DICOMDIR"),
                               *referenced}
    for path, reason in export["bad"].items():
        assert skipped.loc[path, "reason"].startswith(reason), path
    assert len(skipped) == len(export["bad"])
    assert inst.loc[export["sr"], "object_kind"] == "sr"
    assert not inst.loc[export["sr"], "is_image"]
    assert inst.loc[str(export["dd"] / "DICOMDIR"), "object_kind"] == "dicomdir"
    assert r.summary["dicomdir_referenced"] == len(referenced)
    assert r.summary["dicomdir_missing"] == 0
    assert r.summary["non_image_by_kind"] == {"dicomdir": 1, "sr": 1}
    # a CT row equals what pydicom reports
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(export["ct"][2], stop_before_pixels=True)
    row = inst.loc[export["ct"][2]]
    assert row["image_position"] == tuple(float(v) for v in ds.ImagePositionPatient)
    assert row["pixel_spacing"] == tuple(float(v) for v in ds.PixelSpacing)
    assert row["rescale_intercept"] == float(ds.RescaleIntercept)
    assert row["instance_number"] == int(ds.InstanceNumber)
    assert row["transfer_syntax_uid"] == ds.file_meta.TransferSyntaxUID
    assert row["patient_id"] == export["patient_id"]  # stored (never printed)
    assert not r.ok
    assert sorted(p for p, _ in r.skipped) == sorted(export["bad"])


def test_workers_give_the_same_index(export, tmp_path, monkeypatch):
    r0 = scan(export["root"], tmp_path / "a.sqlite", workers=0, progress=False)
    monkeypatch.setattr(scan_mod, "CHUNK_SIZE", 4)  # several chunks: worker processes start
    r2 = scan(export["root"], tmp_path / "b.sqlite", workers=2, progress=False)
    with Index(r0.db_path) as a, Index(r2.db_path) as b:
        pa, pb = a.instances(), b.instances()
        assert pa.drop(columns="mtime").equals(pb.drop(columns="mtime"))
        assert a.skipped().equals(b.skipped())
    # and pydicom-only reading gives the same rows as the struct reader
    rp = scan(export["root"], tmp_path / "c.sqlite", workers=0, progress=False, fast=False)
    with Index(rp.db_path) as c:
        assert c.instances().equals(pa)


def test_rescan_reads_only_new_and_changed_files(export, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(export["root"] / "PAT1" / "STUDY1", src)
    db = tmp_path / "i.sqlite"
    first = scan(src, db, workers=0, progress=False)
    assert first.files_read == first.files_seen == 7
    again = scan(src, db, workers=0, progress=False)
    assert again.files_read == 0 and again.files_removed == 0
    files = sorted(p for p in (src / "SER2").iterdir())
    # change one file (new content and mtime), add one, delete one
    ds = pydicom.dcmread(files[0])
    ds.SeriesDescription = "CHANGED"
    ds.save_as(files[0])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(src / "SER2" / "NEW1")
    files[1].unlink()
    third = scan(src, db, workers=0, progress=False)
    assert (third.files_read, third.files_removed, third.files_seen) == (2, 1, 7)
    with Index(db) as idx:
        inst = idx.instances().set_index("path")
    assert str(files[1]) not in inst.index
    assert inst.loc[str(files[0]), "series_description"] == "CHANGED"
    assert str(src / "SER2" / "NEW1") in inst.index


def test_read_only_source_and_default_db(export, tmp_path, monkeypatch):
    src = tmp_path / "ro"
    shutil.copytree(export["root"] / "PAT1" / "STUDY1", src)
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    modes = {}
    for folder, dirs, files in os.walk(src):
        for name in files + dirs:
            p = os.path.join(folder, name)
            modes[p] = os.stat(p).st_mode
    for p in sorted(modes, reverse=True):
        os.chmod(p, modes[p] & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    os.chmod(src, 0o555)
    try:
        before = _snapshot(src)
        r = scan(src, workers=0, progress=False)
        assert _snapshot(src) == before
    finally:
        os.chmod(src, 0o755)
        for p, m in modes.items():
            os.chmod(p, m)
    assert Path(r.db_path).parent == cache / "dicomml"
    assert r.summary["instances"] == 7 and r.ok


def test_duplicate_sop_instance_uid_and_promotion(export, tmp_path):
    src = tmp_path / "dup"
    (src / "b").mkdir(parents=True)
    shutil.copy(export["ct"][0], src / "b" / "x")
    db = tmp_path / "i.sqlite"
    scan(src, db, workers=0, progress=False)
    (src / "a").mkdir()
    shutil.copy(export["ct"][0], src / "a" / "x")  # sorts first: it keeps the instance
    r = scan(src, db, workers=0, progress=False)
    assert r.skipped == ((str(src / "b" / "x"),
                          f"duplicate copy of {src / 'a' / 'x'} (same SOP Instance UID, "
                          "identical bytes)"),)
    (src / "a" / "x").unlink()
    r = scan(src, db, workers=0, progress=False)
    assert r.ok and r.summary["instances"] == 1
    with Index(db) as idx:
        assert list(idx.instances()["path"]) == [str(src / "b" / "x")]


def test_crash_loses_nothing_committed(export, tmp_path, monkeypatch):
    src = tmp_path / "crash"
    shutil.copytree(export["root"] / "PAT1" / "STUDY1" / "SER2", src)
    db = tmp_path / "i.sqlite"
    monkeypatch.setattr(scan_mod, "CHUNK_SIZE", 2)
    real_write = scan_store.Store.write
    calls = []

    def failing_write(self, results):
        calls.append(len(results))
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user stops the scan during the second batch
        return real_write(self, results)

    monkeypatch.setattr(scan_store.Store, "write", failing_write)
    with pytest.raises(KeyboardInterrupt):
        scan(src, db, workers=0, progress=False)
    monkeypatch.setattr(scan_store.Store, "write", real_write)
    r = scan(src, db, workers=0, progress=False)
    assert r.files_read == 6 - 2  # the first batch of 2 was committed and not read again
    assert r.summary["instances"] == 6
    with Index(db) as idx:
        assert idx.instances()["series_key"].notna().all()


def test_missing_root_is_an_error(tmp_path):
    from dicomml.errors import ConfigError

    with pytest.raises(ConfigError, match="does not exist"):
        scan(tmp_path / "nope", tmp_path / "i.sqlite", progress=False)


def test_symlinked_file_is_followed(export, tmp_path):
    src = tmp_path / "links"
    src.mkdir()
    os.symlink(export["sr"], src / "report-link")
    r = scan(src, tmp_path / "i.sqlite", workers=0, progress=False)
    assert r.summary["non_image_by_kind"] == {"sr": 1}


class _FailingExecutor:
    """An executor whose first chunk fails as a dicomml.parallel ChunkFailed would."""

    def __init__(self):
        self.calls = 0

    def map_chunks(self, fn, chunks, *, progress=None):
        for i, chunk in enumerate(chunks):
            self.calls += 1
            if i == 0:
                yield chunk, RuntimeError("worker died")
            else:
                yield chunk, fn(chunk)


def test_failed_chunks_are_recorded_and_retried(export, tmp_path, monkeypatch):
    src = tmp_path / "fail"
    shutil.copytree(export["root"] / "PAT1" / "STUDY1" / "SER2", src)
    db = tmp_path / "i.sqlite"
    monkeypatch.setattr(scan_mod, "CHUNK_SIZE", 2)
    r = scan(src, db, executor=_FailingExecutor(), workers=2, progress=False)
    failed = [p for p, reason in r.skipped if reason.startswith("scan worker failed")]
    assert len(failed) == 2 and r.summary["instances"] == 4
    r = scan(src, db, workers=0, progress=False)  # the failed files are read again
    assert r.files_read == 2 and r.ok and r.summary["instances"] == 6


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["processes", "dask"])
def test_dicomml_parallel_executors(export, tmp_path, kind):
    from dicomml.parallel import get_executor

    r0 = scan(export["root"], tmp_path / "a.sqlite", workers=0, progress=False)
    with get_executor(kind, workers=2) as ex:
        r = scan(export["root"], tmp_path / "b.sqlite", executor=ex, progress=False)
    assert r.files_read == r0.files_read
    with Index(r0.db_path) as a, Index(r.db_path) as b:
        assert a.instances().drop(columns="mtime").equals(b.instances().drop(columns="mtime"))
        assert a.skipped().equals(b.skipped())


def test_synthetic_pacs_export(tmp_path):
    """dicomml.testing.make_export: every kind of object, a DICOMDIR, debris."""
    from dicomml.testing.export import make_export

    exp = make_export(tmp_path / "export", size=32, task=False)
    r = scan(exp.root, tmp_path / "i.sqlite", workers=0, progress=False)
    with Index(r.db_path) as idx:
        inst = idx.instances().set_index("path")
    assert set(inst.index) == {str(p) for p in exp.instances} | {str(exp.dicomdir)}
    reasons = dict(r.skipped)
    assert set(reasons) == {str(p) for p in exp.broken + exp.non_dicom}
    for p in exp.broken:
        assert reasons[str(p)].startswith("truncated"), reasons[str(p)]
    for p in exp.non_dicom:
        assert reasons[str(p)].startswith("not DICOM")
    assert r.summary["dicomdir_referenced"] == len(exp.instances)
    assert r.summary["dicomdir_missing"] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refs = [pydicom.dcmread(p, stop_before_pixels=True) for p in exp.instances]
    assert r.summary["patients"] == len({d.PatientID for d in refs})
    assert r.summary["studies"] == len({d.StudyInstanceUID for d in refs})
    # pydicom-only reading gives the same Index
    rp = scan(exp.root, tmp_path / "p.sqlite", workers=0, progress=False, fast=False)
    with Index(r.db_path) as a, Index(rp.db_path) as b:
        assert a.instances().equals(b.instances())
        assert a.skipped().equals(b.skipped())


def test_index_inside_the_scanned_folder_is_not_scanned(export, tmp_path):
    src = tmp_path / "in"
    shutil.copytree(export["root"] / "PAT1" / "STUDY1" / "SR", src)
    scan(src, src / "index.sqlite", workers=0, progress=False)
    r = scan(src, src / "index.sqlite", workers=0, progress=False)
    assert r.ok and r.files_seen == 1 and r.files_read == 0
