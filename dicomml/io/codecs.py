"""Which transfer syntaxes can be decoded here, and which package would decode the others.

pydicom 3 decodes compressed (7FE0,0010) Pixel Data through plugins (pylibjpeg,
python-gdcm, pyjpegls, Pillow...). When none of the plugins for a transfer syntax
(0002,0010) is installed, :func:`check_decodable` raises
:class:`~dicomml.errors.UnsupportedTransferSyntaxError` naming the syntax and the
packages to install, instead of letting a bare ``RuntimeError`` escape from deep inside
pydicom. :func:`plugins_that_decode` tells which installed plugins really decode a file.
Importing this module silences pydicom's ERROR traceback for a plugin that fails before a
later one decodes the frame (:func:`quiet_plugin_fallbacks`).

References: PS3.5 Section 10 and Annex A (transfer syntaxes), PS3.6 Table A-1 (UIDs).
"""

from __future__ import annotations

from dataclasses import dataclass

from dicomml.errors import UnsupportedTransferSyntaxError
from dicomml.io.uids import NATIVE_SYNTAXES, TS_DEFLATED_LE

__all__ = [
    "TransferSyntaxInfo",
    "TRANSFER_SYNTAXES",
    "NATIVE_TRANSFER_SYNTAXES",
    "transfer_syntax_name",
    "candidate_packages",
    "decoder_status",
    "check_decodable",
    "plugins_that_decode",
    "quiet_plugin_fallbacks",
]


@dataclass(frozen=True)
class TransferSyntaxInfo:
    """One transfer syntax: its PS3.6 name and the PyPI packages whose pydicom plugin decodes it.

    ``packages`` is empty for syntaxes that pydicom decodes without a plugin (native) and for
    those no Python plugin decodes at all (video, JPIP: see ``note``).
    """

    uid: str
    name: str
    packages: tuple[str, ...] = ()
    note: str = ""


_JPEG = ("pylibjpeg pylibjpeg-libjpeg", "python-gdcm", "pillow")
_JPEG_LOSSLESS = ("pylibjpeg pylibjpeg-libjpeg", "python-gdcm")
_JPEG_LS = ("pyjpegls", "pylibjpeg pylibjpeg-libjpeg", "python-gdcm")
_J2K = ("pylibjpeg pylibjpeg-openjpeg", "python-gdcm", "pillow")
_HTJ2K = ("pylibjpeg pylibjpeg-openjpeg",)
_RLE = ("pylibjpeg pylibjpeg-rle",)
_VIDEO = "video: extract the frames with a video tool (e.g. ffmpeg) first"

_TABLE = [
    ("1.2.840.10008.1.2", "Implicit VR Little Endian", ()),
    ("1.2.840.10008.1.2.1", "Explicit VR Little Endian", ()),
    ("1.2.840.10008.1.2.1.99", "Deflated Explicit VR Little Endian", ()),
    ("1.2.840.10008.1.2.2", "Explicit VR Big Endian", ()),
    ("1.2.840.10008.1.2.4.50", "JPEG Baseline (Process 1)", _JPEG),
    ("1.2.840.10008.1.2.4.51", "JPEG Extended (Process 2 and 4)", _JPEG),
    ("1.2.840.10008.1.2.4.57", "JPEG Lossless, Non-Hierarchical (Process 14)", _JPEG_LOSSLESS),
    ("1.2.840.10008.1.2.4.70",
     "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1])",
     _JPEG_LOSSLESS),
    ("1.2.840.10008.1.2.4.80", "JPEG-LS Lossless Image Compression", _JPEG_LS),
    ("1.2.840.10008.1.2.4.81", "JPEG-LS Lossy (Near-Lossless) Image Compression", _JPEG_LS),
    ("1.2.840.10008.1.2.4.90", "JPEG 2000 Image Compression (Lossless Only)", _J2K),
    ("1.2.840.10008.1.2.4.91", "JPEG 2000 Image Compression", _J2K),
    ("1.2.840.10008.1.2.4.92",
     "JPEG 2000 Part 2 Multi-component Image Compression (Lossless Only)", ()),
    ("1.2.840.10008.1.2.4.93", "JPEG 2000 Part 2 Multi-component Image Compression", ()),
    ("1.2.840.10008.1.2.4.201", "High-Throughput JPEG 2000 Image Compression (Lossless Only)",
     _HTJ2K),
    ("1.2.840.10008.1.2.4.202",
     "High-Throughput JPEG 2000 with RPCL Options Image Compression (Lossless Only)", _HTJ2K),
    ("1.2.840.10008.1.2.4.203", "High-Throughput JPEG 2000 Image Compression", _HTJ2K),
    ("1.2.840.10008.1.2.5", "RLE Lossless", _RLE),
    ("1.2.840.10008.1.2.4.100", "MPEG2 Main Profile / Main Level", ()),
    ("1.2.840.10008.1.2.4.101", "MPEG2 Main Profile / High Level", ()),
    ("1.2.840.10008.1.2.4.102", "MPEG-4 AVC/H.264 High Profile / Level 4.1", ()),
    ("1.2.840.10008.1.2.4.103", "MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1", ()),
    ("1.2.840.10008.1.2.4.104", "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video", ()),
    ("1.2.840.10008.1.2.4.105", "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 3D Video", ()),
    ("1.2.840.10008.1.2.4.106", "MPEG-4 AVC/H.264 Stereo High Profile / Level 4.2", ()),
    ("1.2.840.10008.1.2.4.107", "HEVC/H.265 Main Profile / Level 5.1", ()),
    ("1.2.840.10008.1.2.4.108", "HEVC/H.265 Main 10 Profile / Level 5.1", ()),
    ("1.2.840.10008.1.2.4.94", "JPIP Referenced", ()),
    ("1.2.840.10008.1.2.4.95", "JPIP Referenced Deflate", ()),
    ("1.2.840.10008.1.2.4.110", "JPEG XL Lossless", ()),
    ("1.2.840.10008.1.2.4.111", "JPEG XL JPEG Recompression", ()),
    ("1.2.840.10008.1.2.4.112", "JPEG XL", ()),
    ("1.2.840.10008.1.2.8.1", "Deflated Image Frame Compression", ()),
]

