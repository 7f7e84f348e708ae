"""dicomml.report: DICOM Structured Reports, Secondary Capture key images, result tables.

Never imports TensorFlow. Names are loaded on first use (highdicom is imported only when
an SR or SC is built or read).
"""

from __future__ import annotations

from dicomml._lazy import lazy_exports

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

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY, eager=())
