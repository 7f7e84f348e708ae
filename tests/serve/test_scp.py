"""The C-STORE SCP: what it accepts, what it refuses (with which status), what it writes.

The node's SCP runs in this process on 127.0.0.1; pynetdicom and dcmtk's storescu send.
"""

from __future__ import annotations

import socket
import subprocess

import pydicom
import pytest

from dicomml.serve.config import ServeConfig
from dicomml.serve.queue import JobQueue
from dicomml.serve.scp import StoreSCP
from tests.conftest import testdata

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
ELE = "1.2.840.10008.1.2.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def scp(tmp_path):
    cfg = ServeConfig(run_dir=tmp_path / "run", port=_free_port(), spool=tmp_path / "spool",
                      allowed_aets=("SENDER",), sop_classes=(CT,), max_instance_mb=0.1)
    q = JobQueue(cfg.queue_path)
    node = StoreSCP(cfg, q)
    node.start()
    yield node
    node.stop()
    q.close()


def _spooled(node) -> list:
    return sorted(p for p in (node.root).rglob("*") if p.is_file()) if node.root.exists() else []


def _assoc(node, calling="SENDER", contexts=((CT, ELE),)):
    from pynetdicom import AE

    ae = AE(ae_title=calling)
    for abstract, ts in contexts:
        ae.add_requested_context(abstract, ts)
    return ae.associate("127.0.0.1", node.config.port, ae_title=node.config.ae_title)


def test_store_once_and_record(scp):
    path = testdata("CT_small.dcm")
    ds = pydicom.dcmread(path)
    assoc = _assoc(scp)
    assert assoc.is_established
    try:
        assert assoc.send_c_store(ds).Status == 0x0000
        assert assoc.send_c_store(ds).Status == 0x0000  # the same instance again
    finally:
        assoc.release()
    files = _spooled(scp)
    assert len(files) == 1
    back = pydicom.dcmread(files[0])
    assert back.SOPInstanceUID == ds.SOPInstanceUID
    assert (back.pixel_array == ds.pixel_array).all()
    row = scp.queue.study(ds.StudyInstanceUID)
    assert (row["state"], row["n_instances"]) == ("receiving", 1)


def test_unknown_calling_ae_is_rejected(scp):
    assoc = _assoc(scp, calling="STRANGER")
    assert assoc.is_rejected
    assert _spooled(scp) == []


def test_unaccepted_sop_class_is_refused_at_negotiation(scp):
    ds = pydicom.dcmread(testdata("MR_small.dcm"))
    assoc = _assoc(scp, contexts=((CT, ELE), (MR, ELE)))
    assert assoc.is_established
    try:
        result = {cx.abstract_syntax: cx.result for cx in assoc.rejected_contexts}
        assert result == {MR: 0x03}  # PS3.8 9.3.3.2: abstract syntax not supported
        with pytest.raises(ValueError, match="presentation context"):
            assoc.send_c_store(ds)
    finally:
        assoc.release()
    assert _spooled(scp) == []


def test_oversized_dataset_gets_out_of_resources(scp):
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(testdata("CT_small.dcm"))  # ~39 kB
    ds.SOPInstanceUID = generate_uid()
    ds.PixelData = ds.PixelData * 4  # ~128 kB, over max_instance_mb = 0.1
    ds.Rows = ds.Rows * 4
    assoc = _assoc(scp)
    try:
        assert assoc.send_c_store(ds).Status == 0xA700
    finally:
        assoc.release()
    assert _spooled(scp) == []
    assert scp.queue.status()["counts"]["receiving"] == 0
    assert "over the limit" in scp.queue.status()["last_errors"][0]["message"]


def test_storescu_is_refused_for_unknown_ae_and_accepted_for_a_known_one(scp, tool):
    exe = tool("storescu")
    path = testdata("CT_small.dcm")
    args = [exe, "-aec", scp.config.ae_title, "127.0.0.1", str(scp.config.port), path]
    bad = subprocess.run(args[:1] + ["-aet", "STRANGER"] + args[1:], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode != 0
    assert "Calling AE Title Not Recognized" in bad.stderr + bad.stdout
    assert _spooled(scp) == []
    ok = subprocess.run(args[:1] + ["-aet", "SENDER"] + args[1:], capture_output=True,
                        text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert len(_spooled(scp)) == 1


def test_full_spool_refuses_new_instances_and_keeps_what_it_accepted(tmp_path):
    from pydicom.uid import generate_uid

    path = testdata("CT_small.dcm")  # ~39 kB: one fits in 60 kB, two do not
    cfg = ServeConfig(run_dir=tmp_path / "run", port=_free_port(), spool=tmp_path / "spool",
                      max_spool_gb=60e3 / 2**30)
    q = JobQueue(cfg.queue_path)
    node = StoreSCP(cfg, q)
    node.start()
    try:
        first, second = pydicom.dcmread(path), pydicom.dcmread(path)
        second.SOPInstanceUID = generate_uid()
        assoc = _assoc(node, calling="ANY")
        try:
            assert assoc.send_c_store(first).Status == 0x0000
            assert assoc.send_c_store(second).Status == 0xA700
        finally:
            assoc.release()
        files = _spooled(node)
        assert [pydicom.dcmread(f).SOPInstanceUID for f in files] == [first.SOPInstanceUID]
        assert "spool is full" in q.status()["last_errors"][0]["message"]
    finally:
        node.stop()
        q.close()