_NOTES = {
    **{uid: _VIDEO for uid, *_ in _TABLE if uid.startswith("1.2.840.10008.1.2.4.10")},
    "1.2.840.10008.1.2.4.94": "JPIP: the pixel data lives on a JPIP server, not in the file",
    "1.2.840.10008.1.2.4.95": "JPIP: the pixel data lives on a JPIP server, not in the file",
}

#: UID -> :class:`TransferSyntaxInfo` for every transfer syntax of PS3.6 Table A-1 that can
#: carry pixel data.
TRANSFER_SYNTAXES: dict[str, TransferSyntaxInfo] = {
    uid: TransferSyntaxInfo(uid, name, pk, _NOTES.get(uid, "")) for uid, name, pk in _TABLE
}

#: Uncompressed transfer syntaxes (PS3.5 Section 8.1.1 / A.1-A.3); pydicom needs no plugin.
NATIVE_TRANSFER_SYNTAXES = NATIVE_SYNTAXES | {TS_DEFLATED_LE}


def transfer_syntax_name(uid: str) -> str:
    """Return the PS3.6 name of transfer syntax ``uid`` (the UID itself when unknown).

    Examples
    --------
    >>> transfer_syntax_name("1.2.840.10008.1.2.4.90")
    'JPEG 2000 Image Compression (Lossless Only)'
    >>> transfer_syntax_name("1.2.3")
    '1.2.3'
    """
    info = TRANSFER_SYNTAXES.get(str(uid))
    return info.name if info else str(uid)


def candidate_packages(uid: str) -> tuple[str, ...]:
    """PyPI packages (any one suffices) whose pydicom plugin decodes transfer syntax ``uid``."""
    info = TRANSFER_SYNTAXES.get(str(uid))
    return info.packages if info else ()


def decoder_status(uid: str) -> tuple[bool, list[str]]:
    """Ask pydicom whether any installed plugin decodes ``uid``.

    Returns
    -------
    available : bool
        True when at least one decoding plugin's dependencies are installed.
    missing : list of str
        ``pydicom.pixels.get_decoder(uid).missing_dependencies``: one line per plugin that
        is not usable (``"gdcm - requires gdcm"``). Empty for a syntax pydicom has no
        decoder for at all.
    """
    from pydicom.pixels import get_decoder

    try:
        decoder = get_decoder(str(uid))
    except NotImplementedError:
        return False, []
    return bool(decoder.is_available), list(decoder.missing_dependencies)


def check_decodable(uid: str, path: str | None = None) -> None:
    """Raise if no installed pydicom plugin decodes transfer syntax ``uid``.

    Parameters
    ----------
    uid : str
        (0002,0010) Transfer Syntax UID of the file.
    path : str, optional
        The file, for the message.

    Raises
    ------
    UnsupportedTransferSyntaxError
        Naming the syntax (name and UID) and the package(s) to install, or saying that no
        Python decoder exists for it.
    """
    uid = str(uid)
    if uid in NATIVE_TRANSFER_SYNTAXES:
        return
    available, missing = decoder_status(uid)
    if available:
        return
    where = f"{path}: " if path else ""
    name = transfer_syntax_name(uid)
    info = TRANSFER_SYNTAXES.get(uid)
    packages = candidate_packages(uid)
    if packages:
        choices = " or ".join(f"'pip install {p}'" for p in packages)
        how = f"install a decoder: {choices}"
        if missing:
            how += " (pydicom reports: " + "; ".join(missing) + ")"
    elif info and info.note:
        how = f"no Python pixel decoder exists for it ({info.note})"
    else:
        how = ("no pydicom decoder exists for it; convert the file to an uncompressed "
               "transfer syntax first (e.g. dcmtk 'dcmdjpeg' / 'gdcmconv --raw')")
    raise UnsupportedTransferSyntaxError(
        f"{where}cannot decode (7FE0,0010) Pixel Data: transfer syntax (0002,0010) "
        f"'{name}' ({uid}) is not supported by the installed plugins; {how}.")


