"""Header-only reading of one DICOM file into one Index row (no pixel data is ever read).

Two readers give **identical rows** (tested on every pydicom sample file):

* :func:`dicomml.io._scan_fast.read_fast` walks the data elements of Explicit / Implicit VR
  Little Endian files with :mod:`dicomml.io.walker`, reading only the first kilobytes of
  the file and seeking over long values and sequences; it stops after the last tag the Index needs
  ((0028,1053) Rescale Slope). Anything unusual makes it hand over to pydicom.
* :func:`read_header_pydicom` uses pydicom's ``read_partial`` with the same stop tag.

:func:`read_header` tries the fast reader and falls back to pydicom. Both return a
:class:`HeaderRow` (the Index columns) or raise a :class:`Skip` with the reason.

Row values (see :data:`FIELDS`): UIDs and text are ``str`` with surrounding spaces and NULs
removed (multi-valued text such as (0008,0008) Image Type keeps DICOM's backslash between
values), decimal strings are ``float``, integer strings and binary integers are ``int``,
multi-valued numbers ((0020,0032), (0020,0037), (0028,0030), (0028,1050), (0028,1051)) are
``tuple`` of ``float`` -- stored in SQLite as JSON arrays, see :mod:`dicomml.io.index`.
An empty or unparseable value is ``None``. Top-level attributes are read by both readers;
for enhanced multi-frame objects (:data:`FUNCTIONAL_GROUP_CLASSES`) the values that the
series split needs and that are constant over the frames (echo time, complex image
component, b-value, temporal position, stack, orientation, pixel spacing) are taken
from the functional groups by
:func:`functional_group_values` (pydicom, no pixel data) when the top level lacks them.
"""

from __future__ import annotations

import os
import warnings

from dicomml.io._scan_fast import ValueCache, read_fast
from dicomml.io.fields import (
    CREATOR_TAGS,
    DERIVED_COLUMNS,
    FIELDS,
    FUNCTIONAL_GROUP_CLASSES,
    MAX_TAG,
    OBJECT_KINDS,
    PRIVATE,
    RAW_TAGS,
    ROW_COLUMNS,
    TAGS,
    HeaderRow,
    Skip,
    dataset_values,
    functional_group_values,
    is_mosaic,
    normalize_pydicom,
    normalize_strings,
    object_kind,
    private_text,
    row_from_values,
    with_frame_values,
)
from dicomml.io.uids import TS_DEFLATED_LE, TS_EXPLICIT_BE, TS_EXPLICIT_LE, TS_IMPLICIT_LE
from dicomml.io.walker import (
    VRS,
    LONG_VRS,
    Fallback,
    NestingTooDeep,
    Reader,
    check_rest,
)

__all__ = [
    "FIELDS",
    "ROW_COLUMNS",
    "OBJECT_KINDS",
    "HeaderRow",
    "Skip",
    "object_kind",
    "read_header",
    "read_header_pydicom",
    "row_from_values",
    "TAGS",
    "RAW_TAGS",
    "PRIVATE",
    "DERIVED_COLUMNS",
    "MAX_TAG",
    "is_mosaic",
    "functional_group_values",
    "dataset_values",
    "with_frame_values",
    "CREATOR_TAGS",
    "FUNCTIONAL_GROUP_CLASSES",
    "normalize_pydicom",
    "normalize_strings",
    "looks_like_dataset",
]

# The columns, the normalization and the skip reasons live in dicomml.io.fields (imported
# above and re-exported: the public names of this module are unchanged).


# -- the pydicom reader ---------------------------------------------------------------------
#: pydicom seeks over values longer than this instead of reading them (huge declared lengths).
_DEFER = 1 << 16


