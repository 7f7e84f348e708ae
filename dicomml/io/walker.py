"""The one PS3.5 data-element walker of dicomml (PS3.5 Section 7, PS3.10 Section 7).

A :mod:`struct` walk over the top-level elements of a little-endian data set, through one
cached block of the file (:class:`Reader`): element headers are parsed (:func:`element`),
sequences and items of undefined length are walked to their delimiters
(:func:`skip_sequence`, :func:`skip_item`; a UN element of undefined length holds
implicit VR little endian), wanted values are kept (:func:`walk`, the collect-tags mode
of the scan) and the rest of the file is checked for truncation up to and through
(7FE0,0010) Pixel Data (:func:`check_rest`). It also holds the one table of VRs
(:data:`VRS`, :data:`LONG_VRS`: the VRs with a 32-bit length in explicit VR, PS3.5
Table 7.1-1); the transfer-syntax UIDs are in :mod:`dicomml.io.uids`.

Anything the walker does not follow raises :class:`Fallback`: the caller uses pydicom.
Needs only the standard library.
"""

from __future__ import annotations

import struct

from dicomml.io.guards import MAX_NESTING
from dicomml.io.uids import TS_EXPLICIT_LE, TS_IMPLICIT_LE

__all__ = [
    "BLOCK", "MAX_VALUE", "VRS", "LONG_VRS", "SHORT_VRS", "ITEM", "ITEM_END", "SEQ_END",
    "UNDEFINED", "PIXEL_DATA", "Fallback", "Truncated", "NestingTooDeep", "Reader", "element",
    "skip_sequence", "skip_item", "walk", "walk_explicit", "check_rest", "is_pixel_data",
    "dataset_start",
]

#: Bytes read at a time.
BLOCK = 8192
#: A value longer than this is never read into memory by the walker (:class:`Fallback`).
MAX_VALUE = 1 << 16

#: Every VR of PS3.5 Table 6.2-1.
VRS = frozenset(b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV "
                b"TM UC UI UL UN UR US UT UV".split())
#: VRs with a reserved field and a 32-bit length in explicit VR (PS3.5 Table 7.1-1).
LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                      b"UR", b"UT", b"UV"})
SHORT_VRS = frozenset(v for v in VRS if v not in LONG_VRS)

ITEM = 0xFFFEE000
ITEM_END = 0xFFFEE00D
SEQ_END = 0xFFFEE0DD
UNDEFINED = 0xFFFFFFFF
PIXEL_DATA = 0x7FE00010

_HH = struct.Struct("<HH")
_H = struct.Struct("<H")
_I = struct.Struct("<I")
_EXPL = struct.Struct("<HH2sH")  # group, element, VR, 16-bit length (explicit VR)
_IMPL = struct.Struct("<HHI")  # group, element, 32-bit length (implicit VR)


def swap_tag(tag: int) -> int:
    """``tag`` as one little-endian ``"<I"`` reads its 4 bytes: ``(element << 16) | group``.

    The fast parsers key their tag tables by swapped tags and read each element header with
    one unpack of :data:`HEAD_EXPLICIT_SW` / :data:`HEAD_IMPLICIT_SW` (no shift per element).
    """
    return ((tag & 0xFFFF) << 16) | (tag >> 16)


#: Element headers with the tag as one swapped ``"<I"`` (:func:`swap_tag`): explicit VR
#: (tag, VR, 16-bit length) and implicit VR (tag, 32-bit length); :data:`U32` a 32-bit length.
HEAD_EXPLICIT_SW = struct.Struct("<I2sH")
HEAD_IMPLICIT_SW = struct.Struct("<II")
U32 = _I


class Fallback(Exception):
    """This file needs the general (pydicom) reader."""


class Truncated(Exception):
    """The file ends inside the element that starts at byte ``offset``."""

    def __init__(self, offset: int):
        super().__init__(offset)
        self.offset = offset


class NestingTooDeep(ValueError):
    """Sequences nested deeper than :data:`dicomml.io.guards.MAX_NESTING` levels."""


