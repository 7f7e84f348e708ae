"""The fast Index-row reader: the collect-tags mode of :mod:`dicomml.io.walker`.

It handles files with the 128-byte preamble and "DICM" prefix whose (0002,0010) Transfer
Syntax UID is Implicit VR Little Endian or any Explicit VR Little Endian syntax (native or
encapsulated; not Deflated). It reads the file in blocks of :data:`BLOCK` bytes, keeps the
raw values of the top-level tags in :data:`dicomml.io.fields.RAW_TAGS` and seeks over every
other value and sequence (defined lengths are skipped, undefined lengths are walked to
their (FFFE,E0DD) Sequence Delimitation Item). It stops after :data:`~dicomml.io.fields.MAX_TAG`,
so pixel data is never read. Values longer than :data:`MAX_VALUE` are never read into memory.

Anything unusual raises :class:`Fallback` and the caller uses pydicom instead: no preamble,
missing transfer syntax, big endian or deflate, an invalid VR, an explicit VR where implicit
was declared (or the reverse), non-ASCII text in a needed value, an unexpected VR for a
needed tag, tags out of order. A file whose header fits the layout of one read before
(:mod:`dicomml.io.layout`: the files of a series, mostly) is not walked: its values are
taken where the fit says. The raw values become row values by :mod:`dicomml.io.fields`.
"""

from __future__ import annotations

import math
import mmap
import os
import struct

from dicomml.io.fields import (
    FUNCTIONAL_GROUP_CLASSES,
    MAX_TAG,
    RAW_TAGS,
    Skip,
    functional_group_values,
    normalize_strings,
    row_from_values,
)
from dicomml.io.functional_groups import PARSE_ERRORS, file_key, read_groups, remember
from dicomml.io.layout import MAX_HEADER, Fit, build, fitted, head_bytes, keep, wanted
from dicomml.io.uids import TS_DEFLATED_LE, TS_EXPLICIT_BE, TS_IMPLICIT_LE
from dicomml.io.walker import (
    BLOCK,
    MAX_VALUE,
    VRS,
    Fallback,
    NestingTooDeep,
    Reader,
    Truncated,
    check_rest,
    walk,
)

__all__ = ["Fallback", "read_fast", "ValueCache", "BLOCK", "MAX_VALUE"]  # the walker's, re-exported

_EXPLICIT_TS_FALLBACK = frozenset({TS_EXPLICIT_BE, TS_DEFLATED_LE})
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


def _text(raw: bytes) -> list[str]:
    if not raw.isascii():
        raise Fallback
    return raw.decode("ascii").split("\\")


_MISS = object()
_CACHE_VALUE_BYTES = 256
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)


class ValueCache(dict):
    """Normalized values by (tag, VR, raw bytes), shared by the files of one scan chunk.

    Most values repeat from file to file (UIDs of the series, orientation, spacing,
    rescale...); their normalized value (immutable: str/int/float/tuple) is remembered.
    Raw values longer than 256 bytes are not kept; the cache is cleared when it holds
    ``limit`` items.
    """

    __slots__ = ("limit",)

    def __init__(self, limit: int = 4096):
        super().__init__()
        self.limit = limit


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


