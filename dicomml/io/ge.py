"""GE MR private diffusion b-value: (0043,xx39) of the ``GEMS_PARM_01`` block.

GE MR (DV/MR750 and later) keeps the b-value of a diffusion image in the private element
(0043,1039) "Slop_int_6" (IS, four values, e.g. ``1000000750\\8\\0\\0``): the first value
is the b-value in s/mm², with a bias of 10⁹ added on some software versions; dcm2niix reads
it as the first value modulo 10⁹ (its ``set_bValGE``, issue 602), and so does dicomml. The
standard (0018,9087) Diffusion b-value takes precedence where a file has it.
"""

from __future__ import annotations

import mmap
import os

from dicomml.io.walker import Fallback, NestingTooDeep, Reader, Truncated, dataset_start, walk

__all__ = ["CREATOR", "BVALUE_TAG", "BVALUE_BIAS", "b_value", "b_value_of", "b_value_of_file"]

#: The private creator of the (0043,10xx) block.
CREATOR = "GEMS_PARM_01"
#: (0043,1039), with the block at (0043,0010).
BVALUE_TAG = 0x00431039
#: What some GE versions add to the b-value (dcm2niix: value % 1000000000).
BVALUE_BIAS = 1_000_000_000


def b_value(first: int | float | None) -> float | None:
    """The b-value (s/mm²) of the first value of (0043,1039), or None."""
    if first is None:
        return None
    try:
        return float(int(first) % BVALUE_BIAS)
    except (TypeError, ValueError, OverflowError):
        return None


def b_value_of(ds) -> float | None:
    """The GE private b-value of a pydicom dataset: (0043,1039) when (0043,0010) is
    ``GEMS_PARM_01``, else None (a dataset without private elements gives None)."""
    get = getattr(ds, "private_block", None) and ds.get
    if get is None:
        return None
    creator = get(0x00430010)
    if creator is None or str(creator.value).strip() != CREATOR:
        return None
    elem = get(BVALUE_TAG)
    if elem is None:
        return None
    value = elem.value
    if isinstance(value, (bytes, bytearray)):  # implicit VR without a private dictionary
        try:
            value = value.decode("ascii").split("\\")[0].strip()
        except UnicodeDecodeError:
            return None
    elif not isinstance(value, (str, int, float)):
        value = value[0] if len(value) else None
    return b_value(value)


def b_value_of_file(path: str | os.PathLike) -> float | None:
    """:func:`b_value_of` read from the file by :func:`dicomml.io.walker.walk` (its header up
    to (0043,1039) only, no pydicom): for a file that the fast reader parsed without its
    private elements. None where the walker does not follow the file."""
    keep = {0x00430010: None, BVALUE_TAG: None}
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            pos, explicit = dataset_start(mm)
            walk(Reader.in_memory(mm), pos, explicit, BVALUE_TAG, keep)
            creator, value = keep[0x00430010], keep[BVALUE_TAG]
            if creator is None or value is None:
                return None
            if bytes(creator[1]).decode("latin-1").strip(" \x00") != CREATOR:
                return None
            first = bytes(value[1]).decode("ascii").split("\\")[0].strip(" \x00")
    except (OSError, ValueError, Fallback, Truncated, NestingTooDeep):
        return None
    return b_value(first) if first else None
