"""Header layouts (:mod:`dicomml.io.layout`): a file read through the layout of the one
before gives exactly what the walk gives.

The reference is dicomml's own walk with layouts switched off (``layout.ENABLED``), on the
same files, in the same order: the light parser's datasets (every value it decodes, the
pixel span and bytes) and the scan's Index rows must be equal, on dcm2niix's real scanner
files (GE DWI whose private values change length from file to file, Siemens, 12-bit) and on
series written here whose headers change in the ways a fit must follow (a value that grows or
shrinks, an extra element, a sequence, another character set, a truncated file, more
changed lengths than a fit follows). Each test also checks that layouts were used where they
should be (hits), so that it cannot pass by walking every file.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pydicom
import pydicom.data
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomml.io import layout
from dicomml.io._read_fast import NEEDED, parse_light
from dicomml.io._scan_fast import read_fast
from dicomml.io.fields import Skip
from dicomml.io.walker import Fallback
from tests.io.encodings import rewrite_encoding
from tests.io.realdata import dataset

KEYWORDS = [kw for kw, _vr in NEEDED.values()]


@pytest.fixture(autouse=True)
def _fresh_layouts():
    layout.forget()
    yield
    layout.forget()


def _light(ds):
    """Everything a reader takes from a light dataset, comparable."""
    if ds is None:
        return None
    return ({kw: ds.get(kw) for kw in KEYWORDS}, {kw: kw in ds for kw in KEYWORDS},
            ds.pixel_offset, ds.pixel_length, bytes(ds.PixelData), dict(ds.file_meta),
            ds.original_encoding)


def _row(path):
    st = os.stat(path)
    try:
        return read_fast(str(path), st.st_size, st.st_mtime)
    except (Skip, Fallback) as e:
        return type(e).__name__, str(e)


def _hits() -> int:
    return sum(lay.hits for lay in layout.kept())


def _both(files, read, monkeypatch):
    """``read`` of every file with layouts off, then on (fresh): both lists."""
    monkeypatch.setattr(layout, "ENABLED", False)
    walked = [read(f) for f in files]
    monkeypatch.setattr(layout, "ENABLED", True)
    layout.forget()
    fitted = [read(f) for f in files]
    return walked, fitted


def _light_of(path, **options):
    data = Path(path).read_bytes()
    return _light(parse_light(data, **options))


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and "README" not in p.name)


@pytest.mark.parametrize("name", ["dcm_qa_nih", "dcm_qa_12bit", "dcm_qa_ts"])
def test_real_files_light_parser(name, monkeypatch):
    files = _files(dataset(name) / "In")
    walked, fitted = _both(files, _light_of, monkeypatch)
    assert sum(x is not None for x in walked) > 0
    bad = [f.name for f, a, b in zip(files, walked, fitted) if a != b]
    assert not bad, bad[:5]
    if name == "dcm_qa_nih":  # 600 GE files: nearly all read through a layout
        assert _hits() > 500


@pytest.mark.parametrize("name", ["dcm_qa_nih", "dcm_qa_12bit", "dcm_qa_xa30"])
def test_real_files_scan_rows(name, monkeypatch):
    files = _files(dataset(name) / "In")
    walked, fitted = _both(files, _row, monkeypatch)
    bad = [f.name for f, a, b in zip(files, walked, fitted) if a != b]
    assert not bad, bad[:5]
    if name == "dcm_qa_nih":
        assert _hits() > 500


def test_ge_fits_follow_changed_lengths():
    """The GE DWI files differ from the first one in the lengths of UIDs and private values:
    the fits follow them (elements shifted after each), and the values are the file's."""
    files = [f for f in _files(dataset("dcm_qa_nih") / "In") if f.stat().st_size < 100_000]
    first = layout.build(files[0].read_bytes(), files[0].stat().st_size)
    assert first is not None
    changed = 0
    for f in files[1:40]:
        data = f.read_bytes()
        fit = first.fit(data)
        assert fit is not None
        changed += bool(fit.changes)
        walked = pydicom.dcmread(f, stop_before_pixels=True)
        k = first.number[0x00080018]
        start, length = fit.spans([k])[0]
        assert data[start:start + length].decode().rstrip("\x00 ") == walked.SOPInstanceUID
        assert fit.pixel[0] == len(data) - fit.pixel[1]
    assert changed > 10


