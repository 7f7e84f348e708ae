"""Siemens CSA headers: the private (0029,xx10) / (0029,xx20) binary elements.

Siemens MR writes two private elements in the ``SIEMENS CSA HEADER`` creator block of group
0x0029: the *image* header ((0029,1010) CSA Image Header Info) and the *series* header
((0029,1020) CSA Series Header Info). Their value is a little-endian binary table of named
tags, in one of two layouts:

* **CSA2** (syngo MR VB and later): starts with ``b"SV10"`` and 4 unused bytes, then
  ``uint32 n_tags``, ``uint32 unused``. Each tag is a 64-byte NUL-terminated name,
  ``int32 vm``, a 4-byte VR, ``int32 syngo datatype``, ``int32 n_items``, ``int32 unused``,
  then ``n_items`` items of four ``int32`` (the second is the value length) followed by the
  value, padded to 4 bytes.
* **CSA1** (older): the same without the ``SV10`` prefix; an item's length is its first
  ``int32`` minus the ``n_items`` of the table's second tag (the layout nibabel and dcm2niix
  decode).

Values are NUL-terminated strings; tags of VR ``DS``/``FD``/``FL`` become floats and
``IS``/``SL``/``SS``/``UL``/``US`` ints. The tags read elsewhere in dicomml are
``NumberOfImagesInMosaic`` (mosaic tiles), ``SliceNormalVector`` (mosaic slice direction),
``B_value`` and ``DiffusionGradientDirection`` (diffusion).

Only :func:`parse` and :func:`csa_header` raise on malformed input: :class:`CSAError`, an
:class:`~dicomml.errors.InvalidDicomError` naming what is wrong.
"""

from __future__ import annotations

import functools
import struct

from dicomml.errors import InvalidDicomError

__all__ = ["CSAError", "CREATOR", "parse", "csa_header", "csa_value", "number_of_images_in_mosaic",
           "mosaic_images", "image_type_values", "CSA_IMAGE", "CSA_SERIES"]

#: Element offsets (low byte) of the two headers inside the ``SIEMENS CSA HEADER`` block.
CSA_IMAGE = 0x10
CSA_SERIES = 0x20
#: The private creator of the CSA header block in group 0029.
CREATOR = "SIEMENS CSA HEADER"
#: More tags or items than this is a corrupt header (real ones hold ~100 tags, ≤ 6 items).
_MAX_COUNT = 1000
_FLOAT_VRS = {"DS", "FD", "FL"}
_INT_VRS = {"IS", "SL", "SS", "UL", "US"}


class CSAError(InvalidDicomError):
    """The bytes are not a readable CSA header (truncated, counts out of range)."""


def _text(raw: bytes) -> str:
    """The bytes up to the first NUL, as Latin-1 (CSA strings are not padded otherwise)."""
    return raw.split(b"\0", 1)[0].decode("latin-1")


def parse(data: bytes) -> dict[str, list]:
    """Decode one CSA header value into ``{tag name: [values]}``.

    Parameters
    ----------
    data : bytes
        The value of (0029,xx10) or (0029,xx20).

    Returns
    -------
    dict
        Tag name -> list of values (float, int or str by the tag's VR); tags without a value
        map to an empty list (empty items are dropped).

    Raises
    ------
    CSAError
        (an :class:`~dicomml.errors.InvalidDicomError`) Truncated data, implausible counts
        or item lengths.

    Examples
    --------
    >>> import struct
    >>> item = struct.pack("<4i", 4, 4, 77, 4) + b"2.5\\0"
    >>> tag = (b"B_value".ljust(64, b"\\0") + struct.pack("<i4s3i", 1, b"DS", 3, 1, 77)
    ...        + item)
    >>> parse(b"SV10\\4\\3\\2\\1" + struct.pack("<2I", 1, 77) + tag)
    {'B_value': [2.5]}
    """
    data = bytes(data)
    csa2 = data[:4] == b"SV10"
    ptr = 8 if csa2 else 0
    out: dict[str, list] = {}
    try:
        n_tags, _ = struct.unpack_from("<2I", data, ptr)
        ptr += 8
        if not 0 < n_tags <= _MAX_COUNT:
            raise CSAError(f"CSA header: implausible number of tags {n_tags}")
        first_n_items = 0
        for tag_no in range(n_tags):
            name, vm, vr, _, n_items, _ = struct.unpack_from("<64si4s3i", data, ptr)
            ptr += 84
            name, vr = _text(name).strip(), _text(vr).strip()
            if not 0 <= n_items <= _MAX_COUNT:
                raise CSAError(f"CSA header: tag {name!r} has {n_items} items")
            if tag_no == 1:
                first_n_items = n_items
            n_values = vm if vm > 0 else n_items
            values: list = []
            for item_no in range(n_items):
                x0, x1, _, _ = struct.unpack_from("<4i", data, ptr)
                ptr += 16
                length = x1 if csa2 else x0 - first_n_items
                if length < 0 or ptr + length > len(data):
                    if csa2:
                        raise CSAError(f"CSA header: item {item_no} of tag {name!r} "
                                                f"runs past the end ({length} bytes)")
                    break
                raw = data[ptr:ptr + length]
                ptr += length + (-length % 4)
                text = _text(raw)
                if item_no < n_values and text:
                    values.append(_convert(text, vr))
            out[name] = values
    except struct.error as e:
        raise CSAError(f"CSA header truncated ({len(data)} bytes): {e}") from None
    return out


