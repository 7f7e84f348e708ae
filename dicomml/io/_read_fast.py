"""A minimal reader for the common case: native little-endian grayscale DICOM files.

Parsing a whole data set with pydicom costs more than reading the file and converting its
pixels. For files in Implicit or Explicit VR Little Endian (PS3.5 A.1, A.2) whose image is
plain grayscale, :func:`parse_light` walks the top-level elements once with
``struct.unpack_from`` on the file's bytes, decodes only the attributes the reader needs
(the table ``NEEDED``; undefined-length sequences are skipped by the one walker,
:func:`dicomml.io.walker.skip_sequence`, with its VR table), and returns a
:class:`LightDataset` whose ``PixelData`` is a zero-copy ``memoryview`` of the (7FE0,0010) value.

Anything unusual returns None and the caller falls back to pydicom: no 'DICM' prefix,
another transfer syntax, encapsulated or float pixel data, colour, a (0028,3000) Modality LUT
or (0028,3010) VOI LUT Sequence, functional groups (Enhanced objects), a non-default
(0008,0005) Specific Character Set, or any structural surprise (truncated header, bad
lengths). Values are decoded as pydicom decodes them (DS -> float, IS/US -> int,
multi-valued -> list); a test compares both on pydicom's sample files. A file whose header
fits the layout of one parsed before (:mod:`dicomml.io.layout`: the same element headers,
a few lengths aside) is not walked: its elements are where the fit says.
"""

from __future__ import annotations

from struct import error as StructError
from struct import unpack_from

from dicomml.io.functional_groups import (
    DIMENSION_INDEX,
    DIMENSIONS,
    GROUPS_ATTRIBUTE,
    PARSE_ERRORS,
    attach,
    frame_groups_at,
    parse_sequence,
    recall,
    remember,
)
from dicomml.io.layout import Fit, build, fitted, keep, wanted
from dicomml.io.uids import TS_EXPLICIT_LE, TS_IMPLICIT_LE
from dicomml.io.walker import (
    HEAD_EXPLICIT_SW,
    HEAD_IMPLICIT_SW,
    LONG_VRS,
    PIXEL_DATA,
    SHORT_VRS,
    U32,
    UNDEFINED,
    Fallback,
    NestingTooDeep,
    Reader,
    Truncated,
    skip_sequence,
    swap_tag,
)

__all__ = ["LightDataset", "parse_light", "NEEDED", "NestingTooDeep"]

#: tag -> (keyword, VR used to decode the value)
NEEDED: dict[int, tuple[str, str]] = {
    0x00080008: ("ImageType", "CS"),
    0x00080016: ("SOPClassUID", "UI"),
    0x00080032: ("AcquisitionTime", "TM"),
    0x00080018: ("SOPInstanceUID", "UI"),
    0x00080060: ("Modality", "CS"),
    0x00080070: ("Manufacturer", "LO"),
    0x00180050: ("SliceThickness", "DS"),
    0x00180081: ("EchoTime", "DS"),
    0x00180086: ("EchoNumbers", "IS"),
    0x00180088: ("SpacingBetweenSlices", "DS"),
    0x00181060: ("TriggerTime", "DS"),
    0x00189087: ("DiffusionBValue", "FD"),
    0x00189089: ("DiffusionGradientOrientation", "FD"),
    0x00181164: ("ImagerPixelSpacing", "DS"),
    0x0020000D: ("StudyInstanceUID", "UI"),
    0x0020000E: ("SeriesInstanceUID", "UI"),
    0x00200011: ("SeriesNumber", "IS"),
    0x00200012: ("AcquisitionNumber", "IS"),
    0x00200013: ("InstanceNumber", "IS"),
    0x00200032: ("ImagePositionPatient", "DS"),
    0x00200037: ("ImageOrientationPatient", "DS"),
    0x00200052: ("FrameOfReferenceUID", "UI"),
    0x00200100: ("TemporalPositionIdentifier", "IS"),
    0x00280002: ("SamplesPerPixel", "US"),
    0x00280004: ("PhotometricInterpretation", "CS"),
    0x00280006: ("PlanarConfiguration", "US"),
    0x00280008: ("NumberOfFrames", "IS"),
    0x00280010: ("Rows", "US"),
    0x00280011: ("Columns", "US"),
    0x00280030: ("PixelSpacing", "DS"),
    0x00280100: ("BitsAllocated", "US"),
    0x00280101: ("BitsStored", "US"),
    0x00280102: ("HighBit", "US"),
    0x00280103: ("PixelRepresentation", "US"),
    0x00280120: ("PixelPaddingValue", "US"),  # US or SS: reinterpreted by the caller
    0x00280121: ("PixelPaddingRangeLimit", "US"),
    0x00281050: ("WindowCenter", "DS"),
    0x00281051: ("WindowWidth", "DS"),
    0x00281052: ("RescaleIntercept", "DS"),
    0x00281053: ("RescaleSlope", "DS"),
    0x00281054: ("RescaleType", "LO"),
    0x00281055: ("WindowCenterWidthExplanation", "LO"),
    0x00281056: ("VOILUTFunction", "CS"),
    0x3004000C: ("GridFrameOffsetVector", "DS"),
}

