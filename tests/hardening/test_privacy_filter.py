"""One value-scrubbing filter for every warning and log record (issue 14, item 8).

Identifying values are planted in real files, valid and malformed: a single-component
Patient's Name "CQ500-CT-310" (as in pydicom's 693_J2KI.dcm, which makes highdicom warn,
quoting it), a malformed Patient's Birth Date "1971-02-03" (pydicom warns "Unable to convert
'1971-02-03'"), a Patient ID and an Accession Number. Every verb's stdout, stderr, log
output and non-DICOM outputs are searched for them at every log level.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from dicomml import privacy
from tests.hardening._export import Identity, template, write_export

REPO = Path(__file__).resolve().parents[2]
WHO = Identity(name="CQ500-CT-310", patient_id="PIDQQ14X", birth_date="1971-02-03",
               accession="ACCQQ14")
VALUES = ["CQ500-CT-310", "PIDQQ14X", "1971-02-03", "19710203", "ACCQQ14", "Doe^Jane"]


def _leaks(data: bytes | str) -> list[str]:
    text = data if isinstance(data, str) else data.decode("latin-1")
    return [v for v in VALUES if v in text]


@pytest.fixture
def scrubbed():
    privacy.install()
    try:
        yield
    finally:
        privacy.uninstall()


def test_scrub():
    assert privacy.scrub("Unable to convert '1971-02-03' to a DA") == \
        "Unable to convert '…' to a DA"
    assert privacy.scrub('The string "CQ500-CT-310" is unlikely') == "The string '…' is unlikely"
    assert privacy.scrub("name Doe^Jane^^Dr in (0010,0010) of /a/b.dcm, 3 frames") == \
        "name … in (0010,0010) of /a/b.dcm, 3 frames"
    assert privacy.scrub(b"Doe") == "'…'"


def test_every_logger_and_warning_is_scrubbed_and_deduplicated(scrubbed, capsys):
    stream = logging.StreamHandler(sys.stderr)
    logging.getLogger().addHandler(stream)
    try:
        for name in ("pydicom", "highdicom.sr", "pynetdicom.assoc", "dicomml.pacs", "other"):
            logging.getLogger(name).warning("value %r of %s", "CQ500-CT-310", "Doe^Jane")
        try:
            raise ValueError("Unable to convert '1971-02-03'")
        except ValueError:
            logging.getLogger("pydicom").exception("failed")
    finally:
        logging.getLogger().removeHandler(stream)
    err = capsys.readouterr().err
    assert not _leaks(err), err
    assert err.count("value '…' of …") == 5 and "Unable to convert '…'" in err


def test_warnings_are_scrubbed_and_shown_once(tmp_path):
    """In a fresh interpreter (pytest records warnings itself): highdicom's real warning."""
    code = """
import warnings
from dicomml.privacy import install
install()
warnings.simplefilter("always")
from highdicom.valuerep import check_person_name
for _ in range(3):
    check_person_name("CQ500-CT-310")
warnings.warn("Unable to convert '1971-02-03' to 'DA' object", UserWarning)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert not _leaks(proc.stderr), proc.stderr
    assert proc.stderr.count("UserWarning") == 2, proc.stderr  # the three repeats shown once
    assert "Unable to convert '…'" in proc.stderr


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted")
    with warnings.catch_warnings():  # the malformed birth date is planted on purpose
        warnings.simplefilter("ignore")
        tpl = template(identity=WHO)
    write_export(root / "src", 6, tpl=tpl)
    raw = next((root / "src" / "d0000").iterdir()).read_bytes()
    assert _leaks(raw)  # the values are in the files
    return root


def _verbs(root: Path, out: Path) -> list[list[str]]:
    src = root / "src"
    first = sorted((src / "d0000").iterdir())[0]
    db = out / "i.sqlite"
    return [["scan", str(src), "--db", str(db), "--json"],
            ["show", str(first)],
            ["preview", str(first), "--output", str(out / "p.png")],
            ["preprocess", str(src), "--db", str(db), "--cache", str(out / "cache"),
             "--workers", "2", "--quiet", "--failed-csv", str(out / "failed.csv")],
            ["deid", str(src), "--out", str(out / "deid"), "--key", "k"]]


@pytest.mark.slow
@pytest.mark.parametrize("level", ["DEBUG", "INFO", "WARNING", "ERROR"])
def test_no_identifying_value_in_any_verb_output(planted, tmp_path, level):
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    for argv in _verbs(planted, tmp_path):
        proc = subprocess.run([sys.executable, "-m", "dicomml", *argv, "--log-level", level],
                              env=env, capture_output=True, timeout=300, cwd=tmp_path)
        assert proc.returncode in (0, 1), (argv, proc.stderr[-2000:])
        assert not _leaks(proc.stdout), (argv, _leaks(proc.stdout))
        assert not _leaks(proc.stderr), (argv, _leaks(proc.stderr))
    # the Index (SQLite) holds Patient IDs by design (patient-level splits): it is the
    # site's own database, not an output that is shown or shared
    outputs = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".dcm"
               and "cache" not in p.parts and not p.name.startswith("i.sqlite")]
    assert any(p.suffix == ".png" for p in outputs) and any(p.suffix == ".csv" for p in outputs)
    for p in outputs:
        assert not _leaks(p.read_bytes()), p
    assert len(list((tmp_path / "deid").rglob("*.dcm"))) == 6  # the birth date skips nothing
