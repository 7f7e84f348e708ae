"""A fast parser of the Shared / Per-Frame Functional Groups of enhanced objects.

Enhanced multi-frame objects (Enhanced CT / MR / PET, Legacy Converted Enhanced, ...,
PS3.3 C.7.6.16) describe every frame in the (5200,9230) Per-Frame Functional Groups
Sequence: a Siemens XA30 diffusion file of 39 frames holds some 3,000 elements there, and
pydicom builds a ``Dataset`` and a ``DataElement`` for each of them (two thirds of the time
dicomml spent on such a series). This module walks the same bytes with the constants and
rules of :mod:`dicomml.io.walker` (PS3.5 Section 7.5: items of defined or undefined length,
implicit VR inside UN) and keeps only the attributes that ordering, geometry, rescale and
per-volume values need (:data:`WANTED`); every other element is skipped by its length or to
its delimiter.

The result is a list of :class:`Item` per sequence: a ``dict`` keyed by the DICOM keyword
whose values are what pydicom returns for the element (``float`` / ``int`` / ``str`` for one
value, a list for several, ``None`` for an empty number, ``""`` for empty text, a list of
:class:`Item` for a sequence), so that ``item.get("PlanePositionSequence")[0].get(
"ImagePositionPatient")`` reads alike on both. Anything the parser does not follow (big
endian, deflate, an unexpected VR for a wanted tag, non-ASCII text, a malformed number)
raises :class:`~dicomml.io.walker.Fallback` and the caller uses pydicom.

:func:`per_frame_groups` and :func:`shared_groups` are how every reader of dicomml gets the
groups of a data set: the fast parser's when :func:`dicomml.io._read_dataset.load_dataset`
attached them (:func:`attach`), else pydicom's.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
import zlib
from collections import OrderedDict
from typing import NamedTuple

from dicomml.io.guards import MAX_NESTING
from dicomml.io.walker import (
    HEAD_EXPLICIT_SW,
    HEAD_IMPLICIT_SW,
    ITEM,
    ITEM_END,
    LONG_VRS,
    SEQ_END,
    SHORT_VRS,
    U32,
    UNDEFINED,
    Fallback,
    NestingTooDeep,
    Reader,
    Truncated,
    dataset_start,
    element,
    swap_tag,
    walk,
)

__all__ = ["WANTED", "SHARED", "PER_FRAME", "Item", "FrameGroups", "parse_sequence",
           "read_groups", "groups_of_file", "strip_groups", "attach", "per_frame_groups",
           "shared_groups", "PARSE_ERRORS", "GROUPS_ATTRIBUTE", "DIMENSION_INDEX", "DIMENSIONS",
           "has_attached_groups", "frame_groups_at", "MEMO_FRAMES", "file_key", "remember",
           "recall", "forget", "COMPILED", "COMPILE_AFTER", "compiled"]

SHARED = 0x52009229
PER_FRAME = 0x52009230

#: The attributes kept, anywhere inside the functional groups: tag -> (keyword, VR). The VR
#: is the data dictionary's (implicit VR files); an explicit VR must be this one (or UN for
#: a sequence is refused). Sequences are PS3.3 C.7.6.16.2 (Pixel Measures, Frame Content,
#: Plane Position / Orientation, Frame VOI LUT, Pixel Value Transformation) and C.8.13.5
#: (MR Image Frame Type, MR Echo, MR Diffusion), C.7.6.16.2.7 Cardiac Synchronization.
WANTED: dict[int, tuple[str, bytes]] = {
    0x00209113: ("PlanePositionSequence", b"SQ"),
    0x00200032: ("ImagePositionPatient", b"DS"),
    0x00209116: ("PlaneOrientationSequence", b"SQ"),
    0x00200037: ("ImageOrientationPatient", b"DS"),
    0x00289110: ("PixelMeasuresSequence", b"SQ"),
    0x00280030: ("PixelSpacing", b"DS"),
    0x00180050: ("SliceThickness", b"DS"),
    0x00180088: ("SpacingBetweenSlices", b"DS"),
    0x00209111: ("FrameContentSequence", b"SQ"),
    0x00209157: ("DimensionIndexValues", b"UL"),
    0x00209128: ("TemporalPositionIndex", b"UL"),
    0x00209056: ("StackID", b"SH"),
    0x00209057: ("InStackPositionNumber", b"UL"),
    0x00209156: ("FrameAcquisitionNumber", b"US"),
    0x00189074: ("FrameAcquisitionDateTime", b"DT"),
    0x00189151: ("FrameReferenceDateTime", b"DT"),
    0x00289145: ("PixelValueTransformationSequence", b"SQ"),
    0x00281052: ("RescaleIntercept", b"DS"),
    0x00281053: ("RescaleSlope", b"DS"),
    0x00281054: ("RescaleType", b"LO"),
    0x00289132: ("FrameVOILUTSequence", b"SQ"),
    0x00281050: ("WindowCenter", b"DS"),
    0x00281051: ("WindowWidth", b"DS"),
    0x00281055: ("WindowCenterWidthExplanation", b"LO"),
    0x00281056: ("VOILUTFunction", b"CS"),
    0x00189226: ("MRImageFrameTypeSequence", b"SQ"),
    0x00089007: ("FrameType", b"CS"),
    0x00089208: ("ComplexImageComponent", b"CS"),
    0x00189114: ("MREchoSequence", b"SQ"),
    0x00189082: ("EffectiveEchoTime", b"FD"),
    0x00189117: ("MRDiffusionSequence", b"SQ"),
    0x00189075: ("DiffusionDirectionality", b"CS"),
    0x00189087: ("DiffusionBValue", b"FD"),
    0x00189076: ("DiffusionGradientDirectionSequence", b"SQ"),
    0x00189089: ("DiffusionGradientOrientation", b"FD"),
    0x00189118: ("CardiacSynchronizationSequence", b"SQ"),
    0x00209153: ("NominalCardiacTriggerDelayTime", b"FD"),
}
#: Elements whose presence sends the whole object to pydicom: a (0028,3010) VOI LUT
#: Sequence inside the Frame VOI LUT group (its LUT Data is read by pydicom's rules).
_REFUSED = frozenset({0x00283010})
_NOTHING: dict = {}

#: The (0020,9222) Dimension Index Sequence (PS3.3 C.7.6.17) and what is kept of its
#: items: the pointers that say which attribute each value of (0020,9157) Dimension Index
#: Values indexes (a light reader parses it with this table: ``parse_sequence(...,
#: wanted=DIMENSION_INDEX)``).
DIMENSIONS = 0x00209222
DIMENSION_INDEX: dict[int, tuple[str, bytes]] = {
    0x00209165: ("DimensionIndexPointer", b"AT"),
    0x00209167: ("FunctionalGroupPointer", b"AT"),
}

_TEXT = frozenset({b"SH", b"LO", b"CS", b"DT"})
_BINARY = {b"UL": "I", b"US": "H", b"FD": "d"}


class Item(dict):
    """One sequence item: keyword -> value, as pydicom's ``Dataset.get(keyword)`` returns it
    (attribute access too: ``item.RescaleSlope``)."""

    __slots__ = ()

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class FrameGroups(NamedTuple):
    """The functional groups of one object: ``shared`` the (5200,9229) item (or None),
    ``per_frame`` one :class:`Item` per frame of (5200,9230)."""

    shared: Item | None
    per_frame: list


def _value(vr: bytes, raw: bytes):
    """What pydicom returns for one wanted element of VR ``vr`` (PS3.5 Table 6.2-1)."""
    if vr == b"DS":
        if not raw.isascii():
            raise Fallback
        parts = raw.decode("ascii").split("\\")
        try:
            vals = [float(p) if p.strip(" \x00") else None for p in parts]
        except ValueError:
            raise Fallback from None
        if len(vals) == 1:
            return vals[0]
        if None in vals:
            raise Fallback
        return vals
    if vr in _TEXT:
        if not raw.isascii():
            raise Fallback
        parts = [p.rstrip(" \x00") for p in raw.decode("ascii").split("\\")]
        if vr == b"CS":
            parts = [p.lstrip(" ") for p in parts]
        return parts[0] if len(parts) == 1 else parts
    if vr == b"AT":  # (group, element) pairs, as pydicom's tags: group << 16 | element
        if len(raw) % 4:
            raise Fallback
        pairs = struct.unpack(f"<{len(raw) // 2}H", raw)
        tags = [(pairs[i] << 16) | pairs[i + 1] for i in range(0, len(pairs), 2)]
        return None if not tags else tags[0] if len(tags) == 1 else tags
    fmt = _BINARY[vr]
    size = struct.calcsize(fmt)
    if len(raw) % size:
        raise Fallback
    n = len(raw) // size
    if n == 0:
        return None
    vals = struct.unpack(f"<{n}{fmt}", raw)
    return vals[0] if n == 1 else list(vals)


def parse_sequence(buf, pos: int, length: int, explicit: bool, depth: int = 1,
                   wanted: dict = WANTED, cache: dict | None = None):
    """Parse the items of a sequence value starting at ``pos`` (``length`` bytes, or
    :data:`~dicomml.io.walker.UNDEFINED`): ``(list of Item, end)``.

    ``buf`` is the whole file (``bytes`` or ``mmap``); ``wanted`` the attributes kept (an
    empty table skips the sequence: its items come back empty); ``cache`` maps the raw
    values already converted to their value and keeps the last sequence parsed per tag and
    depth (most repeat from frame to frame, byte for byte: one value object, one list of
    items, is shared by the frames; treat them as read-only). Raises
    :class:`~dicomml.io.walker.Fallback` for what the parser does not follow,
    :class:`~dicomml.io.walker.Truncated` when the file ends inside,
    :class:`~dicomml.io.walker.NestingTooDeep` past ``MAX_NESTING`` levels.
    """
    if depth > MAX_NESTING:
        raise NestingTooDeep(f"sequences nested more than {MAX_NESTING} levels deep")
    if cache is None:
        if wanted is WANTED and depth == 1:
            return _parse_groups(buf, pos, length, explicit)
        cache = {}
    size = len(buf)
    end = size if length == UNDEFINED else pos + length
    if end > size:
        raise Truncated(pos)
    items = []
    while pos < end:
        if pos + 8 > size:
            raise Truncated(pos)
        tag, ilen = HEAD_IMPLICIT_SW.unpack_from(buf, pos)
        if tag == _SEQ_END_SW:
            if length != UNDEFINED:
                raise Fallback
            return items, pos + 8
        if tag != _ITEM_SW:
            raise Fallback
        item, pos = _parse_item(buf, pos + 8, ilen, explicit, depth, wanted, cache)
        items.append(item)
    if length == UNDEFINED:
        raise Truncated(pos)
    if pos != end:
        raise Fallback
    return items, end


#: :data:`WANTED` and the refused tags keyed by swapped tag (:func:`~dicomml.io.walker.swap_tag`): one unpack per
#: element header, no shifts in the loop.
_WANTED_SW = {swap_tag(t): spec for t, spec in WANTED.items()}
_DIMENSION_INDEX_SW = {swap_tag(t): spec for t, spec in DIMENSION_INDEX.items()}
_REFUSED_SW = frozenset(swap_tag(t) for t in _REFUSED)
_ITEM_END_SW = swap_tag(ITEM_END)
#: The first member of the cache keys of parsed sequences (the other keys are (VR, bytes));
#: a sequence longer than this many bytes is not kept for comparison.
_SEQ_MEMO = b"SQ memo"
_SEQ_MEMO_MAX = 1 << 16
_ITEM_SW = swap_tag(ITEM)
_SEQ_END_SW = swap_tag(SEQ_END)


def _parse_item(buf, pos: int, length: int, explicit: bool, depth: int, wanted: dict,
                cache: dict):
    size = len(buf)
    undefined = length == UNDEFINED
    end = size if undefined else pos + length
    if end > size:
        raise Truncated(pos)
    item = Item()
    table = (_WANTED_SW if wanted is WANTED else _DIMENSION_INDEX_SW if wanted is DIMENSION_INDEX
             else {swap_tag(t): v for t, v in wanted.items()} if wanted else _NOTHING)
    refused = _REFUSED_SW if wanted else _NOTHING
    short_vrs, long_vrs = SHORT_VRS, LONG_VRS
    unpack = HEAD_EXPLICIT_SW.unpack_from if explicit else HEAD_IMPLICIT_SW.unpack_from
    u32 = U32.unpack_from
    while pos < end:
        if pos + 8 > size:
            raise Truncated(pos)
        if explicit:
            tag, vr, vlen = unpack(buf, pos)
            if vr in short_vrs:
                vstart = pos + 8
            elif vr in long_vrs:
                if pos + 12 > size:
                    raise Truncated(pos)
                vlen = u32(buf, pos + 8)[0]
                vstart = pos + 12
            elif tag == _ITEM_END_SW:
                if not undefined:
                    raise Fallback
                return item, pos + 8
            else:
                raise Fallback
        else:
            tag, vlen = unpack(buf, pos)
            vr = None
            vstart = pos + 8
            if tag == _ITEM_END_SW:
                if not undefined:
                    raise Fallback
                return item, vstart
        if tag & 0xFFFF == 0xFFFE or tag in refused:
            raise Fallback
        spec = table.get(tag)
        if vlen == UNDEFINED:
            # a sequence (implicit VR, SQ) or a UN holding implicit VR (PS3.5 6.2.2)
            if explicit and vr != b"SQ" and vr != b"UN":
                raise Fallback
            if spec is not None and (spec[1] != b"SQ" or (explicit and vr != b"SQ")):
                raise Fallback
            # The same sequence as the last one of this tag at this depth, byte for byte
            # (most groups repeat from frame to frame): the parser is deterministic and
            # reads nothing past the delimiter, so its result is the last one's.
            mkey = (_SEQ_MEMO, tag, vr, depth, spec is not None)
            last = cache.get(mkey)
            if last is not None and buf[vstart:vstart + last[0]] == last[1]:
                pos = vstart + last[0]
                if spec is not None:
                    item[spec[0]] = last[2]
                continue
            items, pos = parse_sequence(buf, vstart, UNDEFINED, explicit and vr != b"UN",
                                        depth + 1, wanted if spec is not None else _NOTHING,
                                        cache)
            if pos - vstart <= _SEQ_MEMO_MAX:
                cache[mkey] = (pos - vstart, buf[vstart:pos], items)
            if spec is not None:
                item[spec[0]] = items
            continue
        pos = vstart + vlen
        if pos > size:
            raise Truncated(vstart)
        if spec is None:
            continue
        keyword, want = spec
        if explicit and vr != want:
            raise Fallback
        if want == b"SQ":
            key = (_SEQ_MEMO, tag, depth, buf[vstart:pos])   # the same bytes: the same items
            value = cache.get(key)
            if value is None:
                value = cache[key] = parse_sequence(buf, vstart, vlen, explicit, depth + 1,
                                                    wanted, cache)[0]
            item[keyword] = value
        elif vlen == 0:
            item[keyword] = "" if want in _TEXT else None
        else:
            raw = buf[vstart:pos]
            key = (want, raw)
            value = cache.get(key, cache)
            if value is cache:
                value = cache[key] = _value(want, raw)
            item[keyword] = value
    if undefined:
        raise Truncated(pos)
    if pos != end:
        raise Fallback
    return item, end


#: Whether :func:`parse_sequence` walks a :data:`WANTED` sequence with the compiled kernel
#: (:mod:`dicomml.io._groups_kernel`, numba) where numba can be imported: the same items as
#: the Python walk, 2-3 times faster on Siemens XA30 frames (the items are still built in
#: Python). The Python walk runs where numba is missing, and on anything the kernel refuses
#: (it then raises its own exception). Tests set it False to hold one against the other.
COMPILED = True
#: Frames a process walks in Python before it imports the kernel: importing numba and
#: loading the compiled code costs 0.6-0.9 s once per process (compiling it, the first time
#: on a machine, ~4 s), what some 15,000 frames cost in Python, so that a scan or read of a
#: few enhanced files never pays it and a long export does after its first frames.
COMPILE_AFTER = 10_000
_KERNEL: list = []     # [(module, tables)] once imported, [None] where numba is missing
_KERNEL_LOCK = threading.Lock()
_python_frames = 0


def _parse_groups(buf, pos: int, length: int, explicit: bool):
    """:func:`parse_sequence` of a top-level :data:`WANTED` sequence: the compiled walk
    where :data:`COMPILED` and this process has walked :data:`COMPILE_AFTER` frames in
    Python (or imported the kernel already), else the Python walk."""
    global _python_frames
    if COMPILED and (_KERNEL or _python_frames >= COMPILE_AFTER):
        got = _parse_compiled(buf, pos, length, explicit)
        if got is not None:
            return got
    items, end = parse_sequence(buf, pos, length, explicit, 1, WANTED, {})
    _python_frames += len(items)
    return items, end


def _kernel():
    if not _KERNEL:
        with _KERNEL_LOCK:
            if not _KERNEL:
                try:
                    from dicomml.io import _groups_kernel as k
                except ImportError:
                    _KERNEL.append(None)
                else:
                    import numpy as np

                    vr_kind = np.zeros(1 << 16, np.int64)
                    for vr in SHORT_VRS:
                        vr_kind[k.vr_code(vr)] = k.VR_SHORT
                    for vr in LONG_VRS:
                        vr_kind[k.vr_code(vr)] = k.VR_LONG
                    tags = sorted(_WANTED_SW)
                    _KERNEL.append((k, vr_kind, np.array(tags, np.int64),
                                    np.array([k.vr_code(_WANTED_SW[t][1]) for t in tags],
                                             np.int64),
                                    np.array(sorted(_REFUSED_SW), np.int64),
                                    [_WANTED_SW[t][0] for t in tags],
                                    [_WANTED_SW[t][1] for t in tags], np))
    return _KERNEL[0]


def compiled() -> bool:
    """True where the compiled walk can be used (numba imports); :data:`COMPILED` says
    whether it is."""
    return _kernel() is not None


def _parse_compiled(buf, pos: int, length: int, explicit: bool):
    """:func:`parse_sequence` of a :data:`WANTED` sequence by the compiled walk: ``(items,
    end)``, or None (no numba, or bytes the kernel refuses: the Python walk then decides)."""
    got = _kernel()
    if got is None:
        return None
    k, vr_kind, tags, spec_vr, refused, keywords, vrs, np = got
    span = len(buf) - pos if length == UNDEFINED else length
    bound = span // 4 + 64          # an event per 4 bytes at most (an item: 8 bytes, 2 events)
    rows = min(bound, span // 32 + 64)
    arr = np.frombuffer(buf, np.uint8)
    try:
        while True:
            events = np.empty((rows, 5), np.int64)
            status, n = k.index_sequence(arr, pos, length, bool(explicit), MAX_NESTING,
                                         vr_kind, tags, spec_vr, refused, events)
            if status != k.FULL or rows >= bound:
                break
            rows = bound
    finally:
        del arr             # an mmap cannot close while a view of it exists
    if status < 0:
        return None
    # one flat list (row r at 5r..5r+4): a list per row made thousands of containers per
    # sequence for the garbage collector to track and traverse
    ev = events[:n].reshape(-1).tolist()
    return _build(buf, ev, 0, n, keywords, vrs, {}, {}), status


def _build(buf, ev: list, i: int, stop: int, keywords: list, vrs: list, values: dict,
           built: dict) -> list:
    """The items of rows ``i``-``stop`` of the kernel's events (:mod:`dicomml.io._groups_kernel`;
    ``ev`` holds them flat, five values per row); ``values`` the converted raw values,
    ``built`` the items of each SEQ row."""
    items = []
    while i < stop:
        i += 1                                          # ITEM_START
        item = Item()
        j = 5 * i
        while ev[j] != 1:                               # ITEM_END
            kind, spec = ev[j], ev[j + 1]
            if kind == 2:                               # VALUE
                want = vrs[spec]
                length = ev[j + 3]
                if length == 0:
                    item[keywords[spec]] = "" if want in _TEXT else None
                else:
                    start = ev[j + 2]
                    raw = buf[start:start + length]
                    key = (want, raw)
                    value = values.get(key, values)
                    if value is values:
                        value = values[key] = _value(want, raw)
                    item[keywords[spec]] = value
                i += 1
            elif kind == 3:                             # SEQ
                end = ev[j + 4]
                sub = built[i] = _build(buf, ev, i + 1, end, keywords, vrs, values, built)
                item[keywords[spec]] = sub
                i = end
            else:                                       # SAME
                item[keywords[spec]] = built[ev[j + 2]]
                i += 1
            j = 5 * i
        i += 1
        items.append(item)
    return items


def read_groups(buf, pos: int | None = None, explicit: bool | None = None):
    """Parse the functional groups of the Part 10 file in ``buf`` (``bytes`` / ``mmap``).

    ``pos`` / ``explicit``: where to start the top-level walk (a caller that already walked
    the header to an earlier tag), else the start of the data set. Returns
    ``(FrameGroups, (start, end))`` where ``start``-``end`` is the byte span of the
    (5200,9229) and (5200,9230) elements (``None`` without either); raises
    :class:`~dicomml.io.walker.Fallback` when pydicom must read the file.
    """
    if pos is None or explicit is None:
        pos, explicit = dataset_start(buf)
    r = Reader.in_memory(buf)
    pos = walk(r, pos, explicit, SHARED - 1, {})
    shared, span, frames = None, None, []
    for wanted in (SHARED, PER_FRAME):
        if pos + 8 > len(buf):
            break
        tag, vr, vstart, vlen = element(r, pos, explicit)
        if tag != wanted:
            continue
        if explicit and vr != b"SQ":
            raise Fallback
        items, end = parse_sequence(buf, vstart, vlen, explicit)
        if tag == SHARED:
            shared = items[0] if items else None
        else:
            frames = items
        span = (pos if span is None else span[0], end)
        pos = end
    return FrameGroups(shared, frames), span


def groups_of_file(path: str | os.PathLike) -> FrameGroups:
    """:func:`read_groups` of the file at ``path`` (memory-mapped: only the pages of the
    header are read); Fallback when pydicom must read it."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size < 144:
            raise Fallback
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return read_groups(mm)[0]


