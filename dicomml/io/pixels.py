"""Read one DICOM instance into an :class:`~dicomml.io.types.Image` in modality units.

Order of operations (PS3.3 C.7.6.3, C.11.1, PS3.4 N.2.1.1):

1. Stored values from (7FE0,0010) Pixel Data. Native little-endian integer data takes a fast
   path (``numpy.frombuffer`` on the element value, then the same unused-bit correction as
   pydicom: shift left then right by (0028,0100) Bits Allocated - (0028,0101) Bits Stored,
   which sign-extends when (0028,0103) Pixel Representation is 1). Everything else
   (compressed, big endian, 1-bit, float, YBR_FULL_422) goes through pydicom's decoders.
   YBR_FULL / YBR_FULL_422 are converted to RGB as pydicom does (``as_rgb``); PALETTE COLOR
   is converted to RGB with the (0028,1201-1203) palette (pydicom ``apply_color_lut``).
2. Padding mask from the stored values: (0028,0120) Pixel Padding Value and (0028,0121)
   Pixel Padding Range Limit (PS3.3 C.7.5.1.1.2).
3. Modality LUT: (0028,3000) Modality LUT Sequence, or (0028,1053) Rescale Slope and
   (0028,1052) Rescale Intercept; for Enhanced multi-frame objects the (0028,9145) Pixel
   Value Transformation Sequence of the shared or per-frame functional groups
   (PS3.3 C.7.6.16.2.9). The result is ``float32``: exactly pydicom's ``apply_modality_lut``
   (computed in float64) rounded to float32.

No VOI LUT / window and no MONOCHROME1 inversion are applied; the windows and VOI LUTs are
returned for the next stage.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from struct import unpack

import numpy as np

from dicomml.errors import (
    FATAL,
    ConfigError,
    DecodeError,
    InvalidDicomError,
    MissingAttributeError,
    NoPixelDataError,
    UnsupportedTransferSyntaxError,
)
from dicomml.io._read_dataset import describe_error, shown_cs, shown_uid
from dicomml.io.codecs import check_decodable, transfer_syntax_name
from dicomml.io.functional_groups import per_frame_groups, shared_groups
from dicomml.io.guards import check_decode_budget, check_finite, finite
from dicomml.io.types import VOILUT, Image, VOILUTFunction, Window
from dicomml.io.uids import TS_EXPLICIT_BE

__all__ = ["image_from_dataset", "decode_stored", "plugin_order",
           "corrupt_value_error", "frame_rescale", "to_modality", "padding_mask",
           "windows_of", "voi_luts_of", "frame_geometry", "n_frames", "rescale_into",
           "exact_in_float32", "modality_values",
           "check_pixel_module", "clear_unused_bits", "select_frames",
           "transfer_syntax"]

_NATIVE_LE = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99"})
_IMPLICIT_LE = "1.2.840.10008.1.2"
_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


# ----------------------------------------------------------------------------- public API
def corrupt_value_error(where, e: BaseException) -> InvalidDicomError:
    """The :class:`InvalidDicomError` for an unexpected error while interpreting a data set
    (a corrupt value that pydicom could parse but that makes no sense); no value is quoted."""
    return InvalidDicomError(
        f"{where}: cannot interpret the data set ({describe_error(e)}); an attribute of the "
        "Image Pixel module ((0028,xxxx)) or the pixel data is probably corrupt. Re-export "
        "or re-transfer the file.")


def image_from_dataset(ds, path: str | None = None, *, frames=None,
                       modality_lut: bool | None = None,
                       decoders: Sequence[str] | None = None,
                       stored: np.ndarray | None = None,
                       stored_values: bool = False, stored_owned: bool = False) -> Image:
    """Build an :class:`Image` from an already parsed pydicom Dataset (see
    :func:`dicomml.io.read_image`, also for ``stored_values``).

    ``stored``: the stored values of every frame, (frames, rows, columns), already read
    (by :mod:`dicomml.io.direct_read`; grayscale, photometric as in ``ds``, unused high bits
    cleared); default: decoded from ``ds`` by :func:`decode_stored`. Nothing of it is kept
    (the Image's arrays are new) unless ``stored_owned``: ``stored`` is then the caller's
    new array, which the Image may hold as its ``pixels`` (no copy).
    """
    given = stored is not None
    n_total = n_frames(ds, path)
    index = _frame_index(frames, n_total, path)
    if stored is None:
        stored, pi = decode_stored(ds, path, frames=index, decoders=decoders)
    else:
        stored, pi = select_frames(stored, index), str(ds.PhotometricInterpretation).strip()
    color = stored.ndim == 4
    idx = range(n_total) if index is None else index
    first = idx[0] if len(idx) else 0
    rescale = None if color else frame_rescale(ds, idx, where=path)
    mask = None if color else padding_mask(stored, ds)
    slope, intercept, rtype = (rescale[0][0], rescale[1][0], rescale[2]) if rescale else \
        (1.0, 0.0, None)
    keep = stored_values and _exact_stored(stored, ds, rescale, modality_lut)
    if keep:
        pixels = np.array(stored) if given and not stored_owned else \
            np.ascontiguousarray(stored)
    else:
        pixels = to_modality(stored, ds, rescale, modality_lut=modality_lut, path=path)
    positions, orientations, spacing, thickness = frame_geometry(ds, idx)
    extra = {}
    if rescale is not None and len(rescale[0]) > 1 and (np.ptp(rescale[0]) or
                                                        np.ptp(rescale[1])):
        extra["frame_rescale"] = (rescale[0].copy(), rescale[1].copy())
    if pi != ds.get("PhotometricInterpretation"):
        extra["stored_photometric_interpretation"] = ds.get("PhotometricInterpretation")
    return Image(
        pixels=pixels, path=path, photometric_interpretation=pi, padding_mask=mask,
        windows=windows_of(ds, first, where=path), voi_luts=voi_luts_of(ds, first),
        modality=str(ds.get("Modality") or "") or None,  # a text even under a wrong VR
        sop_class_uid=_str(ds.get("SOPClassUID")),
        sop_instance_uid=_str(ds.get("SOPInstanceUID")),
        series_instance_uid=_str(ds.get("SeriesInstanceUID")),
        study_instance_uid=_str(ds.get("StudyInstanceUID")),
        pixel_spacing=spacing, positions=positions, orientations=orientations,
        slice_thickness=thickness, bits_stored=_int(ds.get("BitsStored")),
        rescale_slope=float(slope), rescale_intercept=float(intercept), rescale_type=rtype,
        transfer_syntax_uid=_str(transfer_syntax(ds)),
        instance_number=_int(ds.get("InstanceNumber")), stored_values=keep, extra=extra)


def _exact_stored(stored: np.ndarray, ds, rescale, modality_lut) -> bool:
    """Whether ``stored`` may stand for its modality values (``read_image(stored_values=
    True)``): grayscale integers, no Modality LUT Sequence, one rescale for every frame, and
    ``float32(stored)·slope + intercept`` exact (:func:`exact_in_float32`)."""
    if stored.ndim != 3 or modality_lut is False:
        return False
    if ds.get("ModalityLUTSequence"):
        return False
    if rescale is None:
        return not modality_lut and exact_in_float32(stored.dtype, 1.0, 0.0)
    slopes, intercepts, _ = rescale
    if len(slopes) > 1 and (np.ptp(slopes) or np.ptp(intercepts)):
        return False
    return len(slopes) > 0 and exact_in_float32(stored.dtype, slopes[0], intercepts[0])


# ----------------------------------------------------------------------------- decoding
def decode_stored(ds, path: str | None = None, *, frames: list[int] | None = None,
                  decoders: Sequence[str] | None = None):
    """Return ``(stored, photometric)``: the stored values of the requested frames.

    ``stored`` has shape (frames, rows, columns) or (frames, rows, columns, 3), the integer
    dtype of the pixel data (float for (7FE0,0008)/(7FE0,0009)); ``photometric`` is the
    (0028,0004) value that describes it (``"RGB"`` after YBR or palette conversion).
    Identical to pydicom's ``Dataset.pixel_array`` (native data is read with
    ``numpy.frombuffer``; the result is bit-identical). ``decoders``: see
    :func:`dicomml.io.read_image`.
    """
    where = path or shown_uid(ds.get("SOPInstanceUID"), "<dataset>")
    keyword = check_pixel_module(ds, where)
    ts = transfer_syntax(ds)
    pi = str(ds.PhotometricInterpretation).strip()
    n = n_frames(ds, where)
    if (ts in _NATIVE_LE and keyword == "PixelData" and ds.BitsAllocated in (8, 16, 32)
            and (ds.SamplesPerPixel == 1 or (ds.SamplesPerPixel == 3 and ds.BitsAllocated == 8))
            and pi != "YBR_FULL_422"):
        arr = _native_fast(ds, where, n, frames)
        if pi == "YBR_FULL":
            from pydicom.pixels import convert_color_space

            arr, pi = convert_color_space(arr, "YBR_FULL", "RGB"), "RGB"
    else:
        arr, pi = _decode_pydicom(ds, where, ts, n, frames, keyword, decoders)
    if pi == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        try:
            arr, pi = apply_color_lut(arr, ds), "RGB"
        except (ValueError, AttributeError, KeyError) as e:
            raise InvalidDicomError(
                f"{where}: PALETTE COLOR image whose (0028,1201-1203) Palette Color Lookup "
                f"Table cannot be applied ({e}).") from e
    return arr, pi


def check_pixel_module(ds, where: str) -> str:
    """The keyword of the pixel data element of ``ds`` after checking the Image Pixel module
    (PS3.3 C.7.6.3) attributes that decoding needs; NoPixelDataError or
    MissingAttributeError naming ``where`` and the attribute."""
    keyword = next((k for k in _PIXEL_TAGS if k in ds), None)
    if keyword is None:
        raise NoPixelDataError(
            f"{where}: no (7FE0,0010) Pixel Data (SOP Class {shown_uid(ds.get('SOPClassUID'))},"
            f" Modality {shown_cs(ds.get('Modality'))}); this object is not an image "
            "(SR, RT structure set, presentation state, key object...). Skip it.")
    for kw, tag in (("Rows", "(0028,0010)"), ("Columns", "(0028,0011)"),
                    ("BitsAllocated", "(0028,0100)"), ("SamplesPerPixel", "(0028,0002)"),
                    ("PhotometricInterpretation", "(0028,0004)")):
        if ds.get(kw) in (None, ""):
            raise MissingAttributeError(
                f"{where}: {tag} {kw} is missing or empty; the Image Pixel module is "
                "incomplete and the pixel data cannot be interpreted.")
    if keyword == "PixelData" and ds.get("PixelRepresentation") is None:
        raise MissingAttributeError(
            f"{where}: (0028,0103) Pixel Representation is missing; the pixel data cannot "
            "be interpreted as signed or unsigned.")
    return keyword


def _expected_bytes(ds, n: int) -> int:
    bits = int(ds.BitsAllocated)
    count = int(ds.Rows) * int(ds.Columns) * int(ds.SamplesPerPixel) * n
    if str(ds.PhotometricInterpretation).strip() == "YBR_FULL_422":
        count = count // 3 * 2
    return (count * bits + 7) // 8


def _truncated(ds, where: str, actual: int, expected: int, n: int) -> InvalidDicomError:
    return InvalidDicomError(
        f"{where}: (7FE0,0010) pixel data is {actual} bytes, expected {expected} for "
        f"{ds.Rows}×{ds.Columns}×{n}×{ds.BitsAllocated} bits"
        f"{'×' + str(ds.SamplesPerPixel) + ' samples' if ds.SamplesPerPixel != 1 else ''}; "
        "the file is truncated. Re-export or re-transfer it.")


def _native_fast(ds, where: str, n: int, frames: list[int] | None) -> np.ndarray:
    bits, stored_bits = int(ds.BitsAllocated), int(ds.get("BitsStored") or ds.BitsAllocated)
    signed = int(ds.PixelRepresentation) == 1
    rows, cols, spp = int(ds.Rows), int(ds.Columns), int(ds.SamplesPerPixel)
    buf = ds.PixelData
    expected = _expected_bytes(ds, n)
    if len(buf) < expected:
        raise _truncated(ds, where, len(buf), expected, n)
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
    per_frame = rows * cols * spp
    arr = np.frombuffer(buf, dtype=dtype, count=per_frame * n)
    arr = select_frames(arr.reshape(n, per_frame), frames)
    arr = clear_unused_bits(arr, bits, stored_bits, signed)
    if spp == 1:
        return arr.reshape(-1, rows, cols)
    if int(ds.get("PlanarConfiguration", 0) or 0) == 1:
        return arr.reshape(-1, spp, rows, cols).transpose(0, 2, 3, 1).copy()
    return arr.reshape(-1, rows, cols, spp)


def select_frames(arr: np.ndarray, frames: list[int] | None) -> np.ndarray:
    """``arr[frames]`` (frames on the first axis; all when ``frames`` is None): a view when
    the frames are consecutive and ascending (no copy of the pixel data), else a copy."""
    if frames is None:
        return arr
    if frames and frames == list(range(frames[0], frames[0] + len(frames))):
        return arr[frames[0]:frames[0] + len(frames)]
    return arr[frames]


def clear_unused_bits(arr: np.ndarray, bits: int, stored_bits: int, signed: bool,
                      *, in_place: bool = False) -> np.ndarray:
    """``arr`` with the bits above (0028,0101) Bits Stored masked (unsigned) or sign-extended
    (signed), as pydicom does (PS3.5 8.1.1: the unused high bits are undefined); ``arr``
    itself when every value already fits. ``in_place``: write into ``arr`` (writable)."""
    if stored_bits < bits and not _within_bits(arr, stored_bits, signed):
        shift = bits - stored_bits
        arr = np.left_shift(arr, shift, out=arr if in_place else None)
        np.right_shift(arr, shift, out=arr)
    return arr


def _within_bits(arr: np.ndarray, stored_bits: int, signed: bool) -> bool:
    """True when every value already fits in ``stored_bits`` (the shift would not change it)."""
    if arr.size == 0:
        return True
    if signed:
        lo, hi = -(1 << (stored_bits - 1)), (1 << (stored_bits - 1)) - 1
        return bool(arr.min() >= lo and arr.max() <= hi)
    return bool(arr.max() < (1 << stored_bits))


def plugin_order(available: Sequence[str], decoders: Sequence[str] | None = None) -> list[str]:
    """The pydicom decoding plugins to try, in order (see ``decoders`` in
    :func:`dicomml.io.read_image`).

    ``decoders`` (or, when None, the comma-separated ``DICOMML_DECODERS`` environment
    variable) lists plugin names; those not installed for the transfer syntax are left out.
    Default: ``available`` with "gdcm" moved last.
    """
    if decoders is None:
        env = os.environ.get("DICOMML_DECODERS", "").strip()
        decoders = [d for d in (x.strip() for x in env.split(",")) if d] if env else None
    if decoders is None:
        return [p for p in available if p != "gdcm"] + [p for p in available if p == "gdcm"]
    if isinstance(decoders, str):
        decoders = [decoders]
    return [d for d in decoders if d in available]


def _decode_pydicom(ds, where: str, ts: str, n: int, frames, keyword: str, decoders=None):
    from pydicom.pixels import get_decoder
    from pydicom.pixels.utils import as_pixel_options

    check_decodable(ts, where)
    uid_name = f"'{transfer_syntax_name(ts)}' ({ts})"
    if keyword == "PixelData":
        from pydicom.uid import UID

        if not UID(ts).is_encapsulated:
            expected = _expected_bytes(ds, n)
            if len(ds.PixelData) < expected:
                raise _truncated(ds, where, len(ds.PixelData), expected, n)
        else:
            _check_codestreams(ds, where, n, uid_name)
            check_decode_budget(ds, where, n if frames is None else len(frames), uid_name)
    ds = _with_transfer_syntax(ds, ts)
    decoder = get_decoder(ts)
    opts = as_pixel_options(ds)
    # One plugin at a time. GDCM is tried last, and only when the other plugins do not
    # support the stream (NotImplementedError) or none is installed: GDCM aborts the whole
    # process (SIGABRT) on some corrupt streams where the other plugins raise.
    available = list(decoder.available_plugins)
    plugins = plugin_order(available, decoders) if available else []
    if available and not plugins:
        raise UnsupportedTransferSyntaxError(
            f"{where}: none of the decoders {list(decoders or [])} chosen (decoders= or "
            f"DICOMML_DECODERS) decodes {uid_name}; installed for it: {available}.")
    plugins = plugins or [""]  # native syntaxes: pydicom's built-in decoder, no plugin
    errors: list[str] = []
    corrupt = False
    result = None
    for plugin in plugins:
        if plugin == "gdcm" and corrupt:
            break
        try:
            result = _decode_with(decoder, ds, frames, n, plugin, opts)
            break
        except NotImplementedError as e:
            errors.append(f"{plugin}: {str(e).strip()[:200]}")
        except BaseException as e:  # noqa: BLE001 - codecs raise anything (a Rust codec
            if isinstance(e, FATAL):  # panics with a BaseException); re-raised typed
                raise
            corrupt = True
            errors.append(f"{plugin}: {type(e).__name__}: {str(e).strip()[:200]}")
    if result is None:
        if not corrupt:
            raise UnsupportedTransferSyntaxError(
                f"{where}: cannot decode (7FE0,0010) Pixel Data with transfer syntax "
                f"{uid_name}: no installed plugin supports this stream ({'; '.join(errors)}).")
        raise DecodeError(
            f"{where}: decoding (7FE0,0010) Pixel Data ({uid_name}) failed "
            f"({'; '.join(errors)}). The compressed stream is corrupt or truncated; "
            "re-export the file or decode it with another tool (gdcmconv --raw).")
    arr, meta = result
    pi = str(meta.get("photometric_interpretation", ds.PhotometricInterpretation)).strip()
    if arr.ndim == 3 and int(ds.SamplesPerPixel) > 1:
        arr = arr[np.newaxis]
    return arr, pi


def _codestream_size(frag: bytes) -> tuple[int, int] | None:
    """(height, width) declared by a JPEG / JPEG-LS SOF or a JPEG 2000 SIZ marker segment at
    the start of ``frag``; None when the fragment starts neither (ISO/IEC 10918-1 B.2.2,
    14495-1 C.2.2, 15444-1 A.5.1)."""
    if frag[:2] == b"\xff\xd8":  # SOI: walk the marker segments up to a SOF
        pos = 2
        while pos + 9 <= len(frag) and pos < 65536:
            if frag[pos] != 0xFF:
                return None
            marker = frag[pos + 1]
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD,
                          0xCE, 0xCF, 0xF7):
                height, width = unpack(">HH", frag[pos + 5:pos + 9])
                return height, width
            pos += 2 + unpack(">H", frag[pos + 2:pos + 4])[0]
        return None
    at = frag.find(b"\xff\x4f\xff\x51", 0, 256)  # SOC + SIZ (raw codestream or in a JP2 box)
    if at < 0 or len(frag) < at + 24:
        return None
    xsiz, ysiz, xo, yo = unpack(">IIII", frag[at + 8:at + 24])
    return max(0, ysiz - yo), max(0, xsiz - xo)


def _check_codestreams(ds, where: str, n: int, uid_name: str) -> None:
    """Refuse encapsulated pixel data whose codestreams declare more than the header.

    A decoder allocates what the codestream's SOF / SIZ marker declares: a corrupted JPEG 2000
    SIZ of 60000×60000 in a 3 kB file made a decoder take 9 GB. Each fragment that starts a
    codestream must declare at most (0028,0010) Rows × (0028,0011) Columns, and there must
    be at least (0028,0008) Number of Frames fragments (PS3.5 A.4: a frame is one or more
    fragments).
    """
    from pydicom.encaps import generate_fragments

    rows, cols = int(ds.Rows), int(ds.Columns)
    count = -1  # the first item is the Basic Offset Table
    try:
        for frag in generate_fragments(ds.PixelData):
            count += 1
            size = _codestream_size(frag) if count else None
            if size is not None and size[0] * size[1] > rows * cols:
                raise DecodeError(
                    f"{where}: the compressed stream ({uid_name}) of fragment {count} declares "
                    f"{size[0]}×{size[1]} pixels but (0028,0010) Rows × (0028,0011) Columns "
                    f"is {rows}×{cols}; the stream or the header is corrupt. The file was not "
                    "decoded (it could need far more memory than the header says).")
    except DecodeError:
        raise
    except Exception as e:  # noqa: BLE001 - pydicom's item parser on corrupt bytes
        raise DecodeError(f"{where}: the encapsulated (7FE0,0010) Pixel Data ({uid_name}) "
                          f"cannot be split into fragments ({describe_error(e)}); the file is "
                          "truncated or corrupt.") from e
    if count < n:
        raise InvalidDicomError(
            f"{where}: (0028,0008) Number of Frames is {n} but the encapsulated (7FE0,0010) "
            f"Pixel Data ({uid_name}) holds only {max(count, 0)} fragment(s); each frame needs "
            "at least one. The file is truncated or the attribute is wrong.")


def _decode_with(decoder, ds, frames, n, plugin, opts):
    if frames is None:
        arr, meta = decoder.as_array(ds, validate=True, decoding_plugin=plugin, **opts)
        if n == 1:
            arr = arr[np.newaxis]
    else:
        parts = [decoder.as_array(ds, index=i, validate=True, decoding_plugin=plugin, **opts)
                 for i in frames]
        arr = np.stack([p[0] for p in parts]) if parts else np.empty((0,))
        meta = parts[0][1] if parts else {}
    return arr, meta


# ----------------------------------------------------------------------------- modality LUT
def frame_rescale(ds, frames: Iterable[int], *, where: str | None = None):
    """Per-frame ``(slopes, intercepts, rescale_type)`` or None when the file has no rescale.

    Reads (0028,1053) Rescale Slope / (0028,1052) Rescale Intercept / (0028,1054) Rescale
    Type from the top level, or for Enhanced objects from the (0028,9145) Pixel Value
    Transformation Sequence of the (5200,9230) Per-Frame or (5200,9229) Shared Functional
    Groups (PS3.3 C.7.6.16.2.9). ``slopes`` and ``intercepts`` are float64 arrays with one
    value per requested frame.

    Raises
    ------
    InvalidDicomError
        A slope or intercept is NaN or infinite (named with its tag; ``where`` names the
        file).
    """
    frames = list(frames)
    where = where or shown_uid(ds.get("SOPInstanceUID"), "<dataset>")
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        s = finite(ds.RescaleSlope, "(0028,1053)", "Rescale Slope", where)
        i = finite(ds.RescaleIntercept, "(0028,1052)", "Rescale Intercept", where)
        return (np.full(len(frames), s), np.full(len(frames), i),
                _str(ds.get("RescaleType")))
    shared = _fg_item(shared_groups(ds), 0,
                      "PixelValueTransformationSequence")
    per = per_frame_groups(ds)
    if shared is None and not (per and _fg_item(per, 0, "PixelValueTransformationSequence")):
        return None
    slopes, intercepts, rtype = [], [], None
    for f in frames:
        item = _fg_item(per, f, "PixelValueTransformationSequence") or shared
        if item is None or "RescaleSlope" not in item or "RescaleIntercept" not in item:
            slopes.append(1.0)
            intercepts.append(0.0)
            continue
        slopes.append(float(item.RescaleSlope))
        intercepts.append(float(item.RescaleIntercept))
        rtype = rtype or _str(item.get("RescaleType"))
    check_finite(slopes, "(0028,1053)", "Rescale Slope (functional groups)", where)
    check_finite(intercepts, "(0028,1052)", "Rescale Intercept (functional groups)", where)
    return np.asarray(slopes), np.asarray(intercepts), rtype


def to_modality(stored: np.ndarray, ds, rescale=None, *, modality_lut: bool | None = None,
                path: str | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Stored values -> float32 modality values (PS3.3 C.11.1).

    The (0028,3000) Modality LUT Sequence takes precedence over rescale, as in pydicom.
    ``rescale`` is :func:`frame_rescale`'s result. Rescale is computed as
    ``float64(stored) * slope + intercept`` and rounded once to float32 (bit-identical to
    pydicom's ``apply_modality_lut`` then ``astype(float32)``); when slope, intercept and
    every stored value are integers whose results are exact in float32 the computation is
    done in float32 directly (same result, less memory traffic).

    ``modality_lut``: True must apply (MissingAttributeError if absent), None if present,
    False never. Colour images (4-D) are returned as float32 unchanged.
    """
    if out is None:
        out = np.empty(stored.shape, dtype=np.float32)
    has_lut = bool(ds.get("ModalityLUTSequence"))
    if modality_lut is False or stored.ndim == 4 or (rescale is None and not has_lut):
        if modality_lut and stored.ndim != 4:
            raise MissingAttributeError(
                f"{path or 'dataset'}: modality_lut=True but the file has neither (0028,3000) "
                "Modality LUT Sequence nor (0028,1052)/(0028,1053) Rescale Intercept/Slope "
                "(nor a (0028,9145) Pixel Value Transformation functional group). Pass "
                "modality_lut=None to read stored values.")
        out[...] = stored
        return out
    if has_lut:
        from pydicom.pixels import apply_modality_lut

        out[...] = apply_modality_lut(stored, ds)
        return out
    slopes, intercepts, _ = rescale
    for k in range(stored.shape[0]):
        rescale_into(stored[k], float(slopes[k]), float(intercepts[k]), out[k], where=path)
    return out