def read_fast(path: str, size: int, mtime: float, cache: ValueCache | None = None):
    """Read the Index row of ``path`` (``size`` bytes) or raise :class:`Fallback` / Skip.

    ``cache``: the :class:`ValueCache` of the files read together (default: none kept).
    """
    if size == 0:
        raise Skip("empty file", "empty file")
    try:  # a descriptor, not a file object: most files are read by one os.read
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as e:
        raise Skip("unreadable", f"unreadable ({e.strerror})") from None
    f = None  # a file object over fd, made where the walk needs one
    try:
        try:  # what reads the file before the walk (a directory, an I/O error)
            want = head_bytes()
            head = os.read(fd, min(size, want)) if want else None
            fit = fitted(head) if want else None
            if fit is None and wanted():
                # no layout fits: build one from this file, which is then read through it
                if head is None or len(head) < min(size, MAX_HEADER):
                    head = os.pread(fd, min(size, MAX_HEADER), 0)
                layout = build(head, size)
                keep(layout)
                if layout is not None:
                    fit = Fit(layout, [])
            if cache is None:
                cache = ValueCache()
            got = _by_fit(head, fit, size, cache) if fit is not None else None
            if got is None:
                f = open(fd, "rb", buffering=0)  # closes fd
        except OSError as e:
            raise Skip("unreadable", f"unreadable ({e.strerror})") from None
        if got is not None:
            (ts, meta, values), frame_values = got, None
        else:
            r = Reader(f, size) if head is None else Reader.with_block(f, size, head)
            ts, meta, raw, frame_values = _walked(f, r, size)
            values = _values(raw, cache)
    finally:
        if f is None:
            os.close(fd)
        else:
            f.close()
    # the file meta's SOP Class / Instance UIDs stand in for absent data-set ones only
    # (row_from_values): normalized where that is so
    msc = meta[0x00020002] if values.get("sop_class_uid") is None else None
    msi = meta[0x00020003] if values.get("sop_instance_uid") is None else None
    return row_from_values(path, size, mtime, ts, values,
                           normalize_strings("ui", _text(msc[1])) if msc else None,
                           normalize_strings("ui", _text(msi[1])) if msi else None,
                           frame_values)


def _values(raw: dict, cache: ValueCache) -> dict:
    """The row values (by column name) of the raw values of the walk, ``raw[tag] = (VR,
    bytes)`` (None where absent), normalized once per raw value through ``cache``."""
    entries = []
    for tag, (name, kind) in RAW_TAGS.items():
        item = raw[tag]
        if item is None:  # absent: row_from_values reads it as None
            continue
        vr, data = item
        entries.append((tag, name, kind, _dictionary_vr(tag, kind, vr), data))
    return _normalized(entries, cache)


def _dictionary_vr(tag: int, kind: str, vr: bytes | None) -> bytes | None:
    """``vr``, or for an implicit-VR integer (VR None) the data dictionary's VR; (0028,0120)
    stays None: it is US or SS by (0028,0103) (:func:`_normalized`)."""
    if vr is None and kind == "int" and tag != 0x00280120:
        return _BIN_TAGS.get(tag, b"IS")
    return vr


def _normalized(entries: list, cache: ValueCache, pixel_rep: int | None = None) -> dict:
    """``{column: value}`` of ``(tag, column, kind, VR, bytes)`` entries, (0028,0103)
    before (0028,0120): an implicit-VR (0028,0120) (VR None) is US or SS by it
    (``pixel_rep``: its value where it is not among the entries)."""
    values = {}
    for tag, name, kind, vr, data in entries:
        if vr is None and tag == 0x00280120:  # (0028,0120) is US or SS by (0028,0103)
            if pixel_rep is None:
                raise Fallback
            vr = b"SS" if pixel_rep == 1 else b"US"
        key = (tag, vr, data)
        v = cache.get(key, _MISS)
        if v is _MISS:
            v = _value(kind, vr, data)
            if len(data) <= _CACHE_VALUE_BYTES:
                if len(cache) >= cache.limit:
                    cache.clear()
                cache[key] = v
        if tag == 0x00280103:
            pixel_rep = v
        values[name] = v
    return values