#: Elements whose presence needs pydicom's full reader.
_DISQUALIFY = frozenset({
    0x00283000, 0x00283010, 0x52009229, 0x52009230, 0x7FE00008, 0x7FE00009, 0x00281201,
    0x00281202, 0x00281203, 0x00281221, 0x00281222, 0x00281223,
})
_CHARSETS_OK = frozenset({"", "ISO_IR 100", "ISO_IR 6", "ISO 2022 IR 6", "ISO_IR 192"})


_NEEDED_SW = {swap_tag(t): v for t, v in NEEDED.items()}
_DISQUALIFY_SW = frozenset(swap_tag(t) for t in _DISQUALIFY)
_PIXEL_SW = swap_tag(PIXEL_DATA)
_GROUPS_SW = frozenset({swap_tag(0x52009229), swap_tag(0x52009230)})
_CHARSET_SW = swap_tag(0x00080005)
#: What :func:`_parse` does with an element, by swapped tag: a NEEDED ``(keyword, VR)``,
#: or one of the markers below (anything else is skipped).
_DISQUALIFIES, _PIXEL, _CHARSET = object(), object(), object()
_SPECIAL_SW: dict = {**_NEEDED_SW, **dict.fromkeys(_DISQUALIFY_SW, _DISQUALIFIES),
                     _PIXEL_SW: _PIXEL, _CHARSET_SW: _CHARSET}
#: With ``frame_groups=True`` also the (0020,9222) Dimension Index Sequence, and the private
#: creators whose blocks dicomml reads from an enhanced object's full header: (0029,0010)
#: (the Siemens CSA header, :mod:`dicomml.io.csa`) and (0043,0010) (GE's b-value,
#: :mod:`dicomml.io.ge`). An enhanced object with either goes to pydicom.
_DIMENSIONS, _PRIVATE_READ = object(), object()
_SPECIAL_GROUPS_SW: dict = {**_SPECIAL_SW, swap_tag(DIMENSIONS): _DIMENSIONS,
                            swap_tag(0x00290010): _PRIVATE_READ,
                            swap_tag(0x00430010): _PRIVATE_READ}
_EXPLICIT_HEAD = HEAD_EXPLICIT_SW.unpack_from
_IMPLICIT_HEAD = HEAD_IMPLICIT_SW.unpack_from
_U32 = U32.unpack_from


class _Meta(dict):
    """Stands in for pydicom's FileMetaDataset: ``meta.get("TransferSyntaxUID")``."""


class LightDataset:
    """The few attributes the reader needs, with pydicom-compatible ``get``/``in``/attributes.

    Values are decoded lazily from the file's bytes on first access. ``pixel_offset`` and
    ``pixel_length`` are where the (7FE0,0010) value starts in the bytes parsed and the
    length its header declares (``PixelData`` holds less when only a head was parsed).
    """

    __slots__ = ("_data", "_raw", "_values", "file_meta", "PixelData", "original_encoding",
                 "pixel_offset", "pixel_length", GROUPS_ATTRIBUTE)

    def __init__(self, data: bytes, raw: dict[str, tuple[int, int, str]], ts: str,
                 pixel: memoryview, pixel_offset: int, pixel_length: int):
        self._data = data
        self._raw = raw
        self._values: dict[str, object] = {}
        self.file_meta = _Meta(TransferSyntaxUID=ts)
        self.PixelData = pixel
        self.pixel_offset, self.pixel_length = pixel_offset, pixel_length
        self.original_encoding = (ts == TS_IMPLICIT_LE, True)
        # no groups attached (functional_groups.attach sets them): None, as the readers'
        # getattr(ds, GROUPS_ATTRIBUTE, None) takes it, without an AttributeError raised
        # through __getattr__ each time (five times per classic file read)
        setattr(self, GROUPS_ATTRIBUTE, None)

    def __contains__(self, keyword: str) -> bool:
        return keyword in self._raw or (keyword == "PixelData")

    def get(self, keyword: str, default=None):
        value = self._values.get(keyword, _MISSING)  # no KeyError raised: ~10× cheaper
        if value is not _MISSING:
            return value
        if keyword == "PixelData":
            return self.PixelData
        raw = self._raw.get(keyword)
        if raw is None:
            return default
        start, length, vr = raw
        value = _decoded(self._data[start:start + length], vr)
        if keyword in _US_OR_SS and self.get("PixelRepresentation") == 1:
            # (0028,0120)/(0028,0121) are SS when (0028,0103) is 1, as pydicom resolves them.
            n = raw[1] // 2
            vals = unpack_from(f"<{n}h", self._data, raw[0]) if n else ()
            value = vals[0] if n == 1 else (list(vals) if n else None)
        self._values[keyword] = value
        return value

    def __getattr__(self, keyword: str):
        if keyword.startswith("_"):
            raise AttributeError(keyword)
        value = self.get(keyword, _MISSING)
        if value is _MISSING:
            raise AttributeError(f"'LightDataset' has no attribute {keyword!r}")
        return value


