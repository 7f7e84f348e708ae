"""Header layouts: a file written like the one before it is read without walking it again.

The files of one series from one scanner usually have the same header layout: the same
elements in the same order, most of them with the same lengths; only values differ (UIDs,
instance number, position, times, a private value or two). A :class:`Layout` records, for
one file whose header is *flat* (every element before (7FE0,0010) Pixel Data has a defined
length), where each element header is and its bytes (tag, VR, length).

The walkers of dicomml (the scan's, :mod:`dicomml.io.walker`, and the light parser's,
:mod:`dicomml.io._read_fast`) decide where the next element starts from those bytes alone.
:meth:`Layout.fit` compares a file's bytes at the same offsets with one vectorised
comparison. Where an element's length differs (its tag and VR the same), the elements after
it are looked for shifted by the difference, up to :data:`MAX_CHANGES` such elements. When
every header matches, the file is walked the same way: its elements are where the fit says,
and a reader takes their values from the file's own bytes without walking it.

What a layout holds (:func:`build`, stricter than either walker, so that a file it takes
is one both walkers would take the same way):

* the 128-byte preamble's "DICM", every file-meta element header (explicit VR, ascending
  tags, known VRs) and the value of (0002,0010) Transfer Syntax UID (Implicit or Explicit
  VR Little Endian), compared as bytes;
* every top-level data-set element header up to and including that of Pixel Data (defined
  length; ascending tags; no (FFFE,xxxx) tags; known VRs in explicit VR), and the value of
  (0008,0005) Specific Character Set when present (the light parser decides on it);
* no element that sends a file to pydicom or to the functional-group parser (Modality or
  VOI LUT Sequences, palettes, Functional Groups, Dimension Index Sequence, float pixel
  data, Extended Offset Table): such a file has no layout.

Layouts are kept per process, the most recently fitted first (:func:`fitted`,
:func:`wanted`, :func:`keep`); at most :data:`MAX_LAYOUTS`, and a file is tried against
:data:`TRIES` of them. A reader builds one from a file that fits none, unless the layouts
it built lately fitted no other file (then only every :data:`RETRY_EVERY` th miss).
"""

from __future__ import annotations

import threading
from struct import Struct

import numpy as np

from dicomml.io.uids import TS_EXPLICIT_LE, TS_IMPLICIT_LE
from dicomml.io.walker import LONG_VRS, PIXEL_DATA, UNDEFINED, VRS

__all__ = ["Layout", "Fit", "build", "fitted", "head_bytes", "wanted", "keep", "kept",
           "forget",
           "ENABLED", "MAX_LAYOUTS", "TRIES", "MAX_CHANGES", "MAX_HEADER", "SLACK", "NOT_FLAT"]

#: False: no layout is built or fitted (every file is walked; tests compare both ways).
ENABLED = True
#: Layouts kept per process.
MAX_LAYOUTS = 8
#: Layouts a file is tried against (the most recently fitted first).
TRIES = 2
#: Elements whose length may differ from the layout's in a file that fits it.
MAX_CHANGES = 8
#: Sets of element lengths of the last fits that :meth:`Layout.fit` compares first.
MAX_SHAPES = 4
#: Bytes read past the longest header tried, for a file whose values are longer.
SLACK = 1024
#: Headers (up to the end of the Pixel Data element header) longer than this get no layout.
MAX_HEADER = 1 << 18
#: After this many layouts built in a row that fitted no other file, one is built only
#: every :data:`RETRY_EVERY` th file that fits none.
UNUSED_BUILDS = 4
RETRY_EVERY = 16
#: Elements whose presence gives a file no layout: what sends it to pydicom or to the
#: functional-group parser in either reader.
NOT_FLAT = frozenset({
    0x00283000, 0x00283010, 0x52009229, 0x52009230, 0x7FE00008, 0x7FE00009, 0x7FE00001,
    0x00281201, 0x00281202, 0x00281203, 0x00281221, 0x00281222, 0x00281223, 0x00209222,
})