def plugins_that_decode(path: str, frame: int = 0, *, isolate: bool = True,
                        timeout: float = 60.0, executor=None) -> tuple[list[str], list[str]]:
    """Try every installed pydicom plugin on one frame of ``path``.

    The trials run in a child process of :mod:`dicomml.parallel` (``isolate=True``, the
    default), because a plugin can abort or panic on a corrupt stream; a frame whose declared
    size is above the decoding budget (:func:`dicomml.io.guards.check_decode_budget`) is not
    tried. Large elements are not read (``defer_size``). ``executor``: a process pool of
    :mod:`dicomml.parallel` to run the trials in (kept open by the caller; ``timeout`` is
    then its own ``item_timeout``); default a pool of one process, closed at the end.

    Returns
    -------
    ok : list of str
        The plugins that decoded the frame (empty for native syntaxes: no plugin needed).
    failed : list of str
        ``"plugin: reason"`` for each installed plugin that raised, or one line saying why
        nothing was tried (over the budget, the trial process crashed or timed out).
    """
    item = (str(path), int(frame))
    if not isolate:
        return plugin_trials([item])[0]
    from dicomml.parallel import WorkerCrashed, get_executor

    own = executor is None
    ex = get_executor("processes", workers=1, item_timeout=timeout) if own else executor
    try:
        for _, result in ex.map_chunks(plugin_trials, [[item]]):
            if isinstance(result, WorkerCrashed):
                return [], [f"a decoder crashed or hung the trial process ({result})"]
            if isinstance(result, list):
                return result[0]
            return [], [f"the trial failed ({result})"]
    finally:
        if own:
            ex.close()
    return [], []


def plugin_trials(items: list) -> list:
    """Worker function of :func:`plugins_that_decode`: ``[(path, frame)]`` -> ``[(ok, failed)]``."""
    return [_plugin_trial(path, frame) for path, frame in items]


def _plugin_trial(path: str, frame: int) -> tuple[list[str], list[str]]:
    from dicomml.io._read_dataset import quiet_pydicom

    with quiet_pydicom():  # each failure is a reason here, not an ERROR record with a traceback
        return _try_plugins(path, frame)


def _try_plugins(path: str, frame: int) -> tuple[list[str], list[str]]:
    import warnings

    import pydicom
    from pydicom.pixels import get_decoder, pixel_array

    from dicomml.errors import FATAL, DicommlError
    from dicomml.io.guards import DEFER_SIZE, check_decode_budget

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True, defer_size=DEFER_SIZE)
        uid = str(ds.file_meta.get("TransferSyntaxUID", ""))
        if uid in NATIVE_TRANSFER_SYNTAXES or not uid:
            return [], []
        try:
            plugins = sorted(get_decoder(uid).available_plugins)
        except NotImplementedError:
            return [], []
        check_decode_budget(ds, path, 1, uid)
    except DicommlError as e:
        return [], [str(e)]
    except BaseException as e:  # noqa: BLE001 - a header pydicom cannot parse is a reason
        if isinstance(e, FATAL):
            raise
        return [], [f"the header cannot be read ({type(e).__name__})"]
    ok, failed = [], []
    for name in plugins:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pixel_array(ds, index=frame, decoding_plugin=name)
        except BaseException as e:  # noqa: BLE001 - each plugin raises its own types (a panic too)
            if isinstance(e, FATAL):
                raise
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
            reason = lines[-1] if lines else type(e).__name__
            failed.append(reason if reason.startswith(f"{name}:") else f"{name}: {reason}")
        else:
            ok.append(name)
    return ok, failed


class _PluginFallbackFilter:
    """Drop pydicom's ERROR traceback for a plugin that failed before another one is tried.

    When every plugin fails, pydicom raises a ``RuntimeError`` listing each plugin's error,
    so nothing is lost; the tracebacks stay visible with DEBUG logging.
    """

    def filter(self, record) -> bool:
        import logging

        if record.exc_info and record.levelno >= logging.ERROR \
                and not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return False
        return True


def quiet_plugin_fallbacks() -> None:
    """Install :class:`_PluginFallbackFilter` on pydicom's decoder logger (once)."""
    import logging

    logger = logging.getLogger("pydicom.pixels.decoders.base")
    if not any(isinstance(f, _PluginFallbackFilter) for f in logger.filters):
        logger.addFilter(_PluginFallbackFilter())


quiet_plugin_fallbacks()
