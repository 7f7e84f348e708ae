"""dicomml: a DICOM-native analysis toolkit.

``import dicomml`` is light: it never imports TensorFlow. The names below are loaded on
first use.
"""

from __future__ import annotations

import importlib

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

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dicomml' has no attribute {name!r}")


def __dir__():
    return __all__