def strip_groups(data: bytes, pos: int | None = None, explicit: bool | None = None):
    """``(data without its (5200,9229) / (5200,9230) elements, FrameGroups)`` of a Part 10
    file, or None when it has no Per-Frame Functional Groups or the parser does not follow
    it; ``pos`` / ``explicit`` as :func:`read_groups`.

    pydicom then parses the rest (a hundred elements) and the frames are described by the
    fast parser's items (:func:`attach`).
    """
    got = frame_groups_at(data, pos, explicit)
    if got is None:
        return None
    groups, span = got
    return data[:span[0]] + data[span[1]:], groups


def frame_groups_at(data, pos: int | None = None, explicit: bool | None = None):
    """``(FrameGroups, (start, end))`` of :func:`read_groups`, or None when the file has no
    Per-Frame Functional Groups or the parser does not follow them (pydicom reads them)."""
    try:
        groups, span = read_groups(data, pos, explicit)
    except PARSE_ERRORS:
        return None
    if span is None or not groups.per_frame:
        return None
    return groups, span


#: What the parser raises on bytes it does not follow: the caller uses pydicom.
PARSE_ERRORS = (Fallback, Truncated, NestingTooDeep, struct.error, ValueError, IndexError)

#: The attribute that holds the fast parser's groups on a data set (:func:`attach`).
GROUPS_ATTRIBUTE = "dicomml_frame_groups"


