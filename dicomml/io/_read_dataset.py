"""Load one DICOM file into a pydicom Dataset with typed errors (internal to dicomml.io).

The file is read once into memory and parsed from a ``BytesIO``: one system call instead of
many small buffered reads, and the source file is opened read-only and never modified.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from typing import Iterator

from dicomml.errors import InvalidDicomError, NotDicomError
from dicomml.io._read_fast import parse_light

__all__ = ["load_dataset", "quiet_pydicom"]

log = logging.getLogger("dicomml.io")


@contextlib.contextmanager
def quiet_pydicom() -> Iterator[None]:
    """Turn pydicom's warnings about slightly invalid values into debug log records.

    Real files are full of small deviations (a DS value with too many characters, a wrong
    VR); reading tolerates them (highdicom's habit: "when reading, tolerate small
    deviations") and only fails where an assumption really breaks.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    if caught:
        # Only the count and categories: pydicom's messages can quote element values
        # (names, IDs), which never go to logs.
        kinds = sorted({type(w.message).__name__ for w in caught})
        log.debug("pydicom reported %d warning(s) (%s) while reading", len(caught),
                  ", ".join(kinds))


def load_dataset(path: str | os.PathLike, *, stop_before_pixels: bool = False,
                 fast: bool = True):
    """Read ``path`` and return ``(dataset, n_bytes)``.

    With ``fast=True`` a native little-endian grayscale file is parsed by
    :func:`dicomml.io._read_fast.parse_light` (a :class:`LightDataset` with the attributes the
    reader needs); anything else by pydicom (a ``pydicom.Dataset``).

    Raises
    ------
    NotDicomError
        Empty file, or neither a DICOM Part 10 file nor a parseable bare dataset.
    InvalidDicomError
        The file starts like DICOM but cannot be parsed (truncated header, corrupt lengths).
    OSError
        The file cannot be opened (missing, permission): the builtin error, naming the file.
    """
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError as PydicomInvalid

    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise NotDicomError(f"{path}: the file is empty (0 bytes); it is not a DICOM file.")
    part10 = len(data) >= 132 and data[128:132] == b"DICM"
    if fast and part10 and not stop_before_pixels:
        light = parse_light(data)
        if light is not None:
            return light, len(data)
    try:
        try:
            ds = dcmread(io.BytesIO(data), stop_before_pixels=stop_before_pixels)
        except PydicomInvalid:
            if part10:
                raise
            # No preamble: accept a bare dataset only if it looks like one.
            ds = dcmread(io.BytesIO(data), stop_before_pixels=stop_before_pixels, force=True)
            if not _looks_like_dicom(ds):
                raise NotDicomError(
                    f"{path}: not a DICOM file (no 'DICM' prefix at byte 128 and no "
                    "(0008,0016) SOP Class UID or (7FE0,0010) Pixel Data when read as a bare "
                    "dataset).") from None
            # Make sure every element parses (force=True defers errors to access time).
            for _ in ds:
                pass
    except NotDicomError:
        raise
    except (PydicomInvalid, EOFError, OSError, ValueError, KeyError, TypeError,
            OverflowError, IndexError, NotImplementedError) as e:
        if not part10 and len(data) < 132:
            raise NotDicomError(f"{path}: not a DICOM file ({len(data)} bytes, no 'DICM' "
                                "prefix at byte 128).") from e
        raise InvalidDicomError(
            f"{path}: cannot parse the DICOM data set ({type(e).__name__}: {e}); the file is "
            "truncated or corrupt. Re-export or re-transfer it.") from e
    return ds, len(data)


def _looks_like_dicom(ds) -> bool:
    try:
        tags = set(ds.keys())
    except Exception:  # noqa: BLE001 - a forced read of random bytes can fail anywhere
        return False
    if not tags:
        return False
    known = {0x00080016, 0x00080018, 0x7FE00010, 0x00280010, 0x0020000D, 0x0020000E}
    return bool(known & {int(t) for t in tags}) and all(int(t) < 0xFFFFFFFF for t in tags)