_EXPL = Struct("<HH2sH")
_IMPL = Struct("<HHI")
_U32 = Struct("<I")
_U16 = Struct("<H")
_TS = 0x00020010
_CHARSET = 0x00080005


class Fit:
    """Where the elements of one file are, by a :class:`Layout`: :meth:`spans` of elements
    by their numbers in :attr:`Layout.tags`; ``pixel`` the ``(value offset, length)`` of
    Pixel Data; ``changes`` the ``(number, length, difference)`` of each element whose
    length is not the layout's."""

    __slots__ = ("layout", "changes", "pixel")

    def __init__(self, layout: "Layout", changes: list):
        self.layout, self.changes = layout, changes
        shift = sum(d for _k, _n, d in changes)
        self.pixel = (layout.pixel[0] + shift, layout.pixel[1])

    def spans(self, ks: list) -> list:
        """``[(start, length)]`` of the elements ``ks`` (ascending numbers)."""
        starts, lengths = self.layout.starts, self.layout.lengths
        changes = self.changes
        if not changes:
            return [(starts[k], lengths[k]) for k in ks]
        out = []
        shift = c = 0
        nxt, n_new, delta = changes[0]
        for k in ks:
            while k > nxt:
                shift += delta
                c += 1
                nxt, n_new, delta = changes[c] if c < len(changes) else (1 << 62, 0, 0)
            out.append((starts[k] + shift, n_new if k == nxt else lengths[k]))
        return out