_MISSING = object()
_US_OR_SS = frozenset({"PixelPaddingValue", "PixelPaddingRangeLimit"})

#: Decoded values by (raw bytes, VR), shared by the files read in this process: the slices of
#: a series repeat most of them (UIDs of the series and study, orientation, spacing, rescale,
#: windows). Multi-valued values are kept as tuples and handed out as new lists. Raw values
#: over :data:`_CACHED_BYTES` bytes are not kept; the cache is emptied at :data:`_CACHE_LIMIT`.
_CACHE: dict[tuple[bytes, str], object] = {}
_CACHED_BYTES = 256
_CACHE_LIMIT = 4096


def _decoded(raw: bytes, vr: str):
    """:func:`_decode` of ``raw``, remembered in :data:`_CACHE`."""
    key = (raw, vr)
    value = _CACHE.get(key, _MISSING)
    if value is _MISSING:
        value = _decode(raw, vr)
        if len(raw) <= _CACHED_BYTES:
            if len(_CACHE) >= _CACHE_LIMIT:
                _CACHE.clear()
            _CACHE[key] = tuple(value) if type(value) is list else value
        return value
    return list(value) if type(value) is tuple else value


def _decode(raw: bytes, vr: str):
    length = len(raw)
    if vr == "US":
        n = length // 2
        vals = unpack_from(f"<{n}H", raw) if n else ()
        return vals[0] if n == 1 else (list(vals) if n else None)
    if vr == "FD":
        if length % 8:
            raise ValueError(f"an FD value of {length} bytes (not a multiple of 8)")
        n = length // 8
        vals = unpack_from(f"<{n}d", raw) if n else ()
        return vals[0] if n == 1 else (list(vals) if n else None)
    text = raw.decode("latin-1").rstrip("\x00 ").lstrip(" ") if vr != "UI" else \
        raw.decode("ascii", "replace").rstrip("\x00 ")
    if text == "":
        return ""
    if vr in ("DS", "IS"):
        parts = [p.strip() for p in text.split("\\")]
        conv = float if vr == "DS" else _int
        vals = [conv(p) if p else None for p in parts]
        return vals[0] if len(vals) == 1 else vals
    if vr in ("CS", "LO"):
        parts = [p.strip() for p in text.split("\\")]
        return parts[0] if len(parts) == 1 else parts
    return text


def _int(s: str) -> int:
    try:
        return int(s)
    except ValueError:
        return int(float(s))