def _series(folder: Path, n: int = 12, *, vary=None, ts=None) -> list[Path]:
    """``n`` copies of pydicom's CT_small with values whose lengths change (instance number,
    SOP Instance UID, position, a private value); ``vary(ds, i)`` changes more."""
    folder.mkdir(parents=True, exist_ok=True)
    src = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    paths = []
    for i in range(n):
        ds = src.copy()
        ds.InstanceNumber = i * 7
        uid = f"1.2.826.0.1.3680043.8.498.{10 ** (i % 5) + i}"
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.ImagePositionPatient = [-158.1, -179.0, -75.7 + i * 1.25]
        ds.add_new(0x00090010, "LO", "ACME 1.0")
        ds.add_new(0x00091001, "LO", "x" * (i % 4 + 1))
        if vary is not None:
            vary(ds, i)
        if ts is not None:
            ds.file_meta.TransferSyntaxUID = ts
        path = folder / f"{i:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def test_written_series_fits(tmp_path, monkeypatch):
    files = _series(tmp_path / "s")
    walked, fitted = _both(files, _light_of, monkeypatch)
    assert walked == fitted and all(x is not None for x in walked)
    assert _hits() >= len(files) - 2
    walked, fitted = _both(files, _row, monkeypatch)
    assert walked == fitted
    assert _hits() >= len(files) - 2


def test_implicit_vr_series(tmp_path, monkeypatch):
    files = _series(tmp_path / "s", ts=pydicom.uid.ImplicitVRLittleEndian)
    assert not layout.build(files[0].read_bytes(), files[0].stat().st_size).explicit
    for read in (_light_of, _row):
        walked, fitted = _both(files, read, monkeypatch)
        assert walked == fitted
        assert _hits() >= len(files) - 2


def test_changed_layouts_are_walked(tmp_path, monkeypatch):
    """Files whose headers are not the layout's (an extra element, a sequence of undefined
    length, another character set, too many changed lengths) are walked: same results."""
    def vary(ds, i):
        if i % 3 == 1:
            ds.add_new(0x00181030, "LO", "extra protocol")
        if i % 3 == 2:
            item = Dataset()
            item.CodeValue = "X"
            ds.ProcedureCodeSequence = Sequence([item])
            ds["ProcedureCodeSequence"].is_undefined_length = True
            item.is_undefined_length_sequence_item = True
        # the same length: only the value differs, which the light parser decides on
        ds.SpecificCharacterSet = "ISO_IR 144" if i % 4 == 3 else "ISO_IR 100"
        if i == 10:
            for k in range(layout.MAX_CHANGES + 2):
                ds.add_new(0x00190010, "LO", "ACME")
                ds.add_new(0x00191000 + k, "LO", "y" * (k + 3))
    files = _series(tmp_path / "s", n=16, vary=vary)
    for read in (_light_of, _row):
        walked, fitted = _both(files, read, monkeypatch)
        assert walked == fitted
    assert None in [_light_of(f) for f in files]  # the Cyrillic files went to pydicom


def test_too_many_changes_do_not_fit(tmp_path):
    def vary(ds, i):
        for k in range(layout.MAX_CHANGES + 1):
            ds.add_new(0x00191000 + k, "LO", "y" * (k + 1 + 2 * i))
        ds.add_new(0x00190010, "LO", "ACME")
    a, b = _series(tmp_path / "s", n=2, vary=vary)
    lay = layout.build(a.read_bytes(), a.stat().st_size)
    assert lay is not None and lay.fit(a.read_bytes()) is not None
    assert lay.fit(b.read_bytes()) is None


def test_truncated_files(tmp_path, monkeypatch):
    files = _series(tmp_path / "s", n=6)
    data = files[4].read_bytes()
    start, length = layout.build(data, len(data)).pixel
    files[4].write_bytes(data[:start + length - 100])  # cut in the pixel data
    files[5].write_bytes(files[5].read_bytes()[:600])  # cut in the header
    for read in (_light_of, _row):
        walked, fitted = _both(files, read, monkeypatch)
        assert walked == fitted
    assert _row(files[4])[0] == "Skip" and "truncated pixel data" in _row(files[4])[1]
    assert _row(files[5])[0] == "Skip"


