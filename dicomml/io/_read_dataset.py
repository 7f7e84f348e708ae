"""Load one DICOM file into a pydicom Dataset with typed errors (internal to dicomml.io).

The file is read once into memory and parsed from a ``BytesIO``: one system call instead of
many small buffered reads, and the source file is opened read-only and never modified.
A file larger than :data:`dicomml.io.guards.MMAP_FROM` is memory-mapped instead, and parsed
with elements over :data:`dicomml.io.guards.DEFER_SIZE` deferred: only the pages of what is
used are read (a 2 GB private OB element costs nothing).
"""

from __future__ import annotations

import contextlib
import io
import logging
import mmap
import os
import re
import threading
import warnings
from typing import Iterator

from dicomml.errors import InvalidDicomError, NotDicomError
from dicomml.privacy import scrub
from dicomml.io._read_fast import NestingTooDeep, parse_light
from dicomml.io.functional_groups import attach, file_key, strip_groups
from dicomml.io.guards import DEFER_SIZE, MMAP_FROM, nesting_error

__all__ = ["load_dataset", "quiet_pydicom", "describe_error", "shown_uid", "shown_cs",
           "parse_error"]

log = logging.getLogger("dicomml.io")


class _DropWhileReading(logging.Filter):
    """Drops the ``pydicom`` logger's records while a dicomml read is running.

    pydicom logs (and warns) about invalid values *quoting the value*, e.g. a corrupted
    (0010,0010) Patient's Name swallowed into a UI element: such records must never reach
    the user's logs. Only their number is kept.
    """

    def __init__(self):
        super().__init__()
        self.active = 0
        self.dropped = 0
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.active:
            self.dropped += 1
            return False
        return True


_FILTER = _DropWhileReading()


@contextlib.contextmanager
def _pydicom_log_muted() -> Iterator[None]:
    logger = logging.getLogger("pydicom")
    with _FILTER.lock:
        if _FILTER.active == 0:
            logger.addFilter(_FILTER)
        _FILTER.active += 1
    try:
        yield
    finally:
        with _FILTER.lock:
            _FILTER.active -= 1
            if _FILTER.active == 0:
                logger.removeFilter(_FILTER)


def describe_error(e: BaseException, limit: int = 160) -> str:
    """``"TypeName: message"`` of a third-party error with every quoted value removed.

    pydicom's messages can quote element values (a corrupted file may put a patient's name
    anywhere); dicomml's messages never repeat them: quoted text becomes ``'…'`` and the
    message is cut at ``limit`` characters. Tags such as ``(0002,0000)`` are kept.
    """
    text = scrub(e).replace("\n", " ")
    if len(text) > limit:
        text = text[:limit] + "…"
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


_UID_RE = re.compile(r"[0-9][0-9.]{0,63}")
_CS_RE = re.compile(r"[A-Z0-9_ ]{1,16}")


def shown_uid(value, missing: str = "unknown") -> str:
    """A UI value as it may appear in a message: itself when it is a valid UID, else a
    placeholder. A corrupted file can swallow a patient's name into any element; a message
    only ever repeats values that cannot hold one."""
    if value is None or value == "":
        return missing
    s = str(value).strip("\x00 ")
    return s if _UID_RE.fullmatch(s) else "(invalid UID)"


def shown_cs(value, missing: str = "unknown") -> str:
    """A CS value (Modality, Photometric Interpretation...) for a message, or a placeholder
    when it is not a valid code string (see :func:`shown_uid`)."""
    if value is None or value == "":
        return missing
    if not isinstance(value, str) and hasattr(value, "__iter__"):
        return "\\".join(shown_cs(v) for v in list(value)[:4])
    s = str(value).strip()
    return s if _CS_RE.fullmatch(s) else "(invalid code string)"


@contextlib.contextmanager
def quiet_pydicom() -> Iterator[None]:
    """Turn pydicom's warnings about slightly invalid values into debug log records.

    Real files are full of small deviations (a DS value with too many characters, a wrong
    VR); reading tolerates them (highdicom's habit: "when reading, tolerate small
    deviations") and only fails where an assumption really breaks. pydicom's own log records
    (which quote values) are dropped meanwhile.
    """
    with warnings.catch_warnings(record=True) as caught, _pydicom_log_muted():
        warnings.simplefilter("always")
        yield
    if caught:
        # Only the count and categories: pydicom's messages can quote element values
        # (names, IDs), which never go to logs.
        kinds = sorted({type(w.message).__name__ for w in caught})
        log.debug("pydicom reported %d warning(s) (%s) while reading", len(caught),
                  ", ".join(kinds))


