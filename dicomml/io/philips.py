"""Philips MR private scaling: (2005,xx0E) Scale Slope of the ``Philips MR Imaging DD 001`` block.

Philips MR stores three linear maps of a pixel (dcm2niix's documentation, "Philips intensity
scaling"): the stored value SV, the *display value* DV = SV × RS + RI with the standard
(0028,1053) Rescale Slope RS and (0028,1052) Rescale Intercept RI (what dicomml returns by
default, PS3.3 C.11.1), and the *floating point value* FP = DV / (RS × SS) with the private
Scale Slope SS. dcm2niix writes FP ("precise float") by default; ``read_series(...,
philips_precise=True)`` does the same.
"""

from __future__ import annotations

import math
import struct

__all__ = ["CREATOR", "scale_slope"]

#: The private creator of the block holding the Scale Slope in group 2005.
CREATOR = "Philips MR Imaging DD 001"


def scale_slope(ds) -> float | None:
    """The private (2005,xx0E) Scale Slope of a Philips MR dataset, or None.

    None when the block or element is absent or the value is not a finite non-zero number.
    The value is FL; in Implicit VR files without a private dictionary it is raw bytes
    (4-byte little-endian float).
    """
    for block in range(0x10, 0x100):
        creator = ds.get((0x2005, block))
        if creator is None or str(creator.value).strip() != CREATOR:
            continue
        elem = ds.get((0x2005, (block << 8) | 0x0E))
        if elem is None:
            return None
        value = elem.value
        try:
            if isinstance(value, (bytes, bytearray)):
                value = struct.unpack("<f", bytes(value[:4]))[0]
            elif not isinstance(value, (int, float)):
                value = value[0]
            value = float(value)
        except (TypeError, ValueError, IndexError, struct.error):
            return None
        return value if math.isfinite(value) and value != 0 else None
    return None
