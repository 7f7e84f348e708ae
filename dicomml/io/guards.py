"""Bounds that hostile or corrupt headers must pass before dicomml allocates or enumerates.

A header is a promise the pixel data may not keep: a 39 kB CT declaring (0028,0008) Number
of Frames = 2147483647, a JPEG 2000 file declaring 65535×65535, a Rescale Slope of ``inf``.
These checks run *before* anything is allocated from the declared values:

* :func:`declared_frames_fit` — frame enumeration (one training example per frame) only
  trusts a Number of Frames that the file's real length can hold: native pixel data needs
  frames × rows × columns × samples × bits / 8 bytes, encapsulated pixel data at least one
  8-byte item per frame (PS3.5 A.4).
* :func:`check_decode_budget` — a compressed stream is decoded only when its declared output
  (frames × rows × columns × samples × bytes) stays under a budget, ``DICOMML_MAX_DECODED_MB``
  (default :data:`DEFAULT_MAX_DECODED_MB`), because decoders allocate what the header says.
* :func:`finite` / :func:`check_finite` — rescale and window values must be finite numbers
  (PS3.3 C.11.1.1.2, C.11.2.1.2): a NaN intercept would give NaN tensors, an infinite slope
  saturated images, both silently.
* :data:`MAX_NESTING` and :func:`nesting_error` — sequences nested deeper than any real
  object are refused with a clear error instead of a ``RecursionError``.

Every error names the file, the attribute with its tag, the declared value (numbers only,
never text that could hold a patient's name) and what to do.
"""

from __future__ import annotations

import math
import os

import numpy as np

from dicomml.errors import ConfigError, DecodeError, InvalidDicomError
from dicomml.io.uids import NATIVE_SYNTAXES

__all__ = ["DEFAULT_MAX_DECODED_MB", "MAX_NESTING", "max_decoded_bytes", "check_decode_budget",
           "declared_frames_fit", "finite", "check_finite", "nesting_error", "NATIVE_SYNTAXES",
           "DEFER_SIZE", "MMAP_FROM"]

#: Default budget for the decoded output of one compressed read, in MiB.
DEFAULT_MAX_DECODED_MB = 1024

#: Deepest sequence nesting accepted (real objects stay under 10 levels).
MAX_NESTING = 64

#: Transfer syntaxes whose pixel data is stored uncompressed (PS3.5 A.1, A.2; 8.1.1).

_ITEM_HEADER = 8  # (FFFE,E000) tag + 4-byte length

#: Elements longer than this (bytes) are not read when a data set is parsed, only when
#: their value is used (pydicom's ``defer_size``): a huge private OB is never loaded.
DEFER_SIZE = 1 << 20

#: Files larger than this (bytes) are memory-mapped, not read whole, by dicomml's reader.
MMAP_FROM = 64 << 20


def max_decoded_bytes(limit_mb: float | None = None) -> int:
    """The decoding budget in bytes: ``limit_mb``, else ``DICOMML_MAX_DECODED_MB``, else
    :data:`DEFAULT_MAX_DECODED_MB`.

    Raises
    ------
    ConfigError
        The value is not a positive number.
    """
    raw = limit_mb if limit_mb is not None else os.environ.get("DICOMML_MAX_DECODED_MB")
    if raw is None or raw == "":
        return DEFAULT_MAX_DECODED_MB << 20
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError("the decoding budget must be a positive number of MiB. "
                          f"Received: DICOMML_MAX_DECODED_MB={raw!r}")
    return int(value * (1 << 20))


