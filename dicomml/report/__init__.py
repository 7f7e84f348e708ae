"""dicomml.report: DICOM Structured Reports, Secondary Capture key images, result tables.

Never imports TensorFlow. Names are loaded on first use (highdicom is imported only when
an SR or SC is built or read).
"""

from __future__ import annotations

import importlib

_LAZY = {
    "AlgorithmInfo": "dicomml.report.sr",
    "SRContent": "dicomml.report.sr",
    "build_sr": "dicomml.report.sr",
    "write_sr": "dicomml.report.sr",
    "read_sr": "dicomml.report.sr",
    "build_heatmap_sc": "dicomml.report.sc",
    "heatmap_overlay": "dicomml.report.overlay",
    "save_png": "dicomml.report.overlay",
    "finding_code": "dicomml.report.codes",
    "write_csv": "dicomml.report.tables",
    "write_json": "dicomml.report.tables",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dicomml.report' has no attribute {name!r}")


def __dir__():
    return __all__
