"""A registry of model builders by name, with "did you mean" on a typo."""

from __future__ import annotations

from typing import Callable

from dicomml.errors import ConfigError, did_you_mean

__all__ = ["register", "get_builder", "available_models"]

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

