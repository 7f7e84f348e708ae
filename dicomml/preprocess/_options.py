"""Enumerated options of :mod:`dicomml.preprocess` and their normalization.

Every enumerated option is a string enum spelled as DICOM spells it where DICOM has a word
for it (``"LINEAR"``, ``"LINEAR_EXACT"``, ``"SIGMOID"`` for (0028,1056) VOI LUT Function),
accepted as ``str | Enum``, normalized once at the edge (the config or the public function),
with a "did you mean" suggestion on a typo.
"""

from __future__ import annotations

import enum
from typing import TypeVar

import numpy as np

from dicomml.errors import ConfigError, PreprocessError
from dicomml.errors import did_you_mean as _did_you_mean
from dicomml.io.types import VOILUTFunction  # the io type; re-exported here

__all__ = [
    "VOILUTFunction",
    "Mode",
    "ResizeMode",
    "Normalization",
    "PreprocessError",
    "choose",
    "did_you_mean",
]


class Mode(str, enum.Enum):
    """How the three channels of the tensor are made.

    ``windows``: three windows of one plane; ``replicate``: one window copied to three
    channels; ``2.5d``: one window of three adjacent slices (by position); ``rgb``: a colour
    image's own red, green and blue.
    """

    WINDOWS = "windows"
    REPLICATE = "replicate"
    TWO_HALF_D = "2.5d"
    RGB = "rgb"


class ResizeMode(str, enum.Enum):
    """How a non-square plane becomes square: ``pad`` (keep aspect, pad with the floor),
    ``crop`` (keep aspect, centre crop) or ``stretch`` (change aspect)."""

    PAD = "pad"
    CROP = "crop"
    STRETCH = "stretch"


class Normalization(str, enum.Enum):
    """Output intensity convention: ``unit`` [0, 1], ``imagenet`` per-channel mean/std,
    ``zscore`` per image."""

    UNIT = "unit"
    IMAGENET = "imagenet"
    ZSCORE = "zscore"


E = TypeVar("E", bound=enum.Enum)


def did_you_mean(word: str, candidates) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest candidate, or ``""``."""
    return _did_you_mean(word, candidates, cutoff=0.5)


#: ImageNet per-channel mean and standard deviation (normalization ``"imagenet"``).
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def choose(value: str | enum.Enum, enum_cls: type[E], what: str) -> E:
    """Normalize ``value`` (a member or its string, any case) to a member of ``enum_cls``.

    Raises
    ------
    ConfigError
        Unknown value; the message lists the choices and suggests the closest one.
    """
    if isinstance(value, enum_cls):
        return value
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, str):
        key = value.strip()
        for member in enum_cls:
            if key.upper() == member.value.upper() or key.upper() == member.name:
                return member
    choices = [m.value for m in enum_cls]
    raise ConfigError(f"unknown {what} {value!r}; expected one of {choices}."
                      f"{did_you_mean(str(value), choices)} Received: {what}={value!r}")
