"""Patient identifiers never appear in logs, progress output, error messages or outputs.

An export whose (0010,0010) Patient's Name, (0010,0020) Patient ID, (0010,0030) Patient's
Birth Date and (0008,0050) Accession Number are distinctive strings, plus broken copies of
those files (truncated, corrupted lengths so that the name lands in other elements, wrong
VRs...). Every byte that dicomml prints or writes — stdout and stderr of the CLI at
``--log-level DEBUG``, log records captured at DEBUG in this process, the JSON of
``scan --json``, the PNG of ``preview`` (text chunks included), exception messages of
``read_image`` / ``read_series`` / ``read_images`` and the skipped reasons of ``scan`` — is
searched for those values.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dicomml.io import read_image, read_images, read_series, scan
from tests.hardening._export import Identity, template, write_export
from tests.hardening.test_fuzz import _layout, mutate

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
WHO = Identity()


def _leaks(data: bytes | str) -> list[str]:
    text = data if isinstance(data, str) else data.decode("latin-1")
    found = [v for v in WHO.values() if v in text]
    # also the name's parts, case-insensitively (a message could re-format it)
    low = text.lower()
    found += [p for p in ("zqxname", "wvyperson", "pidzqx", "acczqx") if p in low]
    return found


def _broken_copies(folder: Path) -> list[Path]:
    """Broken variants of the identified file, each a different way to corrupt it."""
    raw = template(identity=WHO)
    layout = _layout(raw)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    name_at = raw.find(WHO.name.encode())
    variants = {"trunc_in_name": raw[:name_at + 5], "trunc_half": raw[:len(raw) // 2]}
    for k in range(len(layout)):  # every element's length corrupted: values run into others
        variants[f"len{k}"] = mutate(raw, layout, "length", k, 0x41, 0)
        variants[f"huge{k}"] = mutate(raw, layout, "huge_length", k, 0, k)
        variants[f"vr{k}"] = mutate(raw, layout, "wrong_vr", k, k, 0)
    for k in range(40):
        variants[f"flip{k}"] = mutate(raw, layout, "bitflip", name_at - 60 + 3 * k, k, k)
    for name, data in variants.items():
        p = folder / f"{name}.dcm"
        p.write_bytes(data)
        out.append(p)
    return out


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    root = tmp_path_factory.mktemp("privacy")
    src = root / "export"
    write_export(src, 40, tpl=template(identity=WHO))
    _broken_copies(src / "broken")
    return root, src


def test_identifiers_are_really_in_the_files(export):
    _, src = export
    raw = next((src / "d0000").iterdir()).read_bytes()
    assert sorted(_leaks(raw)) != []  # the search would find them


@pytest.mark.slow
def test_cli_output_and_files_carry_no_identifiers(export, tmp_path):
    root, src = export
    db = tmp_path / "index.sqlite"
    first = sorted((src / "d0000").iterdir())[0]
    runs = [
        ["scan", str(src), "--db", str(db), "--workers", "2", "--log-level", "DEBUG"],
        ["scan", str(src), "--db", str(db), "--json", "--log-level", "DEBUG"],
        ["show", str(first), "--db", str(db), "--log-level", "DEBUG"],
        ["preview", str(first), "--output", str(tmp_path / "p.png"), "--log-level", "DEBUG"],
    ]
    broken = sorted((src / "broken").iterdir())
    runs += [["preview", str(p), "--output", str(tmp_path / f"{p.stem}.png"),
              "--log-level", "DEBUG"] for p in broken[:12]]
    statuses = []
    for argv in runs:
        proc = subprocess.run([sys.executable, "-m", "dicomml", *argv], env=ENV,
                              capture_output=True, timeout=300)
        statuses.append(proc.returncode)
        assert not _leaks(proc.stdout), (argv, _leaks(proc.stdout))
        assert not _leaks(proc.stderr), (argv, _leaks(proc.stderr))
    assert statuses[0] == 1 and statuses[2] == 0 and statuses[3] == 0
    assert any(s != 0 for s in statuses[4:])  # broken files were refused, not all fine
    written = [p for p in tmp_path.iterdir() if p.suffix in (".png", ".json", ".csv")]
    assert written
    for p in written:  # PNG text chunks are bytes of the file too
        assert not _leaks(p.read_bytes()), p


def test_error_messages_and_logs_carry_no_identifiers(export, tmp_path, caplog):
    _, src = export
    broken = sorted((src / "broken").iterdir())
    caplog.set_level(logging.DEBUG)
    messages = []
    for p in broken:
        try:
            read_image(p)
        except Exception as e:  # noqa: BLE001 - every message is checked
            messages.append(f"{type(e).__name__}: {e}")
    res = scan(src / "broken", tmp_path / "b.sqlite", progress=False, workers=0)
    messages += [reason for _, reason in res.skipped]
    for _, result in read_images(broken, isolate=False):
        if isinstance(result, Exception):
            messages.append(str(result))
    try:
        read_series(src / "broken")
    except Exception as e:  # noqa: BLE001
        messages.append(str(e))
    vol = read_series(broken + sorted((src / "d0000").iterdir())[:5])
    messages += [i.detail for i in vol.issues] + list(vol.extra.get("ignored", []))
    assert len(messages) > len(broken)
    leaks = [(m[:300], _leaks(m)) for m in messages if _leaks(m)]
    assert not leaks, leaks
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert not _leaks(logged), _leaks(logged)