class _Bounded:
    """A binary file whose ``read(n)`` never asks for more than what is left of it.

    ``BufferedReader.read(n)`` allocates ``n`` bytes before reading: a corrupted (or hostile)
    element length of 0xFFFFFFF0 would make pydicom allocate 4 GiB for a 10 kB file. Reads are
    capped at the bytes left before ``size``.
    """

    __slots__ = ("_f", "_size", "name")

    def __init__(self, f, size: int):
        self._f = f
        self._size = size
        self.name = getattr(f, "name", None)

    def read(self, n: int = -1) -> bytes:
        left = max(0, self._size - self._f.tell())
        return self._f.read(left if n is None or n < 0 or n > left else n)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def __getattr__(self, name):
        return getattr(self._f, name)

def _sanitize(msg: str) -> str:
    """Drop quoted substrings (they may hold element values) and cut the message short."""
    import re

    msg = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", msg)
    return msg[:160]


def read_header_pydicom(path: str, size: int | None = None, mtime: float | None = None
                        ) -> HeaderRow:
    """Read one file's Index row with pydicom (``pydicom.filereader.read_partial``).

    Like the struct reader it stops after the last tag the Index needs, so pixel data is
    never read.
    Files without the 128-byte preamble and "DICM" prefix (PS3.10 7.1) are read with
    ``force=True`` only when a plausible data element starts at offset 0.
    """
    from pydicom.errors import InvalidDicomError as PydicomInvalid
    from pydicom.filereader import read_partial

    st = None
    if size is None or mtime is None:
        st = os.stat(path)
    size = st.st_size if size is None else size
    mtime = st.st_mtime if mtime is None else mtime
    _check_start(path, size)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with open(path, "rb") as raw_fp:
                fp = _Bounded(raw_fp, size)
                ds = read_partial(fp, stop_when=_after_max_tag, defer_size=_DEFER, force=True,
                                  specific_tags=list(RAW_TAGS))
                if fp.tell() > size:  # pydicom sought past the end over a declared length
                    raise Skip("truncated header", f"truncated header at byte {size} "
                                                   "(a declared length passes the end)")
                implicit, little = ds.original_encoding
                if little and not _is_deflated(ds):
                    pos = fp.tell()  # pydicom rewound to the first element it did not read
                    try:
                        cut = check_rest(Reader(fp, size), pos, not implicit)
                    except Fallback:  # a layout the walker does not follow: not checked
                        cut = None
                    except NestingTooDeep as e:
                        raise Skip("invalid DICOM", f"invalid DICOM ({e})") from None
                    if cut is not None:
                        raise Skip("truncated data", cut)
            _check_truncated(ds)
            values = {}
            for tag, (name, kind) in RAW_TAGS.items():
                elem = ds.get(tag)
                value = None if elem is None else elem.value
                if tag in PRIVATE and isinstance(value, (bytes, bytearray)):
                    # a private value without a dictionary VR: raw bytes (as the struct
                    # reader sees it in implicit VR)
                    values[name] = bytes(value) if kind == "bytes" else \
                        private_text(kind, bytes(value))
                    continue
                values[name] = None if value is None else normalize_pydicom(kind, value)
            meta = ds.file_meta
            ts = meta.get("TransferSyntaxUID")
            if ts is None:
                implicit, little = ds.original_encoding
                ts = TS_IMPLICIT_LE if implicit else (TS_EXPLICIT_LE if little
                                                      else TS_EXPLICIT_BE)
            ts = normalize_strings("ui", [str(ts)])
            msc = meta.get("MediaStorageSOPClassUID")
            msi = meta.get("MediaStorageSOPInstanceUID")
    except Skip:
        raise
    except PydicomInvalid as e:
        raise Skip("not DICOM", f"not DICOM ({_sanitize(str(e))})") from None
    except (EOFError, OSError) as e:
        if isinstance(e, OSError) and not isinstance(e, EOFError) and e.errno is not None:
            raise Skip("unreadable", f"unreadable ({e.strerror})") from None
        raise Skip("truncated header", f"truncated header at byte {size}") from None
    except Exception as e:  # pydicom raises many types on broken input
        raise Skip("invalid DICOM", f"invalid DICOM (pydicom: {type(e).__name__}: "
                                    f"{_sanitize(str(e))})") from None
    return row_from_values(path, size, mtime, ts, values,
                           normalize_strings("ui", [str(msc)]) if msc else None,
                           normalize_strings("ui", [str(msi)]) if msi else None)


