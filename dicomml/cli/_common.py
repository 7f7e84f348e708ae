"""Small helpers shared by the CLI verbs."""

from __future__ import annotations

import os

from dicomml.errors import ConfigError, OutputError

__all__ = ["require_paths", "require_output", "require_output_dir", "add_progress_argument",
           "plural"]


def require_paths(paths, what: str = "input") -> None:
    """Raise :class:`ConfigError` (exit status 2) naming the first path that does not exist.

    A path the user typed that does not exist is a usage error, not a skipped input.
    """
    for p in paths or ():
        if not os.path.exists(p):
            raise ConfigError(f"{what} path does not exist: {p}")


def _writable_dir(folder: str, what: str) -> None:
    """The nearest existing ancestor of ``folder`` (the folder itself, if it exists) must be
    a writable folder: missing folders below it are created by the writer."""
    folder = os.path.abspath(folder)
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise OutputError(f"{what}: {folder} is a file, not a folder; choose another")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{what}: the folder {folder} is not writable; choose another")


def require_output(path: str, *, suffixes: tuple[str, ...] = (), option: str = "-o") -> None:
    """Check before any work that the output file ``path`` can be written.

    Raises :class:`~dicomml.errors.OutputError` (exit status 2) when its folder is missing
    or read-only or ``path`` is a folder, and :class:`ConfigError` when its extension is not
    one of ``suffixes`` (so that ``-o x.jpg`` is not silently written as PNG bytes).
    """
    what = f"{option} {path}"
    if suffixes and not path.lower().endswith(tuple(s.lower() for s in suffixes)):
        raise ConfigError(f"{what}: this writes {'/'.join(suffixes)} files; name the output "
                          f"with one of these extensions")
    if os.path.isdir(path):
        raise OutputError(f"{what} is a folder; give a file name")
    _writable_dir(os.path.dirname(os.path.abspath(path)), what)


def require_output_dir(path: str, *, option: str = "--out") -> None:
    """Check that the output folder ``path`` exists and is writable, or can be created."""
    what = f"{option} {path}"
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputError(f"{what} exists and is not a folder; choose another")
    _writable_dir(path, what)


def add_progress_argument(parser) -> None:
    """``--no-progress`` (one spelling for every verb) and ``--quiet`` as a hidden alias."""
    import argparse

    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--quiet", dest="no_progress", action="store_true",
                        help=argparse.SUPPRESS)


def plural(n: int, noun: str) -> str:
    """``"1 image"``, ``"2 images"``."""
    return f"{n} {noun}" + ("" if n == 1 else "s")
