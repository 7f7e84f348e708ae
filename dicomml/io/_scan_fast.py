"""A careful :mod:`struct` walker of DICOM headers (PS3.5 Section 7, PS3.10 Section 7).

It handles files with the 128-byte preamble and "DICM" prefix whose (0002,0010) Transfer
Syntax UID is Implicit VR Little Endian or any Explicit VR Little Endian syntax (native or
encapsulated; not Deflated). It reads the file in blocks of :data:`BLOCK` bytes, keeps the
raw values of the top-level tags in :data:`dicomml.io.header.RAW_TAGS` and seeks over every
other value and sequence (defined lengths are skipped, undefined lengths are walked to
their (FFFE,E0DD) Sequence Delimitation Item). It stops after :data:`~dicomml.io.header.MAX_TAG`,
so pixel data is never read. Values longer than :data:`MAX_VALUE` are never read into memory.

Anything unusual raises :class:`Fallback` and the caller uses pydicom instead: no preamble,
missing transfer syntax, big endian or deflate, an invalid VR, an explicit VR where implicit
was declared (or the reverse), non-ASCII text in a needed value, an unexpected VR for a
needed tag, tags out of order. Needs only the standard library.
"""

from __future__ import annotations

import math
import struct

from dicomml.io.header import (
    MAX_TAG,
    RAW_TAGS,
    Skip,
    _VRS,
    normalize_strings,
    row_from_values,
)

__all__ = ["Fallback", "read_fast", "BLOCK", "MAX_VALUE"]

#: Bytes read at a time.
BLOCK = 8192
#: A needed value longer than this is handed to pydicom (and never read here).
MAX_VALUE = 1 << 16

_EXPLICIT_TS_FALLBACK = frozenset({"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"})
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                       b"UR", b"UT", b"UV"})
_TEXT_VRS = {"ui": {b"UI"}, "text": {b"CS", b"DA", b"LO", b"SH"}, "ds": {b"DS"},
             "floats": {b"DS"}}
_INT_TEXT_VRS = {b"IS"}
_INT_BIN_VRS = {b"US": struct.Struct("<H"), b"SS": struct.Struct("<h"),
                b"UL": struct.Struct("<I")}
_FD = struct.Struct("<d")
#: Tags of the Index whose data-dictionary VR is US or UL (the other integers are IS).
_BIN_TAGS = {**dict.fromkeys((0x00280002, 0x00280010, 0x00280011, 0x00280100, 0x00280101,
                              0x00280103), b"US"), 0x00209057: b"UL"}
#: Long values kept as (VR, (offset, length)) by the walk and read only when needed: the
#: (0029,1010) CSA header (about 10 kB) is read for MOSAIC images only.
_LAZY = frozenset({0x00291010})
_SHORT_VRS = frozenset(v for v in _VRS if v not in _LONG_VRS)
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQ_END = 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_HH = struct.Struct("<HH")
_HHI = struct.Struct("<HHI")
_H = struct.Struct("<H")
_I = struct.Struct("<I")
_EXPL = struct.Struct("<HH2sH")  # group, element, VR, 16-bit length (explicit VR)
_IMPL = struct.Struct("<HHI")  # group, element, 32-bit length (implicit VR)


class Fallback(Exception):
    """This file needs the general (pydicom) reader."""


class _Truncated(Exception):
    def __init__(self, offset: int):
        self.offset = offset


class _Reader:
    """Random access to a file through one cached block."""

    __slots__ = ("f", "size", "data", "base")

    def __init__(self, f, size: int):
        self.f = f
        self.size = size
        self.base = f.tell()
        self.data = f.read(BLOCK)

    def get(self, pos: int, n: int, elem_start: int) -> bytes:
        end = pos + n
        if end > self.size:
            raise _Truncated(elem_start)
        off = pos - self.base
        if off >= 0 and end - self.base <= len(self.data):
            return self.data[off:off + n]
        if n > MAX_VALUE:
            raise Fallback
        self.f.seek(pos)
        self.data = self.f.read(max(n, BLOCK))
        self.base = pos
        if len(self.data) < n:
            raise _Truncated(elem_start)
        return self.data[:n]


