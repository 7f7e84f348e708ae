"""The preprocessing configuration: frozen, typed, TOML-friendly, hashable.

The train stage writes :meth:`PreprocessConfig.to_dict` into the run folder's
``config.toml`` and rebuilds the same :class:`~dicomml.preprocess.Pipeline` from it with
:meth:`PreprocessConfig.from_dict`, so training and prediction apply identical steps.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from dicomml.errors import ConfigError
from dicomml.preprocess._options import (Mode, Normalization, ResizeMode, VOILUTFunction,
                                         choose, did_you_mean)
from dicomml.preprocess.augment import AugmentConfig
from dicomml.preprocess.presets import normalize_window_spec

__all__ = ["PreprocessConfig", "CONFIG_VERSION"]

#: Version of the preprocessing definition; bump when a step's arithmetic changes, so that
#: cached tensors and saved runs made with another definition are recognised.
CONFIG_VERSION = 1


@dataclass(frozen=True)
class PreprocessConfig:
    """Everything that decides the tensor made from a plane.

    Attributes
    ----------
    windows : tuple
        Window choices (see :mod:`dicomml.preprocess.presets`): three for ``mode="windows"``,
        one for ``"replicate"`` and ``"2.5d"``; ignored for ``"rgb"``. Stored canonical:
        preset names lower-case, ``"file:N"``, ``"p1-p99"``, or ``(center, width)`` floats.
    mode : {"windows", "replicate", "2.5d", "rgb"}
        How the three channels are made (:class:`~dicomml.preprocess.Mode`).
    size : int
        Output side length (default 224).
    resize : {"pad", "crop", "stretch"}
        How a non-square plane becomes square (default ``"pad"``, with the floor value 0).
    fov_mm : float or None
        Fixed physical field of view in mm using (0028,0030) Pixel Spacing (overrides
        ``resize``).
    normalize : {"unit", "imagenet", "zscore"}
        ``unit``: [0, 1]; ``imagenet``: ``(y - mean) / std`` per channel with
        mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225), range about
        [-2.118, 2.640]; ``zscore``: per image over all channels, mean 0 and standard
        deviation 1 (an unbounded range; a flat image gives zeros).
    voi_function : {"LINEAR", "LINEAR_EXACT", "SIGMOID"}
        (0028,1056) VOI LUT Function used for presets and explicit windows.
    augment : AugmentConfig
        Training augmentation ranges: applied to the training split only, on the tensors
        inside tf.data (:func:`dicomml.data.augmentation.augment_batches`); per plane with
        ``Pipeline(..., training=True)``. Not part of :meth:`config_hash`.
    version : int
        :data:`CONFIG_VERSION` of the definition the config was made with.
    """

    windows: tuple = ("brain", "subdural", "bone")
    mode: str = "windows"
    size: int = 224
    resize: str = "pad"
    fov_mm: float | None = None
    normalize: str = "unit"
    voi_function: str = "LINEAR"
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    version: int = CONFIG_VERSION

    def __post_init__(self):
        set_ = object.__setattr__
        if isinstance(self.windows, (str, bytes)) or not hasattr(self.windows, "__iter__"):
            ws = [self.windows]
        else:
            ws = list(self.windows)
            # a bare (center, width) pair is one window, not two
            if len(ws) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                    for v in ws):
                ws = [tuple(ws)]
        set_(self, "windows", tuple(normalize_window_spec(w) for w in ws))
        mode = choose(self.mode, Mode, "mode")
        set_(self, "mode", mode.value)
        set_(self, "resize", choose(self.resize, ResizeMode, "resize").value)
        set_(self, "normalize", choose(self.normalize, Normalization, "normalize").value)
        set_(self, "voi_function",
             choose(self.voi_function, VOILUTFunction, "voi_function").value)
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ConfigError(f"size must be a positive integer. Received: size={self.size!r}")
        if self.fov_mm is not None:
            if isinstance(self.fov_mm, bool) or not isinstance(self.fov_mm, (int, float)) \
                    or not math.isfinite(self.fov_mm) or self.fov_mm <= 0:
                raise ConfigError(f"fov_mm must be a positive number of millimetres or None. "
                                  f"Received: fov_mm={self.fov_mm!r}")
            set_(self, "fov_mm", float(self.fov_mm))
        if isinstance(self.augment, Mapping):
            set_(self, "augment", _augment_from_dict(self.augment))
        if not isinstance(self.augment, AugmentConfig):
            raise ConfigError(f"augment must be an AugmentConfig or a table. "
                              f"Received: augment={self.augment!r}")
        if not isinstance(self.version, int) or not 1 <= self.version <= CONFIG_VERSION:
            raise ConfigError(f"preprocessing config version {self.version!r} is not supported "
                              f"by this dicomml (it knows 1..{CONFIG_VERSION}); upgrade dicomml.")
        need = {Mode.WINDOWS: 3, Mode.REPLICATE: 1, Mode.TWO_HALF_D: 1}.get(mode)
        if need is not None and len(self.windows) != need:
            raise ConfigError(f"mode {mode.value!r} needs {need} window(s), got "
                              f"{len(self.windows)}. Received: windows={list(self.windows)!r}")

    # -- serialization -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A TOML-friendly dict (str, int, float, bool, lists, tables; no None).

        ``fov_mm`` is left out when None; explicit windows are ``[center, width]`` lists.
        """
        d: dict[str, Any] = {
            "version": int(self.version),
            "windows": [list(w) if isinstance(w, tuple) else w for w in self.windows],
            "mode": self.mode,
            "size": int(self.size),
            "resize": self.resize,
            "normalize": self.normalize,
            "voi_function": self.voi_function,
            "augment": self.augment.to_dict(),
        }
        if self.fov_mm is not None:
            d["fov_mm"] = float(self.fov_mm)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PreprocessConfig":
        """Rebuild a config from :meth:`to_dict` output (e.g. a ``config.toml`` table).

        Raises
        ------
        ConfigError
            Unknown keys (with "did you mean") or invalid values.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"a preprocess config is a table. Received: {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        for k in data:
            if k not in known:
                raise ConfigError(f"unknown preprocess setting {k!r}; known: {sorted(known)}."
                                  f"{did_you_mean(k, sorted(known))}")
        kwargs = dict(data)
        if "windows" in kwargs and not isinstance(kwargs["windows"], str):
            # a single string (``windows = "lung"``) is one window, kept as it is
            kwargs["windows"] = tuple(tuple(w) if isinstance(w, list) else w
                                      for w in kwargs["windows"])
        if "augment" in kwargs:
            kwargs["augment"] = _augment_from_dict(kwargs["augment"])
        return cls(**kwargs)

    def config_hash(self) -> str:
        """SHA-256 (hex) of the canonical JSON of :meth:`to_dict` without ``augment``
        (sorted keys, no spaces).

        Equal configs give equal hashes across processes and machines; the data stage keys
        its tensor cache on it. The augmentation ranges are left out: they act on the cached
        tensors at training time (:func:`dicomml.data.augmentation.augment_batches`), so
        changing them never recomputes the cache.
        """
        d = self.to_dict()
        d.pop("augment", None)
        text = json.dumps(d, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=True, allow_nan=False)
        return hashlib.sha256(text.encode("ascii")).hexdigest()


def _augment_from_dict(data: Mapping[str, Any]) -> AugmentConfig:
    if not isinstance(data, Mapping):
        raise ConfigError(f"augment must be a table. Received: augment={data!r}")
    known = {f.name for f in fields(AugmentConfig)}
    for k in data:
        if k not in known:
            raise ConfigError(f"unknown augment setting {k!r}; known: {sorted(known)}."
                              f"{did_you_mean(k, sorted(known))}")
    return AugmentConfig(**dict(data))
