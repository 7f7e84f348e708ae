"""dicomml: a DICOM-native analysis toolkit.

``import dicomml`` is light: it never imports TensorFlow. The names below are loaded on
first use.
"""

from __future__ import annotations

from dicomml._lazy import lazy_exports

__version__ = "0.1.0"

# name -> module that defines it
_LAZY = {
    "scan": "dicomml.io",
    "Index": "dicomml.io",
    "open_index": "dicomml.io",
    "read_image": "dicomml.io",
    "read_series": "dicomml.io",
    "Image": "dicomml.io",
    "Volume": "dicomml.io",
    "Window": "dicomml.io",
    "apply_window": "dicomml.preprocess",
    "to_tensor": "dicomml.preprocess",
    "Pipeline": "dicomml.preprocess",
    "PreprocessConfig": "dicomml.preprocess",
    "DicommlError": "dicomml.errors",
    "evaluate_run": "dicomml.evaluate.evaluation",
    "predict": "dicomml.evaluate.prediction",
    "Trainer": "dicomml.train",
    "load_config": "dicomml.train",
    "run_demo": "dicomml.demo",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY, eager=("__version__",))