class Layout:
    """Where the elements of a flat header are (see the module docs).

    ``tags``, ``vrs``, ``starts``, ``lengths``: every element before Pixel Data, file meta
    included, in file order (``vr`` None in implicit VR; ``starts`` the value offsets);
    ``number``: tag -> its number there; ``pixel``: ``(value offset, length)`` of Pixel Data;
    ``end``: the offset just after its header; ``explicit``, ``ts``: the data set's encoding.
    """

    __slots__ = ("end", "explicit", "ts", "tags", "vrs", "starts", "lengths", "number",
                 "pixel", "hits", "views", "_heads", "_template", "_index", "_expected",
                 "_entry_of", "_first_entry", "_values", "_valued", "_shapes")

    def __init__(self, data, end, explicit, ts, tags, vrs, starts, lengths, pixel, heads,
                 values):
        self.end, self.explicit, self.ts = end, explicit, ts
        self.tags, self.vrs, self.starts, self.lengths = tags, vrs, starts, lengths
        self.number = {t: k for k, t in enumerate(tags)}
        self.pixel = pixel
        self._heads = heads  # (offset, header length) of each element, Pixel Data last
        self._values = values  # (element number, offset, length) of compared values
        self._valued = frozenset(v[0] for v in values)
        self._template = bytes(data[:end])
        self._index = None
        self._shapes: list = []  # the last fits' lengths (_remember_shape), newest first
        self.hits = 0
        #: What each reader derives once from the layout, by reader (its own cache).
        self.views: dict = {}

    def _compile(self) -> None:
        """The 8-byte words compared, by their offsets in file order (each element header,
        then its value where that is compared), and the element each belongs to (a compared
        value: ``-1 - number``). A 12-byte header is two overlapping words; a value, the
        words that cover it, the last one ending where it ends."""
        valued = {v[0]: v for v in self._values}
        offs, owners, firsts = [], [], []
        for k, (off, hdr) in enumerate(self._heads):
            firsts.append(len(offs))
            offs.append(off)
            owners.append(k)
            if hdr == 12:
                offs.append(off + 4)
                owners.append(k)
            if k in valued:
                _k, voff, vlen = valued[k]
                words = list(range(voff, voff + vlen - 7, 8))
                if vlen % 8 or not words:
                    words.append(voff + vlen - 8)
                offs.extend(words)
                owners.extend([-1 - k] * len(words))
        index = np.array(offs, dtype=np.intp)
        self._entry_of = owners
        self._first_entry = firsts
        self._expected = _words(self._template)[index]
        self._index = index  # last: another thread may fit as soon as it is set

    def fit(self, data) -> Fit | None:
        """The :class:`Fit` of ``data`` (the first bytes of a file: at least through its
        Pixel Data element header), or None when its headers are not this layout's."""
        if self._index is None:
            self._compile()
        n = len(data)
        if n < 16:
            return None
        words = _words(data)
        for changes, at, top, want in self._shapes:  # the lengths of a recent fit
            if top <= n and words[at].tobytes() == want:
                self.hits += 1
                return Fit(self, changes)
        index, expected = self._index, self._expected
        changes: list = []
        shift = j = 0
        n_heads = len(self._heads)
        last = int(index[-1]) + 8
        template = self._template
        while True:
            if last + shift > n:
                return None
            # the words from j, shifted: read through a view that starts at the shift
            got = words[shift:][index[j:]] if shift >= 0 else words[index[j:] + shift]
            diff = got != expected[j:]
            first = int(diff.argmax())
            if not diff[first]:
                break
            k = self._entry_of[j + first]
            if k <= 0 or k == n_heads - 1 or k in self._valued or len(changes) == MAX_CHANGES:
                # "DICM", a compared value, the Pixel Data header, or too many changes
                return None
            pos, hdr = self._heads[k]
            at = pos + shift
            if self.explicit or self.tags[k] >> 16 == 0x0002:
                same = 8 if hdr == 12 else 6
                if bytes(data[at:at + same]) != template[pos:pos + same]:
                    return None
                length = (_U32.unpack_from(data, at + 8) if hdr == 12
                          else _U16.unpack_from(data, at + 6))[0]
            else:
                if bytes(data[at:at + 4]) != template[pos:pos + 4]:
                    return None
                length = _U32.unpack_from(data, at + 4)[0]
            if length == UNDEFINED:
                return None
            delta = length - self.lengths[k]
            if delta == 0:
                return None
            changes.append((k, length, delta))
            shift += delta
            j = self._first_entry[k + 1]
        self.hits += 1
        self._remember_shape(words, changes)
        return Fit(self, changes)

    def _remember_shape(self, words: np.ndarray, changes: list) -> None:
        """Keep the words that a file with the element lengths ``changes`` has where
        :meth:`fit` compares them (``words``: those of the file just fitted), so that the
        next file of these lengths is fitted by one comparison: its words at the same
        offsets equal to these (the headers of the changed elements included, so with
        their lengths), it is fitted with the same changes. The files of a series take a
        few sets of lengths (an instance number one digit longer, say)."""
        index = self._index
        if changes:
            shift = np.zeros(len(index), dtype=np.intp)
            for k, _length, delta in changes:  # entries after element k move by delta
                shift[self._first_entry[k + 1]:] += delta
            at = index + shift
        else:
            at = index
        top = int(at.max()) + 8
        if top > len(words) + 7:
            return
        # a new list each time: a reader in another thread iterates the one it took
        self._shapes = [(changes, at, top, words[at].tobytes())] + \
            self._shapes[:MAX_SHAPES - 1]