def _element(r: _Reader, pos: int, explicit: bool) -> tuple[int, bytes | None, int, int]:
    """Parse the element header at ``pos``: (tag, vr, value_start, length)."""
    hdr = r.get(pos, 8, pos)
    group, elem = _HH.unpack_from(hdr)
    tag = (group << 16) | elem
    if group == 0xFFFE:
        return tag, None, pos + 8, _I.unpack_from(hdr, 4)[0]
    if explicit:
        vr = hdr[4:6]
        if vr not in _VRS:
            raise Fallback
        if vr in _LONG_VRS:
            return tag, vr, pos + 12, _I.unpack_from(r.get(pos + 8, 4, pos))[0]
        return tag, vr, pos + 8, _H.unpack_from(hdr, 6)[0]
    return tag, None, pos + 8, _I.unpack_from(hdr, 4)[0]


def _skip_sequence(r: _Reader, pos: int, explicit: bool, start: int) -> int:
    """Skip the items of an undefined-length sequence from ``pos``; return the end."""
    while True:
        tag, _vr, vstart, length = _element(r, pos, False)
        if tag == _SEQ_END:
            return vstart
        if tag != _ITEM:
            raise Fallback
        if length == _UNDEFINED:
            pos = _skip_item(r, vstart, explicit, start)
        else:
            pos = vstart + length
            if pos > r.size:
                raise _Truncated(start)


def _skip_item(r: _Reader, pos: int, explicit: bool, start: int) -> int:
    """Skip the elements of an undefined-length item from ``pos``; return the end."""
    while True:
        hdr = r.get(pos, 4, start)
        if _HH.unpack_from(hdr) == (0xFFFE, 0xE00D):
            return pos + 8
        tag, vr, vstart, length = _element(r, pos, explicit)
        if tag >> 16 == 0xFFFE:
            raise Fallback
        if length == _UNDEFINED:
            # implicit VR: a sequence; explicit: SQ, UN (implicit inside) or encapsulated OB
            pos = _skip_sequence(r, vstart, explicit and vr != b"UN", start)
        else:
            pos = vstart + length
            if pos > r.size:
                raise _Truncated(start)


def _walk(r: _Reader, pos: int, explicit: bool, stop: int, keep) -> int:
    """Walk top-level elements from ``pos`` while tag <= ``stop``; keep wanted raw values.

    The hot loop of the scan: element headers are unpacked straight from the cached block.
    """
    if explicit:
        return _walk_explicit(r, pos, stop, keep)
    size = r.size
    last = -1
    data, base = r.data, r.base
    dlen = len(data)
    unpack = _EXPL.unpack_from if explicit else _IMPL.unpack_from
    while pos < size:
        off = pos - base
        if off < 0 or off + 12 > dlen:  # the header is not (all) in the cached block
            if size - pos < 8:
                raise _Truncated(pos)
            r.get(pos, min(12, size - pos), pos)
            data, base = r.data, r.base
            dlen = len(data)
            off = pos - base
        if explicit:
            group, elem, vr, length = unpack(data, off)
        else:
            group, elem, length = unpack(data, off)
            vr = None
        tag = (group << 16) | elem
        if tag > stop:
            return pos
        if tag <= last or group == 0xFFFE:
            raise Fallback
        last = tag
        if explicit:
            if vr not in _VRS:
                raise Fallback
            if vr in _LONG_VRS:
                if off + 12 > dlen:
                    raise _Truncated(pos)
                length = _I.unpack_from(data, off + 8)[0]
                vstart = pos + 12
            else:
                vstart = pos + 8
        else:
            vstart = pos + 8
        if length == _UNDEFINED:
            if explicit and vr not in (b"SQ", b"UN"):
                raise Fallback
            if tag in keep:
                raise Fallback
            pos = _skip_sequence(r, vstart, explicit and vr != b"UN", pos)
            data, base = r.data, r.base
            dlen = len(data)
            continue
        end = vstart + length
        if end > size:
            raise _Truncated(pos)
        if tag in keep:
            if tag in _LAZY:
                keep[tag] = (vr, (vstart, length))
            else:
                if length > MAX_VALUE:
                    raise Fallback
                keep[tag] = (vr, r.get(vstart, length, pos))
                data, base = r.data, r.base
                dlen = len(data)
        pos = end
    return pos