def exact_in_float32(dtype, slope: float, intercept: float) -> bool:
    """Whether ``stored·slope + intercept`` is exact in ``float32`` for every stored value of
    ``dtype``: integers of at most 16 bits, an integer slope and intercept, and results
    below 2**24 in magnitude. Then one ``float32`` multiply and add give the very bits of
    the ``float64`` computation rounded once (:func:`to_modality`)."""
    dtype = np.dtype(dtype)
    slope, intercept = float(slope), float(intercept)
    return dtype.kind in "iu" and dtype.itemsize <= 2 and slope.is_integer() \
        and intercept.is_integer() and abs(slope) * 65536 + abs(intercept) < 2 ** 24


def modality_values(image: Image) -> np.ndarray:
    """``image.pixels`` in modality units, ``float32``: the pixels themselves, or a new array
    from the stored integers of an Image read with ``stored_values=True``
    (:attr:`~dicomml.io.Image.stored_values`)."""
    if not image.stored_values:
        return image.pixels
    out = np.empty(image.pixels.shape, dtype=np.float32)
    rescale_into(image.pixels, image.rescale_slope, image.rescale_intercept, out,
                 where=image.path)
    return out


def rescale_into(src: np.ndarray, slope: float, intercept: float, dst: np.ndarray, *,
                 where: str | None = None) -> None:
    """``dst[...] = src·slope + intercept`` in ``float32``, as :func:`to_modality` computes it
    (in ``float32`` directly where :func:`exact_in_float32`, else in ``float64`` rounded
    once).

    Raises
    ------
    InvalidDicomError
        A result beyond the ``float32`` range (an absurd slope or intercept), instead of
        infinities; ``where`` names the file in the message.
    """
    if exact_in_float32(src.dtype, slope, intercept):
        if slope != 1.0:
            np.multiply(src, np.float32(slope), out=dst, dtype=np.float32)
            dst += np.float32(intercept)  # even 0: −0 (a negative slope) becomes +0 as in float64
        elif intercept != 0.0:  # the cast is exact; then one float32 addition, in one pass
            np.add(src, np.float32(intercept), out=dst, dtype=np.float32)
        else:
            np.copyto(dst, src, casting="unsafe")
        return
    try:
        with np.errstate(over="raise"):  # beyond float32: an error, never a silent inf
            tmp = src.astype(np.float64)
            tmp *= slope
            tmp += intercept
            np.copyto(dst, tmp, casting="same_kind")
    except FloatingPointError:
        raise InvalidDicomError(
            f"{where or 'dataset'}: (0028,1053) Rescale Slope {slope:g} and (0028,1052) "
            f"Rescale Intercept {intercept:g} map stored values beyond the float32 range "
            "(±3.4e38); the rescale is probably corrupt. Fix the file or re-export it; "
            "modality_lut=False reads the stored values.") from None


