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
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["resize_kernel", "window_resize_kernel"]


def _jit(fn):
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:      # no writable cache location: compile on each first use
        return numba.njit(cache=False, nogil=True)(fn)


def _resize_one(x, c, rp, ri, rd, cp, ci, cd, out, yt, tmp, acc):
    """Channel ``c`` of ``x`` (ch, rows, cols) → ``out[:, :, c]``; yt (cols, n_r), tmp (cols,),
    acc (n_r,) scratch."""
    cols = x.shape[2]
    n_r = rp.shape[0] - 1
    n_c = cp.shape[0] - 1
    for r in range(n_r):                       # rows: y[r, :] = Σ R[r, j] · x[j, :]
        for k in range(cols):
            tmp[k] = np.float32(0.0)
        for jj in range(rp[r], rp[r + 1]):
            a = rd[jj]
            src = x[c, ri[jj]]
            for k in range(cols):
                tmp[k] += a * src[k]
        for k in range(cols):                  # stored transposed for the column pass
            yt[k, r] = tmp[k]
    for q in range(n_c):                       # columns: z[q, :] = Σ C[q, j] · y[:, j]
        for r in range(n_r):
            acc[r] = np.float32(0.0)
        for jj in range(cp[q], cp[q + 1]):
            a = cd[jj]
            src = yt[ci[jj]]
            for r in range(n_r):
                acc[r] += a * src[r]
        for r in range(n_r):
            v = acc[r]
            if v < np.float32(0.0):            # clip; a NaN fails both tests and stays
                v = np.float32(0.0)
            elif v > np.float32(1.0):
                v = np.float32(1.0)
            out[r, q, c] = v


_resize_one = _jit(_resize_one)


def _resize(x, rp, ri, rd, cp, ci, cd, out, yt, tmp, acc):
    for c in range(x.shape[0]):
        _resize_one(x, c, rp, ri, rd, cp, ci, cd, out, yt, tmp, acc)


_resize = _jit(_resize)


def _window_resize(values, plane_of, a, b, invert, pad, pad_of, rp, ri, rd, cp, ci, cd,
                   out, win, yt, tmp, acc):
    """Window channel k from plane ``plane_of[k]`` of ``values`` (P, rows, cols) into ``win``
    (k, rows, cols), then resize every channel."""
    rows, cols = values.shape[1], values.shape[2]
    for k in range(a.shape[0]):
        ak, bk = a[k], b[k]
        p = plane_of[k]
        m = pad_of[k]
        for i in range(rows):
            for j in range(cols):
                v = values[p, i, j] * ak
                v += bk
                if v < np.float32(0.0):
                    v = np.float32(0.0)
                elif v > np.float32(1.0):
                    v = np.float32(1.0)
                if invert:
                    v = np.float32(1.0) - v
                if m >= 0 and pad[m, i, j]:
                    v = np.float32(0.0)
                win[k, i, j] = v
    _resize(win, rp, ri, rd, cp, ci, cd, out, yt, tmp, acc)


_window_resize = _jit(_window_resize)


def resize_kernel(x, R, C, out, scratch):
    """``out[:, :, c] = clip(C @ (R @ x[c]).T, 0, 1).T`` for every channel of ``x``
    (ch, rows, cols) ``float32`` C-contiguous; R, C ``scipy.sparse.csr_array`` of ``float32``
    (the matrices of one channel); ``scratch`` = (yt (cols, n_r), tmp (cols,), acc (n_r,))."""
    _resize(x, R.indptr, R.indices, R.data, C.indptr, C.indices, C.data, out, *scratch)
    return out


def window_resize_kernel(values, plane_of, a, b, invert, pad, pad_of, R, C, out, win,
                         scratch):
    """Window (``clip(x·a[k] + b[k], 0, 1)``, MONOCHROME1 ``1 − y`` when ``invert``, 0 where
    ``pad[pad_of[k]]``, no mask where ``pad_of[k] < 0``) and resize, in one call."""
    _window_resize(values, plane_of, a, b, invert, pad, pad_of, R.indptr, R.indices, R.data,
                   C.indptr, C.indices, C.data, out, win, *scratch)
    return out
