"""Structured hostile headers (issue 14, items 2-5): huge declared sizes, non-finite values,
deep nesting, huge private elements. Each is refused with a DicommlError naming the
attribute, before anything is allocated from the declared values; valid files next to
them are unaffected."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from dicomml.errors import DecodeError, DicommlError, InvalidDicomError
from dicomml.io import Image, read_image, read_images
from dicomml.io.guards import declared_frames_fit, max_decoded_bytes
from dicomml.testing.hostile import KINDS, write_all
from tests.hardening._export import write_export

REPO = Path(__file__).resolve().parents[2]

#: kind -> (error class, words the message must hold); None: reads, with finite values
EXPECTED = {
    "frames_100000": (InvalidDicomError, ["(7FE0,0010)", "100000", "truncated"]),
    "frames_int32_max": (InvalidDicomError, ["2147483647", "truncated"]),
    "rle_65535x65535": (DecodeError, ["65535×65535", "decoding budget",
                                      "DICOMML_MAX_DECODED_MB"]),
    "j2k_65535x65535": (DecodeError, ["65535×65535", "decoding budget"]),
    "rescale_intercept_nan": (InvalidDicomError, ["(0028,1052) Rescale Intercept", "nan"]),
    "rescale_slope_inf": (InvalidDicomError, ["(0028,1053) Rescale Slope", "inf"]),
    "window_width_nan": (InvalidDicomError, ["(0028,1051) Window Width"]),
    "width_zero": (InvalidDicomError, ["(0028,xxxx)"]),
    "bits_stored_above_allocated": None,
    "bits_allocated_12": (DecodeError, ["(0028,0100)"]),
    "short_pixel_data": (InvalidDicomError, ["truncated"]),
    "long_pixel_data": None,
    "nested_200": (InvalidDicomError, ["nested more than 64 levels"]),
    "nested_5000": (InvalidDicomError, ["nested more than 64 levels"]),
    "items_without_delimiters": (InvalidDicomError, ["cannot parse"]),
    "huge_private_element": None,
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    return write_all(tmp_path_factory.mktemp("hostile"))


def test_every_kind_is_covered():
    assert set(EXPECTED) == set(KINDS) - {"dicomdir_outside_root"}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_read_image(hostile, kind):
    path = hostile[kind]
    expected = EXPECTED[kind]
    if expected is None:
        img = read_image(path)
        ref = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm", download=False))
        want = ref.pixel_array * float(ref.RescaleSlope) + float(ref.RescaleIntercept)
        assert np.array_equal(img.pixels[0], want.astype(np.float32))
        return
    cls, words = expected
    with pytest.raises(cls) as info:
        read_image(path)
    msg = str(info.value)
    assert str(path) in msg
    for w in words:
        assert w in msg, msg


def test_pipeline_refuses_non_finite_values(hostile):
    from dicomml.preprocess import Pipeline, PreprocessConfig

    pipe = Pipeline(PreprocessConfig())
    for kind in ("rescale_intercept_nan", "rescale_slope_inf", "window_width_nan"):
        with pytest.raises(InvalidDicomError, match=r"\(0028,105[123]\)"):
            pipe.from_path(hostile[kind], 0)


def test_decoding_budget_is_configurable(hostile, monkeypatch):
    monkeypatch.setenv("DICOMML_MAX_DECODED_MB", "0.01")
    assert max_decoded_bytes() == int(0.01 * 2**20)
    rle = pydicom.data.get_testdata_file("SC_rgb_rle_32bit_2frame.dcm", download=False)
    with pytest.raises(DecodeError, match="decoding budget of 0 MiB"):
        read_image(rle)  # 2 × 100×100×3 × 4 bytes = 234 kB > 10 kB
    monkeypatch.setenv("DICOMML_MAX_DECODED_MB", "1")
    assert read_image(rle).pixels.shape == (2, 100, 100, 3)
    monkeypatch.setenv("DICOMML_MAX_DECODED_MB", "lots")
    with pytest.raises(DicommlError, match="DICOMML_MAX_DECODED_MB"):
        read_image(rle)


def test_declared_frames_fit():
    df = pd.DataFrame({
        "number_of_frames": [1, 100000, 2147483647, 3, 3, 10, None],
        "size": [39000, 39000, 39000, 3 * 128 * 128 * 2 + 900, 100, 100, 10],
        "rows": [128] * 7, "columns": [128] * 7, "samples_per_pixel": [1] * 7,
        "bits_allocated": [16] * 7,
        "transfer_syntax_uid": ["1.2.840.10008.1.2.1"] * 5 + ["1.2.840.10008.1.2.5", "x"]})
    assert declared_frames_fit(df).tolist() == [True, False, False, True, False, True, True]


def test_valid_files_next_to_every_hostile_kind(hostile, tmp_path):
    src = tmp_path / "valid"
    write_export(src, 19)
    valid = sorted(str(p) for p in src.rglob("*") if p.is_file())
    bad = [str(p) for k, p in hostile.items() if k in EXPECTED and EXPECTED[k]]
    got = dict(read_images(valid + bad, workers=2, item_timeout=60))
    assert all(isinstance(got[p], Image) for p in valid)
    assert all(isinstance(got[p], DicommlError) for p in bad), \
        {p: type(got[p]).__name__ for p in bad if not isinstance(got[p], DicommlError)}


#: Code of a child process: ``peak_mb()``, the peak resident memory of that process itself
#: (VmHWM; ``ru_maxrss`` keeps the peak of the forking parent, pytest, across exec).
_PEAK_MB = """
def peak_mb():
    hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")]
    return (hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024
"""


def _run(code: str, tmp_path: Path, timeout: float = 300):
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2", RUST_BACKTRACE="0")
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_huge_private_element_is_never_read_whole(hostile, tmp_path):
    """A 2.3 GB (sparse) private OB element: read_image and the pydicom path stay small."""
    path = hostile["huge_private_element"]
    assert os.path.getsize(path) > 2_000_000_000
    proc = _run(f"""
import json, resource
from dicomml.io import read_image
from dicomml.io._read_dataset import load_dataset
img = read_image({str(path)!r})
ds, n = load_dataset({str(path)!r}, fast=False)
{_PEAK_MB}
print(json.dumps({{"shape": list(img.pixels.shape), "n": n, "rss_mb": peak_mb()}}))
""", tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["shape"] == [1, 128, 128] and out["n"] == os.path.getsize(path)
    # The element is 2.3 GB: reading it whole costs > 2,300 MiB. The bound is 1 GiB per
    # process (typically ~130 MiB here; page-cache state has shown up to ~410 MiB).
    assert out["rss_mb"] < 1024, out


def test_show_flags_bits_stored_above_bits_allocated(hostile, capsys):
    from dicomml.cli import main

    assert main(["show", str(hostile["bits_stored_above_allocated"])]) == 0
    bits = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("bits:"))
    assert bits == ("bits:             allocated 16, stored 24, signed -- INVALID: Bits "
                    "Stored above Bits Allocated; values are read with all 16 allocated bits")
    assert main(["show", str(hostile["long_pixel_data"])]) == 0  # a valid header: no flag
    assert "INVALID" not in capsys.readouterr().out


def test_show_and_preview_on_deep_nesting_are_one_line(hostile, tmp_path, capsys):
    from dicomml.cli import main

    for kind in ("nested_200", "nested_5000"):
        assert main(["show", str(hostile[kind])]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "nested" in err[0], err
        assert main(["preview", str(hostile[kind]), "--output", str(tmp_path / "p.png")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err and "nested" in err[-1] and not any("Traceback" in e for e in err), err


def test_preprocess_with_huge_frame_counts_is_fast_and_keeps_the_valid(hostile, tmp_path):
    """Index → frames → cache with NumberOfFrames = 100000 and 2**31-1 next to 19 valid files:
    one failure per hostile file, every valid file cached, well within a minute."""
    src = tmp_path / "src"
    write_export(src, 19)
    for kind in ("frames_100000", "frames_int32_max", "rescale_slope_inf"):
        (src / hostile[kind].name).write_bytes(hostile[kind].read_bytes())
    proc = _run(f"""
import json, resource, time
t = time.monotonic()
from dicomml.cli import main
status = main(["preprocess", {str(src)!r}, "--cache", {str(tmp_path / "cache")!r},
               "--db", {str(tmp_path / "i.sqlite")!r}, "--workers", "2", "--quiet"])
{_PEAK_MB}
print(json.dumps({{"status": status, "s": time.monotonic() - t, "rss_mb": peak_mb()}}))
""", tmp_path, timeout=300)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["status"] == 1, proc.stderr[-3000:]
    assert "22 examples" in proc.stdout and "3 failed" in proc.stdout, proc.stdout
    assert out["s"] < 60 and out["rss_mb"] < 1024, out



@pytest.mark.parametrize("kind", ["nested_200", "nested_5000"])
def test_scan_skips_deep_nesting_with_its_reason(hostile, tmp_path, kind):
    """The walker of the scan (its check of the rest of the file) refuses deep nesting as
    the reader does: the file is skipped as invalid DICOM, with the reason, for both
    header readers, never a RecursionError."""
    import struct

    from dicomml.io.header import Skip, read_header

    data = bytearray(Path(hostile[kind]).read_bytes())
    # The hostile file keeps the sample's (FFFC,FFFC) Data Set Trailing Padding before the
    # nested private element (tags out of order): drop it so the walk reaches the nesting.
    pad = data.find(b"\xfc\xff\xfc\xffOB\x00\x00")
    assert pad > 0
    del data[pad:pad + 12 + struct.unpack_from("<I", data, pad + 8)[0]]
    path = tmp_path / f"{kind}.dcm"
    path.write_bytes(bytes(data))
    for fast in (True, False):
        with pytest.raises(Skip) as exc:
            read_header(str(path), fast=fast)
        assert exc.value.category == "invalid DICOM", (fast, exc.value.reason)
        assert "nested more than 64 levels" in exc.value.reason, (fast, exc.value.reason)