def test_decline_classes_through_a_fit(tmp_path):
    files = _series(tmp_path / "s", n=4)
    for f in files[:3]:
        assert parse_light(f.read_bytes()) is not None
    assert _hits() >= 1
    sop = pydicom.dcmread(files[3]).SOPClassUID
    assert parse_light(files[3].read_bytes(), decline_classes=frozenset({sop})) is None
    assert parse_light(files[3].read_bytes()) is not None


@pytest.mark.parametrize("tag,vr,value", [
    (0x00283010, "SQ", None),  # VOI LUT Sequence
    (0x00209222, "SQ", None),  # Dimension Index Sequence
])
def test_no_layout_for_what_the_readers_decline(tmp_path, tag, vr, value):
    def vary(ds, i):
        item = Dataset()
        item.LUTExplanation = "x"
        ds.add_new(tag, vr, Sequence([item]))
        ds[tag].is_undefined_length = False
    f = _series(tmp_path / "s", n=1, vary=vary)[0]
    rewrite_encoding(f, f, implicit=False, defined=True)
    assert layout.build(f.read_bytes(), f.stat().st_size) is None


def test_layout_needs_the_whole_pixel_data(tmp_path):
    f = _series(tmp_path / "s", n=1)[0]
    data = f.read_bytes()
    lay = layout.build(data, len(data))
    assert lay is not None
    end = lay.pixel[0] + lay.pixel[1]
    assert layout.build(data, end) is not None
    assert layout.build(data, end - 1) is None  # the file ends inside Pixel Data
    assert layout.build(data[:500], len(data)) is None  # the header is not all there
    assert layout.build(b"\0" * 200, 200) is None


def test_policy_stops_building_for_unfitted_files():
    """Layouts built that fit no other file: after UNUSED_BUILDS, one is built only every
    RETRY_EVERY-th miss."""
    built = 0
    for _ in range(layout.UNUSED_BUILDS + 3 * layout.RETRY_EVERY):
        if layout.wanted():
            built += 1
            layout.keep(None)
    assert layout.UNUSED_BUILDS <= built <= layout.UNUSED_BUILDS + 4