class Reader:
    """Random access to a file through one cached block (or to bytes: :meth:`in_memory`)."""

    __slots__ = ("f", "size", "data", "base")

    def __init__(self, f, size: int):
        self.f = f
        self.size = size
        self.base = f.tell()
        self.data = f.read(BLOCK)

    def get(self, pos: int, n: int, elem_start: int) -> bytes:
        end = pos + n
        if end > self.size:
            raise Truncated(elem_start)
        off = pos - self.base
        if off >= 0 and end - self.base <= len(self.data):
            return self.data[off:off + n]
        if n > MAX_VALUE:
            raise Fallback
        self.f.seek(pos)
        self.data = self.f.read(max(n, BLOCK))
        self.base = pos
        if len(self.data) < n:
            raise Truncated(elem_start)
        return self.data[:n]

    @classmethod
    def with_block(cls, f, size: int, data: bytes) -> "Reader":
        """A reader of the file ``f`` whose first bytes, ``data``, are already read."""
        r = cls.__new__(cls)
        r.f, r.size, r.data, r.base = f, size, data, 0
        return r

    @classmethod
    def in_memory(cls, data) -> "Reader":
        """A reader of a whole file already in memory (``bytes`` or ``mmap``)."""
        r = cls.__new__(cls)
        r.f, r.size, r.data, r.base = None, len(data), data, 0
        return r


def element(r: Reader, pos: int, explicit: bool) -> tuple[int, bytes | None, int, int]:
    """Parse the element header at ``pos``: (tag, vr, value_start, length)."""
    hdr = r.get(pos, 8, pos)
    group, elem = _HH.unpack_from(hdr)
    tag = (group << 16) | elem
    if group == 0xFFFE:
        return tag, None, pos + 8, _I.unpack_from(hdr, 4)[0]
    if explicit:
        vr = hdr[4:6]
        if vr not in VRS:
            raise Fallback
        if vr in LONG_VRS:
            return tag, vr, pos + 12, _I.unpack_from(r.get(pos + 8, 4, pos))[0]
        return tag, vr, pos + 8, _H.unpack_from(hdr, 6)[0]
    return tag, None, pos + 8, _I.unpack_from(hdr, 4)[0]


def skip_sequence(r: Reader, pos: int, explicit: bool, start: int, depth: int = 1) -> int:
    """Skip the items of an undefined-length sequence from ``pos``; return the end.

    ``start`` is the offset reported when the file ends inside; ``depth`` the nesting level
    (:class:`NestingTooDeep` past :data:`~dicomml.io.guards.MAX_NESTING`).
    """
    if depth > MAX_NESTING:
        raise NestingTooDeep(f"sequences nested more than {MAX_NESTING} levels deep")
    while True:
        tag, _vr, vstart, length = element(r, pos, False)
        if tag == SEQ_END:
            return vstart
        if tag != ITEM:
            raise Fallback
        if length == UNDEFINED:
            pos = skip_item(r, vstart, explicit, start, depth)
        else:
            pos = vstart + length
            if pos > r.size:
                raise Truncated(start)


def skip_item(r: Reader, pos: int, explicit: bool, start: int, depth: int = 1) -> int:
    """Skip the elements of an undefined-length item from ``pos``; return the end."""
    while True:
        hdr = r.get(pos, 4, start)
        if _HH.unpack_from(hdr) == (0xFFFE, 0xE00D):
            return pos + 8
        tag, vr, vstart, length = element(r, pos, explicit)
        if tag >> 16 == 0xFFFE:
            raise Fallback
        if length == UNDEFINED:
            # implicit VR: a sequence; explicit: SQ, UN (implicit inside) or encapsulated OB
            pos = skip_sequence(r, vstart, explicit and vr != b"UN", start, depth + 1)
        else:
            pos = vstart + length
            if pos > r.size:
                raise Truncated(start)


def walk(r: Reader, pos: int, explicit: bool, stop: int, keep: dict,
         lazy: frozenset = frozenset()) -> int:
    """Walk top-level elements from ``pos`` while tag <= ``stop``; keep wanted raw values.

    The hot loop of the scan: element headers are unpacked straight from the cached block.
    """
    if explicit:
        return walk_explicit(r, pos, stop, keep, lazy)
    size = r.size
    last = -1
    data, base = r.data, r.base
    dlen = len(data)
    unpack = _EXPL.unpack_from if explicit else _IMPL.unpack_from
    while pos < size:
        off = pos - base
        if off < 0 or off + 12 > dlen:  # the header is not (all) in the cached block
            if size - pos < 8:
                raise Truncated(pos)
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
            if vr not in VRS:
                raise Fallback
            if vr in LONG_VRS:
                if off + 12 > dlen:
                    raise Truncated(pos)
                length = _I.unpack_from(data, off + 8)[0]
                vstart = pos + 12
            else:
                vstart = pos + 8
        else:
            vstart = pos + 8
        if length == UNDEFINED:
            if explicit and vr not in (b"SQ", b"UN"):
                raise Fallback
            if tag in keep:
                raise Fallback
            pos = skip_sequence(r, vstart, explicit and vr != b"UN", pos)
            data, base = r.data, r.base
            dlen = len(data)
            continue
        end = vstart + length
        if end > size:
            raise Truncated(pos)
        if tag in keep:
            if tag in lazy:
                keep[tag] = (vr, (vstart, length))
            else:
                if length > MAX_VALUE:
                    raise Fallback
                keep[tag] = (vr, r.get(vstart, length, pos))
                data, base = r.data, r.base
                dlen = len(data)
        pos = end
    return pos