def _walked(f, r: Reader, size: int) -> tuple:
    """``(transfer syntax, meta, raw, frame values)`` of the file ``f`` by the walker."""
    head = r.data
    if not head:
        raise Skip("empty file", "empty file")
    if len(head) < 132 or head[128:132] != b"DICM":
        raise Fallback  # no preamble (or not DICOM): the general reader decides
    if size <= 132:
        raise Skip("bare preamble", "bare preamble (128-byte preamble and 'DICM', no data)")
    try:
        meta = {0x00020002: None, 0x00020003: None, 0x00020010: None}
        pos = walk(r, 132, True, 0x0002FFFF, meta)
        if meta[0x00020010] is None:
            raise Fallback
        ts = normalize_strings("ui", _text(meta[0x00020010][1]))
        if ts is None or ts in _EXPLICIT_TS_FALLBACK:
            raise Fallback
        explicit = ts != TS_IMPLICIT_LE
        if pos + 6 <= size:
            probe = r.get(pos + 4, 2, pos)
            if (probe in VRS) != explicit:
                raise Fallback  # the dataset does not use the declared VR encoding
        raw: dict[int, tuple[bytes | None, bytes] | None] = dict.fromkeys(RAW_TAGS)
        pos = walk(r, pos, explicit, MAX_TAG, raw, _LAZY)
        for tag in _LAZY:
            item = raw[tag]
            if item is not None:
                if not _mosaic(raw) or item[1][1] > MAX_VALUE:
                    raw[tag] = None
                else:
                    start, length = item[1]
                    raw[tag] = (item[0], r.get(start, length, start))
        frame_values, pos = _frame_values(f, raw, pos, explicit)
        cut = check_rest(r, pos, explicit)
    except Truncated as t:
        raise Skip("truncated header", f"truncated header at byte {t.offset}") from None
    except NestingTooDeep as e:
        raise Skip("invalid DICOM", f"invalid DICOM ({e})") from None
    if cut is not None:
        raise Skip("truncated data", cut)
    return ts, meta, raw, frame_values


def _mosaic(raw: dict) -> bool:
    """Whether the kept (0008,0008) Image Type says MOSAIC (the CSA header is then read)."""
    image_type = raw[0x00080008]
    return image_type is not None and _says_mosaic(image_type[1])


def _says_mosaic(image_type: bytes) -> bool:
    """Whether the raw (0008,0008) Image Type value holds MOSAIC."""
    return b"MOSAIC" in image_type.upper()


_META = (0x00020002, 0x00020003, 0x00020010)
#: Sets of element lengths of one layout whose reference file :func:`_by_fit` keeps.
_REFS = 8


def _by_fit(head: bytes, fit, size: int, cache: ValueCache) -> tuple | None:
    """``(transfer syntax, meta, values)`` of a file whose first bytes ``head`` fit a header
    layout (:mod:`dicomml.io.layout`: its elements are where the fit says): the meta
    elements as the walk gives them and the row values as :func:`_values` makes them from
    the walk's; None where the walk must decide (an enhanced object, a long value, the file
    shorter than its Pixel Data).

    The files of a series differ in a few values (SOP Instance UID, instance number,
    position): each layout keeps, per set of element lengths (:attr:`Fit.changes`: the
    same lengths, the same spans), a reference file's spans, kept values' bytes and row
    values; a file of the same lengths takes the reference's values where its bytes are the
    same (one ``startswith`` each) and normalizes only the others. A file that differs in
    many values (another series), or in (0028,0103) (by which an Implicit VR (0028,0120)
    reads), is read whole and becomes the reference."""
    if fit.pixel[0] + fit.pixel[1] > size:
        return None
    layout = fit.layout
    view = layout.views.get("scan")
    if view is None:
        view = layout.views["scan"] = _scan_view(layout)
    metas, kept, ks, lazy_ks, refs = view
    shape = tuple(fit.changes)
    ref = None if refs is None else refs.get(shape)
    if ref is not None:
        spans = ref[0]
    else:
        spans = fit.spans(ks)  # the meta elements', then the kept ones'
        if lazy_ks:
            spans += fit.spans(lazy_ks)
    meta = dict.fromkeys(_META)
    for (tag, vr), (start, length) in zip(metas, spans):
        meta[tag] = (vr, head[start:start + length])
    raw_ts = meta[0x00020010][1]
    ts = cache.get((0x00020010, b"UI", raw_ts), _MISS)  # one syntax for a chunk's files
    if ts is _MISS:
        ts = cache[0x00020010, b"UI", raw_ts] = normalize_strings("ui", _text(raw_ts))
    if ts is None or ts in _EXPLICIT_TS_FALLBACK:
        return None
    if ref is not None:
        _spans, same, values = ref
        entries = [(e[0], e[1], e[2], e[3], head[start:start + length])
                   for e, start, length in same if not head.startswith(e[4], start)]
        # another (0028,0103) decides anew how an Implicit VR (0028,0120) reads: whole row
        if len(entries) * 4 <= len(same) and not any(e[0] == 0x00280103 for e in entries):
            out = dict(values)
            out.update(_normalized(entries, cache, values.get("pixel_representation")))
            if out.get("sop_class_uid") in FUNCTIONAL_GROUP_CLASSES:
                return None
            return ts, meta, out
    entries = []
    image_type = b""
    for (tag, name, kind, vr, lazy_tag), (start, length) in zip(kept, spans[len(metas):]):
        if length > MAX_VALUE:
            if lazy_tag:
                continue
            return None
        if lazy_tag and not _says_mosaic(image_type):
            continue  # the CSA header is read for MOSAIC images only, as the walk does
        data = head[start:start + length]
        if tag == 0x00080008:
            image_type = data
        entries.append((tag, name, kind, vr, data))
    values = _normalized(entries, cache)
    if values.get("sop_class_uid") in FUNCTIONAL_GROUP_CLASSES:
        return None
    if refs is not None:
        if len(refs) >= _REFS and shape not in refs:
            refs.clear()
        # every kept element is an entry here (no lazy one): entries and spans align
        refs[shape] = (spans, [(e, start, length) for e, (start, length)
                               in zip(entries, spans[len(metas):])], values)
    return ts, meta, values


