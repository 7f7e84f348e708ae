"""Lazy exports for packages: names are imported from their defining module on first use.

Keeps ``import dicomml`` (and each sub-package) cheap and free of TensorFlow.
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable

__all__ = ["lazy_exports"]


def lazy_exports(package: str, table: dict[str, str],
                 eager: tuple[str, ...] = ()) -> tuple[Callable, Callable, list[str]]:
    """Return ``(__getattr__, __dir__, __all__)`` for ``package``.

    ``table`` maps an exported name to the module that defines it; ``eager`` lists names
    already defined in the package itself. A loaded name is cached in the package's globals.
    """
    names = [*eager, *sorted(table)]

    def __getattr__(name: str):
        if name in table:
            value = getattr(importlib.import_module(table[name]), name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return list(names)

    return __getattr__, __dir__, names
