"""Siemens CSA headers: the private (0029,xx10) "CSA Image Header Info" of Siemens MR files.

The CSA header is a little-endian binary blob (whatever the transfer syntax) in one of two
layouts (the format is not part of DICOM; it is documented by its readers, e.g. nibabel's
``nicom.csareader`` and dcm2niix's ``nifti_csa``):

* **CSA2** starts with ``b"SV10"`` and 4 unused bytes, then ``uint32`` number of tags and
  ``uint32`` 77;
* **CSA1** starts directly with the number of tags and 77.

Each tag is a 64-byte NUL-terminated name, ``int32`` VM, a 4-byte VR, ``int32`` SyngoDT,
``int32`` number of items and ``int32`` 77 (or 205); each item is four ``int32`` whose
second is the item's length in bytes (CSA1: the first), followed by the value padded to a
multiple of 4 bytes. Values are text (numbers as decimal strings).

:func:`parse` returns every tag's non-empty item strings; :func:`number_of_images_in_mosaic`
reads the one field the Index needs.
"""

from __future__ import annotations

import struct

__all__ = ["CSAError", "parse", "number_of_images_in_mosaic", "CREATOR"]

#: The private creator of the CSA header block in group 0029.
CREATOR = "SIEMENS CSA HEADER"

_HDR = struct.Struct("<64si4siii")
_ITEM = struct.Struct("<4i")
#: More tags or items than this is not a CSA header but garbage.
_MAX_COUNT = 1000


class CSAError(ValueError):
    """The bytes are not a readable CSA header."""


def parse(raw: bytes) -> dict[str, list[str]]:
    """Parse a CSA header into ``{tag name: [item values as str]}``.

    Parameters
    ----------
    raw : bytes
        The value of (0029,1010) (or (0029,1020) series header) of a Siemens file.

    Raises
    ------
    CSAError
        The bytes do not follow either CSA layout (truncated, counts out of range).
    """
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise CSAError("CSA header: expected bytes")
    raw = bytes(raw)
    csa2 = raw[:4] == b"SV10"
    pos = 8 if csa2 else 0
    try:
        n_tags, _check = struct.unpack_from("<2I", raw, pos)
    except struct.error:
        raise CSAError("CSA header: too short for the tag count") from None
    if not 0 < n_tags <= _MAX_COUNT:
        raise CSAError(f"CSA header: {n_tags} tags is out of range (1..{_MAX_COUNT})")
    pos += 8
    out: dict[str, list[str]] = {}
    try:
        for _ in range(n_tags):
            name, _vm, _vr, _dt, n_items, _xx = _HDR.unpack_from(raw, pos)
            pos += _HDR.size
            if not 0 <= n_items <= _MAX_COUNT:
                raise CSAError(f"CSA header: {n_items} items is out of range")
            values = []
            for _i in range(n_items):
                lengths = _ITEM.unpack_from(raw, pos)
                pos += _ITEM.size
                n = lengths[1] if csa2 else lengths[0]
                if n < 0 or pos + n > len(raw):
                    raise CSAError("CSA header: an item passes the end of the value")
                text = raw[pos:pos + n].split(b"\0", 1)[0].decode("latin-1").strip()
                if text:
                    values.append(text)
                pos += (n + 3) // 4 * 4
            out[name.split(b"\0", 1)[0].decode("latin-1")] = values
    except struct.error:
        raise CSAError("CSA header: truncated") from None
    return out


def number_of_images_in_mosaic(raw: bytes | None) -> int | None:
    """``NumberOfImagesInMosaic`` of a CSA image header, or None when absent or unreadable."""
    if not raw:
        return None
    try:
        values = parse(raw).get("NumberOfImagesInMosaic")
    except CSAError:
        return None
    if not values:
        return None
    try:
        n = int(float(values[0]))
    except ValueError:
        return None
    return n if n > 0 else None
