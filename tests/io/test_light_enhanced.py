"""Enhanced multi-frame objects read by the light parser: the same volumes as through pydicom.

``read_series`` loads its files with ``load_dataset(frame_groups=True)``: the light parser
(:func:`dicomml.io._read_fast.parse_light` with ``frame_groups=True``) takes an enhanced
object whole (its functional groups parsed by :mod:`dicomml.io.functional_groups`, its
(0020,9222) Dimension Index Sequence with the pointers of its items), where pydicom read
the header beside the groups before. The reference is that pydicom path, on the same
files: every field of every Volume (voxel bytes, geometry, the order of the frames, the
per-volume b-values, echoes and times, windows, issues) must be equal; what the light
parser declines (a private block read from the full header, colour, 1-bit segmentations)
goes to pydicom as before.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest

import dicomml.io._read_dataset as read_dataset
from dicomml.io import read_series
from dicomml.io._read_fast import parse_light
from dicomml.io.functional_groups import has_attached_groups, per_frame_groups
from dicomml.testing.enhanced import write_enhanced_ct
from tests.io.encodings import rewrite_encoding
from tests.io.realdata import dataset

_LIGHT = read_dataset.parse_light


def _without_enhanced(data, groups_at=None, **_options):
    """The light parser as before: an enhanced object goes to pydicom."""
    return _LIGHT(data, groups_at)


def _differences(a, b, where="volume") -> list[str]:
    """Where two results differ (arrays by dtype, shape and bytes; dataclasses by field)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        same = (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and a.shape == b.shape and a.tobytes() == b.tobytes())
        return [] if same else [where]
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        if type(a) is not type(b):
            return [where]
        return [d for f in dataclasses.fields(a)
                for d in _differences(getattr(a, f.name), getattr(b, f.name),
                                      f"{where}.{f.name}")]
    if isinstance(a, (tuple, list)):
        if not isinstance(b, (tuple, list)) or len(a) != len(b):
            return [where]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y,
                                                                               f"{where}[{i}]")]
    if isinstance(a, dict):
        if not isinstance(b, dict) or a.keys() != b.keys():
            return [where]
        return [d for k in a for d in _differences(a[k], b[k], f"{where}[{k!r}]")]
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return []
    return [] if a == b else [where]


def _both_ways(monkeypatch, source):
    """``(read_series through the light parser, through pydicom's header)`` of ``source``
    (a result is the Volume or the exception's type and message)."""
    def read():
        try:
            return read_series(source)
        except Exception as e:  # noqa: BLE001 - both paths must fail alike
            return (type(e).__name__, str(e))

    light = read()
    with monkeypatch.context() as m:
        m.setattr(read_dataset, "parse_light", _without_enhanced)
        heavy = read()
    return light, heavy


def _count_light(paths) -> int:
    n = 0
    for p in paths:
        ds, _ = read_dataset.load_dataset(p, frame_groups=True)
        n += not hasattr(ds, "private_block") and has_attached_groups(ds)
    return n


def test_xa30_series_equal_the_pydicom_path(monkeypatch):
    """Every image series of dcm2niix's XA30 dataset (Enhanced MR: 4-D diffusion with
    b-values and gradients, field maps, colour FA maps) by its files."""
    import tempfile

    from dicomml.io import Index, scan

    root = dataset("dcm_qa_xa30") / "In"
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "index.sqlite"
        scan(root, db, progress=False, workers=1)
        with Index(db) as idx:
            series = idx.series()
            keys = list(series[series["object_kind"] == "image"]["series_key"])
            groups = [list(idx.series_files(k)) for k in keys]
    assert len(groups) >= 20
    enhanced = volumes = most = 0
    for files in groups:
        light, heavy = _both_ways(monkeypatch, files)
        assert not isinstance(light, tuple), light
        assert _differences(light, heavy) == [], files[0]
        volumes += max(1, len(light.volumes))
        most = max(most, len(light.volumes))
        enhanced += _count_light(files)
    assert volumes >= 80 and most >= 20  # 4-D series read whole (one volume per file)
    assert enhanced >= 80  # of the 86 enhanced files: all but the colour ones