# ----------------------------------------------------------------------------- padding
def padding_mask(stored: np.ndarray, ds) -> np.ndarray | None:
    """Boolean mask of padding pixels, or None when (0028,0120) Pixel Padding Value is absent.

    PS3.3 C.7.5.1.1.2: the values are *stored* values. Without (0028,0121) Pixel Padding Range
    Limit only the value itself is padding; with it, every stored value between the two
    (inclusive) is padding, whichever is larger (the Padding Value is the lower one for
    MONOCHROME2 and the higher one for MONOCHROME1). Both are US or SS following (0028,0103)
    Pixel Representation; a value read as unsigned for signed data is reinterpreted as two's
    complement of (0028,0100) Bits Allocated.
    """
    if "PixelPaddingValue" not in ds or stored.ndim != 3:
        return None
    bits = int(ds.get("BitsAllocated") or 16)
    signed = int(ds.get("PixelRepresentation") or 0) == 1
    lo = _as_stored(ds.PixelPaddingValue, bits, signed)
    if lo is None:
        return None
    hi = _as_stored(ds.get("PixelPaddingRangeLimit"), bits, signed)
    if hi is None:
        return stored == lo
    lo, hi = min(lo, hi), max(lo, hi)
    return (stored >= lo) & (stored <= hi)


