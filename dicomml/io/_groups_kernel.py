"""The compiled walk of functional-group sequences (numba), for :mod:`dicomml.io.functional_groups`.

Imported once a process has walked :data:`~dicomml.io.functional_groups.COMPILE_AFTER` frames
in Python (importing numba and loading the compiled code costs 0.6-0.9 s, compiling ~4 s the
first time; the compiled code is cached next to this file, or in numba's user-wide cache
folder, and compiled on each first use where neither is writable).

:func:`index_sequence` walks the items of one sequence value as
:func:`dicomml.io.functional_groups.parse_sequence` does with its :data:`WANTED` table (PS3.5
Section 7.5: items of defined or undefined length, implicit VR inside UN, the same checks)
and writes what the Python side needs to build the items, one row of five ``int64`` per
event, in document order:

* ``(ITEM_START, 0, 0, 0, 0)`` / ``(ITEM_END, 0, 0, 0, 0)``: an item of a wanted sequence;
* ``(VALUE, spec, start, length, 0)``: a wanted element (``spec`` its row in the tables);
* ``(SEQ, spec, start, end, next)``: a wanted sequence whose value spans ``start``-``end``
  (through its delimiter) and whose items' events are the rows up to ``next``;
* ``(SAME, spec, row, 0, 0)``: a wanted sequence byte for byte the last one of that tag
  parsed at that depth (row ``row``, a ``SEQ``): the same items (what the Python parser's
  memo does; most groups repeat from frame to frame).

Everything else (unwanted elements, unwanted sequences to their delimiters) is skipped here.
The status is the end of the sequence (``>= 0``), or :data:`FULL` (more events than rows),
or :data:`REFUSED` for anything the Python parser raises on (truncation, a malformed item,
an unexpected VR, nesting too deep, a refused tag): the caller then runs the Python parser,
which raises its own exception.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["index_sequence", "ITEM_START", "ITEM_END", "VALUE", "SEQ", "SAME", "FULL",
           "REFUSED", "UNDEFINED", "VR_SHORT", "VR_LONG", "vr_code"]

ITEM_START, ITEM_END, VALUE, SEQ, SAME = 0, 1, 2, 3, 4
FULL = -1
REFUSED = -2
UNDEFINED = 0xFFFFFFFF
#: :func:`vr_code` table values: not a VR, a VR with a 16-bit length, one with a 32-bit length.
VR_SHORT, VR_LONG = 1, 2

_ITEM_SW = 0xE000FFFE      # (FFFE,E000) as one little-endian "<I" reads it
_ITEM_END_SW = 0xE00DFFFE
_SEQ_END_SW = 0xE0DDFFFE
_SQ = ord("S") | (ord("Q") << 8)
_UN = ord("U") | (ord("N") << 8)


def vr_code(vr: bytes) -> int:
    """The 16-bit code of a two-letter VR as the kernel reads it (first byte low)."""
    return vr[0] | (vr[1] << 8)


def _jit(fn):
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:      # no writable cache location: compile on each first use
        return numba.njit(cache=False, nogil=True)(fn)


@_jit
def _u32(buf, p):
    return (np.int64(buf[p]) | (np.int64(buf[p + 1]) << 8) | (np.int64(buf[p + 2]) << 16)
            | (np.int64(buf[p + 3]) << 24))


@_jit
def _same(buf, a, b, n):
    for k in range(n):
        if buf[a + k] != buf[b + k]:
            return False
    return True


@_jit
def _put(events, n, kind, spec, a, b):
    """Write one event at row ``n``: ``n + 1``, or -1 when the table is full."""
    if n >= events.shape[0]:
        return -1
    events[n, 0] = kind
    events[n, 1] = spec
    events[n, 2] = a
    events[n, 3] = b
    events[n, 4] = 0
    return n + 1


@_jit
def index_sequence(buf, pos, length, explicit, max_depth, vr_kind, tags, spec_vr, refused,
                   events):
    """Walk the items of the sequence value at ``pos`` (``length`` bytes or UNDEFINED).

    ``buf`` the file (uint8); ``vr_kind`` 65536 entries (:func:`vr_code` → 0 / VR_SHORT /
    VR_LONG); ``tags`` the wanted swapped tags, sorted, with ``spec_vr`` their VR codes;
    ``refused`` swapped tags that refuse the walk; ``events`` (rows, 5) int64. Returns
    ``(status, rows used)``."""
    size = buf.shape[0]
    nspec = tags.shape[0]
    last_row = np.full(nspec, -1, np.int64)      # the SEQ row last parsed per spec ...
    last_depth = np.zeros(nspec, np.int64)       # ... at this depth
    last_undefined = np.zeros(nspec, np.int64)   # ... of undefined length (or not)
    n = 0
    # the stack of open sequences and items: kind (0 sequence, 1 item), end, undefined,
    # explicit, wanted (events written), depth, row of the SEQ event (-1: none)
    sk = np.zeros(max_depth * 2 + 4, np.int64)
    se = np.zeros(max_depth * 2 + 4, np.int64)
    su = np.zeros(max_depth * 2 + 4, np.int64)
    sx = np.zeros(max_depth * 2 + 4, np.int64)
    sw = np.zeros(max_depth * 2 + 4, np.int64)
    sd = np.zeros(max_depth * 2 + 4, np.int64)
    sr = np.zeros(max_depth * 2 + 4, np.int64)
    if length == UNDEFINED:
        end = size
    else:
        end = pos + length
    if end > size:
        return REFUSED, n
    sp = 0
    sk[0], se[0], su[0], sx[0], sw[0], sd[0], sr[0] = (0, end, length == UNDEFINED,
                                                       explicit, 1, 1, -1)
    while sp >= 0:
        kind, end, undefined, expl, wanted, depth = sk[sp], se[sp], su[sp], sx[sp], sw[sp], \
            sd[sp]
        if kind == 0:                                   # a sequence: its next item
            if pos < end:
                if pos + 8 > size:
                    return REFUSED, n
                tag = _u32(buf, pos)
                ilen = _u32(buf, pos + 4)
                if tag == _SEQ_END_SW:
                    if not undefined:
                        return REFUSED, n
                    pos += 8
                elif tag != _ITEM_SW:
                    return REFUSED, n
                else:
                    iend = size if ilen == UNDEFINED else pos + 8 + ilen
                    if iend > size:
                        return REFUSED, n
                    if wanted:
                        n = _put(events, n, ITEM_START, 0, 0, 0)
                        if n < 0:
                            return FULL, 0
                    pos += 8
                    sp += 1
                    sk[sp], se[sp], su[sp], sx[sp], sw[sp], sd[sp], sr[sp] = (
                        1, iend, ilen == UNDEFINED, expl, wanted, depth, -1)
                    continue
            else:
                if undefined:
                    return REFUSED, n
                if pos != end:
                    return REFUSED, n
            # the sequence ends at pos
            row = sr[sp]
            if row >= 0:
                events[row, 3] = pos
                events[row, 4] = n
            sp -= 1
            continue
        # an item: its next element
        if pos >= end:
            if undefined:
                return REFUSED, n
            if pos != end:
                return REFUSED, n
            if wanted:
                n = _put(events, n, ITEM_END, 0, 0, 0)
                if n < 0:
                    return FULL, 0
            sp -= 1
            continue
        if pos + 8 > size:
            return REFUSED, n
        tag = _u32(buf, pos)
        vr = 0
        if expl:
            vr = np.int64(buf[pos + 4]) | (np.int64(buf[pos + 5]) << 8)
            k = vr_kind[vr]
            if k == VR_SHORT:
                vlen = np.int64(buf[pos + 6]) | (np.int64(buf[pos + 7]) << 8)
                vstart = pos + 8
            elif k == VR_LONG:
                if pos + 12 > size:
                    return REFUSED, n
                vlen = _u32(buf, pos + 8)
                vstart = pos + 12
            elif tag == _ITEM_END_SW:
                if not undefined:
                    return REFUSED, n
                pos += 8
                su[sp] = 0      # the item ends here: closed at the next turn
                se[sp] = pos
                continue
            else:
                return REFUSED, n
        else:
            vlen = _u32(buf, pos + 4)
            vstart = pos + 8
            if tag == _ITEM_END_SW:
                if not undefined:
                    return REFUSED, n
                pos = vstart
                su[sp] = 0
                se[sp] = pos
                continue
        if tag & 0xFFFF == 0xFFFE:
            return REFUSED, n
        spec = -1
        if wanted:
            for r in range(refused.shape[0]):
                if refused[r] == tag:
                    return REFUSED, n
            i = np.searchsorted(tags, tag)
            if i < nspec and tags[i] == tag:
                spec = i
        undefined_value = vlen == UNDEFINED
        if undefined_value:
            if expl and vr != _SQ and vr != _UN:
                return REFUSED, n
            if spec >= 0 and (spec_vr[spec] != _SQ or (expl and vr != _SQ)):
                return REFUSED, n
            if spec < 0:                    # walked to its delimiter, nothing kept
                if depth + 1 > max_depth:
                    return REFUSED, n
                pos = vstart
                sp += 1
                sk[sp], se[sp], su[sp], sx[sp], sw[sp], sd[sp], sr[sp] = (
                    0, size, 1, expl and vr != _UN, 0, depth + 1, -1)
                continue
        else:
            pos = vstart + vlen
            if pos > size:
                return REFUSED, n
            if spec < 0:
                continue
            if expl and vr != spec_vr[spec]:
                return REFUSED, n
            if spec_vr[spec] != _SQ:
                n = _put(events, n, VALUE, spec, vstart, vlen)
                if n < 0:
                    return FULL, 0
                continue
        # a wanted sequence (a wanted SQ of undefined length or of vlen bytes)
        if depth + 1 > max_depth:
            return REFUSED, n
        prev = last_row[spec]
        if prev >= 0 and last_depth[spec] == depth and last_undefined[spec] == undefined_value:
            pstart = events[prev, 2]
            plen = events[prev, 3] - pstart
            if (undefined_value or plen == vlen) and vstart + plen <= size \
                    and _same(buf, pstart, vstart, plen):
                n = _put(events, n, SAME, spec, prev, 0)
                if n < 0:
                    return FULL, 0
                pos = vstart + plen
                continue
        row = n
        n = _put(events, n, SEQ, spec, vstart, 0)
        if n < 0:
            return FULL, 0
        last_row[spec] = row
        last_depth[spec] = depth
        last_undefined[spec] = undefined_value
        sp += 1
        sk[sp], se[sp], su[sp], sx[sp], sw[sp], sd[sp], sr[sp] = (
            0, size if undefined_value else vstart + vlen, undefined_value, expl, 1, depth + 1,
            row)
        pos = vstart
    return pos, n