@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("defined", [False, True])
@pytest.mark.parametrize("shared", [False, True])
def test_synthetic_enhanced_ct_in_every_encoding(monkeypatch, tmp_path, implicit, defined,
                                                 shared):
    """Explicit and implicit VR, defined and undefined lengths, groups shared or per frame."""
    src = write_enhanced_ct(tmp_path / "ect.dcm", seed=4, n_frames=6, rows=24, columns=20,
                            shared=shared, oblique=True)
    path = rewrite_encoding(src, tmp_path / "copy.dcm", implicit=implicit, defined=defined)
    light, heavy = _both_ways(monkeypatch, [path])
    assert not isinstance(light, tuple), light
    assert _differences(light, heavy) == []
    assert _count_light([path]) == 1
    got = parse_light(path.read_bytes(), frame_groups=True)
    ref = pydicom.dcmread(path)
    assert len(per_frame_groups(got)) == 6
    if "DimensionIndexSequence" in ref:
        assert [i.get("DimensionIndexPointer") for i in got.DimensionIndexSequence] == [
            int(i.DimensionIndexPointer) for i in ref.DimensionIndexSequence]


@pytest.mark.parametrize("creator", [(0x0029, "SIEMENS CSA HEADER"), (0x0043, "GEMS_PARM_01")])
def test_a_private_block_read_from_the_full_header_goes_to_pydicom(monkeypatch, tmp_path,
                                                                    creator):
    """A Siemens CSA (0029,0010) or GE (0043,0010) block: the reader consults the full
    header there, so the light parser declines the object and the volumes stay equal."""
    src = write_enhanced_ct(tmp_path / "ect.dcm", seed=5, n_frames=4, rows=16, columns=16)
    ds = pydicom.dcmread(src)
    group, name = creator
    ds.private_block(group, name, create=True).add_new(0x39 if group == 0x43 else 0x10,
                                                       "LO", "1")
    path = tmp_path / "private.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert parse_light(path.read_bytes(), frame_groups=True) is None
    assert _count_light([path]) == 0
    light, heavy = _both_ways(monkeypatch, [path])
    assert _differences(light, heavy) == []


