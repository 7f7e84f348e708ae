"""``dicomml predict --force`` next to a file whose (0020,000D) Study Instance UID is lost
(found by ``bench/bench_fuzz.py --mutated 10000``: seven bits flipped in pydicom's
``MR_small_jp2klossless.dcm``, one of them in the tag of (0020,000D)). The per-study loop
sorted the UIDs with a NaN among them: ``TypeError`` and the whole folder lost, valid files
included (when another study got no probability either). Now the valid files are
predicted and the run ends normally."""

from __future__ import annotations

import csv
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file

from dicomml.cli import main
from dicomml.testing.hostile import short_pixel_data
from tests.evaluate.runfolder import shared_run
from tests.hardening._export import write_export

#: (offset, byte) of the mutated file the fuzz run met
FLIPS = [(318, 174), (1038, 5), (2000, 137), (2720, 77), (3682, 165), (4644, 100),
         (5364, 119)]


def test_predict_survives_a_file_without_study_uid(tmp_path_factory, tmp_path, capsys):
    run = shared_run(tmp_path_factory)
    src = tmp_path / "in"
    write_export(src, 4)
    files = sorted(p for p in src.rglob("*") if p.is_file())
    raw = bytearray(Path(get_testdata_file("MR_small_jp2klossless.dcm",
                                           download=False)).read_bytes())
    for at, value in FLIPS:
        raw[at] = value
    (src / "mutated.dcm").write_bytes(bytes(raw))
    short_pixel_data(src)  # a study of its own with no probability: the loop has work
    rc = main(["predict", str(run), str(src), "--out", str(tmp_path / "out"), "--no-sc",
               "--no-progress", "--workers", "1", "--force"])
    assert rc in (0, 1), capsys.readouterr().err[-2000:]
    rows = list(csv.DictReader((tmp_path / "out" / "predictions.csv").read_text()
                               .splitlines()))
    scored = {r["sop_instance_uid"] for r in rows if r["prob_haemorrhage"]}
    valid = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    assert valid <= scored  # no valid file lost next to the bad one
