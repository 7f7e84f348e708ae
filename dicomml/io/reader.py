"""``read_image``: one instance with its pixels in modality units, in this process or isolated.

The top of the single-image read: :func:`dicomml.io.in_process.read_in_process` decodes
here; :func:`dicomml.io.isolated.read_image_isolated` runs the same in a worker process of
:mod:`dicomml.parallel`, so that a codec that aborts costs the file, not the caller.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from dicomml.io.isolated import read_image_isolated
from dicomml.io.in_process import read_in_process
from dicomml.io.types import Image

__all__ = ["read_image"]


def read_image(path: str | os.PathLike, *, frames: int | Iterable[int] | None = None,
               modality_lut: bool | None = None, isolate: bool = False,
               decoders: Sequence[str] | None = None, timeout: float | None = None,
               stored_values: bool = False) -> Image:
    """Read one instance (single- or multi-frame) with its pixels in modality units.

    Parameters
    ----------
    path : str or os.PathLike
        A DICOM file. It is opened read-only and never modified.
    frames : int or iterable of int, optional
        0-based frame indices to decode (default: all frames).
    modality_lut : bool or None
        ``True``: the modality transform must be applied (raise
        :class:`~dicomml.errors.MissingAttributeError` if the file has none);
        ``None`` (default): apply it if present; ``False``: never (stored values as float32).
    isolate : bool
        Decode in a child process (default False: in this process). Some codecs are C
        libraries that abort the whole process on a corrupt stream (e.g. GDCM on a JPEG
        Baseline file with a few bad bytes: SIGABRT, no exception). With ``isolate=True`` such
        a crash raises :class:`~dicomml.errors.DecoderCrashedError` naming the file and its
        (0002,0010) Transfer Syntax UID; the caller survives. For many files use
        :func:`dicomml.io.read_images`.
    decoders : sequence of str, optional
        pydicom decoding plugins to try, in this order (e.g. ``("pylibjpeg", "gdcm")``).
        Default: the ``DICOMML_DECODERS`` environment variable (comma-separated) if set,
        else every installed plugin with GDCM last. GDCM is never tried after another
        plugin found the stream corrupt (it may abort the process on such streams).
    timeout : float, optional
        With ``isolate=True``: seconds before a stuck decoder is killed (then
        :class:`~dicomml.errors.DecoderCrashedError` too). Default: no limit.
    stored_values : bool
        False (default): ``pixels`` are ``float32`` modality values. True: keep the stored
        integers (int8 to uint16) where they map to the modality values exactly in
        ``float32`` — grayscale, no (0028,3000) Modality LUT Sequence, one rescale for every
        frame read, integer slope and intercept with results below 2**24
        (:func:`dicomml.io.pixels.exact_in_float32`); ``Image.stored_values`` then says so
        and :func:`dicomml.io.modality_values` gives the ``float32`` values, bit for bit
        the default read. Anything else is read as by default (``stored_values`` False):
        check the flag. Half the memory of a 16-bit image, and no pass writing ``float32``
        values that a consumer such as :class:`dicomml.preprocess.Pipeline` (which
        converts each row as it windows it) does not need.

    Returns
    -------
    Image
        ``pixels`` float32 (frames, rows, columns) or (frames, rows, columns, 3) for colour
        (the stored integers with ``stored_values=True`` where exact).

    Raises
    ------
    NotDicomError, InvalidDicomError, NoPixelDataError, MissingAttributeError,
    UnsupportedTransferSyntaxError, DecodeError
        Each naming the file and the attribute.
    DecoderCrashedError
        ``isolate=True`` and the decoder killed its process (or ran past ``timeout``).

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> img = read_image(get_testdata_file("CT_small.dcm", download=False))
    >>> img.pixels.shape, img.pixels.dtype.name, img.modality
    ((1, 128, 128), 'float32', 'CT')
    """
    if isolate:
        return read_image_isolated(path, frames=frames, modality_lut=modality_lut,
                                   decoders=decoders, timeout=timeout,
                                   stored_values=stored_values)
    return read_in_process(path, frames=frames, modality_lut=modality_lut, decoders=decoders,
                           stored_values=stored_values)
