"""The compiled one-pass preprocessing kernel (numba): window → row pass → column pass.

Imported only when :func:`~dicomml.preprocess.resize_planes` or the Pipeline first needs it
(importing numba costs ~0.3 s, compiling ~1–2 s; the compiled code is cached next to this
file, or in numba's user-wide cache folder, and without a cache where neither is writable).

Bit for bit the two CSR products of :mod:`dicomml.preprocess.resize`: the same ``float32``
weights (the non-zeros of the same CSR matrices, in the same order), a ``float32``
accumulator that starts at 0 and adds ``weight · value`` in that order, rows first, then
columns, then ``clip(·, 0, 1)`` with NaN kept. No ``fastmath`` (so no reassociation and no
fused multiply-add); the loops are only reordered across independent outputs, which does not
change a single rounding. The window step is ``clip(x·a + b, 0, 1)`` in ``float32``, then
``1 − y`` for MONOCHROME1 and 0 at padding pixels — the operations of
:func:`~dicomml.preprocess.apply_window`, :func:`~dicomml.preprocess.invert_monochrome1` and
:func:`~dicomml.preprocess.apply_padding_floor`, in that order.

Where the time goes (512² → 224², three windows, issue 19): each input row is windowed when
the row pass first reaches it, into a ring of a few rows that stays in the L1/L2 cache (the
whole windowed stack, 3 MB, used to be written and read back); the row pass writes its
output in 8 × 8 tiles into the transposed buffer the column pass reads (row by row, the
strided stores cost more than the products). 1.00 → 0.65 ms per slice; the same bytes.
Where no output reaches more than 8 inputs (512 → 224 reaches 5–8), both passes sum the 8
terms of one output in a register (:func:`_taps8`, the taps of a row padded to 8 by weight 0
on its last input) instead of adding each term into a row in memory: one store per output
instead of eight loads and stores, and all channels advance together, so that an input row
is read from memory once rather than once per window: 0.79 → 0.72 ms on planes that are not
in the cache (0.77 → 0.69 ms on one that is). The padded terms change no bit: the
windowed values are in [0, 1] or NaN, the weights positive, so a partial sum is never −0,
``+0 · x`` adds ±0 to it (no change), and a NaN it could bring is already there through the
real term on the same input.

Round 9 (the same bytes): the transposes write, for each column, the 8 values of one output
band as 8 statements into one run of the transposed row (LLVM keeps them in one vector
register; the 8 × 8 tiles of loops were not vectorised): 0.20 → 0.09 ms per slice; the
column pass sums 8 output columns of every channel, clips them in place and stores them
row by row as 8 × ch consecutive values of the channels-last output (one strided store per
output pixel cost 0.11 ms): 0.17 → 0.12 ms. Stored integers (``int8`` … ``uint16``) with an
exact rescale (:func:`dicomml.io.pixels.exact_in_float32`) are converted row by row as they
are windowed (:func:`_rescale_row`, once per input row for every channel), so that
:meth:`~dicomml.preprocess.Pipeline.from_path` writes no ``float32`` plane of modality values.
Tried and dropped: the column pass of each band of 8 output rows right after its row pass,
from a 16 KiB transposed band in the L1 cache (no 1.4 MB transposed buffer), 0.43 ms against
0.21 ms for transpose + columns (the 8-lane sums over the band are not vectorised).

Round 19 (the same bytes): both transposes (the row pass's output into the column pass's
input, and the column sums into the channels-last output) move 8 × 8 blocks through the
registers (:func:`_transpose8`, an LLVM intrinsic: 8 vector loads, 24 shuffles, 8 vector
stores) instead of one scalar load and insert per value, which LLVM made of the 8
statements: transposes 0.115 → 0.045 ms, the kernel 0.44 → 0.33 ms per slice (512² → 224²,
three windows, AMD EPYC Zen 5).
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

__all__ = ["resize_kernel", "window_resize_kernel", "window_resize8_kernel", "TAPS"]

#: The most inputs per output of the register path (:func:`_taps8`).
TAPS = 8


def _jit(fn):
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:      # no writable cache location: compile on each first use
        return numba.njit(cache=False, nogil=True)(fn)


_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_UNPACK_LO = (0, 8, 1, 9, 4, 12, 5, 13)       # unpcklps of two rows of 8
_UNPACK_HI = (2, 10, 3, 11, 6, 14, 7, 15)     # unpckhps
_PAIRS_LO = (0, 1, 8, 9, 4, 5, 12, 13)        # shufps (1, 0, 1, 0)
_PAIRS_HI = (2, 3, 10, 11, 6, 7, 14, 15)      # shufps (3, 2, 3, 2)
_HALVES_LO = (0, 1, 2, 3, 8, 9, 10, 11)       # vperm2f128 0x20
_HALVES_HI = (4, 5, 6, 7, 12, 13, 14, 15)     # vperm2f128 0x31


def _shuffle(builder, a, b, order):
    return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(_I32, 8), list(order)))


@intrinsic
def _transpose8(typingctx, src, s0, ss, dst, d0, ds):
    """``dst[d0 + j·ds + i] = src[s0 + i·ss + j]`` for i, j < 8: an 8 × 8 block of
    ``float32`` (``src``, ``dst`` 1-D C-contiguous arrays, offsets and row strides in items)
    moved in registers: 8 vector loads, the 24 shuffles of the textbook 8 × 8 transpose
    (unpack, pair, exchange halves; LLVM lowers them to SSE on a CPU without AVX), 8 vector
    stores. No bounds check: the callers keep the block inside both arrays."""
    sig = types.void(src, s0, ss, dst, d0, ds)

    def codegen(context, builder, signature, args):
        src_v, s0_v, ss_v, dst_v, d0_v, ds_v = args
        src_a = context.make_array(signature.args[0])(context, builder, src_v)
        dst_a = context.make_array(signature.args[3])(context, builder, dst_v)
        vec = ir.VectorType(ir.FloatType(), 8).as_pointer()

        def at(base, start, stride, i):
            index = builder.add(start, builder.mul(stride, ir.Constant(_I64, i)))
            return builder.bitcast(builder.gep(base, [index]), vec)

        s0_v, ss_v = (context.cast(builder, v, t, types.int64)
                      for v, t in ((s0_v, signature.args[1]), (ss_v, signature.args[2])))
        d0_v, ds_v = (context.cast(builder, v, t, types.int64)
                      for v, t in ((d0_v, signature.args[4]), (ds_v, signature.args[5])))
        r = [builder.load(at(src_a.data, s0_v, ss_v, i), align=4) for i in range(8)]
        t = []
        for i in range(0, 8, 2):
            t += [_shuffle(builder, r[i], r[i + 1], _UNPACK_LO),
                  _shuffle(builder, r[i], r[i + 1], _UNPACK_HI)]
        u = []
        for a, b in ((0, 2), (1, 3), (4, 6), (5, 7)):
            u += [_shuffle(builder, t[a], t[b], _PAIRS_LO),
                  _shuffle(builder, t[a], t[b], _PAIRS_HI)]
        for j in range(4):                     # u[j] holds columns j and j + 4 of rows 0-3
            builder.store(_shuffle(builder, u[j], u[j + 4], _HALVES_LO),
                          at(dst_a.data, d0_v, ds_v, j), align=4)
            builder.store(_shuffle(builder, u[j], u[j + 4], _HALVES_HI),
                          at(dst_a.data, d0_v, ds_v, j + 4), align=4)
        return context.get_dummy_value()

    return sig, codegen


def _transpose_rows(tmp, m, r0, yt):
    """``yt[k, r0 + i] = tmp[i, k]`` for the ``m`` (≤ 8) rows of ``tmp`` (8, cols), both
    C-contiguous: with 8 rows, each 8 × 8 block in registers (:func:`_transpose8`; one
    scalar load and insert per value cost 2.5 times as much), the last ``cols mod 8``
    columns one by one."""
    cols = tmp.shape[1]
    n_r = yt.shape[1]
    k8 = 0
    if m == 8:
        src = tmp.reshape(tmp.size)
        dst = yt.reshape(yt.size)
        k8 = cols - cols % 8
        for k0 in range(0, k8, 8):
            _transpose8(src, k0, cols, dst, k0 * n_r + r0, n_r)
    for k in range(k8, cols):
        for i in range(m):
            yt[k, r0 + i] = tmp[i, k]


_transpose_rows = _jit(_transpose_rows)


def _clip(t):
    """``t = clip(t, 0, 1)`` in place; a NaN fails both tests and stays."""
    for k in range(t.shape[0]):
        v = t[k]
        if v < np.float32(0.0):
            v = np.float32(0.0)
        elif v > np.float32(1.0):
            v = np.float32(1.0)
        t[k] = v


_clip = _jit(_clip)


def _columns(yt, c, cp, ci, cd, out, acc):
    """The column pass of channel ``c``: ``out[r, q, c] = clip(Σ C[q, j] · yt[j, r], 0, 1)``."""
    n_r = yt.shape[1]
    n_c = cp.shape[0] - 1
    for q in range(n_c):                       # columns: z[q, :] = Σ C[q, j] · y[:, j]
        for r in range(n_r):
            acc[r] = np.float32(0.0)
        for jj in range(cp[q], cp[q + 1]):
            a = cd[jj]
            src = yt[ci[jj]]
            for r in range(n_r):
                acc[r] += a * src[r]
        _clip(acc)
        for r in range(n_r):
            out[r, q, c] = acc[r]


_columns = _jit(_columns)


def _resize_one(x, c, rp, ri, rd, cp, ci, cd, out, yt, tmp, acc):
    """Channel ``c`` of ``x`` (ch, rows, cols) → ``out[:, :, c]``; yt (cols, n_r), tmp
    (8, cols), acc (n_r,) scratch."""
    cols = x.shape[2]
    n_r = rp.shape[0] - 1
    for r0 in range(0, n_r, 8):                # rows: y[r, :] = Σ R[r, j] · x[j, :]
        m = min(8, n_r - r0)
        for i in range(m):
            t = tmp[i]
            r = r0 + i
            for k in range(cols):
                t[k] = np.float32(0.0)
            for jj in range(rp[r], rp[r + 1]):
                a = rd[jj]
                src = x[c, ri[jj]]
                for k in range(cols):
                    t[k] += a * src[k]
        _transpose_rows(tmp, m, r0, yt)        # stored transposed for the column pass
    _columns(yt, c, cp, ci, cd, out, acc)


_resize_one = _jit(_resize_one)


def _resize(x, rp, ri, rd, cp, ci, cd, out, yt, tmp, acc):
    for c in range(x.shape[0]):
        _resize_one(x, c, rp, ri, rd, cp, ci, cd, out, yt, tmp, acc)


_resize = _jit(_resize)


def _taps8(s0, s1, s2, s3, s4, s5, s6, s7, w, t):
    """``t[k] = Σ w[i] · s_i[k]`` summed from 0 in the order i = 0 … 7, in a register."""
    w0, w1, w2, w3, w4, w5, w6, w7 = w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]
    for k in range(t.shape[0]):
        v = np.float32(0.0)
        v += w0 * s0[k]
        v += w1 * s1[k]
        v += w2 * s2[k]
        v += w3 * s3[k]
        v += w4 * s4[k]
        v += w5 * s5[k]
        v += w6 * s6[k]
        v += w7 * s7[k]
        t[k] = v


_taps8 = _jit(_taps8)


def _columns8(yt, cidx, cw, cn, out, acc):
    """The column pass of every channel with the column taps padded to 8 (``cidx``, ``cw``
    (n_c, 8); ``cn`` the real count): ``out[r, q, c] = clip(Σ C[q, j] · yt[c, j, r], 0, 1)``.

    Eight output columns at a time: their channels are summed and clipped along ``r`` into
    ``acc`` (8, ch, n_r), then stored row by row, 8 × ch consecutive values of ``out`` at a
    time (one store per output pixel, strided by a whole output row, cost twice as much),
    in 8 × 8 blocks through the registers (:func:`_transpose8`) where 8 values of 8 rows
    remain."""
    n_ch, n_r = yt.shape[0], yt.shape[2]
    n_c = cidx.shape[0]
    width = out.shape[1] * n_ch
    flat = out.reshape(out.shape[0], width)
    block = acc.reshape(acc.shape[0] * n_ch, n_r)
    src, dst = acc.reshape(acc.size), out.reshape(out.size)
    for q0 in range(0, n_c, 8):
        mq = min(8, n_c - q0)
        for qq in range(mq):
            q = q0 + qq
            ix = cidx[q]
            for c in range(n_ch):
                t = acc[qq, c]
                if cn[q] == 0:
                    t[:] = np.float32(0.0)
                else:
                    y = yt[c]
                    _taps8(y[ix[0]], y[ix[1]], y[ix[2]], y[ix[3]], y[ix[4]], y[ix[5]],
                           y[ix[6]], y[ix[7]], cw[q], t)
                _clip(t)
        n = mq * n_ch
        base = q0 * n_ch
        j8, r8 = n - n % 8, n_r - n_r % 8      # 8 × 8 blocks in registers, then the rest
        for j0 in range(0, j8, 8):
            for r0 in range(0, r8, 8):
                _transpose8(src, j0 * n_r + r0, n_r, dst, r0 * width + base + j0, width)
        for r in range(n_r):
            o = flat[r, base:base + n]
            for j in range(j8 if r < r8 else 0, n):
                o[j] = block[j, r]


_columns8 = _jit(_columns8)


def _window_row(src, ak, bk, invert, pad, m, j, w):
    """Window the input row ``src`` (row ``j`` of its plane) into ``w``:
    ``clip(x·a + b, 0, 1)``, then ``1 − y`` when ``invert``, then 0 where ``pad[m, j]``
    (``m ≥ 0``)."""
    for k in range(w.shape[0]):
        v = src[k] * ak
        v += bk
        if v < np.float32(0.0):
            v = np.float32(0.0)
        elif v > np.float32(1.0):
            v = np.float32(1.0)
        w[k] = v
    if invert:
        for k in range(w.shape[0]):
            w[k] = np.float32(1.0) - w[k]
    if m >= 0:
        pm = pad[m, j]
        for k in range(w.shape[0]):
            if pm[k]:
                w[k] = np.float32(0.0)


_window_row = _jit(_window_row)


def _rescale_row(src, slope, intercept, dst):
    """``dst = float32(src)·slope + intercept``: stored integers to modality values, exact
    (the caller's condition, :func:`dicomml.io.pixels.exact_in_float32`), so bit for bit
    :func:`dicomml.io.pixels.rescale_into`."""
    for k in range(dst.shape[0]):
        v = np.float32(src[k]) * slope
        dst[k] = v + intercept


_rescale_row = _jit(_rescale_row)


def _window_resize(values, rescaled, slope, intercept, plane_of, a, b, invert, pad, pad_of,
                   rp, ri, rd, cp, ci, cd, out, ring, conv, yt, tmp, acc):
    """Channel k: window plane ``plane_of[k]`` of ``values`` (P, rows, cols) row by row as
    the row pass first reaches each row, into ``ring`` (n, cols; input row j at j mod n,
    n ≥ the rows one output row can reach back, :func:`~dicomml.preprocess.resize.ring_rows`), then resize. The
    windowed plane is never written out whole: it stays in the CPU cache."""
    cols = values.shape[2]
    n_r = rp.shape[0] - 1
    n_ring = ring.shape[0]
    for c in range(a.shape[0]):
        ak, bk = a[c], b[c]
        p = plane_of[c]
        m = pad_of[c]
        filled = -1                            # the last input row windowed into the ring
        for r0 in range(0, n_r, 8):
            mm = min(8, n_r - r0)
            for i in range(mm):
                t = tmp[i]
                r = r0 + i
                for k in range(cols):
                    t[k] = np.float32(0.0)
                for jj in range(rp[r], rp[r + 1]):
                    j = ri[jj]
                    while filled < j:
                        filled += 1
                        if rescaled:
                            _rescale_row(values[p, filled], slope, intercept, conv[0])
                            _window_row(conv[0], ak, bk, invert, pad, m, filled,
                                        ring[filled % n_ring])
                        else:
                            _window_row(values[p, filled], ak, bk, invert, pad, m, filled,
                                        ring[filled % n_ring])
                    wa = rd[jj]
                    src = ring[j % n_ring]
                    for k in range(cols):
                        t[k] += wa * src[k]
            _transpose_rows(tmp, mm, r0, yt)
        _columns(yt, c, cp, ci, cd, out, acc)


_window_resize = _jit(_window_resize)


def _window_resize8(values, rescaled, slope, intercept, plane_of, a, b, invert, pad, pad_of,
                    ridx, rw, rn, cidx, cw, cn, out, conv, ring, yt, tmp, acc):
    """:func:`_window_resize` with both passes on 8 padded taps (:func:`_taps8`): ``ridx``,
    ``rw`` (n_r, 8) the row taps (ascending inputs, the last repeated), ``rn`` their real
    count; ``cidx``, ``cw``, ``cn`` the column taps. All channels advance together: each
    input row is windowed for every channel when the first output row reaches it (it is
    read from memory once, not once per channel), so the scratch is per channel: ``ring``
    (ch, n, cols), ``yt`` (ch, cols, n_r), ``tmp`` (ch, 8, cols); ``acc`` (8, ch, n_r) the
    column sums of :func:`_columns8`."""
    cols = values.shape[2]
    n_r = ridx.shape[0]
    n = ring.shape[1]
    n_ch = a.shape[0]
    filled = -1                                # the last input row windowed into the rings
    for r0 in range(0, n_r, 8):
        mm = min(8, n_r - r0)
        for i in range(mm):
            r = r0 + i
            if rn[r] == 0:
                for c in range(n_ch):
                    t = tmp[c, i]
                    for k in range(cols):
                        t[k] = np.float32(0.0)
                continue
            ix = ridx[r]
            while filled < ix[7]:              # the row's highest input
                filled += 1
                if rescaled:                   # each plane's row once, for every channel
                    for q in range(values.shape[0]):
                        _rescale_row(values[q, filled], slope, intercept, conv[q])
                    for c in range(n_ch):
                        _window_row(conv[plane_of[c]], a[c], b[c], invert, pad, pad_of[c],
                                    filled, ring[c, filled % n])
                else:
                    for c in range(n_ch):
                        _window_row(values[plane_of[c], filled], a[c], b[c], invert, pad,
                                    pad_of[c], filled, ring[c, filled % n])
            for c in range(n_ch):
                rc = ring[c]
                _taps8(rc[ix[0] % n], rc[ix[1] % n], rc[ix[2] % n], rc[ix[3] % n],
                       rc[ix[4] % n], rc[ix[5] % n], rc[ix[6] % n], rc[ix[7] % n], rw[r],
                       tmp[c, i])
        for c in range(n_ch):
            _transpose_rows(tmp[c], mm, r0, yt[c])
    _columns8(yt, cidx, cw, cn, out, acc)


_window_resize8 = _jit(_window_resize8)


def resize_kernel(x, R, C, out, scratch):
    """``out[:, :, c] = clip(C @ (R @ x[c]).T, 0, 1).T`` for every channel of ``x``
    (ch, rows, cols) ``float32`` C-contiguous; R, C ``scipy.sparse.csr_array`` of ``float32``
    (the matrices of one channel); ``scratch`` = (yt (cols, n_r), tmp (8, cols), acc (n_r,))."""
    _resize(x, R.indptr, R.indices, R.data, C.indptr, C.indices, C.data, out, *scratch)
    return out


def window_resize_kernel(values, rescale, plane_of, a, b, invert, pad, pad_of, R, C, out,
                         ring, conv, scratch):
    """Window (``clip(x·a[k] + b[k], 0, 1)``, MONOCHROME1 ``1 − y`` when ``invert``, 0 where
    ``pad[pad_of[k]]``, no mask where ``pad_of[k] < 0``) and resize, in one call; ``ring``
    (:func:`~dicomml.preprocess.resize.ring_rows` (R), cols) ``float32`` scratch.

    ``values`` ``float32`` modality values (``rescale`` None), or stored integers with
    ``rescale`` = (slope, intercept) that map them exactly to ``float32`` modality values
    (each input row is converted into ``conv[0]`` (cols,) ``float32`` as each channel's
    row pass reaches it: once per channel on this path, once for all channels on the 8-tap
    one)."""
    rescaled, s, i = _rescale_args(rescale)
    _window_resize(values, rescaled, s, i, plane_of, a, b, invert, pad, pad_of, R.indptr,
                   R.indices, R.data, C.indptr, C.indices, C.data, out, ring, conv, *scratch)
    return out


def window_resize8_kernel(values, rescale, plane_of, a, b, invert, pad, pad_of, taps, out,
                          conv, scratch8):
    """:func:`window_resize_kernel` where no output reaches more than :data:`TAPS` inputs:
    ``taps`` the padded tap tables of R and C
    (:func:`~dicomml.preprocess.resize.tap_tables`), ``scratch8`` = (ring (ch, n, cols), yt
    (ch, cols, n_r), tmp (ch, 8, cols), acc (8, ch, n_r))."""
    rescaled, s, i = _rescale_args(rescale)
    _window_resize8(values, rescaled, s, i, plane_of, a, b, invert, pad, pad_of, *taps, out,
                    conv, *scratch8)
    return out


def _rescale_args(rescale):
    if rescale is None:
        return False, np.float32(1.0), np.float32(0.0)
    return True, np.float32(rescale[0]), np.float32(rescale[1])