@pytest.mark.parametrize("name", ["eCT_Supplemental.dcm", "liver_1frame.dcm", "liver.dcm"])
def test_pydicom_enhanced_samples_read_alike(monkeypatch, name):
    """pydicom's enhanced samples (an Enhanced CT with supplemental palette colour, 1-bit
    segmentations): whatever read_series makes of them, both ways make the same."""
    path = pydicom.data.get_testdata_file(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        light, heavy = _both_ways(monkeypatch, [path])
    assert _differences(light, heavy) == []


def test_the_comparison_sees_a_difference(monkeypatch, tmp_path):
    """The check above can fail: two different series differ in their voxels and
    positions."""
    a = write_enhanced_ct(tmp_path / "a.dcm", seed=1, n_frames=4, rows=16, columns=16)
    b = write_enhanced_ct(tmp_path / "b.dcm", seed=2, n_frames=4, rows=16, columns=16,
                          oblique=True)
    va, vb = read_series([a]), read_series([b])
    diff = _differences(va, vb)
    assert "volume.pixels" in diff and "volume.direction" in diff


def _read_image_both_ways(monkeypatch, path, **kw):
    """``(read_image with the groups parsed fast, read_image by pydicom alone)``."""
    from dicomml.io import read_image

    def read():
        try:
            return read_image(path, **kw)
        except Exception as e:  # noqa: BLE001 - both paths must fail alike
            return (type(e).__name__, str(e))

    fast = read()
    with monkeypatch.context() as m:
        real = read_dataset.load_dataset
        m.setattr("dicomml.io.in_process.load_dataset",
                  lambda p, **k: real(p, **{**k, "frame_groups": False}))
        plain = read()
    return fast, plain


def test_read_image_of_xa30_enhanced_files_equals_pydicoms(monkeypatch):
    """read_image of an enhanced file (all frames; one frame; stored values) equals what it
    gave when pydicom parsed the whole file."""
    root = dataset("dcm_qa_xa30") / "In"
    files = [p for p in sorted(root.rglob("*")) if p.is_file()]
    enhanced = [p for p in files if has_attached_groups(
        read_dataset.load_dataset(p, frame_groups=True)[0])]
    assert len(enhanced) >= 80
    for p in enhanced[::7]:
        for kw in ({}, {"frames": 3}, {"stored_values": True}):
            fast, plain = _read_image_both_ways(monkeypatch, p, **kw)
            assert not isinstance(fast, tuple), fast
            assert _differences(fast, plain, "image") == [], (p, kw)
            assert fast.pixels.shape[0] == (1 if kw.get("frames") else len(fast.positions))


@pytest.mark.parametrize("implicit", [False, True])
def test_read_image_of_synthetic_enhanced_ct_equals_pydicoms(monkeypatch, tmp_path, implicit):
    src = write_enhanced_ct(tmp_path / "ect.dcm", seed=6, n_frames=5, rows=20, columns=24,
                            shared=False, oblique=True)
    path = rewrite_encoding(src, tmp_path / "copy.dcm", implicit=implicit, defined=False)
    fast, plain = _read_image_both_ways(monkeypatch, path)
    assert not isinstance(fast, tuple), fast
    assert _differences(fast, plain, "image") == []


@pytest.mark.parametrize("keep", [0.5, 0.98, 0.2])
def test_a_truncated_enhanced_file_is_reported_with_its_name(tmp_path, keep):
    """Cut inside the pixel data (the light parser's read) or inside the functional groups
    (pydicom's): read_image raises and read_series leaves the file out, naming it."""
    from dicomml.errors import InvalidDicomError, SeriesError
    from dicomml.io import read_image

    src = write_enhanced_ct(tmp_path / "ect.dcm", seed=7, n_frames=30, rows=48, columns=48,
                            shared=False)
    data = src.read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(InvalidDicomError, match="truncated") as e:
        read_image(path)
    assert str(path) in str(e.value)
    with pytest.raises(SeriesError, match=str(path)):
        read_series([path])


# ----------------------------------------------------------------------------- the memo
def test_the_scan_and_the_reads_that_follow_parse_each_file_once(monkeypatch, tmp_path):
    """Scanned in this process, then read: read_series takes every enhanced file's groups
    from the scan's parse (reading them again would fail here), and the volumes equal
    those read with nothing remembered."""
    import shutil

    import dicomml.io._read_fast as read_fast
    from dicomml.io import Index, scan
    from dicomml.io.functional_groups import forget

    root = tmp_path / "xa30"
    shutil.copytree(dataset("dcm_qa_xa30") / "In" / "10_DWI_dir80_PA", root / "dwi")
    shutil.copytree(dataset("dcm_qa_xa30") / "In" / "9_gre_field_mapping", root / "gre")
    forget()
    db = tmp_path / "index.sqlite"
    scan(root, db, progress=False, workers=1)
    with Index(db) as idx:
        series = idx.series()
        keys = list(series[series["object_kind"] == "image"]["series_key"])
        groups = [list(idx.series_files(k)) for k in keys]
    assert len(groups) == 2

    def no_parse(*a, **k):
        raise AssertionError("the groups were parsed again")

    with monkeypatch.context() as m:
        m.setattr(read_fast, "frame_groups_at", no_parse)
        remembered = [read_series(files) for files in groups]
    forget()
    fresh = [read_series(files) for files in groups]
    for a, b in zip(remembered, fresh):
        assert _differences(a, b) == []
    assert sum(max(1, len(v.volumes)) for v in fresh) >= 21


def test_a_file_changed_after_the_scan_is_parsed_again(tmp_path):
    """The memo is keyed by the file's identity with its change time: a file rewritten in
    place (same size, its modification time set back) is parsed again, and the volume has
    the new positions."""
    import os
    import shutil

    from dicomml.io import scan
    from dicomml.io.functional_groups import forget

    src = write_enhanced_ct(tmp_path / "src.dcm", seed=8, n_frames=5, rows=16, columns=16,
                            shared=False)
    root = tmp_path / "one"
    root.mkdir()
    path = root / "ect.dcm"
    shutil.copy(src, path)
    forget()
    scan(root, tmp_path / "index.sqlite", progress=False, workers=1)
    before = read_series([path])
    ds = pydicom.dcmread(path)
    for item in ds.PerFrameFunctionalGroupsSequence:
        pos = item.PlanePositionSequence[0].ImagePositionPatient
        pos[0] = float(pos[0]) + 1.0  # the same text length for these positions
    st = os.stat(path)
    ds.save_as(path, enforce_file_format=True)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_mtime_ns == st.st_mtime_ns
    after = read_series([path])
    assert after.origin[0] != before.origin[0]
    assert after.pixels.tobytes() == before.pixels.tobytes()


def test_the_memo_keeps_at_most_its_frames(monkeypatch, tmp_path):
    import dicomml.io.functional_groups as fg

    monkeypatch.setattr(fg, "MEMO_FRAMES", 12)
    fg.forget()

    def lookup(path):
        data = path.read_bytes()
        return fg.recall(fg.file_key(os.stat(path)), data, fg.frame_groups_at(data)[1][0])

    paths = [write_enhanced_ct(tmp_path / f"e{i}.dcm", seed=i, n_frames=5, rows=8, columns=8)
             for i in range(3)]
    for p in paths:
        read_series([p])
    assert lookup(paths[0]) is None  # 3 × (5 frames + shared) > 12: the oldest went
    assert lookup(paths[1]) is not None and lookup(paths[2]) is not None
    big = write_enhanced_ct(tmp_path / "big.dcm", seed=9, n_frames=20, rows=8, columns=8)
    read_series([big])
    assert lookup(big) is None  # more frames than it keeps
    fg.forget()


def test_a_file_rewritten_within_one_clock_tick_is_parsed_again(monkeypatch, tmp_path):
    """File times are coarse: a file rewritten at once, at the same size, may keep its key.
    The memo also compares the groups' bytes (CRC-32), so the new positions are read (the
    key is made blind to times here to force the case)."""
    import dicomml.io.functional_groups as fg

    monkeypatch.setattr(fg, "file_key", lambda st: (st.st_dev, st.st_ino, st.st_size))
    monkeypatch.setattr(read_dataset, "file_key", fg.file_key)
    fg.forget()
    path = write_enhanced_ct(tmp_path / "ect.dcm", seed=10, n_frames=4, rows=8, columns=8,
                             shared=False)
    before = read_series([path])
    ds = pydicom.dcmread(path)
    for item in ds.PerFrameFunctionalGroupsSequence:
        pos = item.PlanePositionSequence[0].ImagePositionPatient
        pos[0] = float(pos[0]) + 1.0
    size = os.path.getsize(path)
    ds.save_as(path, enforce_file_format=True)
    assert os.path.getsize(path) == size
    after = read_series([path])
    assert after.origin[0] != before.origin[0]
    fg.forget()


def test_a_classic_light_dataset_has_no_groups_without_raising(monkeypatch):
    """A classic file's light dataset answers "no functional groups attached" (the readers'
    ``getattr(ds, GROUPS_ATTRIBUTE, None)``, several times per file) from its own slot, not
    by an AttributeError raised through ``__getattr__`` (about 1 µs each)."""
    from dicomml.io._read_fast import LightDataset

    calls = []
    real = LightDataset.__getattr__

    def spy(self, keyword):
        calls.append(keyword)
        return real(self, keyword)

    monkeypatch.setattr(LightDataset, "__getattr__", spy)
    classic = parse_light(Path(pydicom.data.get_testdata_file("CT_small.dcm")).read_bytes())
    assert isinstance(classic, LightDataset)
    assert not has_attached_groups(classic) and per_frame_groups(classic) is None
    assert calls == []
