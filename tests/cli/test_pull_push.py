"""``dicomml pull`` / ``dicomml push`` against a real Orthanc (private network namespace)."""

from __future__ import annotations

import pytest

from dicomml.cli import main
from tests.pacs._data import assert_same_instance, by_sop, ct_study, header
from tests.pacs.orthanc import orthanc  # noqa: F401 - fixture

pytestmark = pytest.mark.tool


def dimse_args(server):
    return ["--aet", server.aet, "--host", server.host, "--port", str(server.dicom_port)]


def test_push_then_pull_dicomweb_and_dimse(orthanc, tmp_path, capsys):  # noqa: F811
    ct = ct_study(tmp_path / "src", seed=41, n_slices=4)
    (tmp_path / "src" / "README.txt").write_text("not DICOM")
    study = str(header(ct[0]).StudyInstanceUID)

    assert main(["push", "--dicomweb", orthanc.url, "--no-progress", str(tmp_path / "src")]) == 1
    out, err = capsys.readouterr()
    assert f"stored {len(ct)} instances" in out and "README.txt: not DICOM" in err

    assert main(["push", *dimse_args(orthanc), "--no-progress", *map(str, ct)]) == 0
    assert f"stored {len(ct)} instances" in capsys.readouterr().out

    for name, how in (("web", ["--dicomweb", orthanc.url]), ("dimse", dimse_args(orthanc))):
        dest = tmp_path / name
        assert main(["pull", *how, "--study", study, "--out", str(dest), "--no-progress"]) == 0
        assert f"fetched {len(ct)}, already present 0" in capsys.readouterr().out
        got, src = by_sop(dest.rglob("*.dcm")), by_sop(ct)
        assert set(got) == set(src)
        for uid in src:
            assert_same_instance(got[uid], src[uid])
        assert main(["pull", *how, "--study", study, "--out", str(dest), "--no-progress"]) == 0
        assert f"fetched 0, already present {len(ct)}" in capsys.readouterr().out


def test_pull_unreachable_is_a_clean_error(tmp_path, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    status = main(["pull", "--dicomweb", f"http://127.0.0.1:{port}/dicom-web", "--study", "1.2.3",
                   "--out", str(tmp_path), "--retries", "1", "--timeout", "2", "--no-progress"])
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("dicomml pull: error: ") and "Traceback" not in err
    assert f"127.0.0.1:{port}" in err


def test_push_needs_one_pacs(tmp_path, capsys):
    assert main(["push", str(tmp_path)]) == 2
    assert "which PACS" in capsys.readouterr().err
    assert main(["pull", "--study", "1.2", "--out", str(tmp_path), "--dicomweb", "http://x/y",
                 "--aet", "A", "--host", "h", "--port", "1"]) == 2
    assert "either" in capsys.readouterr().err
