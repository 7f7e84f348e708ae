"""Every de-identified pydicom / pydicom-data sample held against PS3.15 Table E.1-1.

The oracle is the standard's table as machine-readable rows
(``../shared/reference/confidentiality_profile_attributes.json``, innolitics/dicom-standard),
read here independently of dicomml's own copy: for every attribute of every source file, at
every depth of nesting, the output must do what the Basic Profile action (or the option in
use) says. dciodvfy must find no error in an output that it does not find in its source.
"""

from __future__ import annotations

import json
import os
import subprocess
import warnings
from pathlib import Path

import pydicom
import pytest

from dicomml.pacs.deid import deidentify, deidentify_dataset
from tests.conftest import require_tool

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO.parent / "shared" / "reference" / "confidentiality_profile_attributes.json"
KEY = "annex-e-key"


def _table() -> dict[int, dict]:
    if not REFERENCE.exists():
        if os.environ.get("CI"):
            pytest.fail(f"the Annex E reference table {REFERENCE} is missing")
        pytest.skip(f"the Annex E reference table {REFERENCE} is missing")
    rows = json.loads(REFERENCE.read_text())
    out = {}
    for r in rows:
        t = r["tag"]
        if "X" in t[1:10].upper() or "G" in t[1:10].upper():
            continue  # the pattern rows are checked below (private, curves, overlays)
        out[int(t[1:5] + t[6:10], 16)] = r
    return out


def _samples() -> list[Path]:
    """The sample files of pydicom and pydicom-data (as the read_image tests list them) that
    are DICOM objects with their three UIDs."""
    from tests.io.test_read_image import _sample_files

    found = []
    for p in _sample_files():
        if p.stat().st_size > 60_000_000 or p.name == "DICOMDIR":
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(p, stop_before_pixels=True)
                usable = all(ds.get(k) for k in ("SOPInstanceUID", "StudyInstanceUID",
                                                 "SeriesInstanceUID"))
        except Exception:  # noqa: BLE001 - not DICOM
            continue
        if usable:
            found.append(p)
    return found


SAMPLES = _samples()


def _read(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path)


def _empty(elem) -> bool:
    return elem.value in (None, "", b"") or (elem.VR == "SQ" and len(elem.value) == 0)


def _differs(a, b) -> bool:
    return str(a.value) != str(b.value)


def deviations(src, out, table, *, shift_dates=True, clean=False, where="") -> list[str]:
    """Every place where ``out`` does not do what Table E.1-1 says for ``src``."""
    bad = []
    for elem in src:
        tag = int(elem.tag)
        group = tag >> 16
        name = f"{where}{elem.tag}"
        got = out.get(elem.tag) if elem.tag in out else None
        if group & 1 or 0x5000 <= group <= 0x50FF or tag in (0x60003000, 0x60004000) or (
                0x6000 <= group <= 0x60FF and elem.tag.element in (0x3000, 0x4000)):
            if got is not None:
                bad.append(f"{name} private/curve/overlay kept")
            continue
        row = table.get(tag)
        if row is None:
            if elem.VR == "SQ" and got is not None and len(got.value) == len(elem.value):
                for k, (a, b) in enumerate(zip(elem.value, got.value)):
                    bad += deviations(a, b, table, shift_dates=shift_dates, clean=clean,
                                      where=f"{name}[{k}].")
            continue
        action = row["basicProfile"]
        if shift_dates and row.get("rtnLongModifDatesOpt") and got is not None and (
                elem.VR not in ("DA", "DT") or _differs(elem, got) or _empty(elem)):
            continue  # shifted (or a time kept with its shifted date)
        if not shift_dates and row.get("rtnLongFullDatesOpt") == "K":
            if got is None or _differs(elem, got):
                bad.append(f"{name} {row['name']}: full dates option, not kept")
            continue
        if clean and row.get("cleanDescOpt") and got is not None:
            continue  # kept as clean (the value scan below checks identifiers)
        removed, empty = got is None, got is not None and _empty(got)
        changed = got is not None and (_differs(elem, got) or _empty(elem))
        ok = {
            "X": removed,
            "Z": empty or changed,
            "D": (got is not None and not empty and changed) or _empty(elem) and got is not None,
            "U": changed or _empty(elem),
            "K": got is not None and not _differs(elem, got),
            "X/Z": removed or empty,
            "X/D": removed or (not empty and changed),
            "X/Z/D": removed or empty or changed,
            "Z/D": empty or changed,
            "X/Z/U*": removed or empty or changed or elem.VR == "SQ",
        }[action]
        if "D" in action and elem.VR == "SQ" and got is not None:
            ok = True  # a sequence kept with its items de-identified (checked below)
        if not ok:
            bad.append(f"{name} {row['name'].splitlines()[0]}: action {action}, got "
                       f"{'removed' if removed else 'empty' if empty else 'the value kept'}")
        if elem.VR == "SQ" and got is not None and len(got.value) == len(elem.value):
            for k, (a, b) in enumerate(zip(elem.value, got.value)):
                bad += deviations(a, b, table, shift_dates=shift_dates, clean=clean,
                                  where=f"{name}[{k}].")
    return bad


