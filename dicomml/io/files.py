"""Finding candidate files under a folder: nested folders, no extensions, symbolic links.

Every regular file is a candidate (DICOM files often have no extension, and a DICOMDIR is
just a file named ``DICOMDIR``); whether it is DICOM is decided when its header is read.
Symbolic links are followed, and a folder reached twice (a link loop, or two links to one
folder) is walked once: folders are identified by ``(st_dev, st_ino)``.

The files come in the sorted order of their paths (as SQLite's ``ORDER BY path`` sorts
them: by code point, which is the order of their UTF-8 bytes), so that a re-scan compares
the walk with the Index's ``files`` table in one merge of two sorted streams
(:meth:`dicomml.io._scan_store.Store.record_walk`).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from operator import itemgetter
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


_FIRST = itemgetter(0)
_ISREG, _ISDIR = stat.S_ISREG, stat.S_ISDIR


def walk_files(root: str | os.PathLike, *, exclude: frozenset[str] = frozenset()
               ) -> Iterator[FileEntry | Unreadable]:
    """Yield every regular file under ``root`` (or ``root`` itself if it is a file).

    Parameters
    ----------
    root : path
        A folder (walked recursively, links followed without loops) or one file.
    exclude : frozenset of str
        Absolute paths never yielded (the index database and its ``-wal``/``-shm`` files
        when the user put them inside the scanned folder).

    Yields
    ------
    FileEntry or Unreadable
        Candidates, and the entries that could not be read with the reason. The
        ``FileEntry`` paths come in strictly increasing order (Python's ``str`` order):
        a folder's entries are sorted by name, a subfolder's name as if it ended with
        ``/``, and a subfolder is walked where it sorts. A folder reached twice is walked
        at the first of its paths claimed: when a folder is listed, its subfolders are
        claimed in that order.
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
    stack = [iter(_listing(root, seen, exclude))]
    while stack:
        for item in stack[-1]:
            if type(item) is str:  # a subfolder: walked here, where it sorts
                stack.append(iter(_listing(item, seen, exclude)))
                break
            yield item
        else:
            stack.pop()


def _listing(folder: str, seen: set, exclude: frozenset) -> list:
    """The entries of ``folder`` in walk order: ``FileEntry`` and ``Unreadable`` items,
    and the paths (``str``) of its subfolders not reached before (claimed in ``seen``)."""
    try:
        with os.scandir(folder) as it:
            found = []
            for entry in it:
                try:
                    est = entry.stat()  # follows symbolic links
                except OSError as e:
                    what = "broken symbolic link" if entry.is_symlink() else e.strerror
                    found.append((entry.name, Unreadable(entry.path, f"unreadable ({what})")))
                    continue
                mode = est.st_mode
                if _ISREG(mode):
                    path = entry.path
                    if path not in exclude:
                        found.append((entry.name, FileEntry(path, est.st_size,
                                                            est.st_mtime_ns)))
                elif _ISDIR(mode):
                    found.append((entry.name + "/", (est.st_dev, est.st_ino), entry.path))
    except OSError as e:
        return [Unreadable(folder, f"unreadable folder ({e.strerror})")]
    found.sort(key=_FIRST)
    out = []
    for item in found:
        if len(item) == 2:
            out.append(item[1])
        elif item[1] not in seen:
            seen.add(item[1])
            out.append(item[2])
    return out