_LONG = frozenset(vr.decode() for vr in LONG_VRS)


def _is_deflated(ds) -> bool:
    return str(ds.file_meta.get("TransferSyntaxUID", "")) == TS_DEFLATED_LE


def _after_max_tag(tag, vr, length) -> bool:
    """``stop_when`` of pydicom's ``read_partial``: stop where the struct reader stops."""
    return tag > MAX_TAG


def _check_truncated(ds) -> None:
    """pydicom keeps a value cut short by the end of the file: find it among the Index tags.

    (Truncation inside an element the Index does not keep is not seen by this reader.)
    """
    for tag in RAW_TAGS:
        if tag not in ds:
            continue
        raw = ds.get_item(tag)
        value = getattr(raw, "value", None)
        length = getattr(raw, "length", None)
        if not isinstance(value, bytes) or length is None or length == 0xFFFFFFFF:
            continue
        if len(value) < length:
            header = 8 if raw.is_implicit_VR or raw.VR not in _LONG else 12
            raise Skip("truncated header", f"truncated header at byte {raw.value_tell - header}")


def _check_start(path: str, size: int) -> None:
    """Raise :class:`Skip` for empty files, bare preambles and files that are not DICOM."""
    if size == 0:
        raise Skip("empty file", "empty file")
    try:
        with open(path, "rb") as f:
            head = f.read(140)
    except OSError as e:
        raise Skip("unreadable", f"unreadable ({e.strerror})") from None
    if len(head) == 0:
        raise Skip("empty file", "empty file")
    if len(head) >= 132 and head[128:132] == b"DICM":
        if size <= 132:
            raise Skip("bare preamble", "bare preamble (128-byte preamble and 'DICM', no data)")
        return
    if not looks_like_dataset(head, size):
        raise Skip("not DICOM",
                   "not DICOM (no DICM prefix and no valid element at offset 0)")


def looks_like_dataset(head: bytes, size: int) -> bool:
    """True when a plausible data element starts at offset 0 (a file without preamble).

    The first element must be in group 0002 or 0008 (little or big endian), followed by a
    valid explicit VR or an implicit 32-bit length that fits in the file.
    """
    if len(head) < 8:
        return False
    le_group = int.from_bytes(head[0:2], "little")
    be_group = int.from_bytes(head[0:2], "big")
    if le_group in (0x0002, 0x0008):
        little = True
    elif be_group in (0x0002, 0x0008):
        little = False
    else:
        return False
    if head[4:6] in VRS:
        return True
    length = int.from_bytes(head[4:8], "little" if little else "big")
    return length <= size - 8


def read_header(path: str, size: int | None = None, mtime_ns: int | None = None,
                *, fast: bool = True, cache: ValueCache | None = None) -> HeaderRow:
    """Read the Index row of one file, header only; raise :class:`Skip` when unusable.

    Parameters
    ----------
    path : str
        The file.
    size, mtime_ns : int, optional
        Its size and modification time as the caller already stat'ed them.
    fast : bool
        Try the :mod:`struct` reader first (default); ``False`` uses pydicom only.
    cache : dicomml.io._scan_fast.ValueCache, optional
        Normalized values shared by the files read together (the scan keeps one per chunk).
    """
    if size is None or mtime_ns is None:
        try:
            st = os.stat(path)
        except OSError as e:
            raise Skip("unreadable", f"unreadable ({e.strerror})") from None
        size, mtime_ns = st.st_size, st.st_mtime_ns
    mtime = mtime_ns / 1e9
    if fast:
        try:
            return read_fast(path, size, mtime, cache)
        except Fallback:
            pass
    return read_header_pydicom(path, size, mtime)
