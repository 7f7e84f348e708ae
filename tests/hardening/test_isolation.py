"""A decoder that aborts the process costs one file, never the batch (issue 9, codec crashes).

The crashing file is made in tmp_path from a pydicom sample (tests/hardening/_crashers.py);
it really kills a process with SIGABRT / SIGSEGV through GDCM (checked first, against
pydicom's own default plugin chain). dicomml tries GDCM last, so the tests that need the
crash through dicomml choose GDCM explicitly (``decoders=["gdcm"]`` or ``DICOMML_DECODERS``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from dicomml.errors import DecodeError, DecoderCrashedError, NotDicomError
from dicomml.io import read_image, read_images, read_series
from tests.hardening._crashers import CRASH_SEEDS, crashes_default_chain, make_crasher

REPO = Path(__file__).resolve().parents[2]
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"


@pytest.mark.parametrize("seed", sorted(CRASH_SEEDS))
def test_crash_reproduces_with_pydicom_default_chain(tmp_path, seed):
    path = make_crasher(tmp_path, seed)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == JPEG_BASELINE
    assert crashes_default_chain(path) == CRASH_SEEDS[seed]
    # the unmutated sample decodes fine the same way
    clean = get_testdata_file("SC_rgb_jpeg_dcmtk.dcm", download=False)
    assert crashes_default_chain(clean) is None


def test_default_plugin_order_reports_instead_of_crashing(tmp_path):
    path = make_crasher(tmp_path, 65)
    with pytest.raises(DecodeError) as info:
        read_image(path, isolate=True)
    assert not isinstance(info.value, DecoderCrashedError)
    assert str(path) in str(info.value) and JPEG_BASELINE in str(info.value)


def test_read_image_isolate_turns_abort_into_error(tmp_path):
    path = make_crasher(tmp_path, 65)
    with pytest.raises(DecoderCrashedError) as info:
        read_image(path, isolate=True, decoders=["gdcm"])
    msg = str(info.value)
    assert str(path) in msg and "decoder crashed" in msg and JPEG_BASELINE in msg
    assert "SIGABRT" in msg
    # a sound file through the same path equals the in-process read
    ct = get_testdata_file("CT_small.dcm", download=False)
    img = read_image(ct, isolate=True, decoders=["gdcm"])
    ref = pydicom.dcmread(ct)
    expected = ref.pixel_array.astype(np.float64) * float(ref.RescaleSlope) \
        + float(ref.RescaleIntercept)
    np.testing.assert_array_equal(img.pixels[0], expected.astype(np.float32))


def test_read_images_batch_survives_and_attributes(tmp_path):
    crash_abrt = make_crasher(tmp_path, 65, "abrt.dcm")
    crash_segv = make_crasher(tmp_path, 265, "segv.dcm")
    (tmp_path / "empty.dcm").write_bytes(b"")
    (tmp_path / "text.dcm").write_bytes(b"not dicom at all\n" * 20)
    good = [get_testdata_file(n, download=False)
            for n in ("CT_small.dcm", "MR_small.dcm", "SC_rgb_jpeg_dcmtk.dcm")]
    paths = [good[0], str(crash_abrt), str(tmp_path / "empty.dcm"), good[1], str(crash_segv),
             str(tmp_path / "text.dcm"), good[2]]
    got = dict(read_images(paths, workers=2, chunk_size=3, decoders=["gdcm"]))
    assert sorted(got) == sorted(paths)  # every file exactly once
    for p in good:
        ref = pydicom.dcmread(p)
        arr = got[p].pixels
        if ref.SamplesPerPixel == 1:
            exp = ref.pixel_array.astype(np.float64) * float(ref.get("RescaleSlope", 1)) \
                + float(ref.get("RescaleIntercept", 0))
            np.testing.assert_array_equal(arr[0], exp.astype(np.float32))
        else:  # colour: pydicom converts YBR_FULL_422 to RGB by default, as we do
            np.testing.assert_array_equal(arr[0], ref.pixel_array.astype(np.float32))
    for p, sig in ((crash_abrt, "SIGABRT"), (crash_segv, "SIGSEGV")):
        err = got[str(p)]
        assert isinstance(err, DecoderCrashedError)
        assert str(p) in str(err) and JPEG_BASELINE in str(err) and sig in str(err)
    assert isinstance(got[str(tmp_path / "empty.dcm")], NotDicomError)
    assert isinstance(got[str(tmp_path / "text.dcm")], NotDicomError)


def _series_with_crasher(tmp_path):
    from dicomml.testing import write_ct_series

    folder = tmp_path / "series"
    files = write_ct_series(folder, seed=3, n_slices=4, rows=32, columns=32)
    ref = pydicom.dcmread(files[0], stop_before_pixels=True)
    crasher = pydicom.dcmread(make_crasher(tmp_path, 65))
    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "ImageOrientationPatient",
               "Modality", "FrameOfReferenceUID"):
        setattr(crasher, kw, ref.get(kw))
    crasher.ImagePositionPatient = [0.0, 0.0, 500.0]
    crasher.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["crasher"])
    crasher.save_as(folder / "crasher.dcm", enforce_file_format=True)
    return folder, folder / "crasher.dcm"


def test_read_series_isolate_leaves_crashing_slice_out(tmp_path):
    folder, crasher = _series_with_crasher(tmp_path)
    vol = read_series(folder, isolate=True, decoders=["gdcm"], workers=2)
    assert len(vol.pixels) == 4 and str(crasher) not in vol.paths
    [issue] = [i for i in vol.issues if i.kind == "unreadable"]
    assert "decoder crashed" in issue.detail and str(crasher) in issue.detail
    assert JPEG_BASELINE in issue.detail
    clean = read_series([p for p in folder.iterdir() if p != crasher])
    np.testing.assert_array_equal(vol.pixels, clean.pixels)
    assert vol.sop_instance_uids == clean.sop_instance_uids
    with pytest.raises(DecoderCrashedError, match="decoder crashed"):
        read_series(folder, isolate=True, decoders=["gdcm"], strict=True)


def _run_script(code: str, tmp_path: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, DICOMML_DECODERS="gdcm", PYTHONPATH=str(REPO),
               TF_CPP_MIN_LOG_LEVEL="2")
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_tensor_cache_fill_survives_decoder_crash(tmp_path):
    """The training engineer's TensorCache.fill with a file that aborts GDCM."""
    folder, crasher = _series_with_crasher(tmp_path)
    proc = _run_script(f"""
        import json
        if __name__ == "__main__":
            import pandas as pd, pydicom
            from pathlib import Path
            from dicomml.data.cache import TensorCache
            from dicomml.preprocess import Pipeline, PreprocessConfig
            paths = sorted(str(p) for p in Path({str(folder)!r}).iterdir())
            ex = pd.DataFrame({{"path": paths, "frame": 0, "sop_instance_uid": [
                str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
                for p in paths]}})
            pipe = Pipeline(PreprocessConfig())
            cache = TensorCache.for_pipeline({str(tmp_path / "cache")!r}, pipe, shard_size=8)
            rep = cache.fill(ex, pipe, workers=2, progress=False)
            print(json.dumps({{"computed": rep.computed, "failed": rep.failed.to_dict("records"),
                               "cached": len(cache)}}))
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["computed"] == 5 and out["cached"] == 4
    [fail] = out["failed"]
    assert fail["path"] == str(crasher) and "SIGABRT" in fail["reason"]


@pytest.mark.slow
def test_predict_survives_decoder_crash(tmp_path):
    """``dicomml predict`` over studies holding a file that aborts GDCM: every other image is
    predicted, the file is reported, the exit status says so.

    The crasher is a colour Secondary Capture: the run's input contract (issue 15) refuses its
    series before any decoding (a colour image is never given to a grayscale model, even
    forced), so predict never reaches the decoder that would abort; the crash isolation of the
    decoding itself is held by ``read_images`` tests above."""
    import keras  # noqa: F401 - a hard dependency: a broken install fails
    from tests.evaluate.runfolder import make_run

    run = make_run(tmp_path / "r", n_patients=4)
    inputs = tmp_path / "incoming"
    import shutil

    shutil.copytree(run.parent / "data", inputs, ignore=shutil.ignore_patterns("*.csv"))
    first = sorted(p for p in inputs.rglob("*") if p.is_file())[0]
    ref = pydicom.dcmread(first, stop_before_pixels=True)
    crasher = pydicom.dcmread(make_crasher(tmp_path, 65))
    for kw in ("StudyInstanceUID", "PatientID", "Modality",
               "ImageOrientationPatient", "FrameOfReferenceUID"):
        setattr(crasher, kw, ref.get(kw))
    crasher.SeriesInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["crasher-series"])
    crasher.ImagePositionPatient = [0.0, 0.0, 900.0]
    crasher.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["crasher-predict"])
    target = first.parent / "crasher.dcm"
    crasher.save_as(target, enforce_file_format=True)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "dicomml", "predict", str(run), str(inputs), "--out", str(out),
         "--workers", "2", "--no-sc", "--no-progress"],
        env=dict(os.environ, DICOMML_DECODERS="gdcm", PYTHONPATH=str(REPO),
                 TF_CPP_MIN_LOG_LEVEL="2"),
        capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    import pandas as pd

    skipped = pd.read_csv(out / "skipped.csv", dtype=str)
    mine = skipped[skipped["series_instance_uid"] == str(crasher.SeriesInstanceUID)]
    assert len(mine) == 1 and mine["rule"].iloc[0] in ("sop_class", "photometric"), skipped

    table = pd.read_csv(out / "predictions.csv")
    probs = [c for c in table.columns if c.startswith("prob_")]
    assert probs
    ok = table.dropna(subset=probs)
    assert str(crasher.SOPInstanceUID) not in set(ok["sop_instance_uid"])
    assert ok["study_instance_uid"].nunique() == 4  # every study still predicted
    assert len(list(out.glob("SR_*.dcm"))) == 4
