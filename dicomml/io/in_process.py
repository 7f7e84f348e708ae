"""Read one instance in this process: the direct path for native slices, else the whole file.

:func:`read_in_process` is :func:`dicomml.io.read_image` without isolation (and what an
isolated worker of :mod:`dicomml.io.isolated` runs). It chooses once:

1. A one-frame grayscale file in Implicit or Explicit VR Little Endian (PS3.5 A.1, A.2) with
   pixel data of defined length, larger than :data:`dicomml.io.direct_read.HEAD`: its header
   is parsed from the first bytes (:func:`dicomml.io.direct_read.load_head`) and its pixel
   data is read with one ``readinto`` at the known offset into a buffer kept per thread
   (:meth:`~dicomml.io.direct_read.PixelRef.read`, unused high bits cleared in place as
   pydicom does). The file is opened once; no copy of the whole file is made.
2. Anything else (compressed, big endian, multi-frame, colour, small files, a header the fast
   parser declines, pixel data shorter than declared): the whole file through
   :func:`~dicomml.io._read_dataset.load_dataset` and :func:`dicomml.io.pixels.decode_stored`.

Both end in :func:`dicomml.io.pixels.image_from_dataset`: the same modality transform,
padding mask, windows and geometry, so the Image is bit for bit the same either way, and
errors for bad files come from the general path (the direct path declines them). Only the
general path runs pydicom, so only it is wrapped in
:func:`~dicomml.io._read_dataset.quiet_pydicom` (0.03 ms a file the direct path saves).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from dicomml.errors import FATAL, DicommlError
from dicomml.io._read_dataset import load_dataset, quiet_pydicom
from dicomml.io.direct_read import load_head
from dicomml.io.pixels import corrupt_value_error, image_from_dataset
from dicomml.io.types import Image

__all__ = ["read_in_process"]


def read_in_process(path: str | os.PathLike, *, frames: int | Iterable[int] | None = None,
                    modality_lut: bool | None = None,
                    decoders: Sequence[str] | None = None, stored_values: bool = False) -> Image:
    """:func:`dicomml.io.read_image` in this process (what an isolated worker runs too).

    Parameters and errors as :func:`dicomml.io.read_image` (without ``isolate`` and
    ``timeout``).
    """
    path = os.fspath(path)
    stored = None
    try:
        f = open(path, "rb", buffering=0)
    except OSError:
        head = None  # load_dataset raises the error naming the file
    else:
        with f:
            head = load_head(path, f)
            if head is not None:
                # stored values the Image may keep are read into their own array; else
                # into this thread's buffer (used before returning)
                stored = head[1].read(f, new=stored_values)
    if head is not None:  # the fast parser's dataset: pydicom is not involved
        return _image(head[0], path, frames, modality_lut, decoders, stored[None],
                      stored_values, owned=stored_values)
    with quiet_pydicom():
        # an enhanced object's functional groups by the fast parser (the light parser
        # takes the whole object where it can): thousands of elements pydicom would build
        ds, _ = load_dataset(path, frame_groups=True)
        return _image(ds, path, frames, modality_lut, decoders, None, stored_values)


def _image(ds, path, frames, modality_lut, decoders, stored, stored_values,
           owned=False) -> Image:
    try:
        return image_from_dataset(ds, path, frames=frames, modality_lut=modality_lut,
                                  decoders=decoders, stored=stored,
                                  stored_values=stored_values, stored_owned=owned)
    except (DicommlError, IndexError, *FATAL):
        raise
    except BaseException as e:  # noqa: BLE001 - a corrupt value can break any step
        raise corrupt_value_error(path, e) from e
