"""A ``dicomml serve`` process and an Orthanc that sends to it, for the node tests and bench.

The node runs as a child process (``python -m dicomml.cli serve``) so that a test can kill it
with SIGKILL; started from the thread that is inside Orthanc's private network namespace
(:mod:`tests.pacs.orthanc`), it lives in that namespace too.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pydicom

from tests.conftest import require_tool
from tests.pacs.orthanc import _set_pdeathsig

NODE_AET, NODE_PORT = "DICOMML", 11112  # as tests.pacs.orthanc.Orthanc's modality "dicomml"


class NodeProcess:
    """``dicomml serve RUN ...`` with its stderr in ``SPOOL/../node.log``."""

    def __init__(self, run_dir: Path, spool: Path, orthanc, *, stable: float = 1.0,
                 extra: tuple[str, ...] = (), send_to: str | None = None):
        dest = send_to or f"dimse://{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}"
        self.args = [sys.executable, "-m", "dicomml.cli", "serve", str(run_dir),
                     "--ae", NODE_AET, "--port", str(NODE_PORT), "--spool", str(spool),
                     "--send-to", dest,
                     "--allow-aet", orthanc.aet, "--allow-aet", "STORESCU",
                     "--stable-seconds", str(stable), "--log-level", "INFO", *extra]
        self.spool = Path(spool)
        self.log = self.spool.parent / f"{self.spool.name}-node.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> None:
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]),
                   TF_CPP_MIN_LOG_LEVEL="2")
        logf = open(self.log, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(self.args, stdout=logf, stderr=logf, env=env,
                                     stdin=subprocess.DEVNULL, preexec_fn=_set_pdeathsig)
        logf.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dicomml serve exited with {self.proc.returncode}:\n"
                                   + self.log.read_text(errors="replace")[-3000:])
            try:
                with socket.create_connection(("127.0.0.1", NODE_PORT), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        self.kill()
        raise RuntimeError("dicomml serve did not listen in time:\n"
                           + self.log.read_text(errors="replace")[-3000:])

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=30)
            self.proc = None

    def terminate(self, timeout: float = 120.0) -> int:
        """SIGTERM (drain) and wait; the exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=timeout)
        self.proc = None
        return rc

    def status(self) -> dict:
        from dicomml.serve.monitor import status

        return status(self.spool)

    def states(self) -> dict[str, str]:
        """study key → state, read from the queue."""
        import sqlite3

        con = sqlite3.connect(self.spool / "queue.sqlite", timeout=30)
        try:
            return dict(con.execute("SELECT key, state FROM studies"))
        finally:
            con.close()


def rest(orthanc, path: str, body=None, method: str | None = None):
    data = None if body is None else (body if isinstance(body, bytes)
                                      else json.dumps(body).encode())
    req = urllib.request.Request(orthanc.rest + path, data=data, method=method)
    with urllib.request.urlopen(req, timeout=120) as r:
        out = r.read()
    return json.loads(out) if out else None


def upload(orthanc, paths) -> str:
    """POST the files to Orthanc; its study ID."""
    study = None
    for p in paths:
        study = rest(orthanc, "/instances", Path(p).read_bytes())["ParentStudy"]
    return study


def orthanc_send(orthanc, study_id: str) -> None:
    """Orthanc C-STOREs a study to the node (REST ``/modalities/dicomml/store``)."""
    rest(orthanc, "/modalities/dicomml/store", {"Resources": [study_id], "Synchronous": True})


def storescu(paths, *, timeout: float = 120) -> subprocess.CompletedProcess:
    """dcmtk's storescu sends files to the node as AE STORESCU."""
    return subprocess.run([require_tool("storescu"), "-aet", "STORESCU", "-aec", NODE_AET, "127.0.0.1",
                           str(NODE_PORT), *map(str, paths)], capture_output=True, text=True,
                          timeout=timeout)


def results_in(orthanc, study_uid: str) -> dict[str, list[pydicom.Dataset]]:
    """``{"SR": [...], "SC": [...], "PM": [...]}``: dicomml's results in the study in Orthanc."""
    ids = rest(orthanc, "/tools/lookup", study_uid.encode(), method="POST")
    ids = [i["ID"] for i in ids if i["Type"] == "Study"]
    out: dict[str, list[pydicom.Dataset]] = {}
    if not ids:
        return out
    for series in rest(orthanc, f"/studies/{ids[0]}/series"):
        tags = series["MainDicomTags"]
        desc = tags.get("SeriesDescription", "")
        mod = ("SR" if tags.get("Modality") == "SR" else
               "SC" if desc == "dicomml Grad-CAM" else "PM" if desc == "dicomml Grad-CAM map"
               else "")
        if mod:
            for inst in series["Instances"]:
                req = urllib.request.Request(f"{orthanc.rest}/instances/{inst}/file")
                with urllib.request.urlopen(req, timeout=60) as r:
                    from io import BytesIO

                    out.setdefault(mod, []).append(pydicom.dcmread(BytesIO(r.read())))
    return out


def wait_for(pred, timeout: float, what: str, every: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