def _convert(text: str, vr: str):
    try:
        if vr in _FLOAT_VRS:
            return float(text)
        if vr in _INT_VRS:
            return int(float(text))
    except ValueError:
        pass
    return text


def csa_header(ds, which: int = CSA_IMAGE) -> dict[str, list] | None:
    """The parsed CSA image (``which=CSA_IMAGE``) or series (``CSA_SERIES``) header of a dataset.

    The element is located through its ``SIEMENS CSA HEADER`` private creator (PS3.5 7.8.1),
    so a block reserved at another offset than 0x10 is found too. Returns None when the
    dataset has no such element; raises :class:`~dicomml.errors.InvalidDicomError` when the
    element is present but cannot be decoded.
    """
    for block in range(0x10, 0x100):
        creator = ds.get((0x0029, block))
        if creator is None:
            continue
        if str(creator.value).strip() != CREATOR:
            continue
        elem = ds.get((0x0029, (block << 8) | which))
        if elem is None or not elem.value:
            return None
        value = elem.value
        return dict(_parsed(value if isinstance(value, bytes) else bytes(value)))
    return None


@functools.lru_cache(maxsize=16)
def _parsed(data: bytes) -> dict[str, list]:
    """:func:`parse` of the last few headers: one read of a mosaic asks its file's header
    three times (tile layout, b-value, slice normal; ~0.1 ms each). Callers get a copy of
    the dict; its lists are shared and never changed."""
    return parse(data)


def csa_value(header: dict | None, name: str, default=None):
    """First value of tag ``name`` in a parsed header (``default`` when absent or empty)."""
    if not header:
        return default
    values = header.get(name) or []
    return values[0] if values else default


def number_of_images_in_mosaic(raw: bytes | None) -> int | None:
    """``NumberOfImagesInMosaic`` of a raw CSA image header value, or None when absent,
    unreadable or not positive (for the scanner, which reads the raw element)."""
    if not raw:
        return None
    try:
        n = csa_value(parse(raw), "NumberOfImagesInMosaic")
    except CSAError:
        return None
    try:
        n = int(n)
    except (TypeError, ValueError):
        return None
    return n if n > 0 else None


def image_type_values(ds) -> list[str]:
    """(0008,0008) Image Type as a list of upper-case strings (empty when absent)."""
    value = ds.get("ImageType")
    if value is None:
        return []
    values = [value] if isinstance(value, (str, bytes)) else list(value)
    return [str(v).strip().upper() for v in values]


def mosaic_images(ds) -> int:
    """(CSA image header) NumberOfImagesInMosaic of a Siemens mosaic, else 0.

    0 also when the dataset is not a mosaic (no ``MOSAIC`` in (0008,0008) Image Type), has no
    CSA header, or the header cannot be decoded: this is a cheap classifier for the Index;
    :func:`dicomml.io.read_series` reports an unreadable header of a mosaic as an issue.
    """
    if "MOSAIC" not in image_type_values(ds):
        return 0
    try:
        n = csa_value(csa_header(ds, CSA_IMAGE), "NumberOfImagesInMosaic", 0)
    except InvalidDicomError:
        return 0
    try:
        return max(0, int(n))
    except (TypeError, ValueError):
        return 0
