"""Duplicate SOP Instance UIDs: decided the same whatever the executor or the file order.

Byte-identical copies are skipped as "duplicate copy" naming the file kept (the lexically
first of the identical ones); files with other content under the same SOP Instance UID
are "conflicting duplicates": indexed, reported, and keyed apart from their twin.
"""

from __future__ import annotations

import os
import shutil
import warnings

import pydicom
import pytest

import dicomml.io.scanner as scan_mod
from dicomml.io import scan
from dicomml.io.index import Index
from dicomml.testing import write_ct_series


def _conflicting_copy(src, dst):
    """``src`` with one pixel changed: same SOP Instance UID, other content."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(src)
    data = bytearray(ds.PixelData)
    data[0] ^= 0x01
    ds.PixelData = bytes(data)
    dst.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dst)


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """b/: a series of 5; a/copy: a byte copy of one slice (sorts first: it is kept);
    c/conflict: another slice with one pixel changed; d/copy: a byte copy of c/conflict."""
    root = tmp_path_factory.mktemp("dups")
    files = write_ct_series(root / "b", seed=3, n_slices=5, rows=16, columns=16, noise=0.0)
    (root / "a").mkdir()
    shutil.copy(files[0], root / "a" / "copy")
    _conflicting_copy(files[1], root / "c" / "conflict")
    (root / "d").mkdir()
    shutil.copy(root / "c" / "conflict", root / "d" / "copy")
    return root, files


def _state(db):
    with Index(db) as idx:
        return (idx.instances().drop(columns="mtime"), idx.skipped().drop(columns="mtime"),
                idx.series())


def _expect(root, files, db):
    inst, skipped, series = _state(db)
    first, second = str(files[0]), str(files[1])
    kept = str(root / "a" / "copy")
    conflict = str(root / "c" / "conflict")
    assert list(skipped["path"]) == [first, str(root / "d" / "copy")]
    assert list(skipped["category"]) == ["duplicate copy"] * 2
    assert list(skipped["reason"]) == [
        f"duplicate copy of {kept} (same SOP Instance UID, identical bytes)",
        f"duplicate copy of {conflict} (same SOP Instance UID, identical bytes)"]
    assert kept in set(inst["path"]) and first not in set(inst["path"])
    row = inst.set_index("path").loc[conflict]
    assert row["duplicate_of"] == second and row["conflict"]
    assert inst.set_index("path").loc[second, "conflict"]
    uid = row["series_instance_uid"]
    # the conflict has a key of its own; the series keeps its plain key and all 5 slices
    assert row["series_key"] == uid + ".1"
    by_key = series.set_index("series_key")
    assert by_key.loc[uid, "n_instances"] == 5 and by_key.loc[uid, "n_conflicts"] == 1
    assert by_key.loc[uid, "n_volumes"] == 1
    assert by_key.loc[uid + ".1", "n_instances"] == 1
    return inst, skipped


def test_copies_and_conflicts(export, tmp_path):
    root, files = export
    r = scan(root, tmp_path / "i.sqlite", workers=0, progress=False)
    _expect(root, files, r.db_path)
    assert r.conflicts == ((str(root / "c" / "conflict"), str(files[1])),)
    assert r.to_dict()["conflicts"] == [{"path": str(root / "c" / "conflict"),
                                         "duplicate_of": str(files[1])}]


def test_same_result_whatever_the_order_files_arrive(export, tmp_path):
    """Files seen over three scans (the kept copy last) end as one fresh scan does."""
    root, files = export
    src = tmp_path / "src"
    db = tmp_path / "i.sqlite"
    shutil.copytree(root / "b", src / "b")
    scan(src, db, workers=0, progress=False)
    shutil.copytree(root / "d", src / "d")
    shutil.copytree(root / "c", src / "c")
    scan(src, db, workers=0, progress=False)
    shutil.copytree(root / "a", src / "a")
    scan(src, db, workers=0, progress=False)
    fresh = scan(src, tmp_path / "fresh.sqlite", workers=0, progress=False)
    a, b = _state(db), _state(fresh.db_path)
    for x, y in zip(a, b):
        assert x.equals(y)
    # the kept file disappears: its byte copy is indexed again
    (src / "a" / "copy").unlink()
    r = scan(src, db, workers=0, progress=False)
    inst, skipped, _ = _state(db)
    assert str(src / "b" / files[0].name) in set(inst["path"])
    assert list(skipped["path"]) == [str(src / "d" / "copy")]
    assert r.conflicts == ((str(src / "c" / "conflict"), str(src / "b" / files[1].name)),)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["processes", "dask"])
def test_same_result_whatever_the_executor(export, tmp_path, monkeypatch, kind):
    from dicomml.parallel import get_executor

    root, files = export
    ref = scan(root, tmp_path / "ref.sqlite", workers=0, progress=False)
    monkeypatch.setattr(scan_mod, "CHUNK_SIZE", 1)  # one file per chunk: any order
    with get_executor(kind, workers=2) as ex:
        got = scan(root, tmp_path / f"{kind}.sqlite", executor=ex, progress=False)
    _expect(root, files, got.db_path)
    for x, y in zip(_state(ref.db_path), _state(got.db_path)):
        assert x.equals(y)
    assert got.conflicts == ref.conflicts and got.skipped == ref.skipped


def test_interrupted_before_duplicates_are_decided(export, tmp_path, monkeypatch):
    """A scan stopped after its rows are stored but before duplicates are decided: the
    next scan (nothing changed on disk) decides them as a fresh scan does."""
    import dicomml.io._scan_store as store_mod

    root, files = export
    real = store_mod.Store.resolve_duplicates

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(store_mod.Store, "resolve_duplicates", interrupted)
    db = tmp_path / "i.sqlite"
    with pytest.raises(KeyboardInterrupt):
        scan(root, db, workers=0, progress=False)
    monkeypatch.setattr(store_mod.Store, "resolve_duplicates", real)
    r = scan(root, db, workers=0, progress=False)
    assert r.files_read == 0  # every file was stored: nothing is read again
    _expect(root, files, db)


def test_conflict_ends_when_its_twin_goes(export, tmp_path):
    root, files = export
    src = tmp_path / "src"
    shutil.copytree(root, src)
    db = tmp_path / "i.sqlite"
    scan(src, db, workers=0, progress=False)
    (src / "c" / "conflict").unlink()
    (src / "d" / "copy").unlink()
    r = scan(src, db, workers=0, progress=False)
    assert r.conflicts == () and r.summary["conflicting_duplicates"] == 0
    inst, skipped, series = _state(db)
    assert not inst["conflict"].any() and inst["duplicate_of"].isna().all()
    assert list(series["n_conflicts"]) == [0] and list(series["n_instances"]) == [5]
    assert list(skipped["path"]) == [str(src / "b" / files[0].name)]  # still a copy of a/copy


def test_conflict_ends_when_its_twin_changes(export, tmp_path):
    """The conflicting file is rewritten with a SOP Instance UID of its own."""
    root, files = export
    src = tmp_path / "src"
    shutil.copytree(root, src)
    (src / "d" / "copy").unlink()
    db = tmp_path / "i.sqlite"
    scan(src, db, workers=0, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(src / "c" / "conflict")
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID + ".9"
        ds.save_as(src / "c" / "conflict")
    r = scan(src, db, workers=0, progress=False)
    assert r.files_read == 1 and r.conflicts == ()
    inst, _skipped, _series = _state(db)
    assert not inst["conflict"].any() and inst["duplicate_of"].isna().all()


@pytest.mark.parametrize("block", [8, 64, 1 << 20])
def test_byte_comparison_agrees_with_filecmp(tmp_path, monkeypatch, block):
    """The duplicate check's comparison against the standard library's, on files that
    differ in the first, a middle, the last byte, inside the < 8-byte tail, only in
    length, and not at all; a block size of 8 and 64 bytes makes the small files span
    many blocks (whole blocks, a partial one, an empty last read)."""
    import filecmp

    import numpy as np

    import dicomml.io._scan_store as store_mod

    monkeypatch.setattr(store_mod, "_BLOCK", block)
    monkeypatch.setattr(store_mod, "_buffers", store_mod.threading.local())
    rng = np.random.default_rng(7)
    base = rng.integers(0, 256, 1003, dtype=np.uint8).tobytes()  # 125 words + 3
    variants = {"same": base, "empty": b"", "one": base[:1], "shorter": base[:-1],
                "longer": base + b"\0", "block": base[:64], "block+tail": base[:67]}
    for name, at in [("first", 0), ("middle", 500), ("tail", 1001), ("last", 1002)]:
        b = bytearray(base)
        b[at] ^= 0x80
        variants[name] = bytes(b)
    paths = {}
    for name, data in [("base", base), *variants.items()]:
        paths[name] = tmp_path / name
        paths[name].write_bytes(data)
    for a in paths.values():
        for b in paths.values():
            assert store_mod._same_bytes(str(a), str(b)) == filecmp.cmp(a, b, shallow=False), \
                (a.name, b.name)
    assert not store_mod._same_bytes(str(paths["base"]), str(tmp_path / "missing"))


def test_many_copies_and_conflicts_decided_alike(tmp_path):
    """Many UIDs with copies and conflicts, decided in one pass: the same whether the
    headers were read here (workers=0) or by worker processes (workers=2)."""
    root = tmp_path / "export"
    files = write_ct_series(root / "b", seed=5, n_slices=12, rows=16, columns=16, noise=0.0)
    for f in files:  # a/: byte copies of every slice (sort first: they are kept)
        (root / "a").mkdir(exist_ok=True)
        shutil.copy(f, root / "a" / f.name)
    for f in files[:3]:  # c/: other content under three of the UIDs
        _conflicting_copy(f, root / "c" / f.name)
    here = scan(root, tmp_path / "here.sqlite", workers=0, progress=False)
    threads = scan(root, tmp_path / "threads.sqlite", workers=2, progress=False)
    for x, y in zip(_state(here.db_path), _state(threads.db_path)):
        assert x.equals(y)
    assert threads.skipped == here.skipped and threads.conflicts == here.conflicts
    assert [p for p, _ in here.skipped] == sorted(str(f) for f in files)
    assert all(r == f"duplicate copy of {root / 'a' / os.path.basename(p)} (same SOP "
               "Instance UID, identical bytes)" for p, r in here.skipped)
    assert sorted(c for c, _ in here.conflicts) == sorted(str(root / "c" / f.name)
                                                          for f in files[:3])