def parse_light(data: bytes, groups_at: list | None = None, *, frame_groups: bool = False,
                decline_classes: frozenset = frozenset(),
                memo: tuple | None = None, size: int | None = None) -> LightDataset | None:
    """Parse ``data`` (a whole Part 10 file) or return None when pydicom must do it.

    ``groups_at``: a list that receives ``(offset, explicit)`` of the (5200,9229) /
    (5200,9230) Functional Groups element when that is what sends the file to pydicom (the
    caller's :func:`~dicomml.io.functional_groups.strip_groups` then starts there instead of
    walking the header again).

    ``frame_groups``: an enhanced multi-frame object is taken too. Its Shared and Per-Frame
    Functional Groups are parsed by :func:`~dicomml.io.functional_groups.read_groups` and
    attached (:func:`~dicomml.io.functional_groups.per_frame_groups` and ``shared_groups``
    give them; the dataset has no ``PerFrameFunctionalGroupsSequence`` element), and the
    (0020,9222) Dimension Index Sequence is parsed with the pointers of its items
    (:data:`~dicomml.io.functional_groups.DIMENSION_INDEX`). Anything those parsers do not
    follow, and an object with a (0029,0010) or (0043,0010) private block (read from the
    full header), returns None as before.

    ``memo``: the :func:`~dicomml.io.functional_groups.file_key` of the file ``data`` was
    read from: its groups are taken from the scan's or an earlier read's parse in this
    process (:func:`~dicomml.io.functional_groups.recall`: where they start where this walk
    finds them, with the same bytes) and a new parse is remembered.

    ``decline_classes``: SOP Class UIDs for which None is returned as soon as the file meta's
    (0002,0002) Media Storage SOP Class UID names one of them (a caller that only takes
    single-frame objects skips the walk of an enhanced header).

    ``size``: the size of the file ``data`` is the start of (default ``len(data)``). A file
    that fits the :class:`~dicomml.io.layout.Layout` of an earlier one (the same element
    headers, lengths aside) is not walked: its elements are where the fit says
    (:func:`~dicomml.io.layout.fitted`); a flat header is read by building its layout
    (:func:`~dicomml.io.layout.build`), for the files after it.

    Raises
    ------
    NestingTooDeep
        Undefined-length sequences nested more than ``MAX_NESTING`` levels (the caller
        reports it; pydicom would only hit Python's recursion limit).
    """
    try:
        fit = fitted(data)
        if fit is None and wanted():
            layout = build(data, len(data) if size is None else size)
            keep(layout)
            if layout is not None:
                fit = Fit(layout, [])
        if fit is not None:
            return _from_fit(data, fit, decline_classes)
        return _parse(data, groups_at, frame_groups, decline_classes, memo)
    except NestingTooDeep:
        raise
    except (StructError, ValueError, IndexError, UnicodeDecodeError, Fallback, Truncated):
        return None


def _parse(data: bytes, groups_at: list | None = None, frame_groups: bool = False,
           decline_classes: frozenset = frozenset(),
           memo: tuple | None = None) -> LightDataset | None:
    if len(data) < 144 or data[128:132] != b"DICM":
        return None
    pos = 132
    ts = None
    end = len(data)
    # File meta information, group 0002, always Explicit VR Little Endian (PS3.10 7.1).
    while pos + 8 <= end:
        group, elem = unpack_from("<HH", data, pos)
        if group != 0x0002:
            break
        vr = data[pos + 4:pos + 6]
        if vr in LONG_VRS:
            length = unpack_from("<I", data, pos + 8)[0]
            hdr = 12
        else:
            length = unpack_from("<H", data, pos + 6)[0]
            hdr = 8
        if elem == 0x0010:
            ts = data[pos + hdr:pos + hdr + length].decode("ascii").rstrip("\x00 ")
        elif elem == 0x0002 and decline_classes and data[pos + hdr:pos + hdr + length].decode(
                "ascii", "replace").rstrip("\x00 ") in decline_classes:
            return None
        pos += hdr + length
    if ts not in (TS_EXPLICIT_LE, TS_IMPLICIT_LE):
        return None
    explicit = ts == TS_EXPLICIT_LE
    raw: dict[str, tuple[int, int, str]] = {}
    pixel = None
    # Tags are compared as read by one "<I" (element << 16 | group): no per-element swap.
    # One look-up per element in ``special`` (needed, disqualifying, Pixel Data, character
    # set): the common element, which is none of them, costs that look-up and its jump.
    special = _SPECIAL_GROUPS_SW if frame_groups else _SPECIAL_SW
    long_vrs, short_vrs = LONG_VRS, SHORT_VRS
    groups = dimensions = None
    private_read = False
    reader = None  # the walker's view of the same bytes, to skip sequences
    head = _EXPLICIT_HEAD if explicit else _IMPLICIT_HEAD
    u32 = _U32
    while pos + 8 <= end:
        if explicit:
            tag, vr, length = head(data, pos)
            if vr in short_vrs:  # a 16-bit length: never undefined
                spec = special.get(tag)
                if spec is None:
                    pos += 8 + length
                    continue
                start = pos + 8
            elif vr in long_vrs:
                length = u32(data, pos + 8)[0]
                start = pos + 12
                spec = special.get(tag)
            else:
                return None
        else:
            tag, length = head(data, pos)
            vr = None
            start = pos + 8
            spec = special.get(tag)
        if spec is None:
            if length != UNDEFINED:
                pos = start + length
                continue
        elif spec is _DISQUALIFIES:
            if tag in _GROUPS_SW:
                if frame_groups and groups is None and not private_read:
                    got = recall(memo, data, pos) if memo is not None else None
                    if got is None:
                        got = frame_groups_at(data, pos, explicit)
                        if got is not None and memo is not None:
                            remember(memo, data, *got)
                    if got is not None:
                        groups, pos = got[0], got[1][1]
                        continue
                if groups_at is not None:
                    groups_at.append((pos, explicit))
            return None
        elif spec is _PRIVATE_READ:
            private_read = True
            if groups is not None:
                return None  # after the groups (pydicom reads the block)
            spec = None
            if length != UNDEFINED:
                pos = start + length
                continue
        elif spec is _DIMENSIONS:
            try:
                items, pos = parse_sequence(data, start, length, explicit,
                                            wanted=DIMENSION_INDEX)
            except PARSE_ERRORS:
                return None
            dimensions = (start, length, items)
            continue
        if length == UNDEFINED:
            if spec is _PIXEL or vr == b"UN":
                return None  # encapsulated, or UN holding implicit VR (PS3.5 6.2.2)
            if reader is None:
                reader = Reader.in_memory(data)
            pos = skip_sequence(reader, start, explicit, pos)
            continue
        if spec is _PIXEL:
            pixel = memoryview(data)[start:start + length]
            pixel_at = (start, length)
            break
        if spec is _CHARSET:
            cs = data[start:start + length].decode("ascii", "replace").strip(" \x00")
            if not _charset_ok(cs):
                return None
        else:
            raw[spec[0]] = (start, length, spec[1])
        pos = start + length
    if pixel is None:
        return None
    if dimensions is not None:
        raw["DimensionIndexSequence"] = (dimensions[0], dimensions[1], "SQ")
    light = _grayscale(LightDataset(data, raw, ts, pixel, *pixel_at))
    if light is None:
        return None
    if dimensions is not None:
        light._values["DimensionIndexSequence"] = dimensions[2]
    if groups is not None:
        attach(light, groups)
    return light