def attach(ds, groups: FrameGroups) -> None:
    """Keep the fast parser's groups on the pydicom data set ``ds`` (whose bytes had them
    stripped), for :func:`per_frame_groups` and :func:`shared_groups`."""
    object.__setattr__(ds, GROUPS_ATTRIBUTE, groups)


def has_attached_groups(ds) -> bool:
    """True when the fast parser's groups are attached to ``ds`` (:func:`attach`)."""
    return getattr(ds, GROUPS_ATTRIBUTE, None) is not None


def per_frame_groups(ds):
    """The (5200,9230) Per-Frame Functional Groups items of ``ds`` (attached by the fast
    parser, else pydicom's), or None."""
    got = getattr(ds, GROUPS_ATTRIBUTE, None)
    if got is not None:
        return got.per_frame
    return ds.get("PerFrameFunctionalGroupsSequence")


def shared_groups(ds):
    """The (5200,9229) Shared Functional Groups Sequence of ``ds`` (a list of one item;
    attached by the fast parser, else pydicom's), or None."""
    got = getattr(ds, GROUPS_ATTRIBUTE, None)
    if got is not None:
        return None if got.shared is None else [got.shared]
    return ds.get("SharedFunctionalGroupsSequence")


# ----------------------------------------------------------------------------- memo
#: Frames of the most recently parsed functional groups kept in this process (about 1.6 KB
#: each): the scan of a folder and the reads of its series that follow in the same process
#: parse each enhanced file once.
MEMO_FRAMES = 10_000
_MEMO: OrderedDict = OrderedDict()
_MEMO_LOCK = threading.Lock()
_memo_frames = 0


