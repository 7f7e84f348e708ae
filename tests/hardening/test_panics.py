"""A decoder that panics (Rust ``PanicException``, a ``BaseException``) costs one file, and a
failure that is not the file's own (a full disk, a failed chunk) is never cached (issue 14,
items 1 and 7)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_file

from dicomml.errors import DecodeError, OutputError, is_own_failure
from dicomml.io import Image, read_image, read_images
from dicomml.parallel import ChunkFailed, get_executor
from tests.hardening._export import write_export
from tests.hardening._panics import make_panicker, panics_in_rle


@pytest.fixture
def folder(tmp_path):
    """19 valid CT files and the panicking RLE file next to them."""
    src = tmp_path / "src"
    write_export(src, 19)
    make_panicker(src / "d0000")
    return src


def _files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if p.is_file())


def test_the_file_really_panics(tmp_path):
    path = make_panicker(tmp_path)
    assert panics_in_rle(path)
    clean = get_testdata_file("SC_rgb_rle_32bit_2frame.dcm", download=False)
    assert not panics_in_rle(Path(clean))
    ref = pydicom.dcmread(clean).pixel_array
    assert np.array_equal(read_image(clean).pixels, ref.astype(np.float32))


def test_read_image_turns_the_panic_into_decode_error(tmp_path):
    path = make_panicker(tmp_path)
    with pytest.raises(DecodeError) as info:
        read_image(path, decoders=["pylibjpeg"])
    msg = str(info.value)
    assert str(path) in msg and "1.2.840.10008.1.2.5" in msg and "PanicException" in msg


@pytest.mark.parametrize("isolate", [False, True])
def test_19_valid_files_next_to_a_panic_all_read(folder, isolate):
    paths = _files(folder)
    assert len(paths) == 20
    got = dict(read_images(paths, isolate=isolate, workers=2, chunk_size=8,
                           decoders=["pylibjpeg", "pydicom"]))
    bad = {p: r for p, r in got.items() if not isinstance(r, Image)}
    assert list(bad) == [str(folder / "d0000" / "panic.dcm")]
    assert isinstance(bad[str(folder / "d0000" / "panic.dcm")], DecodeError)
    for p, img in got.items():
        if p not in bad:
            ref = pydicom.dcmread(p)
            assert np.array_equal(img.pixels[0], ref.pixel_array * float(ref.RescaleSlope)
                                  + float(ref.RescaleIntercept))


class FakePanic(BaseException):
    """Stands for ``pyo3_runtime.PanicException`` (derives from BaseException only)."""


def _raises(chunk):
    raise FakePanic("index out of bounds")


def _interrupt(chunk):
    raise KeyboardInterrupt


def test_in_process_executor_isolates_base_exceptions_but_not_ctrl_c():
    with get_executor("inprocess") as ex:
        [(chunk, result)] = list(ex.map_chunks(_raises, [[1, 2]]))
        assert isinstance(result, ChunkFailed) and "FakePanic" in result.exc_type
        with pytest.raises(KeyboardInterrupt):
            list(ex.map_chunks(_interrupt, [[1]]))


def test_own_failures():
    assert is_own_failure(DecodeError("x")) and is_own_failure(FakePanic())
    assert is_own_failure(FileNotFoundError(errno.ENOENT, "gone", "f.dcm"))
    for e in (OutputError("disk"), OSError(errno.ENOSPC, "No space left on device"),
              PermissionError(errno.EACCES, "denied"), MemoryError(), KeyboardInterrupt()):
        assert not is_own_failure(e)


# ----------------------------------------------------------------------------- the cache
def _examples(paths: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"path": paths, "frame": 0, "sop_instance_uid": [
        str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths]})


def _pipeline():
    from dicomml.preprocess import Pipeline, PreprocessConfig

    return Pipeline(PreprocessConfig())


@pytest.mark.parametrize("executor", ["inprocess", "processes"])
def test_cache_records_only_the_panicking_file(folder, tmp_path, executor, monkeypatch):
    from dicomml.data.cache import TensorCache

    monkeypatch.setenv("DICOMML_DECODERS", "pylibjpeg,pydicom")
    paths = _files(folder)
    pipe = _pipeline()
    cache = TensorCache.for_pipeline(tmp_path / "cache", pipe, shard_size=8)
    rep = cache.fill(_examples(paths), pipe, executor=executor, workers=2, progress=False)
    assert len(cache) == 19 and rep.computed == 20
    [fail] = rep.failed.to_dict("records")
    assert fail["path"].endswith("panic.dcm") and "DecodeError" in fail["reason"]
    assert rep.not_cached.empty
    again = cache.fill(_examples(paths), pipe, executor="inprocess", progress=False)
    assert again.computed == 0 and len(again.failed) == 1  # the own failure is kept


def test_full_disk_is_not_cached_as_the_files_fault(folder, tmp_path, monkeypatch):
    """ENOSPC while shards are written: OutputError, nothing recorded as failed; after space
    is freed the next fill computes every example."""
    from dicomml.data import cache as cache_mod
    from dicomml.data.cache import TensorCache

    paths = [p for p in _files(folder) if not p.endswith("panic.dcm")]
    pipe = _pipeline()
    cache = TensorCache.for_pipeline(tmp_path / "cache", pipe, shard_size=4)
    real_fsync = os.fsync
    calls = {"n": 0}

    def full_after_two_files(fd):
        calls["n"] += 1
        if calls["n"] > 2:  # the first shard (.npy + .json) fits, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(cache_mod.os, "fsync", full_after_two_files)
    with pytest.raises(OutputError) as info:
        cache.fill(_examples(paths), pipe, executor="inprocess", progress=False)
    assert "No space left on device" in str(info.value) and "run again" in str(info.value)
    monkeypatch.setattr(cache_mod.os, "fsync", real_fsync)
    cache.refresh()
    assert len(cache) == 4 and not cache.index[1]  # one shard kept, no failure recorded
    assert not list((tmp_path / "cache").rglob("*.tmp"))
    rep = cache.fill(_examples(paths), pipe, executor="inprocess", progress=False)
    assert rep.computed == 15 and rep.failed.empty and len(cache) == 19


def test_orphan_temporaries_are_cleaned_by_the_next_fill(tmp_path):
    from dicomml.data.cache import TensorCache

    src = tmp_path / "src"
    write_export(src, 3)
    pipe = _pipeline()
    cache = TensorCache.for_pipeline(tmp_path / "cache", pipe)
    os.makedirs(cache.folder)
    orphan = Path(cache.folder) / ".shard-0123456789abcdef.npy.k1l2m3.tmp"
    orphan.write_bytes(b"\x93NUMPY half a shard")  # what SIGKILL during np.save leaves
    rep = cache.fill(_examples(_files(src)), pipe, executor="inprocess", progress=False)
    assert rep.computed == 3 and len(cache) == 3
    assert not orphan.exists()


def test_read_only_cache_is_one_line_exit_2(tmp_path, capsys):
    """``dicomml preprocess SRC --cache RO``: one line on stderr, exit 2, nothing computed."""
    import subprocess

    from dicomml.cli import main

    src = tmp_path / "src"
    write_export(src, 3)
    ro = tmp_path / "ro"
    ro.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(ro)],
                          capture_output=True)
    if proc.returncode != 0:
        if os.geteuid() != 0:  # an unprivileged user cannot write a 0555 folder either
            ro.chmod(0o555)
        else:
            pytest.skip("mount is not permitted here")
    try:
        status = main(["preprocess", str(src), "--cache", str(ro / "cache"), "--workers", "0",
                       "--db", str(tmp_path / "i.sqlite"), "--quiet"])
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 2, err
        # checked before any work by the CLI ("not writable"), or by the cache itself
        assert len(err) == 1 and ("not writable" in err[0]
                                  or "cannot write the tensor cache" in err[0]), err
        assert str(ro / "cache") in err[0] and "Traceback" not in err[0]
    finally:
        if proc.returncode == 0:
            subprocess.run(["umount", "-l", str(ro)], capture_output=True)


def test_cli_maps_an_unwrapped_os_error_to_one_line(tmp_path, capsys, monkeypatch):
    """The dispatcher's safety net: an OSError a verb did not wrap is one line, exit 2."""
    import errno

    from dicomml.cli import main
    from dicomml.cli import show as show_verb

    def read_only(args):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "out"))

    monkeypatch.setattr(show_verb, "run", read_only)
    status = main(["show", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1, err
    assert "Read-only file system" in err[0] and str(tmp_path / "out") in err[0]
