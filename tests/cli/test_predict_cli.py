"""``dicomml predict`` through the real CLI entry point."""

from __future__ import annotations

import pytest

import keras  # noqa: F401 - a hard dependency: a broken install fails

from dicomml.cli import main  # noqa: E402
from dicomml.cli import predict as predict_cli  # noqa: E402
from dicomml.report.sr import read_sr  # noqa: E402
from tests.evaluate.runfolder import dicom_folder, shared_run  # noqa: E402


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return shared_run(tmp_path_factory)


def test_help_has_example(capsys):
    assert main(["predict", "--help"]) == 0
    out = capsys.readouterr().out
    assert "dicomml predict runs/" in out and "--out" in out and "--no-sc" in out


@pytest.mark.slow
def test_predict_ok_and_skipped(shared, tmp_path, capsys):
    data = dicom_folder(shared, tmp_path / "incoming")
    out = tmp_path / "out"
    status = main(["predict", str(shared), str(data), "--out", str(out), "--workers", "0",
                   "--threshold", "0", "--no-sc", "--no-progress"])
    cap = capsys.readouterr()
    assert status == 0, cap.err
    srs = sorted(out.glob("SR_*.dcm"))
    assert len(srs) == len(list(data.iterdir()))  # one study per patient folder
    assert not list(out.glob("GRADCAM_*"))
    first = read_sr(srs[0])
    assert f"{first.study_instance_uid}  haemorrhage: present (p={first.probability:.3f}" \
        in cap.out
    # a folder with a non-DICOM file: done, but exit 1 and the file is listed on stderr
    status = main(["predict", str(shared), str(shared.parent / "data"), "--out",
                   str(tmp_path / "out2"), "--workers", "0", "--no-sr", "--no-sc",
                   "--no-progress"])
    cap = capsys.readouterr()
    assert status == 1
    assert "labels.csv" in cap.err and "not DICOM" in cap.err
    assert (tmp_path / "out2" / "predictions.csv").is_file()


def test_path_required_unless_a_source_handles_it(tmp_path, capsys):
    from dicomml.cli import build_parser

    assert main(["predict", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "give PATH" in capsys.readouterr().err
    assert predict_cli.SOURCES == (predict_cli.pacs_source,)
    seen = []
    args = build_parser().parse_args(["predict", str(tmp_path), "--out", str(tmp_path / "o")])
    assert predict_cli.run(args, sources=(lambda a: seen.append(a.run_dir) or 0,)) == 0
    assert seen == [str(tmp_path)]


@pytest.mark.slow
def test_predict_empty_folder_exits_1_with_one_line(shared, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    status = main(["predict", str(shared), str(tmp_path / "empty"), "--out",
                   str(tmp_path / "out"), "--workers", "0", "--no-progress"])
    cap = capsys.readouterr()
    assert status == 1, cap.err
    err = [ln for ln in cap.err.splitlines() if ln.strip()]
    assert len(err) == 1 and "nothing predicted" in err[0], err