def test_threads_share_layouts(tmp_path, monkeypatch):
    files = _series(tmp_path / "s", n=24)
    monkeypatch.setattr(layout, "ENABLED", False)
    expected = [_light_of(f) for f in files]
    monkeypatch.setattr(layout, "ENABLED", True)
    layout.forget()
    got: dict = {}

    def work(part):
        for i in range(part, len(files), 4):
            got[i] = _light_of(files[i])

    threads = [threading.Thread(target=work, args=(p,)) for p in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [got[i] for i in range(len(files))] == expected
    assert _hits() > 0


def test_character_set_value_is_compared(tmp_path, monkeypatch):
    """(0008,0005) of the same length but another value: the light parser's decision on it
    is made again (a Cyrillic file goes to pydicom), not taken from the layout."""
    def vary(ds, i):
        ds.SpecificCharacterSet = "ISO_IR 144" if i == 4 else "ISO_IR 100"
    files = _series(tmp_path / "s", n=6, vary=vary)
    walked, fitted = _both(files, _light_of, monkeypatch)
    assert walked == fitted
    assert fitted[4] is None and fitted[3] is not None and fitted[5] is not None
    assert _hits() >= 3


def test_implicit_vr_signed_padding_through_a_fit(tmp_path, monkeypatch):
    """(0028,0120) Pixel Padding Value in Implicit VR is US or SS by (0028,0103): a fit
    reads it as the walk does (here SS, -2000), not by the data dictionary's first VR."""
    def signed(ds, i):
        ds.PixelRepresentation = 1
        ds.add_new(0x00280120, "SS", -2000)
    files = _series(tmp_path / "s", vary=signed, ts=pydicom.uid.ImplicitVRLittleEndian)
    walked, fitted = _both(files, _row, monkeypatch)
    assert walked == fitted
    assert _hits() >= len(files) - 2
    assert {row["pixel_padding_value"] for row in fitted} == {-2000}


def test_mosaic_csa_header_through_a_fit(monkeypatch):
    """Siemens mosaics: the (0029,1010) CSA header, read for MOSAIC images only, gives the
    same number of images through a fit as through the walk (dcm2niix's mosaic files)."""
    files = _files(dataset("dcm_qa_mosaic") / "In")
    walked, fitted = _both(files, _row, monkeypatch)
    bad = [f.name for f, a, b in zip(files, walked, fitted) if a != b]
    assert not bad, bad[:5]
    mosaics = [row["mosaic_images"] for row in fitted if isinstance(row, dict)]
    assert _hits() > 0 and sum(m > 1 for m in mosaics) > 0


def test_a_folder_is_unreadable_not_an_error(tmp_path, monkeypatch):
    """A path that cannot be read as a file is a Skip that says so (the scan records it),
    whether a layout is wanted (the head is read first) or not (the walk's file object)."""
    (tmp_path / "d").mkdir()
    for enabled in (True, False):
        monkeypatch.setattr(layout, "ENABLED", enabled)
        with pytest.raises(Skip) as e:
            read_fast(str(tmp_path / "d"), 4096, 0.0)
        assert e.value.category == "unreadable" and "directory" in e.value.reason.lower()


def test_scan_rows_reuse_the_reference_file_values(tmp_path, monkeypatch):
    """The scan reads a file of a known layout and element lengths by comparing its values'
    bytes with a reference file's (``_scan_fast._by_fit``): only the values that differ
    are normalized, and the rows are the walk's all the same, when a few values change
    (instance, position), when a value keeps its length but not its bytes ((0028,0120) in
    Implicit VR, read as SS by an unchanged (0028,0103) of the reference, and read again
    where (0028,0103) changes), and when a file of another series (many values differ)
    becomes the reference."""
    from dicomml.io import _scan_fast

    def vary(ds, i):
        uid = f"1.2.826.0.1.3680043.8.498.{1000 + i}"  # one length for every file
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.InstanceNumber = 10 + i
        ds.add_new(0x00091001, "LO", "xy")
        ds.PixelRepresentation = 1
        ds.add_new(0x00280120, "SS", -2000 + (i % 3))  # same length, other bytes
        if i == 13:  # the padding bytes of the reference (file 8, -1998), unsigned by
            ds.PixelRepresentation = 0  # (0028,0103): 63538
            ds.add_new(0x00280120, "US", (-1998) & 0xFFFF)
        if i >= 8:  # another series: UIDs, number, date... of the same lengths
            ds.SeriesInstanceUID = ds.SeriesInstanceUID[:-1] + "9"
            ds.StudyInstanceUID = ds.StudyInstanceUID[:-1] + "9"
            ds.SeriesNumber = 9
            ds.StudyDate = "20010101"
            ds.Modality = "MR"
            ds.PatientID = "X" * len(ds.PatientID)

    files = _series(tmp_path / "s", n=16, vary=vary, ts=pydicom.uid.ImplicitVRLittleEndian)
    normalized = []
    real = _scan_fast._normalized

    def counting(entries, cache, pixel_rep=None):
        normalized.append(len(entries))
        return real(entries, cache, pixel_rep)

    monkeypatch.setattr(_scan_fast, "_normalized", counting)
    walked, fitted = _both(files, _row, monkeypatch)
    assert walked == fitted
    assert {row["pixel_padding_value"] for row in fitted} == {-2000, -1999, -1998, 63538}
    assert {row["modality"] for row in fitted} == {"CT", "MR"}
    fits = normalized[len(files):]  # the second pass: layouts on
    full = max(fits)
    # a whole row for the first file and for the first of the other series (it becomes
    # the reference); a few values for each of the others
    # whole rows (each then the reference): the first file, the first of the other series,
    # the one whose (0028,0103) changed (its (0028,0120) is read again by it) and the next
    # (it changes back); a few values for each of the others
    whole = (0, 8, 13, 14)
    assert [k for k, n in enumerate(fits) if n == full] == list(whole), fits
    assert all(n <= full // 4 for k, n in enumerate(fits) if k not in whole), fits