def _as_stored(value, bits: int, signed: bool) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, (bytes, bytearray)):
        fmt = {1: "<B", 2: "<H", 4: "<I"}.get(len(value))
        if fmt is None:
            return None
        value = unpack(fmt, value)[0]
    if not isinstance(value, (int, float, str)) and hasattr(value, "__len__"):
        if not len(value):
            return None
        value = value[0]
    v = int(value)
    if signed and v >= 2 ** (bits - 1) and v < 2 ** bits:
        v -= 2 ** bits
    return v


# ----------------------------------------------------------------------------- VOI
def windows_of(ds, frame: int = 0, *, where: str | None = None) -> tuple[Window, ...]:
    """Every (0028,1050) Window Center / (0028,1051) Window Width pair (PS3.3 C.11.2.1.2).

    With (0028,1055) Window Center & Width Explanation and (0028,1056) VOI LUT Function
    (default ``"LINEAR"``). For Enhanced objects without top-level windows: the (0028,9132)
    Frame VOI LUT Sequence of frame ``frame`` (per-frame) or of the shared functional groups.
    """
    src = ds
    if "WindowCenter" not in ds:
        src = _fg_item(per_frame_groups(ds), frame,
                       "FrameVOILUTSequence") or _fg_item(
            shared_groups(ds), 0, "FrameVOILUTSequence")
        if src is None or "WindowCenter" not in src:
            return ()
    centers = _floats(src.get("WindowCenter"))
    widths = _floats(src.get("WindowWidth"))
    where = where or shown_uid(ds.get("SOPInstanceUID"), "<dataset>")
    check_finite(centers, "(0028,1050)", "Window Center", where)
    check_finite(widths, "(0028,1051)", "Window Width", where)
    expl = src.get("WindowCenterWidthExplanation")
    expl = [] if expl is None else ([str(expl)] if isinstance(expl, str) else
                                    [str(e) for e in expl])
    func = src.get("VOILUTFunction")
    try:
        func = VOILUTFunction.parse(None if func is None else str(func))
    except ConfigError:  # the file's own value: a defect of the file, not of the caller
        raise InvalidDicomError(
            f"{where}: (0028,1056) VOI LUT Function {str(func)!r} is not one of "
            f"{[m.value for m in VOILUTFunction]} (PS3.3 C.11.2.1.3); the file's windows "
            "cannot be applied. Correct the attribute, or remove it (LINEAR)") from None
    out = []
    for k, (c, w) in enumerate(zip(centers, widths)):
        out.append(Window(center=c, width=w, explanation=(expl[k] or None) if k < len(expl)
                          else None, function=func))
    return tuple(out)


