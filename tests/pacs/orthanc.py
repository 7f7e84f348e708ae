"""A real Orthanc for tests, inside a private network namespace with loopback only.

Orthanc 1.10 listens on every interface, so it must never run in the machine's own network
namespace. :func:`orthanc_in_netns` moves the *calling thread* (the pytest main thread) into a
fresh, anonymous network namespace (``unshare(CLONE_NEWNET)``) whose only interface is
loopback, starts Orthanc there as a child process (children inherit the namespace), and on
exit kills Orthanc and moves the thread back to the original namespace (``setns``). The test
clients (requests, pynetdicom and the threads it starts) run in the same thread, hence in the
same namespace; nothing outside the namespace can reach Orthanc, and once Orthanc is dead and
the thread has left, the kernel frees the namespace. Orthanc gets ``PR_SET_PDEATHSIG`` so that
it dies with the test process even on a hard kill.

Needs root (CAP_SYS_ADMIN), ``ip`` (iproute2) and ``unshare`` (util-linux); CI runs as root.
:func:`netns_available` probes all three (the ``orthanc`` fixture skips locally and fails in CI
when they are missing).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

__all__ = ["Orthanc", "orthanc_in_netns", "netns_available", "orthanc", "running_orthanc"]

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
_PLUGIN_CANDIDATES = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
                      "/usr/lib/orthanc/libOrthancDicomWeb.so.1.7")

_libc = ctypes.CDLL(None, use_errno=True)


def netns_available() -> str | None:
    """Return None when a private network namespace can be made here, else the reason."""
    if shutil.which("ip") is None:
        return "'ip' (iproute2) is not installed; apt-get install iproute2"
    if shutil.which("unshare") is None:
        return "'unshare' (util-linux) is not installed; apt-get install util-linux"
    probe = subprocess.run(["unshare", "--net", "ip", "link", "set", "lo", "up"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return ("cannot create a private network namespace for Orthanc (needs root with "
                "CAP_SYS_ADMIN; in a container add --cap-add SYS_ADMIN): "
                + (probe.stderr.strip() or f"exit status {probe.returncode}"))
    return None


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _dicomweb_plugin() -> str:
    for p in _PLUGIN_CANDIDATES:
        if os.path.exists(p):
            return p
    raise FileNotFoundError("Orthanc DICOMweb plugin not found; apt-get install orthanc-dicomweb")


class Orthanc:
    """One Orthanc server process with its own storage folder (kept across restarts).

    Use it only inside :func:`orthanc_in_netns`.
    """

    aet = "ORTHANC"
    http_port = 8042
    dicom_port = 4242
    host = "127.0.0.1"

    def __init__(self, workdir: Path, our_aet: str = "DICOMML", our_port: int = 11112):
        self.workdir = Path(workdir)
        self.storage = self.workdir / "storage"
        self.storage.mkdir(parents=True, exist_ok=True)
        self.config = self.workdir / "orthanc.json"
        self.log = self.workdir / "orthanc.log"
        cfg = {
            "Name": "dicomml-test",
            "StorageDirectory": str(self.storage),
            "IndexDirectory": str(self.storage),
            "StorageCompression": False,
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomServerEnabled": True,
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": True,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowGet": True,
            "DicomAlwaysAllowMove": True,
            "UnknownSopClassAccepted": True,
            "DicomModalities": {"dicomml": [our_aet, "127.0.0.1", our_port]},
            "SaveJobs": False,
            "Plugins": [_dicomweb_plugin()],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False,
                         "StudiesMetadata": "Full", "SeriesMetadata": "Full"},
        }
        self.config.write_text(json.dumps(cfg, indent=1), encoding="utf-8")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """DICOMweb root URL."""
        return f"http://{self.host}:{self.http_port}/dicom-web"

    @property
    def rest(self) -> str:
        """Orthanc REST root URL."""
        return f"http://{self.host}:{self.http_port}"

    def start(self, timeout: float = 30.0) -> None:
        """Start Orthanc and wait until both its HTTP and DICOM ports answer."""
        if self.proc is not None and self.proc.poll() is None:
            return
        exe = shutil.which("Orthanc")
        if exe is None:
            raise FileNotFoundError("Orthanc is not installed (apt-get install orthanc)")
        logf = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([exe, str(self.config)], stdout=logf, stderr=logf,
                                     stdin=subprocess.DEVNULL, preexec_fn=_set_pdeathsig)
        self._logf = logf
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.proc.returncode}; see "
                                   f"{self.log}:\n{self.log.read_text(errors='replace')[-3000:]}")
            try:
                with urllib.request.urlopen(self.rest + "/system", timeout=1) as r:
                    r.read()
                with socket.create_connection((self.host, self.dicom_port), timeout=1):
                    pass
                return
            except OSError:
                time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"Orthanc did not start within {timeout} s; see {self.log}")

    def kill(self) -> None:
        """Kill Orthanc at once (SIGKILL), as a crash or a power cut would."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=30)
            self.proc = None
            self._logf.close()

    def stop(self) -> None:
        """Stop Orthanc cleanly (SIGTERM, then SIGKILL after 10 s)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=30)
            self.proc = None
            self._logf.close()

    def restart(self) -> None:
        self.kill()
        self.start()

    def instance_count(self) -> int:
        """Number of instances Orthanc holds (REST ``/statistics``)."""
        with urllib.request.urlopen(self.rest + "/statistics", timeout=10) as r:
            return int(json.loads(r.read())["CountInstances"])

    def clear(self) -> None:
        """Delete every patient (REST ``DELETE /patients/{id}``)."""
        with urllib.request.urlopen(self.rest + "/patients", timeout=10) as r:
            ids = json.loads(r.read())
        for pid in ids:
            req = urllib.request.Request(f"{self.rest}/patients/{pid}", method="DELETE")
            with urllib.request.urlopen(req, timeout=10) as r:
                r.read()


@contextlib.contextmanager
def _private_netns() -> Iterator[None]:
    """Move the calling thread into a new network namespace with loopback up; restore after."""
    orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if _libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"unshare(CLONE_NEWNET) failed: {os.strerror(err)}")
        try:
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=30)
            yield
        finally:
            if _libc.setns(orig, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns back to the original network namespace failed: "
                                   f"{os.strerror(err)}")
    finally:
        os.close(orig)


@contextlib.contextmanager
def orthanc_in_netns(**kwargs) -> Iterator[Orthanc]:
    """Start an Orthanc in a private loopback-only network namespace; yield it; clean up."""
    workdir = Path(tempfile.mkdtemp(prefix="dicomml-orthanc-"))
    outer = os.readlink("/proc/thread-self/ns/net")
    try:
        with _private_netns():
            server = Orthanc(workdir, **kwargs)
            server.outer_netns = outer
            try:
                server.start()
                yield server
            finally:
                server.kill()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# -- pytest fixtures (import them into a test module to use them) ---------------------------


@pytest.fixture(scope="module")
def orthanc():
    """One Orthanc per test module, in a private loopback-only network namespace.

    Skips locally, fails in CI, when Orthanc or the namespace is not available.
    """
    from tests.conftest import require_tool

    require_tool("Orthanc")
    reason = netns_available()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with orthanc_in_netns() as server:
        yield server


@pytest.fixture
def running_orthanc(orthanc):
    """The module's Orthanc, restarted if a previous test killed it."""
    if orthanc.proc is None:
        orthanc.start()
    yield orthanc