def _scan_view(layout) -> tuple:
    """What :func:`_by_fit` reads of a layout, derived once: the meta elements ``(tag, VR)``;
    the elements of :data:`RAW_TAGS`, ``(tag, column, kind, VR, lazy)`` (the VR of an
    implicit-VR integer from the data dictionary, as :func:`_values` takes it) in file
    order, the lazy ones last; the numbers of the meta and kept elements (ascending: the
    meta group comes first), and of the lazy ones; the reference files of the layout by
    element lengths (None where there is a lazy element: the CSA header is read or not by
    the Image Type, so the kept values are not the same set from file to file)."""
    number, vrs = layout.number, layout.vrs
    metas = [(t, number[t]) for t in _META if t in number]
    kept = sorted(((t, number[t]) for t in RAW_TAGS if t in number and t not in _LAZY),
                  key=lambda item: item[1])
    lazy = [(t, number[t]) for t in _LAZY if t in number]

    def entry(t: int, k: int) -> tuple:
        name, kind = RAW_TAGS[t]
        return (t, name, kind, _dictionary_vr(t, kind, vrs[k]), t in _LAZY)

    return ([(t, vrs[k]) for t, k in metas], [entry(t, k) for t, k in kept + lazy],
            [k for _t, k in metas + kept], [k for _t, k in lazy], None if lazy else {})


def _frame_values(f, raw: dict, pos: int, explicit: bool) -> tuple[dict | None, int]:
    """``(functional_group_values, where the walk goes on)`` of an enhanced object, parsed
    by :mod:`dicomml.io.functional_groups` from ``pos`` (after :data:`MAX_TAG`) on a memory
    map of the file ``f``; ``(None, pos)`` for other objects or where that parser falls
    back (:func:`~dicomml.io.fields.row_from_values` then reads them its own way)."""
    sop = raw.get(0x00080016)
    if sop is None or normalize_strings("ui", _text(sop[1])) not in FUNCTIONAL_GROUP_CLASSES:
        return None, pos
    try:
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            groups, span = read_groups(mm, pos, explicit)
            if span is not None and groups.per_frame:  # for the reads that follow
                remember(file_key(os.fstat(f.fileno())), mm, groups, span)
    except PARSE_ERRORS:
        return None, pos
    return functional_group_values(groups), pos if span is None else span[1]