def voi_luts_of(ds, frame: int = 0) -> tuple[VOILUT, ...]:
    """The items of the (0028,3010) VOI LUT Sequence (PS3.3 C.11.2.1.1), top level or (for
    Enhanced objects) in the Frame VOI LUT functional group."""
    seq = ds.get("VOILUTSequence")
    if not seq:
        item = _fg_item(per_frame_groups(ds), frame,
                        "FrameVOILUTSequence") or _fg_item(
            shared_groups(ds), 0, "FrameVOILUTSequence")
        seq = item.get("VOILUTSequence") if item is not None else None
    if not seq:
        return ()
    little = _is_little_endian(ds)
    signed = int(ds.get("PixelRepresentation") or 0) == 1
    out = []
    for item in seq:
        desc = [int(v) for v in item.LUTDescriptor]
        n_entries = desc[0] or 65536
        first = desc[1]
        if signed and first >= 32768:
            first -= 65536
        elem = item["LUTData"]
        if elem.VR == "OW" or isinstance(elem.value, (bytes, bytearray)):
            raw = bytes(elem.value)
            data = np.frombuffer(raw, dtype="<u2" if little else ">u2")[:n_entries]
        else:
            vals = elem.value
            data = np.asarray([vals] if isinstance(vals, int) else list(vals))
        out.append(VOILUT(first_mapped=first, bits=desc[2], data=data.astype(np.uint16),
                          explanation=_str(item.get("LUTExplanation"))))
    return tuple(out)


