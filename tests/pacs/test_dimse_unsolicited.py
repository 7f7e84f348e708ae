"""C-GET keeps only what was requested (issue 14, item 11).

A PACS may answer a C-GET with instances that were not asked for, even of other studies.
A real pynetdicom Get SCP that sends the requested instance plus one of another study:
only the requested one is written; the other is refused; no traceback reaches stderr.
"""

from __future__ import annotations

import socket

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicomml.pacs import DimsePacs
from dicomml.pacs.base import InstanceRef
from tests.conftest import testdata


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def greedy_scp():
    from pynetdicom import AE, StoragePresentationContexts, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GetModel

    asked = pydicom.dcmread(testdata("CT_small.dcm"))
    other = pydicom.dcmread(testdata("CT_small.dcm"))
    other.StudyInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["other-study"])
    other.SeriesInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["other-series"])
    other.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["other-sop"])

    def on_get(event):
        yield 2
        for ds in (asked, other):
            yield 0xFF00, ds

    ae = AE(ae_title="GREEDY")
    ae.add_supported_context(GetModel, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    for cx in StoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, [ExplicitVRLittleEndian,
                                                      ImplicitVRLittleEndian],
                                 scu_role=True, scp_role=True)
    port = _free_port()
    server = ae.start_server(("127.0.0.1", port), block=False,
                             evt_handlers=[(evt.EVT_C_GET, on_get)])
    try:
        yield port, asked, other
    finally:
        server.shutdown()


def test_c_get_writes_only_the_requested_instances(greedy_scp, tmp_path, capfd, caplog):
    port, asked, other = greedy_scp
    pacs = DimsePacs("GREEDY", "127.0.0.1", port, timeout=10, retries=0)
    ref = InstanceRef(str(asked.StudyInstanceUID), str(asked.SeriesInstanceUID),
                      str(asked.SOPInstanceUID), str(asked.SOPClassUID))
    written = []
    with caplog.at_level("WARNING", logger="dicomml.pacs"):
        pacs._fetch([ref], tmp_path, lambda r, p: written.append(p))
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert files == written and len(files) == 1
    assert pydicom.dcmread(files[0]).SOPInstanceUID == asked.SOPInstanceUID
    assert not any(str(other.StudyInstanceUID) in str(p) for p in tmp_path.rglob("*"))
    assert any("not requested" in r.getMessage() for r in caplog.records)
    assert "Traceback" not in capfd.readouterr().err
