"""Atomic output: write to a temporary file in the same folder, then rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

from dicomml.errors import OutputError

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "safe_join", "safe_name",
           "ensure_writable_dir"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", **kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success fsync and rename it over ``path``.

    An interrupted write leaves either the old file or the new one, never half a file.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}. Check that the folder "
                          "exists, is writable and has free space.") from e
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OutputError(f"cannot write {path}: {e.strerror or e}. Check that the disk is "
                          "writable and has free space.") from e
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def ensure_writable_dir(folder: str | os.PathLike, what: str = "output folder",
                        hint: str = "") -> Path:
    """Create ``folder`` if needed and prove it writable (a temporary file is created and
    removed), before any work is done; :class:`OutputError` naming it otherwise."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".probe-"):
            pass
    except OSError as e:
        raise OutputError(f"cannot write the {what} {folder}: {e.strerror or e}. Choose a "
                          f"writable folder with free space{hint}.") from e
    return folder


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Mode of a new file under the process's umask, read once: os.umask can only be read by
#: setting it, which is not safe while other threads create files.
_FILE_MODE = 0o666 & ~_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def safe_name(part: str, limit: int = 200) -> str:
    """One path component that is safe whatever ``part`` holds.

    ASCII letters, digits, ``.``, ``_`` and ``-`` are kept; every other character
    (separators, NUL, control characters, non-ASCII) becomes ``_``; leading and trailing dots
    are dropped (no ``..``, no hidden files); the result is at most ``limit`` characters. When
    anything had to change, a short hash of the original is appended (before a short
    extension such as ``.dcm``), so two different hostile values never share a file name.
    DICOM UIDs (digits and dots, at most 64 characters) pass unchanged.
    """
    s = str(part)
    clean = "".join(c if (c.isascii() and (c.isalnum() or c in "._-")) else "_" for c in s)
    clean = clean.strip(".") or "_"
    if clean == s and len(clean) <= limit:
        return clean
    import hashlib

    digest = hashlib.sha1(s.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    stem, dot, ext = clean.rpartition(".")
    if not dot or not stem or len(ext) > 8 or not ext.isalnum():
        stem, ext = clean, ""
    tail = f"-{digest}" + (f".{ext}" if ext else "")
    return stem[:max(1, limit - len(tail))] + tail


def safe_join(root: str | os.PathLike, *parts: str) -> Path:
    """Join ``parts`` under ``root`` so that the result can never leave ``root``.

    Each part is reduced to a safe file name by :func:`safe_name`: separators, ``..``, NUL
    and control characters are replaced. Use it for any path derived from DICOM content
    (UIDs, DICOMDIR file IDs, descriptions).
    """
    root = Path(root)
    out = root.joinpath(*(safe_name(p) for p in parts))
    resolved_root = root.resolve()
    resolved = out.resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise OutputError(f"refusing to write outside {root}: {out}")
    return out