# ----------------------------------------------------------------------------- geometry
def frame_geometry(ds, frames: Iterable[int]):
    """``(positions, orientations, pixel_spacing, slice_thickness)`` for the given frames.

    Positions are (0020,0032) Image Position (Patient) per frame, shape (frames, 3);
    orientations (0020,0037) Image Orientation (Patient), shape (frames, 6). Enhanced objects:
    (0020,9113) Plane Position Sequence and (0020,9116) Plane Orientation Sequence of the
    per-frame or shared functional groups, (0028,9110) Pixel Measures Sequence for spacing and
    thickness (PS3.3 C.7.6.16.2.1-3). Legacy multi-frame with (3004,000C) Grid Frame Offset
    Vector (RT Dose, PS3.3 C.8.8.3.2): position of frame k = IPP + (offset_k - offset_0) *
    normal. A single IPP for a multi-frame object without offsets is repeated. Missing
    geometry gives None.
    """
    frames = list(frames)
    per = per_frame_groups(ds)
    shared = shared_groups(ds)
    spacing = thickness = None
    if per or shared:
        pos, ori = [], []
        shared_p = _fg_item(shared, 0, "PlanePositionSequence")
        shared_o = _fg_item(shared, 0, "PlaneOrientationSequence")
        for f in frames:
            p = _fg_item(per, f, "PlanePositionSequence") or shared_p
            o = _fg_item(per, f, "PlaneOrientationSequence") or shared_o
            pos.append(_floats(p.get("ImagePositionPatient")) if p is not None else [])
            ori.append(_floats(o.get("ImageOrientationPatient")) if o is not None else [])
        pm = _fg_item(per, frames[0] if frames else 0, "PixelMeasuresSequence") or _fg_item(
            shared, 0, "PixelMeasuresSequence")
        if pm is not None:
            spacing = _pair(pm.get("PixelSpacing"))
            thickness = _float(pm.get("SliceThickness"))
        positions = np.asarray(pos, float) if all(len(p) == 3 for p in pos) and pos else None
        orients = np.asarray(ori, float) if all(len(o) == 6 for o in ori) and ori else None
    else:
        ipp = _floats(ds.get("ImagePositionPatient"))
        iop = _floats(ds.get("ImageOrientationPatient"))
        positions = orients = None
        if len(iop) == 6:
            orients = np.array([iop] * len(frames), float).reshape(len(frames), 6)
        if len(ipp) == 3:
            positions = np.array([ipp] * len(frames), float).reshape(len(frames), 3)
            offsets = _floats(ds.get("GridFrameOffsetVector"))
            if orients is not None and len(offsets) == n_frames(ds) and len(offsets) > 1:
                normal = np.cross(orients[0][:3], orients[0][3:])
                off = np.asarray(offsets, float)[frames] - offsets[0]
                positions = positions + off[:, None] * normal[None, :]
    if spacing is None:
        spacing = _pair(ds.get("PixelSpacing")) or _pair(ds.get("ImagerPixelSpacing"))
    if thickness is None:
        thickness = _float(ds.get("SliceThickness"))
    return positions, orients, spacing, thickness


