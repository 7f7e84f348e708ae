"""Structured hostile DICOM files: real samples with one header promise broken.

Each generator starts from a pydicom sample file (``CT_small.dcm``, the RLE and JPEG 2000
samples) and breaks one thing an attacker or a broken modality would: a huge declared size,
a non-finite rescale or window, zero width, inconsistent bits, short or long pixel data,
deep nesting, undefined-length items without delimiters, a huge (sparse) private element,
a DICOMDIR whose records point outside its root or to itself. :data:`KINDS` maps a name to
its generator ``fn(folder) -> Path``; :func:`write_all` writes one of each. Used by the
hardening tests and ``bench/bench_fuzz.py``.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Callable

__all__ = ["KINDS", "write_all", "nested_sequences", "huge_private_element"]

_ROOT = "1.2.826.0.1.3680043.8.498.14."


def _sample(name: str):
    import pydicom
    from pydicom.data import get_testdata_file

    return pydicom.dcmread(get_testdata_file(name, download=False))


def _save(ds, folder: Path, name: str, uid_seed: int) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ds.SOPInstanceUID = f"{_ROOT}{uid_seed}"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path = folder / name
    ds.save_as(path, enforce_file_format=True)
    return path


def _ct(**changes):
    import warnings

    ds = _sample("CT_small.dcm")
    with warnings.catch_warnings():  # pydicom warns about the invalid values set on purpose
        warnings.simplefilter("ignore")
        for kw, value in changes.items():
            setattr(ds, kw, value)
    return ds


def frames_100000(folder):
    return _save(_ct(NumberOfFrames=100000), folder, "frames_100000.dcm", 1)


def frames_int32_max(folder):
    return _save(_ct(NumberOfFrames=2147483647), folder, "frames_int32_max.dcm", 2)


def rle_65535(folder):
    ds = _sample("SC_rgb_rle_32bit_2frame.dcm")
    ds.Rows = ds.Columns = 65535
    return _save(ds, folder, "rle_65535.dcm", 3)


def j2k_65535(folder):
    ds = _sample("US1_J2KR.dcm")
    ds.Rows = ds.Columns = 65535
    return _save(ds, folder, "j2k_65535.dcm", 4)


def rescale_intercept_nan(folder):
    return _save(_ct(RescaleIntercept="NaN"), folder, "intercept_nan.dcm", 5)


def rescale_slope_inf(folder):
    return _save(_ct(RescaleSlope="inf"), folder, "slope_inf.dcm", 6)


def window_width_nan(folder):
    return _save(_ct(WindowCenter="40", WindowWidth="NaN"), folder, "window_nan.dcm", 7)


def width_zero(folder):
    return _save(_ct(Columns=0), folder, "width_zero.dcm", 8)


def bits_stored_above_allocated(folder):
    return _save(_ct(BitsStored=24, HighBit=23), folder, "bits_inconsistent.dcm", 9)


def bits_allocated_odd(folder):
    return _save(_ct(BitsAllocated=12), folder, "bits_allocated_12.dcm", 10)


def short_pixel_data(folder):
    ds = _ct()
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]
    return _save(ds, folder, "short_pixels.dcm", 11)


def long_pixel_data(folder):
    ds = _ct()
    ds.PixelData = ds.PixelData * 3
    return _save(ds, folder, "long_pixels.dcm", 12)


def _with_tail(ds, tail: bytes, folder, name: str, uid_seed: int) -> Path:
    """``ds`` without pixel data, then ``tail`` (raw Explicit VR LE elements, in tag order
    after every element of ``ds``), then ``ds``'s pixel data element."""
    pixels = ds.PixelData
    del ds.PixelData
    path = _save(ds, folder, name, uid_seed)
    with open(path, "ab") as f:
        f.write(tail)
        f.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, len(pixels)))
        f.write(pixels)
    return path


def nested_sequences(folder, depth: int = 5000, name: str | None = None) -> Path:
    """``depth`` undefined-length sequences nested in each other, in a private element."""
    seq = struct.pack("<HH2sHI", 0x7FDF, 0x1010, b"SQ", 0, 0xFFFFFFFF)
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    item_end = struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
    seq_end = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    creator = _creator()
    body = (seq + item) * depth + (item_end + seq_end) * depth
    return _with_tail(_ct(), creator + body, folder, name or f"nested_{depth}.dcm",
                      100000 + depth)


