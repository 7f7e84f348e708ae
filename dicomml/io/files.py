"""Finding candidate files under a folder: nested folders, no extensions, symbolic links.

Every regular file is a candidate (DICOM files often have no extension, and a DICOMDIR is
just a file named ``DICOMDIR``); whether it is DICOM is decided when its header is read.
Symbolic links are followed, and a folder reached twice (a link loop, or two links to one
folder) is walked once: folders are identified by ``(st_dev, st_ino)``.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from operator import attrgetter
from typing import Iterator, NamedTuple

__all__ = ["FileEntry", "Unreadable", "walk_files"]


class FileEntry(NamedTuple):
    """A candidate file: absolute path (as reached, links not resolved), size, mtime in ns.

    A named tuple (immutable, cheap to create: a scan of a million files makes a million).
    """

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Unreadable:
    """A path that could not be listed or stat'ed (broken link, permission denied)."""

    path: str
    reason: str


_NAME = attrgetter("name")
_ISREG, _ISDIR = stat.S_ISREG, stat.S_ISDIR


def walk_files(root: str | os.PathLike, *, exclude: frozenset[str] = frozenset()
               ) -> Iterator[FileEntry | Unreadable]:
    """Yield every regular file under ``root`` (or ``root`` itself if it is a file).

    Parameters
    ----------
    root : path
        A folder (walked recursively, in sorted order, links followed without loops) or
        one file.
    exclude : frozenset of str
        Absolute paths never yielded (the index database and its ``-wal``/``-shm`` files
        when the user put them inside the scanned folder).

    Yields
    ------
    FileEntry or Unreadable
        Candidates, and the entries that could not be read with the reason.
    """
    root = os.path.abspath(os.fspath(root))
    try:
        st = os.stat(root)
    except OSError as e:
        yield Unreadable(root, f"unreadable ({e.strerror})")
        return
    if not os.path.isdir(root):
        if root not in exclude:
            yield FileEntry(root, st.st_size, st.st_mtime_ns)
        return
    seen: set[tuple[int, int]] = {(st.st_dev, st.st_ino)}
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=_NAME)
        except OSError as e:
            yield Unreadable(folder, f"unreadable folder ({e.strerror})")
            continue
        subdirs = []
        for entry in entries:
            try:
                est = entry.stat()  # follows symbolic links
            except OSError as e:
                what = "broken symbolic link" if entry.is_symlink() else e.strerror
                yield Unreadable(entry.path, f"unreadable ({what})")
                continue
            mode = est.st_mode
            if _ISREG(mode):
                path = entry.path
                if path not in exclude:
                    yield FileEntry(path, est.st_size, est.st_mtime_ns)
            elif _ISDIR(mode):
                key = (est.st_dev, est.st_ino)
                if key not in seen:
                    seen.add(key)
                    subdirs.append(entry.path)
        stack.extend(reversed(subdirs))
