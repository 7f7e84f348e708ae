"""dicomml.io: find files, scan headers into an index, read images and series.

Never imports TensorFlow. Names are loaded on first use so that importing the package
is cheap in worker processes.
"""

from __future__ import annotations

import importlib

from dicomml.io.types import VOILUT, Image, SeriesIssue, Volume, Window

_LAZY = {
    "scan": "dicomml.io.scanner",
    "ScanResult": "dicomml.io.scanner",
    "Index": "dicomml.io.index",
    "open_index": "dicomml.io.index",
    "default_db_path": "dicomml.io.index",
    "read_image": "dicomml.io.pixels",
    "read_images": "dicomml.io.isolated",
    "read_series": "dicomml.io.volume",
    "resample": "dicomml.io.volume",
    "to_sitk": "dicomml.io.volume",
    "from_sitk": "dicomml.io.volume",
}

__all__ = ["Image", "Volume", "Window", "VOILUT", "SeriesIssue", *sorted(_LAZY)]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dicomml.io' has no attribute {name!r}")
