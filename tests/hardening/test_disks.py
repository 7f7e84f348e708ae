"""Disks and permissions: read-only sources, full or read-only output disks, hostile names.

Real mounts where permitted (we run as root in CI): a read-only bind mount of the source,
a 64 kB / 256 kB tmpfs for a full output disk, a read-only tmpfs. Where ``mount`` is not
permitted the same properties are checked by monkeypatching ``os.fsync`` to raise ENOSPC
(and, for the source, by proving that nothing under it changed).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from dicomml._atomic import atomic_write_bytes, atomic_write_text, safe_join, safe_name
from dicomml.errors import OutputError
from dicomml.io import read_series, scan
from tests.hardening._export import tree_snapshot, write_export


@contextlib.contextmanager
def _mount(args: list[str], target: Path):
    target.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
    if proc.returncode != 0:
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp"))


# ----------------------------------------------------------------------------- sources
def test_read_only_source_scan_read_preview(tmp_path, capsys):
    src = tmp_path / "src"
    write_export(src, 60, broken_every=20)
    before = tree_snapshot(src)
    ro = tmp_path / "ro"
    with _mount(["--bind", "-o", "ro", str(src)], ro) as mounted:
        root = ro if mounted else src
        if mounted:
            with pytest.raises(OSError):
                (ro / "probe").write_bytes(b"x")  # really read-only
        res = scan(root, tmp_path / "index.sqlite", progress=False, workers=2)
        assert res.summary["instances"] == 57 and len(res.skipped) == 3
        vol = read_series(sorted((root / "d0000").iterdir())[:10])
        assert vol.pixels.shape[-2:] == (64, 64)  # 10 files at one position: 4-D (10, 1, 64, 64)
        from dicomml.cli import main

        first = sorted((root / "d0000").iterdir())[0]
        assert main(["preview", str(first), "--output", str(tmp_path / "p.png")]) == 0
        capsys.readouterr()
        again = scan(root, tmp_path / "index.sqlite", progress=False, workers=0)
        assert again.files_read == 0 and again.files_seen == 60  # unchanged: not read again
    assert tree_snapshot(src) == before  # nothing written, touched or added in the source


# ----------------------------------------------------------------------------- full disk
def test_atomic_write_on_full_disk_leaves_nothing(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    atomic_write_text(out / "keep.txt", "old")
    with _mount(["-t", "tmpfs", "-o", "size=64k", "tmpfs"], tmp_path / "tiny") as mounted:
        if mounted:
            target = tmp_path / "tiny"
            with pytest.raises(OutputError, match="No space left|free space") as info:
                atomic_write_bytes(target / "big.bin", bytes(1 << 20))
            assert str(target / "big.bin") in str(info.value)
            assert list(target.iterdir()) == []  # no partial file, no temporary file
        # the same through a failing fsync (works without mount permissions)

        def enospc(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "fsync", enospc)
        with pytest.raises(OutputError, match="No space left"):
            atomic_write_text(out / "keep.txt", "new")
        assert (out / "keep.txt").read_text() == "old"  # the old file is intact
        assert _leftovers(out) == []


def test_predictions_csv_on_full_disk(tmp_path):
    from dicomml.report.tables import write_csv

    table = pd.DataFrame({"sop_instance_uid": [f"1.2.{i}" for i in range(20000)],
                          "prob_x": np.linspace(0, 1, 20000)})
    with _mount(["-t", "tmpfs", "-o", "size=64k", "tmpfs"], tmp_path / "tiny") as mounted:
        if not mounted:
            pytest.skip("mount is not permitted here (the fsync test covers atomicity)")
        with pytest.raises(OutputError):
            write_csv(tmp_path / "tiny" / "predictions.csv", table)
        assert list((tmp_path / "tiny").iterdir()) == []


def test_index_on_full_disk_is_clear_and_consistent(tmp_path, capsys):
    src = tmp_path / "src"
    write_export(src, 3000)
    with _mount(["-t", "tmpfs", "-o", "size=256k", "tmpfs"], tmp_path / "tiny") as mounted:
        if not mounted:
            pytest.skip("mount is not permitted here")
        db = tmp_path / "tiny" / "index.sqlite"
        from dicomml.cli import main

        status = main(["scan", str(src), "--db", str(db), "--workers", "0", "--no-progress"])
        err = capsys.readouterr().err
        assert status == 2
        assert "full" in err and str(db) in err and "Traceback" not in err
        con = sqlite3.connect(db)
        try:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            n_done = con.execute("SELECT count(*) FROM files").fetchone()[0]
        finally:
            con.close()
        assert n_done < 3000
        # on a disk with room, the same Index resumes and completes
        import shutil

        moved = tmp_path / "index.sqlite"
        for suffix in ("", "-wal", "-shm"):
            if Path(str(db) + suffix).exists():
                shutil.copy(str(db) + suffix, str(moved) + suffix)
    res = scan(src, moved, progress=False, workers=0)
    assert res.summary["instances"] == 3000 and res.files_read == 3000 - n_done


def test_read_only_output_disk(tmp_path, capsys):
    src = tmp_path / "src"
    write_export(src, 20)
    with _mount(["-t", "tmpfs", "-o", "size=1m,ro", "tmpfs"], tmp_path / "ro") as mounted:
        if not mounted:
            pytest.skip("mount is not permitted here")
        from dicomml.cli import main

        db = tmp_path / "ro" / "i.sqlite"
        status = main(["scan", str(src), "--db", str(db), "--workers", "0", "--no-progress"])
        err = capsys.readouterr().err
        assert status == 2 and str(db) in err and "writable" in err and "Traceback" not in err
        with pytest.raises(OutputError, match="Read-only"):
            atomic_write_text(tmp_path / "ro" / "x.txt", "x")
        assert list((tmp_path / "ro").iterdir()) == []


# ----------------------------------------------------------------------------- names
HOSTILE = ["../../etc/x", "/abs/olute", "a/b", "a_b", "x\x00y", "..", ".", "", "é/…",
           "9" * 300, "C:\\windows\\x", "\n", " "]


@pytest.mark.parametrize("value", HOSTILE)
def test_safe_join_never_leaves_root(tmp_path, value):
    p = safe_join(tmp_path, f"SR_{value}.dcm")
    assert p.parent == tmp_path
    assert len(p.name) <= 200 and "\x00" not in p.name and "/" not in p.name
    q = safe_join(tmp_path, value, value, "x.dcm")
    assert tmp_path in q.resolve().parents


def test_safe_names_do_not_collide():
    names = [safe_name(v) for v in HOSTILE]
    assert len(set(names)) == len(names)
    assert safe_name("1.2.840.10008.5.1.4.1.1.2") == "1.2.840.10008.5.1.4.1.1.2"
    assert safe_name("9" * 300 + ".dcm").endswith(".dcm")


def _hostile_copy(src_file: Path, dest: Path, study_uid: str, sop_uid: str) -> None:
    import warnings

    ds = pydicom.dcmread(src_file)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid UIs: that is the point
        ds.StudyInstanceUID = study_uid
        ds.SOPInstanceUID = sop_uid
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        dest.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(dest, enforce_file_format=False)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
@pytest.mark.filterwarnings("ignore:The value length")
def test_predict_with_hostile_uids_writes_only_into_out(tmp_path):
    import keras  # noqa: F401 - a hard dependency: a broken install fails
    from dicomml.evaluate.prediction import predict
    from tests.evaluate.runfolder import make_run

    run = make_run(tmp_path / "r", n_patients=4)
    files = sorted(p for p in (run.parent / "data").rglob("*") if p.is_file()
                   and p.suffix != ".csv")
    inputs = tmp_path / "in"
    uids = ["../../../escaped", "a/b", "x\x00y", "1." + "2" * 120]
    for k, (f, uid) in enumerate(zip(files, uids)):
        _hostile_copy(f, inputs / f"f{k}.dcm", uid, f"{uid}.{k}")
    out = tmp_path / "work" / "out"
    before = {p for p in tmp_path.rglob("*")}
    res = predict(run, inputs, out, threshold=0.0, write_sc=True, workers=0, progress=False)
    after = {p for p in tmp_path.rglob("*")}
    new = after - before
    assert new and all(out == p or out in p.parents or p == out.parent for p in new), \
        sorted(map(str, new - {out}))
    sr_skipped = [s for s in res.skipped if s["reason"].startswith("SR not written")]
    assert len(res.sr_paths) + len(sr_skipped) == len(uids)
    assert res.sr_paths and all(p.parent == out for p in res.sr_paths)
    assert len({p.name for p in res.sr_paths}) == len(uids)
    for p in res.sr_paths:  # each SR still carries the (hostile) study UID it reports on
        assert pydicom.dcmread(p).StudyInstanceUID in uids
