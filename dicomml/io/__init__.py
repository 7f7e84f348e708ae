"""dicomml.io: find files, scan headers into an index, read images and series.

Never imports TensorFlow. Names are loaded on first use so that importing the package
is cheap in worker processes.
"""

from __future__ import annotations

from dicomml._lazy import lazy_exports

from dicomml.io.types import (VOILUT, Image, SeriesIssue, VOILUTFunction, Volume, VolumeInfo,
                              Window)

_LAZY = {
    "scan": "dicomml.io.scanner",
    "ScanResult": "dicomml.io.scanner",
    "Index": "dicomml.io.index",
    "open_index": "dicomml.io.index",
    "default_db_path": "dicomml.io.index",
    "read_image": "dicomml.io.reader",
    "read_images": "dicomml.io.isolated",
    "modality_values": "dicomml.io.pixels",
    "read_series": "dicomml.io.volume",
    "resample": "dicomml.io.volume",
    "to_sitk": "dicomml.io.volume",
    "from_sitk": "dicomml.io.volume",
}

__getattr__, __dir__, __all__ = lazy_exports(
    __name__, _LAZY, eager=("Image", "Volume", "VolumeInfo", "Window", "VOILUTFunction", "VOILUT",
                            "SeriesIssue"))