def check_decode_budget(ds, where: str, n_frames: int, uid_name: str,
                        limit_mb: float | None = None) -> None:
    """Refuse to decode compressed pixel data whose declared output exceeds the budget.

    The output size is (0028,0008) frames to decode × (0028,0010) Rows × (0028,0011) Columns
    × (0028,0002) Samples per Pixel × (0028,0100) Bits Allocated / 8 (rounded up to whole
    bytes per sample, as decoders allocate).

    Raises
    ------
    DecodeError
        Naming the declared sizes, the budget and how to raise it.
    """
    rows, cols = int(ds.Rows), int(ds.Columns)
    spp, bits = int(ds.SamplesPerPixel), int(ds.BitsAllocated)
    need = n_frames * rows * cols * spp * max(1, (bits + 7) // 8)
    limit = max_decoded_bytes(limit_mb)
    if need > limit:
        raise DecodeError(
            f"{where}: the compressed (7FE0,0010) Pixel Data ({uid_name}) declares "
            f"{n_frames} frame(s) of {rows}×{cols}×{spp} samples × {bits} bits "
            f"((0028,0008), (0028,0010), (0028,0011), (0028,0002), (0028,0100)), "
            f"{need / 2**20:.0f} MiB decoded, above the decoding budget of "
            f"{limit / 2**20:.0f} MiB; it was not decoded. If the file is genuine, read fewer "
            "frames (frames=) or raise DICOMML_MAX_DECODED_MB.")


def declared_frames_fit(instances) -> np.ndarray:
    """For each row of an Index instances table, whether its (0028,0008) Number of Frames
    can be held by the file's real length (column ``size``).

    Native transfer syntaxes need ``frames × rows × columns × samples × bits_allocated / 8``
    bytes; encapsulated ones at least one 8-byte item per frame. Rows lacking the columns
    needed are taken as fitting (their read reports what is wrong).
    """
    n = len(instances)

    def col(name, default=np.nan):
        if name in instances:
            import pandas as pd

            return pd.to_numeric(instances[name], errors="coerce").to_numpy(dtype=float)
        return np.full(n, default, dtype=float)

    frames = np.nan_to_num(col("number_of_frames", 1.0), nan=1.0).clip(min=1.0)
    size = col("size")
    rows, cols = col("rows"), col("columns")
    spp = np.nan_to_num(col("samples_per_pixel", 1.0), nan=1.0).clip(min=1.0)
    bits = col("bits_allocated")
    ts = (instances["transfer_syntax_uid"].astype(str).to_numpy() if
          "transfer_syntax_uid" in instances else np.full(n, "", dtype=object))
    native = np.isin(ts, list(NATIVE_SYNTAXES))
    with np.errstate(invalid="ignore"):
        need_native = frames * rows * cols * spp * bits / 8.0
        need_encaps = frames * _ITEM_HEADER
        need = np.where(native, need_native, need_encaps)
        fits = ~(need > size)  # NaN (unknown) counts as fitting
    return fits | (frames <= 1)


def finite(value, tag: str, keyword: str, where: str) -> float:
    """``float(value)``, refusing NaN and ±inf with :class:`InvalidDicomError` naming the tag."""
    x = float(value)
    if not math.isfinite(x):
        raise InvalidDicomError(
            f"{where}: {tag} {keyword} is {x} (not a finite number); the attribute is corrupt "
            "and the image cannot be converted to modality values or windowed. Correct or "
            "remove the attribute.")
    return x


def check_finite(values, tag: str, keyword: str, where: str) -> None:
    """Refuse an array (or list) of values holding NaN or ±inf (see :func:`finite`)."""
    if type(values) is list and all(type(v) is float and math.isfinite(v) for v in values):
        return  # the common case, without NumPy's overhead
    arr = np.asarray(values, dtype=np.float64)
    if arr.size and not np.isfinite(arr).all():
        bad = arr[~np.isfinite(arr)][0]
        finite(bad, tag, keyword, where)


def nesting_error(where: str, limit: int | None = MAX_NESTING) -> InvalidDicomError:
    """The error for sequences nested deeper than ``limit`` levels, or (``limit=None``) so
    deep that the parser ran out of Python's recursion limit."""
    depth = f"more than {limit} levels deep" if limit else "too deeply for the parser"
    return InvalidDicomError(
        f"{where}: sequences (SQ) nested {depth}; no real DICOM object nests like this, the "
        "file is corrupt or hostile. It was not read.")
