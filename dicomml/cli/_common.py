"""Small helpers shared by the CLI verbs."""

from __future__ import annotations

import os

from dicomml.errors import ConfigError

__all__ = ["require_paths"]


def require_paths(paths, what: str = "input") -> None:
    """Raise :class:`ConfigError` (exit status 2) naming the first path that does not exist.

    A path the user typed that does not exist is a usage error, not a skipped input.
    """
    for p in paths or ():
        if not os.path.exists(p):
            raise ConfigError(f"{what} path does not exist: {p}")