def _creator() -> bytes:
    value = b"ISSUE14 "
    return struct.pack("<HH2sH", 0x7FDF, 0x0010, b"LO", len(value)) + value


def items_without_delimiters(folder):
    """An undefined-length sequence whose items never end (no (FFFE,E00D)/(FFFE,E0DD))."""
    seq = struct.pack("<HH2sHI", 0x7FDF, 0x1010, b"SQ", 0, 0xFFFFFFFF)
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    inner = struct.pack("<HH2sH", 0x0008, 0x0060, b"CS", 2) + b"CT"
    return _with_tail(_ct(), _creator() + seq + (item + inner) * 50, folder,
                      "no_delimiters.dcm", 13)


def huge_private_element(folder, size: int = 2_300_000_000) -> Path:
    """A private OB element of ``size`` bytes before the pixel data, written sparse (the file
    takes a few kB on disk)."""
    ds = _ct()
    pixels = ds.PixelData
    del ds.PixelData
    path = _save(ds, folder, "huge_private.dcm", 14)
    with open(path, "r+b") as f:
        f.seek(0, 2)
        f.write(_creator())
        f.write(struct.pack("<HH2sHI", 0x7FDF, 0x1010, b"OB", 0, size))
        f.seek(size, 1)  # a hole: nothing written, nothing allocated on disk
        f.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, len(pixels)))
        f.write(pixels)
    return path


def dicomdir_outside_root(folder):
    """A DICOMDIR whose IMAGE records point outside its folder and to itself."""
    from pydicom.fileset import FileSet

    folder = Path(folder) / "dicomdir_hostile"
    folder.mkdir(parents=True, exist_ok=True)
    fs = FileSet()
    try:
        fs.add(_ct())
        fs.write(folder)
    finally:  # FileSet's private staging folder, removed now (not at exit with a warning)
        stage = getattr(fs, "_stage", {}).get("t")
        if stage is not None:
            stage.cleanup()
    import pydicom

    import copy
    import warnings

    dd = pydicom.dcmread(folder / "DICOMDIR")
    records = [r for r in dd.DirectoryRecordSequence if "ReferencedFileID" in r]
    with warnings.catch_warnings():  # ".." is not a valid CS value: that is the point
        warnings.simplefilter("ignore")
        twin = copy.deepcopy(records[0])
        records[0].ReferencedFileID = ["..", "..", "..", "etc", "passwd"]
        twin.ReferencedFileID = ["DICOMDIR"]
        dd.DirectoryRecordSequence.append(twin)
        dd.save_as(folder / "DICOMDIR")
    return folder / "DICOMDIR"


#: name -> generator ``fn(folder) -> Path`` of one hostile file.
KINDS: dict[str, Callable[[Path], Path]] = {
    "frames_100000": frames_100000,
    "frames_int32_max": frames_int32_max,
    "rle_65535x65535": rle_65535,
    "j2k_65535x65535": j2k_65535,
    "rescale_intercept_nan": rescale_intercept_nan,
    "rescale_slope_inf": rescale_slope_inf,
    "window_width_nan": window_width_nan,
    "width_zero": width_zero,
    "bits_stored_above_allocated": bits_stored_above_allocated,
    "bits_allocated_12": bits_allocated_odd,
    "short_pixel_data": short_pixel_data,
    "long_pixel_data": long_pixel_data,
    "nested_200": lambda folder: nested_sequences(folder, 200),
    "nested_5000": lambda folder: nested_sequences(folder, 5000),
    "items_without_delimiters": items_without_delimiters,
    "huge_private_element": huge_private_element,
    "dicomdir_outside_root": dicomdir_outside_root,
}


def write_all(folder) -> dict[str, Path]:
    """Write one file of every kind into ``folder``; returns name -> path."""
    return {name: fn(Path(folder)) for name, fn in KINDS.items()}
