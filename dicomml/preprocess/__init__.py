"""dicomml.preprocess: DICOM windows → 224×224×3 tensors (see DESIGN.md).

The fixed order of operations (STYLE habit 3)::

    stored values → modality LUT / rescale (dicomml.io) → VOI LUT or window (PS3.3 C.11.2)
    → MONOCHROME1 inversion → padding floor → resize → channels → normalize

Never imports TensorFlow.
"""

from __future__ import annotations

from dicomml.preprocess._options import (Mode, Normalization, PreprocessError, ResizeMode,
                                         VOILUTFunction)
from dicomml.preprocess.augment import AugmentConfig
from dicomml.preprocess.config import CONFIG_VERSION, PreprocessConfig
from dicomml.preprocess.pipeline import (IMAGENET_MEAN, IMAGENET_STD, Pipeline,
                                         apply_padding_floor, invert_monochrome1, normalize,
                                         to_tensor)
from dicomml.preprocess.presets import PRESETS, ResolvedWindow, resolve_window
from dicomml.preprocess.resize import resampling_matrix, resize_planes
from dicomml.preprocess.window import apply_voi_lut, apply_window

__all__ = [
    "apply_window", "apply_voi_lut", "VOILUTFunction", "PRESETS", "resolve_window",
    "ResolvedWindow", "invert_monochrome1", "apply_padding_floor", "resize_planes",
    "resampling_matrix", "normalize", "IMAGENET_MEAN", "IMAGENET_STD", "to_tensor",
    "Pipeline", "PreprocessConfig", "AugmentConfig", "CONFIG_VERSION", "Mode", "ResizeMode",
    "Normalization", "PreprocessError",
]
