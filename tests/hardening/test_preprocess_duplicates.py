"""Conflicting duplicates through ``dicomml preprocess``: none is left out silently.

Found by ``bench/bench_fuzz.py --mutated 10000``: two mutated copies of one pydicom sample
keep its SOP Instance UID with other content (the scan's *conflicting duplicates*). The
cache is keyed by (SOP Instance UID, frame), so it holds one of them; the other was neither
cached nor reported (exit 0 when the kept one was fine). Now every such file is a row of
``--failed-csv`` and a line on stderr naming the file it duplicates, and the exit status
is 1.
"""

from __future__ import annotations

import csv

import pydicom

from dicomml.cli import main
from dicomml.data.cache import TensorCache
from dicomml.preprocess import Pipeline, PreprocessConfig
from tests.hardening._export import write_export


def test_conflicting_duplicate_is_reported_not_dropped(tmp_path, capsys):
    src = tmp_path / "export"
    write_export(src, 4)
    files = sorted(p for p in src.rglob("*.dcm"))
    twin = src / "d0000" / "twin.dcm"  # the same SOP Instance UID, other pixel values
    ds = pydicom.dcmread(files[1])
    arr = ds.pixel_array.copy()
    arr[0, 0] ^= 0x0F
    ds.PixelData = arr.tobytes()
    ds.save_as(twin)
    failed_csv = tmp_path / "failed.csv"
    rc = main(["preprocess", str(src), "--db", str(tmp_path / "i.sqlite"), "--cache",
               str(tmp_path / "cache"), "--workers", "1", "--no-progress",
               "--failed-csv", str(failed_csv)])
    err = capsys.readouterr().err
    assert rc == 1
    rows = list(csv.DictReader(failed_csv.read_text().splitlines()))
    assert len(rows) == 1
    dropped, kept = rows[0]["path"], {str(files[1]), str(twin)} - {rows[0]["path"]}
    assert dropped in (str(files[1]), str(twin))
    assert f"conflicting duplicate of {kept.pop()}" in rows[0]["reason"]
    assert dropped in err
    # every other file is cached, the kept twin included
    cache = TensorCache.for_pipeline(tmp_path / "cache", Pipeline(PreprocessConfig()))
    assert len(cache) == 4