def file_key(st: os.stat_result) -> tuple:
    """Where :func:`remember` / :func:`recall` look a file up: device, inode, size and the
    modification and change times in ns. File times are coarse (a few ms), so a file
    rewritten at once may keep them: :func:`recall` also checks the groups' bytes."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _checksum(data, span: tuple[int, int]) -> int:
    return zlib.crc32(memoryview(data)[span[0]:span[1]])


def remember(key: tuple, data, groups: FrameGroups, span: tuple[int, int]) -> None:
    """Keep the parse of the groups of the file ``data`` (its bytes, ``bytes`` or ``mmap``;
    :func:`frame_groups_at`'s result) for :func:`recall`, the oldest dropped beyond
    :data:`MEMO_FRAMES` frames."""
    global _memo_frames
    n = len(groups.per_frame) + 1
    if n > MEMO_FRAMES:
        return
    entry = (groups, span, _checksum(data, span))
    with _MEMO_LOCK:
        old = _MEMO.pop(key, None)
        if old is not None:
            _memo_frames -= len(old[0].per_frame) + 1
        _MEMO[key] = entry
        _memo_frames += n
        while _memo_frames > MEMO_FRAMES:
            _, (g, _s, _c) = _MEMO.popitem(last=False)
            _memo_frames -= len(g.per_frame) + 1


def recall(key: tuple, data, pos: int):
    """``(FrameGroups, span)`` remembered for the file of ``key`` whose groups start at
    ``pos`` in ``data`` with the same bytes (CRC-32 of the span), or None."""
    with _MEMO_LOCK:
        got = _MEMO.get(key)
        if got is not None:
            _MEMO.move_to_end(key)
    if got is None or got[1][0] != pos or got[1][1] > len(data) \
            or _checksum(data, got[1]) != got[2]:
        return None
    return got[0], got[1]


def forget() -> None:
    """Drop every remembered parse."""
    global _memo_frames
    with _MEMO_LOCK:
        _MEMO.clear()
        _memo_frames = 0