def test_there_are_many_samples():
    assert len(SAMPLES) > 100


@pytest.mark.parametrize("clean", [False, True], ids=["basic", "clean-descriptors"])
@pytest.mark.parametrize("shift", [True, False], ids=["modified-dates", "full-dates"])
def test_every_sample_meets_table_e1_1(shift, clean):
    table = _table()
    found = {}
    for path in SAMPLES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom on the samples' own invalid values
            src = _read(path)
            out, _ = deidentify_dataset(src, key=KEY, shift_dates=shift,
                                        clean_descriptors=clean)
            for d in deviations(src, out, table, shift_dates=shift, clean=clean):
                found.setdefault(d.split(" ", 1)[1], []).append(path.name)
            assert out.get("Modality") == src.get("Modality"), path.name
    assert not found, {k: v[:3] for k, v in list(found.items())[:30]}


@pytest.mark.slow
def test_outputs_pass_dciodvfy_like_their_sources(tmp_path):
    exe = require_tool("dciodvfy")

    import re

    uid = re.compile(r"<?[0-9]+(\.[0-9]+)+>?|(?<=UID )[0-9.]+")

    def errors(path):
        r = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=120)
        return {uid.sub("<UID>", line.split(" - ", 1)[-1])  # the UIDs are remapped
                for line in (r.stdout + r.stderr).splitlines() if line.startswith("Error")}

    worse = {}
    for k, path in enumerate(SAMPLES):
        if "truncated" in path.name or "too_short" in path.name:
            continue  # dciodvfy stops early on a truncated source, not on its output
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            src = _read(path)
            if not src.get("SOPInstanceUID"):
                continue  # a truncated sample: deidentify() skips it ("missing ...")
            out, _ = deidentify_dataset(src, key=KEY)
            dest = tmp_path / f"{k}.dcm"
            out.save_as(dest, enforce_file_format=True)
        new = errors(dest) - errors(path)
        if new:
            worse[path.relative_to(path.parents[1]).as_posix()] = sorted(new)[:3]
    assert not worse, "\n".join(f"{k}: {v}" for k, v in worse.items())


def test_batch_reports_duplicates_and_never_overwrites(tmp_path):
    """The samples share UIDs: every input is either written once or reported."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = deidentify(SAMPLES, tmp_path / "out", key=KEY)
    assert len(res.written) + len(res.skipped) == len(SAMPLES)
    assert len(set(res.written)) == len(res.written)
    assert res.duplicates and all("duplicate of" in r for p, r in res.skipped
                                  if p in {d for d, _ in res.duplicates})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = deidentify(SAMPLES[:3], tmp_path / "out", key=KEY)
    assert not again.written and all("--overwrite" in r for _, r in again.skipped)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        forced = deidentify(SAMPLES[:3], tmp_path / "out", key=KEY, overwrite=True)
    assert len(forced.written) == 3


def test_symlinked_folders_are_followed(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    for p in SAMPLES[:2]:
        (real / p.name).write_bytes(p.read_bytes())
    top = tmp_path / "top"
    top.mkdir()
    (top / "link").symlink_to(real, target_is_directory=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = deidentify([top], tmp_path / "out", key=KEY)
    assert len(res.written) == 2
