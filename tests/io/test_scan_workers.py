"""Parallel scans give the Index of the in-process scan, whichever way the workers run.

Paths: :mod:`dicomml.parallel` processes forked from this one with this process reading
chunks too (``local``), and :mod:`dicomml.parallel` processes started as the walk begins
(when forking is not safe). A killed worker costs its files, never the scan. The reference is the in-process scan, itself checked against pydicom in
``test_scan.py``; here every row is also compared with pydicom directly.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ImplicitVRLittleEndian

import dicomml.io.scanner as scan_mod
from dicomml.io import scan
from dicomml.io.index import Index
from dicomml.testing import write_ct_series


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    write_ct_series(root / "a", seed=1, n_slices=23, rows=16, columns=16, noise=0.0)
    write_ct_series(root / "b", seed=2, n_slices=17, rows=16, columns=16, noise=0.0,
                    transfer_syntax=ImplicitVRLittleEndian, oblique=True)
    (root / "b" / "notes.txt").write_text("not DICOM")
    return root


@pytest.mark.parametrize("forked", [True, False])
def test_parallel_scan_equals_in_process(export, tmp_path, monkeypatch, forked):
    ref = scan(export, tmp_path / "ref.sqlite", workers=0, progress=False)
    monkeypatch.setattr(scan_mod, "CHUNK_SIZE", 4)  # many chunks: workers are used
    if forked:  # in a fresh process: forking needs a process without other threads
        code = ("import sys, dicomml.io.scanner as m; m.CHUNK_SIZE = 4; used = []; "
                "start = m._start_executor; "
                "m._start_executor = lambda w: used.append(ex := start(w)) or ex; "
                "r = m.scan(sys.argv[1], sys.argv[2], workers=2, progress=False); "
                "print(r.files_read, *[(type(e).__name__, e.start_method, e.local, e.workers) "
                "for e in used])")
        out = subprocess.run([sys.executable, "-c", code, str(export),
                              str(tmp_path / "par.sqlite")], capture_output=True, text=True,
                             check=True, cwd=Path(__file__).resolve().parents[2]).stdout
        assert out.strip().split(maxsplit=1) == ["41", "('ProcessExecutor', 'fork', True, 1)"]
        got_db = tmp_path / "par.sqlite"
    else:
        monkeypatch.setattr(scan_mod, "_fork_is_safe", lambda: False)
        used = []
        start = scan_mod._start_executor
        monkeypatch.setattr(scan_mod, "_start_executor",
                            lambda w: used.append(type(ex := start(w)).__name__) or ex)
        got = scan(export, tmp_path / "par.sqlite", workers=2, progress=False)
        assert used == ["ProcessExecutor"]
        assert got.files_read == ref.files_read == 41
        got_db = got.db_path
    with Index(ref.db_path) as a, Index(got_db) as b:
        pa, pb = a.instances(), b.instances()
        assert pa.drop(columns="mtime").equals(pb.drop(columns="mtime"))
        assert a.skipped().equals(b.skipped())
        assert len(pb) == 40 and list(b.skipped()["path"]) == [str(export / "b" / "notes.txt")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path, row in pb.set_index("path").iterrows():
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            assert row["sop_instance_uid"] == ds.SOPInstanceUID
            assert row["image_position"] == tuple(float(v) for v in ds.ImagePositionPatient)
            assert row["image_orientation"] == tuple(
                float(v) for v in ds.ImageOrientationPatient)
            assert row["instance_number"] == int(ds.InstanceNumber)


def test_a_killed_worker_costs_its_file_not_the_scan(export, tmp_path):
    """SIGKILL of the worker reading one file (as the OOM killer does): the scan finishes,
    every other file is indexed, that file is skipped with the reason and read again by the
    next scan."""
    poison = str(sorted((export / "a").iterdir())[5])
    code = ("import os, signal, sys, dicomml.io.scanner as m\n"
            "from dicomml.parallel import get_executor\n"
            "m.CHUNK_SIZE = 4\n"
            "parent = os.getpid()\n"
            "read = m.scan_chunk\n"
            "def scan_chunk(items, fast=True):\n"
            "    if os.getpid() != parent and any(p == sys.argv[3] for p, _s, _m in items):\n"
            "        os.kill(os.getpid(), signal.SIGKILL)\n"
            "    return read(items, fast=fast)\n"
            "m.scan_chunk = scan_chunk\n"
            "m._start_executor = lambda w: get_executor('processes', workers=2, "
            "start_method='fork')\n"
            "r = m.scan(sys.argv[1], sys.argv[2], workers=3, progress=False)\n"
            "print(r.files_read, len(r.skipped))\n")
    db = tmp_path / "killed.sqlite"
    proc = subprocess.run([sys.executable, "-c", code, str(export), str(db), poison],
                          capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["41", "2"], proc.stdout
    with Index(db) as index:
        skipped = index.skipped().set_index("path")
        assert len(index.instances()) == 39
        assert poison not in set(index.instances()["path"])
    reason = skipped.loc[poison, "reason"]
    assert "SIGKILL" in reason and "scan again" in reason, reason
    again = scan(export, db, workers=0, progress=False)  # the next scan reads it again
    assert again.files_read == 1
    with Index(db) as index:
        assert poison in set(index.instances()["path"]) and len(index.instances()) == 40


def test_a_small_first_scan_starts_no_worker(export, tmp_path, monkeypatch):
    """41 files are one chunk: read in this process, no worker started (forking one and
    closing it cost a first scan of a small folder ~10 ms); with 4-file chunks the same
    scan starts them, once, after the first files are walked."""
    used = []
    start = scan_mod._start_executor
    monkeypatch.setattr(scan_mod, "_start_executor",
                        lambda w: used.append(w) or start(w))
    monkeypatch.setattr(scan_mod, "_fork_is_safe", lambda: False)
    small = scan(export, tmp_path / "small.sqlite", workers=2, progress=False)
    assert used == [] and small.files_read == 41
    monkeypatch.setattr(scan_mod, "CHUNK_SIZE", 4)
    many = scan(export, tmp_path / "many.sqlite", workers=2, progress=False)
    assert used == [2] and many.files_read == 41
    with Index(small.db_path) as a, Index(many.db_path) as b:
        assert a.instances().drop(columns="mtime").equals(b.instances().drop(columns="mtime"))


def test_a_small_job_is_read_in_this_process(tmp_path, monkeypatch):
    """Up to SMALL_JOB_CHUNKS chunks of files, a scan forks no worker (it would cost more
    than the second CPU gives back); one file more, and a first scan starts its workers
    as the walk goes on. A re-scan decides the same way on the files it must read."""
    monkeypatch.setattr(scan_mod, "CHUNK_SIZE", 4)
    limit = scan_mod.SMALL_JOB_CHUNKS * 4
    from dicomml.parallel import get_executor
    started = []
    monkeypatch.setattr(scan_mod, "_start_executor",
                        lambda w: started.append(w) or get_executor("inprocess"))
    small, big = tmp_path / "small", tmp_path / "big"
    write_ct_series(small, seed=3, n_slices=limit, rows=8, columns=8, noise=0.0)
    write_ct_series(big, seed=4, n_slices=limit + 1, rows=8, columns=8, noise=0.0)
    r = scan(small, tmp_path / "s.sqlite", workers=2, progress=False)
    assert (r.files_read, started) == (limit, [])
    r = scan(big, tmp_path / "b.sqlite", workers=2, progress=False)
    assert (r.files_read, started) == (limit + 1, [2])
    for p in sorted(big.rglob("*"))[-(limit + 1):]:          # every file changed: read again
        if p.is_file():
            p.write_bytes(p.read_bytes())
    started.clear()
    r = scan(big, tmp_path / "b.sqlite", workers=2, progress=False)
    assert (r.files_read, started) == (limit + 1, [2])