def _charset_ok(cs: str) -> bool:
    """Whether (0008,0005) ``cs`` decodes as the light parser decodes text."""
    return cs.split("\\")[0].strip() in _CHARSETS_OK and "\\" not in cs.strip("\\")


def _grayscale(light: LightDataset) -> LightDataset | None:
    """``light`` when its image is plain grayscale, else None (pydicom reads it)."""
    if light.get("SamplesPerPixel") != 1 or light.get("PhotometricInterpretation") not in (
            "MONOCHROME1", "MONOCHROME2") or light.get("BitsAllocated") not in (8, 16, 32):
        return None
    return light


def _from_fit(data, fit: Fit, decline_classes: frozenset) -> LightDataset | None:
    """What :func:`_parse` returns for ``data``, whose elements are where ``fit`` says
    (no walk)."""
    layout = fit.layout
    view = layout.views.get("light")
    if view is None:
        view = layout.views["light"] = _light_view(data, layout)
    raw, needed, charset_ok, sop = view
    if not charset_ok:
        return None
    if fit.changes:
        ks, keywords, vrs = needed
        raw = {kw: (s, n, vr) for kw, (s, n), vr in zip(keywords, fit.spans(ks), vrs)}
    else:
        raw = dict(raw)
    if decline_classes and sop is not None:
        (start, length), = fit.spans([sop])
        if bytes(data[start:start + length]).decode("ascii", "replace").rstrip(
                "\x00 ") in decline_classes:
            return None
    start, length = fit.pixel
    return _grayscale(LightDataset(data, raw, layout.ts,
                                   memoryview(data)[start:start + length], start, length))


def _light_view(data, layout) -> tuple:
    """The light parser's reading of ``layout``: ``(raw, (element numbers, keywords, VRs)
    of NEEDED, character set ok, the element number of (0002,0002))``; the character set's
    bytes are compared by the layout."""
    needed = [(k, NEEDED[t][0], NEEDED[t][1]) for k, t in enumerate(layout.tags)
              if t in NEEDED]
    raw = {kw: (layout.starts[k], layout.lengths[k], vr) for k, kw, vr in needed}
    needed = tuple(zip(*needed)) if needed else ((), (), ())
    charset_ok = True
    k = layout.number.get(0x00080005)
    if k is not None:
        start = layout.starts[k]
        charset_ok = _charset_ok(bytes(data[start:start + layout.lengths[k]]).decode(
            "ascii", "replace").strip(" \x00"))
    return raw, needed, charset_ok, layout.number.get(0x00020002)