def _walk_explicit(r: _Reader, pos: int, stop: int, keep) -> int:
    """:func:`_walk` for explicit VR: the same checks, in the order of the common case."""
    size = r.size
    last = -1
    data, base = r.data, r.base
    dlen = len(data)
    unpack = _EXPL.unpack_from
    short_vrs, long_vrs = _SHORT_VRS, _LONG_VRS
    while pos < size:
        off = pos - base
        if off < 0 or off + 12 > dlen:  # the header is not (all) in the cached block
            if size - pos < 8:
                raise _Truncated(pos)
            r.get(pos, min(12, size - pos), pos)
            data, base = r.data, r.base
            dlen = len(data)
            off = pos - base
        group, elem, vr, length = unpack(data, off)
        tag = (group << 16) | elem
        if tag > stop:
            return pos
        if tag <= last or group == 0xFFFE:
            raise Fallback
        last = tag
        if vr in short_vrs:
            vstart = pos + 8
        elif vr in long_vrs:
            if off + 12 > dlen:
                raise _Truncated(pos)
            length = _I.unpack_from(data, off + 8)[0]
            vstart = pos + 12
            if length == _UNDEFINED:
                if vr != b"SQ" and vr != b"UN":
                    raise Fallback
                if tag in keep:
                    raise Fallback
                pos = _skip_sequence(r, vstart, vr != b"UN", pos)
                data, base = r.data, r.base
                dlen = len(data)
                continue
        else:
            raise Fallback
        end = vstart + length
        if end > size:
            raise _Truncated(pos)
        if tag in keep:
            if tag in _LAZY:
                keep[tag] = (vr, (vstart, length))
                pos = end
                continue
            if length > MAX_VALUE:
                raise Fallback
            voff = vstart - base
            if voff >= 0 and end - base <= dlen:
                keep[tag] = (vr, data[voff:voff + length])
            else:
                keep[tag] = (vr, r.get(vstart, length, pos))
                data, base = r.data, r.base
                dlen = len(data)
        pos = end
    return pos


def check_rest(r: _Reader, pos: int, explicit: bool) -> None:
    """Check that the rest of the file is complete: raise :class:`Skip` when truncated.

    Seeks from ``pos`` over the top-level elements up to (7FE0,0010) Pixel Data and over
    Pixel Data itself (its defined length, or its encapsulated fragments up to the
    (FFFE,E0DD) delimiter), reading element headers only. A file cut short anywhere
    there is "truncated data" -- typically a copy interrupted in the pixel data.
    """
    try:
        pos = _walk(r, pos, explicit, 0x7FE0000F, {})
        if pos + 8 > r.size:
            if pos < r.size:
                raise _Truncated(pos)
            return
        tag, vr, vstart, length = _element(r, pos, explicit)
        if tag != 0x7FE00010:
            return
        if length == _UNDEFINED:
            try:
                _skip_sequence(r, vstart, False, pos)
            except _Truncated:
                raise _Truncated(pos) from None
        elif vstart + length > r.size:
            raise _Truncated(pos)
    except _Truncated as t:
        what = "pixel data (7FE0,0010)" if _is_pixel_data(r, t.offset) else "data"
        raise Skip("truncated data", f"truncated {what} at byte {t.offset} (the file ends at "
                                     f"byte {r.size})") from None


def _is_pixel_data(r: _Reader, pos: int) -> bool:
    try:
        return r.get(pos, 4, pos) == b"\xe0\x7f\x10\x00"
    except _Truncated:
        return False


def _text(raw: bytes) -> list[str]:
    if not raw.isascii():
        raise Fallback
    return raw.decode("ascii").split("\\")


_MISS = object()
#: Normalized values by (tag, VR, raw bytes), shared by the files one process reads.
_VALUE_CACHE: dict = {}
_CACHE_ITEMS = 4096
_CACHE_VALUE_BYTES = 256