# ----------------------------------------------------------------------------- helpers
def n_frames(ds, where: str | None = None) -> int:
    """(0028,0008) Number of Frames of ``ds`` (1 when absent); InvalidDicomError naming the
    attribute and ``where`` when it is not an integer."""
    try:
        value = ds.get("NumberOfFrames")
        n = int(value or 1)
    except (TypeError, ValueError) as e:
        raise InvalidDicomError(
            f"{where or shown_uid(ds.get('SOPInstanceUID'), 'dataset')}: (0028,0008) Number of "
            f"Frames is not an integer ({e}); the number of frames in the pixel data is "
            "unknown. Fix the attribute (e.g. dcmodify) and read again.") from e
    return max(n, 1)


def _frame_index(frames, n: int, path) -> list[int] | None:
    if frames is None:
        return None
    idx = [int(frames)] if isinstance(frames, (int, np.integer)) else [int(f) for f in frames]
    bad = [f for f in idx if not -n <= f < n]
    if bad:
        raise ConfigError(f"{path}: frame(s) {bad} out of range; (0028,0008) Number of Frames "
                          f"is {n}. Received: frames={frames!r}")
    return [f % n for f in idx]


def transfer_syntax(ds) -> str:
    """(0002,0010) of ``ds``; without file meta, the syntax the data set was parsed with."""
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts:
        return str(ts)
    implicit, little = getattr(ds, "original_encoding", (True, True))
    return _IMPLICIT_LE if implicit else ("1.2.840.10008.1.2.1" if little in (True, None)
                                          else "1.2.840.10008.1.2.2")


