"""A real file that makes pylibjpeg-rle panic (a Rust ``PanicException``, a ``BaseException``).

pydicom's ``SC_rgb_rle_32bit_2frame.dcm`` with three bytes of its first RLE frame changed (a
mutation found by the issue 14 fuzzing): pylibjpeg-rle 2.x indexes past its output buffer
and panics ("index out of bounds"); pydicom's own RLE decoder raises a ValueError on it.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames

SAMPLE = "SC_rgb_rle_32bit_2frame.dcm"
#: (offset in the first frame's RLE stream, new byte value)
MUTATION = ((2146, 143), (1653, 152), (1768, 219))


def make_panicker(folder: Path, name: str = "panic.dcm") -> Path:
    """Write the panicking file into ``folder`` (a fresh SOP Instance UID) and return it."""
    ds = pydicom.dcmread(get_testdata_file(SAMPLE, download=False))
    frames = list(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    first = bytearray(frames[0])
    for offset, value in MUTATION:
        first[offset] = value
    ds.PixelData = encapsulate([bytes(first), *frames[1:]])
    ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["dicomml-issue14-panic"])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    ds.save_as(path, enforce_file_format=True)
    return path


def panics_in_rle(path: Path) -> bool:
    """True when pylibjpeg-rle itself panics (BaseException, not Exception) on ``path``."""
    from rle.rle import decode_frame

    ds = pydicom.dcmread(path)
    frame = next(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    try:
        decode_frame(frame, int(ds.Rows) * int(ds.Columns), int(ds.BitsAllocated), "<")
    except Exception:
        return False
    except BaseException as e:  # noqa: BLE001 - this is the point
        return type(e).__name__ == "PanicException"
    return False