def _value(kind: str, vr: bytes | None, data: bytes):
    """The row value of one raw value (``vr`` None only for text kinds in implicit VR)."""
    if kind == "int":
        if vr in _INT_TEXT_VRS:
            return normalize_strings("int", _text(data))
        fmt = _INT_BIN_VRS.get(vr)
        if fmt is not None:
            if len(data) < fmt.size or len(data) % fmt.size:
                raise Fallback
            return fmt.unpack_from(data)[0]
        raise Fallback
    if kind == "fd":
        if vr not in (b"FD", None) or len(data) < 8 or len(data) % 8:
            raise Fallback
        v = _FD.unpack_from(data)[0]
        return v if math.isfinite(v) else None
    if kind == "bytes":
        return data
    if vr is not None and vr not in _TEXT_VRS[kind]:
        raise Fallback
    return normalize_strings(kind, _text(data))


def read_fast(path: str, size: int, mtime: float):
    """Read the Index row of ``path`` (``size`` bytes) or raise :class:`Fallback` / Skip."""
    if size == 0:
        raise Skip("empty file", "empty file")
    try:
        f = open(path, "rb", buffering=0)
    except OSError as e:
        raise Skip("unreadable", f"unreadable ({e.strerror})") from None
    with f:
        r = _Reader(f, size)
        head = r.data
        if not head:
            raise Skip("empty file", "empty file")
        if len(head) < 132 or head[128:132] != b"DICM":
            raise Fallback  # no preamble (or not DICOM): the general reader decides
        if size <= 132:
            raise Skip("bare preamble", "bare preamble (128-byte preamble and 'DICM', no data)")
        try:
            meta = {0x00020002: None, 0x00020003: None, 0x00020010: None}
            pos = _walk(r, 132, True, 0x0002FFFF, meta)
            if meta[0x00020010] is None:
                raise Fallback
            ts = normalize_strings("ui", _text(meta[0x00020010][1]))
            if ts is None or ts in _EXPLICIT_TS_FALLBACK:
                raise Fallback
            explicit = ts != "1.2.840.10008.1.2"
            if pos + 6 <= size:
                probe = r.get(pos + 4, 2, pos)
                if (probe in _VRS) != explicit:
                    raise Fallback  # the dataset does not use the declared VR encoding
            raw: dict[int, tuple[bytes | None, bytes] | None] = dict.fromkeys(RAW_TAGS)
            pos = _walk(r, pos, explicit, MAX_TAG, raw)
            for tag in _LAZY:
                item = raw[tag]
                if item is not None:
                    image_type = raw[0x00080008]
                    if image_type is None or b"MOSAIC" not in image_type[1].upper() \
                            or item[1][1] > MAX_VALUE:
                        raw[tag] = None
                    else:
                        start, length = item[1]
                        raw[tag] = (item[0], r.get(start, length, start))
        except _Truncated as t:
            raise Skip("truncated header", f"truncated header at byte {t.offset}") from None
        check_rest(r, pos, explicit)
    values = {}
    pixel_rep = None
    cache = _VALUE_CACHE
    for tag, (name, kind) in RAW_TAGS.items():
        item = raw[tag]
        if item is None:  # absent: row_from_values reads it as None
            continue
        vr, data = item
        if vr is None and kind == "int":  # implicit VR: the data dictionary's VR
            if tag == 0x00280120:  # (0028,0120) is US or SS by (0028,0103)
                if pixel_rep is None:
                    raise Fallback
                vr = b"SS" if pixel_rep == 1 else b"US"
            else:
                vr = _BIN_TAGS.get(tag, b"IS")
        # Most values repeat from file to file (UIDs of the series, orientation, spacing,
        # rescale...): their normalized value is remembered (immutable: str/int/float/tuple).
        key = (tag, vr, data)
        v = cache.get(key, _MISS)
        if v is _MISS:
            v = _value(kind, vr, data)
            if len(data) <= _CACHE_VALUE_BYTES:
                if len(cache) >= _CACHE_ITEMS:
                    cache.clear()
                cache[key] = v
        if tag == 0x00280103:
            pixel_rep = v
        values[name] = v
    msc = meta[0x00020002]
    msi = meta[0x00020003]
    return row_from_values(path, size, mtime, ts, values,
                           normalize_strings("ui", _text(msc[1])) if msc else None,
                           normalize_strings("ui", _text(msi[1])) if msi else None)
