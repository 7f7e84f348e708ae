"""A registry of model builders by name, with "did you mean" on a typo."""

from __future__ import annotations

from typing import Callable

from dicomml.errors import ConfigError, did_you_mean

__all__ = ["register", "get_builder", "available_models", "min_input_size"]

_REGISTRY: dict[str, Callable] = {}


def register(name: str) -> Callable[[Callable], Callable]:
    """Decorator: register ``fn`` as the builder of model ``name`` (lower case)."""

    def deco(fn: Callable) -> Callable:
        _REGISTRY[name.lower()] = fn
        return fn

    return deco


def available_models() -> list[str]:
    """Names accepted by :func:`dicomml.models.build_model`, sorted."""
    return sorted(_REGISTRY)


def get_builder(name: str) -> Callable:
    """Return the builder registered as ``name`` (case-insensitive).

    Raises
    ------
    ConfigError
        For an unknown name; the message suggests the closest names.
    """
    key = str(name).lower().strip()
    if key in _REGISTRY:
        return _REGISTRY[key]
    hint = did_you_mean(key, _REGISTRY, n=3, cutoff=0.5)
    raise ConfigError(f"unknown model name.{hint} Expected one of {available_models()}. "
                      f"Received: name={name!r}")


def min_input_size(name: str, kwargs=None) -> int:
    """The smallest square input side model ``name`` accepts (no TensorFlow import).

    The reference CNN: each of its ``len(filters)`` blocks is a 3×3 convolution without
    padding (side − 2) and a 2×2 max pooling (halved), down to at least 1; the
    ``keras.applications`` backbones need 32.
    """
    key = str(name).lower().strip()
    if key.startswith("reference_cnn"):
        side = 1
        for _ in range(len(tuple((kwargs or {}).get("filters", (32, 64, 128))))):
            side = 2 * side + 2
        return side
    return 32
