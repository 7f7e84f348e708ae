"""kill -9 in the middle of ``dicomml scan``, the cache fill and training; the rerun resumes.

The interrupted scan's Index must pass ``PRAGMA integrity_check``, and after a rerun hold
exactly what an uninterrupted scan of the same export holds.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from dicomml.io import Index
from tests.hardening._export import write_export

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")


def _count(db: Path, table: str) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 120) -> bool:
    """SIGKILL ``proc``'s whole process group once ``ready()``; False if it ended first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        if ready():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            return True
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    raise AssertionError(f"condition not reached within {timeout} s")


def _integrity(db: Path) -> str:
    con = sqlite3.connect(db)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def _sorted_instances(db: Path) -> pd.DataFrame:
    with Index(db) as idx:
        df = idx.instances()
    keep = [c for c in df.columns if c not in ("scanned_at", "scan_id")]
    return df[keep].sort_values("sop_instance_uid").reset_index(drop=True)


@pytest.mark.slow
def test_scan_killed_midway_resumes_to_the_same_index(tmp_path):
    src = tmp_path / "export"
    counts = write_export(src, 4000, broken_every=97)
    ref_db = tmp_path / "ref.sqlite"
    cmd = [sys.executable, "-m", "dicomml", "scan", str(src), "--workers", "2",
           "--no-progress"]
    subprocess.run(cmd + ["--db", str(ref_db)], env=ENV, check=False, timeout=600,
                   capture_output=True)
    db = tmp_path / "killed.sqlite"
    proc = subprocess.Popen(cmd + ["--db", str(db)], env=ENV, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed = _kill_when(proc, lambda: _count(db, "files") > 0)
    assert killed, "the scan finished before it could be killed; make the export larger"
    done_at_kill = _count(db, "files")
    assert 0 < done_at_kill < 4000
    assert _integrity(db) == "ok"
    # rerun: reads only what is missing, ends with the same index
    rerun = subprocess.run(cmd + ["--db", str(db), "--json"], env=ENV, timeout=600,
                           capture_output=True, text=True)
    assert rerun.returncode == 1, rerun.stderr[-2000:]  # broken files are skipped: status 1
    import json

    summary = json.loads(rerun.stdout)
    assert summary["files_read"] <= 4000 - done_at_kill
    assert summary["files_seen"] == 4000
    assert _integrity(db) == "ok"
    got, ref = _sorted_instances(db), _sorted_instances(ref_db)
    assert len(ref) == counts["valid"]
    pd.testing.assert_frame_equal(got, ref)
    with Index(db) as a, Index(ref_db) as b:
        sa = a.skipped().sort_values("path").reset_index(drop=True)
        sb = b.skipped().sort_values("path").reset_index(drop=True)
    assert len(sa) == counts["truncated"] + counts["not_dicom"] + counts["empty"]
    assert sa["path"].tolist() == sb["path"].tolist()
    assert sa["reason"].tolist() == sb["reason"].tolist()


def _cache_tensors(cache_root: Path) -> dict:
    """``{(sop_instance_uid, frame): tensor}`` over every finished shard of the cache."""
    import json

    import numpy as np

    out = {}
    for js in sorted(cache_root.rglob("shard-*.json")):
        index = json.loads(js.read_text())
        arr = np.load(js.with_suffix(".npy"))
        assert arr.shape[0] == len(index["keys"])
        for (sop, frame), x in zip(index["keys"], arr):
            out[(sop, int(frame))] = x
    return out


@pytest.mark.slow
def test_preprocess_cli_killed_midway_resumes_to_the_same_cache(tmp_path):
    src = tmp_path / "export"
    write_export(src, 600, broken_every=50)
    base = [sys.executable, "-m", "dicomml", "preprocess", str(src), "--workers", "2",
            "--quiet"]
    ref = subprocess.run(base + ["--cache", str(tmp_path / "ref"), "--db",
                                 str(tmp_path / "ref.sqlite")],
                         env=ENV, capture_output=True, text=True, timeout=600)
    assert ref.returncode in (0, 1), ref.stderr[-2000:]
    cache = tmp_path / "cache"
    cmd = base + ["--cache", str(cache), "--db", str(tmp_path / "db.sqlite")]
    proc = subprocess.Popen(cmd, env=ENV, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed = _kill_when(proc, lambda: len(list(cache.rglob("shard-*.json"))) >= 1)
    assert killed, "preprocess finished before it could be killed"
    partial = _cache_tensors(cache)  # every finished shard is whole and readable
    rerun = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == ref.returncode, rerun.stderr[-2000:]
    got, want = _cache_tensors(cache), _cache_tensors(tmp_path / "ref")
    assert 0 < len(partial) < len(want)
    assert sorted(got) == sorted(want)
    for key, x in want.items():
        assert (got[key] == x).all()
