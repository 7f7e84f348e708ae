"""Parallel scans give the Index of the in-process scan, whichever way the workers run.

Paths: forked processes with this process reading chunks too (``local``), and
:mod:`dicomml.parallel` local processes started before the walk (when forking is not
safe). The reference is the in-process scan, itself checked against pydicom in
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
                "m._start_executor = lambda w: used.append(type(ex := start(w)).__name__) or ex; "
                "r = m.scan(sys.argv[1], sys.argv[2], workers=2, progress=False); "
                "print(r.files_read, *used)")
        out = subprocess.run([sys.executable, "-c", code, str(export),
                              str(tmp_path / "par.sqlite")], capture_output=True, text=True,
                             check=True, cwd=Path(__file__).resolve().parents[2]).stdout
        assert out.split() == ["41", "_ForkedProcesses"]
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