def load_dataset(path: str | os.PathLike, *, stop_before_pixels: bool = False,
                 fast: bool = True, frame_groups: bool = False, check_values: bool = True):
    """Read ``path`` and return ``(dataset, n_bytes)``.

    With ``fast=True`` a native little-endian grayscale file is parsed by
    :func:`dicomml.io._read_fast.parse_light` (a :class:`LightDataset` with the attributes the
    reader needs); anything else by pydicom (a ``pydicom.Dataset``). With
    ``frame_groups=True`` the (5200,9229) Shared and (5200,9230) Per-Frame Functional Groups
    of an enhanced object are parsed by :mod:`dicomml.io.functional_groups` (only the
    attributes dicomml's readers use; the dataset then lacks both sequences: read them with
    :func:`~dicomml.io.functional_groups.per_frame_groups` / ``shared_groups``), and the rest
    by the light parser where it takes the object (``parse_light(frame_groups=True)``), else
    by pydicom.

    ``check_values``: pydicom's values are all converted here, so that a corrupt one is an
    :class:`InvalidDicomError` naming the file now (default). ``False`` leaves them to be
    converted when read (a caller that reads a few attributes of a long header, e.g. the CSA
    header of a Siemens mosaic: 0.6 instead of 3.4 ms a file); it reports a failure of
    those reads with :func:`parse_error`.

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
        st = os.fstat(f.fileno())
        size = st.st_size
        data = (mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size > MMAP_FROM
                else f.read())
    if not data:
        raise NotDicomError(f"{path}: the file is empty (0 bytes); it is not a DICOM file.")
    part10 = len(data) >= 132 and data[128:132] == b"DICM"
    groups_at: list = []
    if fast and part10 and not stop_before_pixels:
        try:
            light = parse_light(data, groups_at, frame_groups=frame_groups,
                                memo=file_key(st) if frame_groups else None)
        except NestingTooDeep:
            raise nesting_error(path) from None
        if light is not None:
            return light, len(data)
    groups = None
    if frame_groups and part10 and not isinstance(data, mmap.mmap):
        stripped = strip_groups(data, *(groups_at[0] if groups_at else (None, None)))
        if stripped is not None:
            data, groups = stripped
    # A large file is parsed from its path, large values deferred (read when used).
    source = (lambda: path) if isinstance(data, mmap.mmap) else (lambda: io.BytesIO(data))
    opts = {"stop_before_pixels": stop_before_pixels, "defer_size": DEFER_SIZE}
    try:
        try:
            ds = dcmread(source(), **opts)
        except PydicomInvalid:
            if part10:
                raise
            # No preamble: accept a bare dataset only if it looks like one.
            ds = dcmread(source(), force=True, **opts)
            if not _looks_like_dicom(ds):
                raise NotDicomError(
                    f"{path}: not a DICOM file (no 'DICM' prefix at byte 128 and no "
                    "(0008,0016) SOP Class UID or (7FE0,0010) Pixel Data when read as a bare "
                    "dataset).") from None
        # Make sure every element parses now (pydicom converts values lazily: a corrupt
        # value would otherwise raise a bare pydicom error at first access); deferred
        # (large) values stay unread.
        if check_values:
            _convert_all(ds)
            _convert_all(getattr(ds, "file_meta", None))
    except NotDicomError:
        raise
    except RecursionError:
        raise nesting_error(path, None) from None
    except Exception as e:  # noqa: BLE001 - the parser meets arbitrary bytes: any error
        if not part10 and len(data) < 132:
            raise NotDicomError(f"{path}: not a DICOM file ({len(data)} bytes, no 'DICM' "
                                "prefix at byte 128).") from e
        raise parse_error(path, e) from e
    if isinstance(data, mmap.mmap):
        data.close()  # pydicom read from the path
    if groups is not None:
        attach(ds, groups)
    return ds, size


def parse_error(path, e: BaseException) -> InvalidDicomError:
    """The error of a data set that pydicom cannot parse (or a value it cannot convert):
    names the file and what failed; quotes no value."""
    return InvalidDicomError(
        f"{path}: cannot parse the DICOM data set ({describe_error(e)}); the file is "
        "truncated or corrupt. Re-export or re-transfer it.")


def _convert_all(ds) -> None:
    """Convert every top-level raw element of ``ds`` except the deferred ones."""
    if ds is None:
        return
    for tag in list(ds.keys()):
        elem = ds.get_item(tag, keep_deferred=True)
        if getattr(elem, "value", True) is None and getattr(elem, "length", 0):
            continue  # deferred: read (and checked by pydicom) when it is used
        ds[tag]


def _looks_like_dicom(ds) -> bool:
    try:
        tags = set(ds.keys())
    except Exception:  # noqa: BLE001 - a forced read of random bytes can fail anywhere
        return False
    if not tags:
        return False
    known = {0x00080016, 0x00080018, 0x7FE00010, 0x00280010, 0x0020000D, 0x0020000E}
    return bool(known & {int(t) for t in tags}) and all(int(t) < 0xFFFFFFFF for t in tags)