def walk_explicit(r: Reader, pos: int, stop: int, keep: dict,
                  lazy: frozenset = frozenset()) -> int:
    """:func:`walk` for explicit VR: the same checks, in the order of the common case."""
    size = r.size
    last = -1
    data, base = r.data, r.base
    dlen = len(data)
    unpack = _EXPL.unpack_from
    short_vrs, long_vrs = SHORT_VRS, LONG_VRS
    while pos < size:
        off = pos - base
        if off < 0 or off + 12 > dlen:  # the header is not (all) in the cached block
            if size - pos < 8:
                raise Truncated(pos)
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
                raise Truncated(pos)
            length = _I.unpack_from(data, off + 8)[0]
            vstart = pos + 12
            if length == UNDEFINED:
                if vr != b"SQ" and vr != b"UN":
                    raise Fallback
                if tag in keep:
                    raise Fallback
                pos = skip_sequence(r, vstart, vr != b"UN", pos)
                data, base = r.data, r.base
                dlen = len(data)
                continue
        else:
            raise Fallback
        end = vstart + length
        if end > size:
            raise Truncated(pos)
        if tag in keep:
            if tag in lazy:
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


def check_rest(r: Reader, pos: int, explicit: bool) -> str | None:
    """Check that the rest of the file is complete; return what is cut short, or None.

    Seeks from ``pos`` over the top-level elements up to (7FE0,0010) Pixel Data and over
    Pixel Data itself (its defined length, or its encapsulated fragments up to the
    (FFFE,E0DD) delimiter), reading element headers only. A file cut short anywhere
    there is "truncated data" -- typically a copy interrupted in the pixel data; the
    message names the byte offset. Raises :class:`Fallback` for a layout not followed.
    """
    try:
        pos = walk(r, pos, explicit, 0x7FE0000F, {})
        if pos + 8 > r.size:
            if pos < r.size:
                raise Truncated(pos)
            return None
        tag, vr, vstart, length = element(r, pos, explicit)
        if tag != PIXEL_DATA:
            return None
        if length == UNDEFINED:
            try:
                skip_sequence(r, vstart, False, pos)
            except Truncated:
                raise Truncated(pos) from None
        elif vstart + length > r.size:
            raise Truncated(pos)
    except Truncated as t:
        what = "pixel data (7FE0,0010)" if is_pixel_data(r, t.offset) else "data"
        return f"truncated {what} at byte {t.offset} (the file ends at byte {r.size})"
    return None


def is_pixel_data(r: Reader, pos: int) -> bool:
    """True when the (7FE0,0010) Pixel Data tag starts at ``pos``."""
    try:
        return r.get(pos, 4, pos) == b"\xe0\x7f\x10\x00"
    except Truncated:
        return False


def dataset_start(buf) -> tuple[int, bool]:
    """``(offset of the data set, explicit VR)`` of the Part 10 file in ``buf`` (``bytes`` or
    ``mmap``): after the file meta, which is explicit VR little endian (PS3.10 7.1).
    :class:`Fallback` for anything but Explicit / Implicit VR Little Endian."""
    if len(buf) < 144 or buf[128:132] != b"DICM":
        raise Fallback
    meta = {0x00020010: None}
    pos = walk(Reader.in_memory(buf), 132, True, 0x0002FFFF, meta)
    if meta[0x00020010] is None:
        raise Fallback
    ts = bytes(meta[0x00020010][1]).decode("ascii", "replace").rstrip("\x00 ")
    if ts == TS_EXPLICIT_LE:
        return pos, True
    if ts == TS_IMPLICIT_LE:
        return pos, False
    raise Fallback
