"""Header now, pixels later: native grayscale slices decoded straight into the volume.

:func:`dicomml.io.read_series` must parse every file's header before it knows where each
slice goes in the volume (the order is the positions', step 5 of :mod:`dicomml.io.volume`).
Holding every file's bytes until then makes the conversion to modality values read them
back from main memory, cold (a 200 × 512² CT series is 105 MB of pixel bytes). Instead, for
the common case (Implicit or Explicit VR Little Endian, PS3.5 A.1 / A.2, one grayscale
frame, pixel data of defined length):

1. :func:`load_head` reads only the first :data:`HEAD` bytes of the file, parses them with
   :func:`dicomml.io._read_fast.parse_light` (which stops at (7FE0,0010) Pixel Data) and
   returns the dataset with a :class:`PixelRef`: where the pixel data starts, its dtype and
   size. Nothing of the pixel data is kept.
2. Once the slices are ordered, :meth:`PixelRef.read` reads the pixel data of one slice into
   a small buffer of the calling thread (``readinto``: no new bytes object, the values stay
   in the CPU cache) and the reader writes modality values from it into that slice's view
   of the preallocated float32 volume. File reads and NumPy release the GIL, so the slices
   can be filled by several threads.

Anything else (a header longer than :data:`HEAD`, a multi-frame object, a mosaic, a value
that the fast parser does not take, pixel data shorter than Rows × Columns × Bits Allocated,
which is reported as truncated by the full reader) returns None and the caller reads the
file whole, as before. The values are the same either way: the bytes are the same, and the
unused high bits are cleared by :func:`dicomml.io.pixels.clear_unused_bits` as pydicom does.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass

import numpy as np

from dicomml.errors import InvalidDicomError
from dicomml.io._read_fast import NestingTooDeep, parse_light
from dicomml.io.fields import FUNCTIONAL_GROUP_CLASSES
from dicomml.io.mosaic import is_mosaic
from dicomml.io.pixels import check_pixel_module, clear_unused_bits, n_frames

__all__ = ["HEAD", "REUSE_MAX", "PixelRef", "load_head"]

#: Bytes read for the header: CT and MR headers are a few KB, with private elements 10-30 KB.
HEAD = 64 << 10

#: Pixel data up to this many bytes are read into a buffer kept per thread (reused: no
#: allocation, no page faults); larger ones (mammograms, large DX) into a new array.
REUSE_MAX = 8 << 20

_local = threading.local()


@dataclass(frozen=True)
class PixelRef:
    """Where the native pixel data of a one-frame grayscale file lies, and how to read it.

    ``shape`` is ``(1, rows, columns)`` (one frame), as the decoded stored values would be.
    """

    path: str
    offset: int
    dtype: np.dtype
    rows: int
    columns: int
    bits_allocated: int
    bits_stored: int
    signed: bool

    @property
    def shape(self) -> tuple[int, int, int]:
        return (1, self.rows, self.columns)

    @property
    def ndim(self) -> int:
        return 3

    def read(self, f=None, *, new: bool = False) -> np.ndarray:
        """The stored values, (rows, columns), in a buffer of the calling thread that the
        next :meth:`read` of this thread overwrites: use them before reading again
        (pixel data over :data:`REUSE_MAX` bytes get a new array each time).

        ``f``: the file, already open (binary, read-only); default: open ``path`` now.
        ``new``: read into a new array the caller may keep (no copy out of the thread's
        buffer where the stored values are what the caller keeps).

        Raises
        ------
        InvalidDicomError
            The file holds fewer bytes than when its header was read (changed meanwhile).
        """
        count = self.rows * self.columns
        buf = np.empty(count, dtype=self.dtype) if new else _buffer(self.dtype, count)
        with _opened(self.path, f) as fh:
            fh.seek(self.offset)
            got = fh.readinto(buf)
        if got != buf.nbytes:
            raise InvalidDicomError(
                f"{self.path}: (7FE0,0010) pixel data is {got} bytes, expected {buf.nbytes} "
                f"for {self.rows}×{self.columns}×{self.bits_allocated} bits; the file "
                "changed or was truncated after its header was read. Read the series again.")
        arr = clear_unused_bits(buf, self.bits_allocated, self.bits_stored, self.signed,
                                in_place=True)
        return arr.reshape(self.rows, self.columns)


def _opened(path: str, f=None):
    """``f`` as a context manager that leaves it open, or ``path`` opened (binary,
    unbuffered) and closed at the end."""
    return contextlib.nullcontext(f) if f is not None else open(path, "rb", buffering=0)


def _buffer(dtype: np.dtype, count: int) -> np.ndarray:
    if count * dtype.itemsize > REUSE_MAX:
        return np.empty(count, dtype=dtype)
    bufs = getattr(_local, "buffers", None)
    if bufs is None:
        bufs = _local.buffers = {}
    buf = bufs.get(dtype)
    if buf is None or buf.size < count:
        buf = bufs[dtype] = np.empty(count, dtype=dtype)
    return buf[:count]


def load_head(path: str, f=None):
    """``(dataset, PixelRef)`` from the first :data:`HEAD` bytes of ``path``, or None when the
    file must be read whole (see the module docs).

    ``f``: the file, already open (binary, read-only, unbuffered) and left open; default:
    ``path`` is opened and closed here. The dataset is the fast parser's
    (:class:`~dicomml.io._read_fast.LightDataset`); its ``PixelData`` holds at most the
    start of the pixel data and must not be decoded.
    """
    try:
        if f is None and os.stat(path).st_size <= HEAD:
            return None  # a small file: read whole by the caller, without opening it here
        with _opened(path, f) as fh:
            size = os.fstat(fh.fileno()).st_size
            if size <= HEAD:
                return None
            fh.seek(0)
            head = fh.read(HEAD)
    except OSError:
        return None  # the full reader reports it
    try:
        # an enhanced object (many frames, functional groups) is read whole: its header is
        # not walked here first
        ds = parse_light(head, decline_classes=FUNCTIONAL_GROUP_CLASSES, size=size)
    except NestingTooDeep:
        return None
    if ds is None or len(ds.PixelData) == 0:
        return None
    try:
        if check_pixel_module(ds, path) != "PixelData" or n_frames(ds) != 1 or is_mosaic(ds):
            return None
        rows, cols, bits = int(ds.Rows), int(ds.Columns), int(ds.BitsAllocated)
        stored = int(ds.get("BitsStored") or bits)
        signed = int(ds.PixelRepresentation) == 1
    except Exception:  # noqa: BLE001 - a missing or odd value: the full reader reports it
        return None
    offset, declared = ds.pixel_offset, ds.pixel_length
    expected = rows * cols * bits // 8
    if rows < 1 or cols < 1 or not 0 < stored <= bits or declared < expected \
            or offset + expected > size:
        return None
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
    return ds, PixelRef(path, offset, dtype, rows, cols, bits, stored, signed)