def build(data, size: int) -> Layout | None:
    """The :class:`Layout` of ``data`` (the first bytes of a file of ``size`` bytes, through
    its Pixel Data element header), or None where the header is not flat (module docs)."""
    n = min(len(data), MAX_HEADER)
    if n < 144 or data[128:132] != b"DICM":
        return None
    heads = [(128, 4)]
    tags: list = [-1]
    vrs: list = [None]
    starts: list = [128]
    lengths: list = [4]
    pos, last = 132, -1
    while True:  # file meta: explicit VR little endian
        if pos + 8 > n:
            return None
        group, elem, vr, length = _EXPL.unpack_from(data, pos)
        if group != 0x0002:
            break
        tag = 0x00020000 | elem
        if tag <= last or vr not in VRS:
            return None
        last = tag
        hdr = 8
        if vr in LONG_VRS:
            if pos + 12 > n:
                return None
            length = _U32.unpack_from(data, pos + 8)[0]
            hdr = 12
        if length == UNDEFINED:
            return None
        heads.append((pos, hdr))
        tags.append(tag)
        vrs.append(vr)
        starts.append(pos + hdr)
        lengths.append(length)
        pos += hdr + length
    if _TS not in tags:
        return None
    k = tags.index(_TS)
    values = [(k, starts[k], lengths[k])]
    if starts[k] + lengths[k] > n:
        return None
    ts = bytes(data[starts[k]:starts[k] + lengths[k]]).decode("ascii", "replace").rstrip(
        "\x00 ")
    if ts not in (TS_EXPLICIT_LE, TS_IMPLICIT_LE):
        return None
    explicit = ts == TS_EXPLICIT_LE
    if (bytes(data[pos + 4:pos + 6]) in VRS) != explicit:
        return None  # the data set does not use the declared encoding
    last = -1
    pixel = None
    while pos + 8 <= n:
        if explicit:
            group, elem, vr, length = _EXPL.unpack_from(data, pos)
            hdr = 8
            if vr not in VRS:
                return None
            if vr in LONG_VRS:
                if pos + 12 > n:
                    return None
                length = _U32.unpack_from(data, pos + 8)[0]
                hdr = 12
        else:
            group, elem, length = _IMPL.unpack_from(data, pos)
            vr, hdr = None, 8
        tag = (group << 16) | elem
        if tag <= last or group == 0xFFFE or length == UNDEFINED or tag in NOT_FLAT \
                or tag > PIXEL_DATA:
            return None
        last = tag
        heads.append((pos, hdr))
        if tag == PIXEL_DATA:
            pixel = (pos + hdr, length)
            pos += hdr
            break
        if tag == _CHARSET:
            if pos + hdr + length > n:
                return None
            values.append((len(tags), pos + hdr, length))
        tags.append(tag)
        vrs.append(vr)
        starts.append(pos + hdr)
        lengths.append(length)
        pos += hdr + length
    if pixel is None or pixel[0] + pixel[1] > size:
        return None
    return Layout(data, pos, explicit, ts, tags, vrs, starts, lengths, pixel, heads, values)


def _words(data) -> np.ndarray:
    """The unaligned little-endian 8-byte words of ``data`` at every byte offset."""
    return np.ndarray((len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))


_LOCK = threading.Lock()
_LAYOUTS: list[Layout] = []  # the most recently fitted first
_STATE = {"unused": 0, "misses": 0}


def fitted(data) -> Fit | None:
    """The :class:`Fit` of ``data`` by one of the first :data:`TRIES` layouts kept, or None."""
    layouts = _LAYOUTS[:TRIES] if ENABLED else ()
    for i, layout in enumerate(layouts):
        got = layout.fit(data)
        if got is not None:
            if i or _STATE["unused"]:
                with _LOCK:
                    _STATE["unused"] = 0
                    if i and layout in _LAYOUTS:
                        _LAYOUTS.remove(layout)
                        _LAYOUTS.insert(0, layout)
            return got
    return None


def head_bytes() -> int:
    """How many first bytes of a file :func:`fitted` needs (0: no layout is kept): the
    longest header of the layouts tried, and :data:`SLACK` bytes for lengths that differ."""
    layouts = _LAYOUTS[:TRIES] if ENABLED else ()
    return max(layout.end for layout in layouts) + SLACK if layouts else 0


def wanted() -> bool:
    """Whether a reader should build a layout from the file that :func:`fitted` no layout."""
    if not ENABLED:
        return False
    with _LOCK:
        _STATE["misses"] += 1
        return _STATE["unused"] < UNUSED_BUILDS or _STATE["misses"] % RETRY_EVERY == 0


def keep(layout: Layout | None) -> None:
    """Keep ``layout`` (from :func:`build`; None: the file had none) first."""
    with _LOCK:
        _STATE["unused"] += 1
        if layout is not None:
            _LAYOUTS.insert(0, layout)
            del _LAYOUTS[MAX_LAYOUTS:]


def kept() -> list[Layout]:
    """The layouts kept, the most recently fitted first."""
    return list(_LAYOUTS)


def forget() -> None:
    """Drop every layout (tests, benchmarks)."""
    with _LOCK:
        _LAYOUTS.clear()
        _STATE.update(unused=0, misses=0)
