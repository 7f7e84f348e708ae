"""The walk in path order and the re-scan's merge of it with the Index's ``files`` table."""

from __future__ import annotations

import os
import shutil
import sqlite3

import pytest

from dicomml.io import Index, scan
from dicomml.io._scan_store import Store
from dicomml.io.files import FileEntry, Unreadable, walk_files
from dicomml.testing import write_ct_series

#: Names whose order differs between "sorted by name" and "sorted by path": '-' and '.'
#: sort before '/', '0' after it, and a non-ASCII name after every ASCII one.
NAMES = ("a", "a-b", "a.b", "a0", "b", "é")


def _tree(root):
    """Folders and files named NAMES at two levels (a file and a folder never share a
    name), a CT series in one folder, and a link to a folder reached twice."""
    for i, name in enumerate(NAMES):
        if i % 2:
            (root / name).write_bytes(b"x" * i)
        else:
            (root / name).mkdir()
            for j, sub in enumerate(NAMES):
                if j % 2 == 0:
                    (root / name / sub).write_bytes(b"y" * j)
    write_ct_series(root / "a" / "a-b" / "ct", n_slices=3, rows=8, columns=8, seed=1)
    os.symlink(root / "a.b", root / "b" / "link")  # a.b is claimed by the root first


def _reference(root) -> set[str]:
    """Every regular file under root, links to folders not followed (os.walk), plus the
    files of the link's target, which the walk does not reach through the link."""
    out = set()
    for folder, _dirs, files in os.walk(root):
        out.update(os.path.join(folder, f) for f in files)
    return out


def test_walk_yields_every_file_once_in_path_order(tmp_path):
    _tree(tmp_path)
    entries = list(walk_files(tmp_path))
    assert all(isinstance(e, FileEntry) for e in entries)
    paths = [e.path for e in entries]
    assert paths == sorted(paths) and len(set(paths)) == len(paths)
    assert set(paths) == _reference(tmp_path)
    # the order of SQLite's ORDER BY path, which the re-scan merges with
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE t (path TEXT PRIMARY KEY)")
    con.executemany("INSERT INTO t VALUES (?)", [(p,) for p in reversed(paths)])
    assert [p for (p,) in con.execute("SELECT path FROM t ORDER BY path")] == paths
    for e in entries:
        st = os.stat(e.path)
        assert (e.size, e.mtime_ns) == (st.st_size, st.st_mtime_ns)


def test_walk_reports_broken_links_and_follows_a_file_root(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    os.symlink(tmp_path / "missing", tmp_path / "broken")
    out = list(walk_files(tmp_path))
    assert [type(e) for e in out] == [Unreadable, FileEntry]
    assert out[0].path == str(tmp_path / "broken") and "broken symbolic link" in out[0].reason
    assert list(walk_files(tmp_path / "f")) == [FileEntry(str(tmp_path / "f"), 3,
                                                          os.stat(tmp_path / "f").st_mtime_ns)]


def _rows(db):
    with Index(db) as idx:
        inst = idx.instances().drop(columns="mtime")
        skipped = idx.skipped().drop(columns="mtime")
    con = sqlite3.connect(db)
    files = con.execute("SELECT path, size, mtime_ns, status FROM files ORDER BY path").fetchall()
    con.close()
    return inst, skipped, files


def test_rescan_merge_equals_a_fresh_scan(tmp_path):
    """Changes spread over the path order (before, between and after the Index's files):
    the re-scanned Index equals the Index of a fresh scan of the changed tree."""
    root = tmp_path / "tree"
    root.mkdir()
    _tree(root)
    db = tmp_path / "i.sqlite"
    first = scan(root, db, workers=0, progress=False)
    assert first.files_read == first.files_seen == len(_reference(root))
    assert scan(root, db, workers=0, progress=False).files_read == 0
    (root / "a-b").write_bytes(b"changed, longer")          # changed (size)
    os.remove(root / "a" / "a.b")                           # gone, in the middle
    shutil.rmtree(root / "b")                               # gone: 3 files and the link
    os.remove(root / "é")                                   # gone, at the end
    (root / "0first").write_bytes(b"new")                   # new, before every file
    (root / "a" / "a-b" / "zz").write_bytes(b"new")         # new, between
    (root / "zzz").write_bytes(b"new")                      # new, after every file
    ct = sorted((root / "a" / "a-b" / "ct").iterdir())
    st = os.stat(ct[1])
    os.utime(ct[1], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # changed (mtime only)
    again = scan(root, db, workers=0, progress=False)
    assert (again.files_read, again.files_removed) == (5, 5)
    assert again.files_seen == len(_reference(root))
    fresh = scan(root, tmp_path / "fresh.sqlite", workers=0, progress=False)
    a, b = _rows(db), _rows(fresh.db_path)
    assert a[0].equals(b[0]) and a[1].equals(b[1]) and a[2] == b[2]
    assert scan(root, db, workers=0, progress=False).files_read == 0


def test_merge_refuses_a_walk_out_of_order(tmp_path):
    store = Store(tmp_path / "i.sqlite", str(tmp_path))
    try:
        with pytest.raises(ValueError, match="increasing path order"):
            store.record_walk([FileEntry("/b", 1, 1), FileEntry("/a", 1, 1)])
    finally:
        store.close()