def _with_transfer_syntax(ds, ts: str):
    """``ds`` itself when it has (0002,0010), else a shallow copy that has it (pydicom's
    decoders read it from the file meta); the caller's data set is never modified."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("TransferSyntaxUID"):
        return ds
    import copy

    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID

    out = copy.copy(ds)
    new_meta = FileMetaDataset()
    if meta is not None:
        for elem in meta:
            new_meta.add(elem)
    new_meta.TransferSyntaxUID = UID(ts)
    out.file_meta = new_meta
    return out


def _is_little_endian(ds) -> bool:
    return transfer_syntax(ds) != TS_EXPLICIT_BE


def _fg_item(seq, index: int, keyword: str):
    if not seq or index >= len(seq):
        return None
    inner = seq[index].get(keyword)
    return inner[0] if inner else None


def _floats(value) -> list[float]:
    if value is None or value == "":
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    try:
        return [float(v) for v in value]
    except (TypeError, ValueError):
        return []


def _float(value) -> float | None:
    v = _floats(value)
    return v[0] if v else None


def _pair(value) -> tuple[float, float] | None:
    v = _floats(value)
    return (v[0], v[1]) if len(v) >= 2 else None


def _int(value) -> int | None:
    try:
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return None


def _str(value) -> str | None:
    return None if value is None or value == "" else str(value)
