"""Failure modes without a PACS: unreachable endpoints, retry policy, bad settings."""

from __future__ import annotations

import socket
import time

import pytest

from dicomml.errors import ConfigError, DicommlError
from dicomml.pacs import DicomwebPacs, DimsePacs, PacsError, RetryPolicy
from dicomml.pacs._retry import TransientError, call_with_retry
from dicomml.pacs.connection import connect


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_pacs_error_is_a_connection_error():
    assert issubclass(PacsError, DicommlError) and issubclass(PacsError, ConnectionError)


@pytest.mark.parametrize("make", [
    lambda port: DicomwebPacs(f"http://127.0.0.1:{port}/dicom-web", timeout=2, retries=2,
                              backoff=0.05),
    lambda port: DimsePacs("ORTHANC", "127.0.0.1", port, timeout=2, retries=2, backoff=0.05),
], ids=["dicomweb", "dimse"])
@pytest.mark.parametrize("op", ["echo", "query", "retrieve", "store"])
def test_unreachable_port_fails_fast(make, op, tmp_path):
    from tests.pacs._data import jpeg2000_mr

    port = free_port()
    pacs = make(port)
    calls = {"echo": lambda: pacs.echo(),
             "query": lambda: pacs.query("study", StudyInstanceUID="1.2.3"),
             "retrieve": lambda: pacs.retrieve("1.2.3", tmp_path, progress=False),
             "store": lambda: pacs.store([jpeg2000_mr()])}
    t0 = time.monotonic()
    with pytest.raises(PacsError) as info:
        calls[op]()
    assert time.monotonic() - t0 < 2.0
    assert f"127.0.0.1:{port}" in str(info.value) and info.value.transient
    assert "3 attempt(s)" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_retry_backoff_doubles_and_stops():
    sleeps, attempts = [], []
    policy = RetryPolicy(retries=3, backoff=0.01, max_backoff=0.02, total=5)

    def flaky():
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise TransientError("reset")
        return "ok"

    assert call_with_retry(flaky, policy, "op") == "ok"
    assert len(attempts) == 3
    gaps = [b - a for a, b in zip(attempts, attempts[1:])]
    assert gaps[0] >= 0.01 and gaps[1] >= 0.02
    del sleeps

    n = []

    def always():
        n.append(1)
        raise TransientError("refused")

    with pytest.raises(PacsError, match="op failed after 4 attempt"):
        call_with_retry(always, policy, "op")
    assert len(n) == 4


def test_retry_total_time_is_bounded():
    n = []

    def always():
        n.append(1)
        raise TransientError("refused")

    t0 = time.monotonic()
    with pytest.raises(PacsError):
        call_with_retry(always, RetryPolicy(retries=100, backoff=0.05, max_backoff=0.05,
                                            total=0.3), "op")
    assert time.monotonic() - t0 < 0.6 and len(n) < 10


def test_non_transient_errors_are_not_retried():
    n = []

    def broken():
        n.append(1)
        raise PacsError("rejected")

    with pytest.raises(PacsError, match="rejected"):
        call_with_retry(broken, RetryPolicy(retries=5, backoff=0.01), "op")
    assert n == [1]


def test_bad_settings():
    with pytest.raises(ConfigError, match="did you mean 'series'"):
        DicomwebPacs("http://127.0.0.1:1/dicom-web").query("serie")
    with pytest.raises(ConfigError, match="unknown DICOM keyword"):
        DicomwebPacs("http://127.0.0.1:1/dicom-web").query("study", PatientNam="x")
    with pytest.raises(ConfigError, match="AE title"):
        DimsePacs("A" * 17, "localhost", 104)
    with pytest.raises(ConfigError, match="port"):
        DimsePacs("PACS", "localhost", 70000)
    with pytest.raises(ConfigError, match="URL"):
        DicomwebPacs("ftp://pacs/dicom-web")
    with pytest.raises(ConfigError, match="either"):
        connect(dicomweb="http://x/dicom-web", aet="A", host="h", port=1)
    with pytest.raises(ConfigError, match="which PACS"):
        connect(aet="A")
    with pytest.raises(ConfigError):
        RetryPolicy(retries=-1)


def test_pacs_package_does_not_import_tensorflow():
    import subprocess
    import sys

    code = ("import sys, dicomml.pacs as p; p.DicomwebPacs; p.DimsePacs; p.deidentify; "
            "p.predict_remote; import dicomml.cli.pull, dicomml.cli.push, dicomml.cli.deid; "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "False"


def test_retrieve_gets_a_fresh_budget_after_progress(tmp_path):
    """A fault after some instances arrived is retried anew; a stall is not."""
    from dicomml.pacs.base import InstanceRef, Pacs, instance_path

    refs = [InstanceRef("1.2", "1.2.3", f"1.2.3.{i}") for i in range(4)]

    class Flaky(Pacs):
        """Sends one instance per connection, then the connection resets."""

        endpoint = "flaky"
        policy = RetryPolicy(retries=1, backoff=0.01, total=5)
        calls = 0

        def echo(self):
            return True

        def store(self, paths, progress=False):
            raise NotImplementedError

        def _query(self, level, filters):
            return [{"StudyInstanceUID": r.study_uid, "SeriesInstanceUID": r.series_uid,
                     "SOPInstanceUID": r.sop_uid} for r in refs]

        def _fetch(self, missing, out_dir, on_written):
            self.calls += 1
            path = instance_path(out_dir, missing[0])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
            on_written(missing[0], path)
            if len(missing) > 1:
                raise TransientError("reset")

    pacs = Flaky()
    res = pacs.retrieve("1.2", tmp_path, progress=False)
    assert len(res.fetched) == 4 and pacs.calls == 4 and res.listed == 4

    class Stalled(Flaky):
        def _fetch(self, missing, out_dir, on_written):
            self.calls += 1
            raise TransientError("refused")

    stalled = Stalled()
    with pytest.raises(PacsError, match="2 attempt"):
        stalled.retrieve("1.2", tmp_path / "s", progress=False)
    assert stalled.calls == 2
