"""Atomic output: write to a temporary file in the same folder, then rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

from dicomml.errors import OutputError

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "safe_join"]


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
        os.chmod(tmp, 0o666 & ~_umask())
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def safe_join(root: str | os.PathLike, *parts: str) -> Path:
    """Join ``parts`` under ``root`` so that the result can never leave ``root``.

    Each part is reduced to a safe file name: separators, ``..``, NUL and control
    characters are replaced. Use it for any path derived from DICOM content
    (UIDs, DICOMDIR file IDs, descriptions).
    """
    root = Path(root)
    clean = []
    for p in parts:
        s = "".join(c if (c.isalnum() or c in "._-") else "_" for c in str(p))
        s = s.strip(".") or "_"
        clean.append(s[:200])
    out = root.joinpath(*clean)
    resolved_root = root.resolve()
    if resolved_root not in out.resolve().parents and out.resolve() != resolved_root:
        raise OutputError(f"refusing to write outside {root}: {out}")
    return out
