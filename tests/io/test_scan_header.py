"""Header rows: the struct reader and the pydicom reader agree, and both match pydicom.dcmread."""

from __future__ import annotations

import os
import struct
import subprocess
import tracemalloc
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from dicomml.io._scan_fast import Fallback, read_fast
from dicomml.io.header import FIELDS, FUNCTIONAL_GROUP_CLASSES, Skip, object_kind, read_header, \
    read_header_pydicom
from tests.conftest import require_tool


def _sample_files() -> list[str]:
    """Every file shipped with pydicom and pydicom-data (listed locally, never downloaded)."""
    import pydicom.data.data_manager as dm

    roots = [os.path.join(dm.DATA_ROOT, "test_files"), os.path.join(dm.DATA_ROOT, "charset_files")]
    ext = dm.get_external_sources().get("pydicom-data")
    if ext is not None:
        roots.append(str(ext.data_path))
    out = []
    for root in roots:
        for folder, _dirs, files in os.walk(root):
            out += [os.path.join(folder, f) for f in files]
    return sorted(out)


SAMPLES = _sample_files()


def _row(path, fast):
    st = os.stat(path)
    try:
        if fast:
            return read_fast(path, st.st_size, st.st_mtime_ns / 1e9)
        return read_header_pydicom(path, st.st_size, st.st_mtime_ns / 1e9)
    except Skip as e:
        return ("skip", e.category, e.reason)


def test_there_are_many_samples():
    assert len(SAMPLES) > 150


def test_fast_reader_equals_pydicom_reader_on_every_sample():
    n_fast = 0
    for path in SAMPLES:
        try:
            fast = _row(path, True)
        except Fallback:
            continue
        n_fast += 1
        slow = _row(path, False)
        assert fast == slow, path
    # the struct reader must handle most real files itself
    assert n_fast > 150


def _expected(ds: Dataset, tag: int, kind: str):
    """Independent normalization of what pydicom.dcmread reports for one tag."""
    if tag not in ds:
        return None
    value = ds[tag].value
    if value is None or value == "" or (isinstance(value, (list, tuple)) and not value):
        return None
    values = list(value) if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) \
        else [value]
    if kind == "floats":
        return tuple(float(v) for v in values)
    if kind == "ds":
        return float(values[0])
    if kind == "int":
        return int(values[0])
    if kind == "fd":
        return float(values[0])
    return "\\".join(str(v).strip() for v in values)


#: Index columns that enhanced objects carry in functional groups: (sequence, attribute).
_FRAME_ATTRS = {"echo_time": ("MREchoSequence", "EffectiveEchoTime"),
                "complex_image_component": ("MRImageFrameTypeSequence", "ComplexImageComponent"),
                "diffusion_bvalue": ("MRDiffusionSequence", "DiffusionBValue"),
                "temporal_position": ("FrameContentSequence", "TemporalPositionIndex"),
                "stack_id": ("FrameContentSequence", "StackID"),
                "image_orientation": ("PlaneOrientationSequence", "ImageOrientationPatient"),
                "pixel_spacing": ("PixelMeasuresSequence", "PixelSpacing")}


def _expected_from_frames(ds: Dataset, name: str, kind: str):
    """The value of every frame's functional group (shared or per-frame), when they agree."""
    seq, attr = _FRAME_ATTRS[name]
    groups = list(ds.get("SharedFunctionalGroupsSequence", [])) + list(
        ds.get("PerFrameFunctionalGroupsSequence", []))
    found = set()
    for g in groups:
        if seq in g and len(g[seq].value) and attr in g[seq][0]:
            found.add(_expected(g[seq][0], g[seq][0][attr].tag, kind))
    return found.pop() if len(found) == 1 else None


@pytest.mark.parametrize("path", SAMPLES, ids=[os.path.relpath(p, os.path.dirname(
    os.path.dirname(p))) for p in SAMPLES])
def test_rows_match_pydicom_dcmread(path):
    try:
        row = read_header(path)
    except Skip as e:
        if e.category.startswith("truncated"):  # dcmtk agrees that the file is cut short
            dcmdump = require_tool("dcmdump")
            assert subprocess.run([dcmdump, "-q", path], capture_output=True).returncode != 0
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            except Exception:
                return  # pydicom cannot read it either
        # pydicom reads it: then it has no usable SOP Instance UID
        assert not ds.get("SOPInstanceUID") and ds.file_meta.get(
            "MediaStorageSOPClassUID") != "1.2.840.10008.1.3.10", path
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        for name, tag, kind in FIELDS:
            try:
                expected = _expected(ds, tag, kind)
            except (ValueError, TypeError):
                expected = None  # an invalid value: stored as NULL
            if name == "sop_class_uid" and expected is None:
                expected = ds.file_meta.get("MediaStorageSOPClassUID")
            if name == "sop_instance_uid" and expected is None:
                expected = ds.file_meta.get("MediaStorageSOPInstanceUID")
            if expected is None and name in _FRAME_ATTRS and \
                    row["sop_class_uid"] in FUNCTIONAL_GROUP_CLASSES:
                expected = _expected_from_frames(ds, name, kind)
            assert row[name] == expected, (path, name)
    ts = ds.file_meta.get("TransferSyntaxUID")
    if ts is not None:
        assert row["transfer_syntax_uid"] == ts
    assert row["size"] == os.path.getsize(path)
    assert row["is_image"] == (row["object_kind"] == "image")


# -- bad files ----------------------------------------------------------------------------
def _write_ct(path: Path, ts=ExplicitVRLittleEndian, **extra) -> Path:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "PID-XYZ"
    ds.Modality = "CT"
    ds.Rows = 4
    ds.Columns = 4
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.ImagePositionPatient = [0, 0, 1.5]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.WindowCenter = [40, 400]
    ds.WindowWidth = [350, 2000]
    for k, v in extra.items():
        setattr(ds, k, v)
    ds.PixelData = b"\0" * 32
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ts
    ds.save_as(path, enforce_file_format=True)
    return path


def _skip(path):
    with pytest.raises(Skip) as e:
        read_header(str(path))
    with pytest.raises(Skip) as e2:
        read_header(str(path), fast=False)
    assert e.value.category == e2.value.category
    return e.value


def test_empty_file(tmp_path):
    p = tmp_path / "empty"
    p.write_bytes(b"")
    assert _skip(p).reason == "empty file"


def test_not_dicom(tmp_path):
    p = tmp_path / "notes"
    p.write_text("hello, this is not a DICOM file at all\n" * 10)
    assert _skip(p).reason == "not DICOM (no DICM prefix and no valid element at offset 0)"


def test_bare_preamble(tmp_path):
    p = tmp_path / "bare"
    p.write_bytes(b"\0" * 128 + b"DICM")
    assert _skip(p).category == "bare preamble"


def test_truncated_header(tmp_path):
    p = _write_ct(tmp_path / "full")
    data = p.read_bytes()
    cut = data.index(b"MONOCHROME2") + 3  # inside (0028,0004)
    t = tmp_path / "cut"
    t.write_bytes(data[:cut])
    s = _skip(t)
    assert s.category == "truncated header"
    # the fast reader names the offset of the element that is cut: its tag is there
    start = int(read_or_reason(t).rsplit(" ", 1)[1])
    assert data[start:start + 4] == struct.pack("<HH", 0x0028, 0x0004)


def read_or_reason(p):
    try:
        read_fast(str(p), os.path.getsize(p), 0.0)
    except Skip as e:
        return e.reason
    raise AssertionError("not skipped")


def test_no_sop_instance_uid(tmp_path):
    p = _write_ct(tmp_path / "nouid")
    ds = pydicom.dcmread(p)
    del ds.SOPInstanceUID
    ds.save_as(p)
    assert _skip(p).reason == "no SOP Instance UID (0008,0018)"


def test_huge_declared_length_allocates_nothing(tmp_path):
    p = _write_ct(tmp_path / "ok")
    data = p.read_bytes()
    # insert an (0008,0019) UC element declaring 4 GiB - 16 bytes before (0008,0060)
    i = data.index(struct.pack("<HH", 0x0008, 0x0060) + b"CS")
    bomb = struct.pack("<HH", 0x0008, 0x0019) + b"UC\0\0" + struct.pack("<I", 0xFFFFFFF0)
    b = tmp_path / "bomb"
    b.write_bytes(data[:i] + bomb + data[i:])
    tracemalloc.start()
    try:
        s = _skip(b)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert s.category == "truncated header"
    assert peak < 50 * 2**20


@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_sequences_are_skipped_identically(tmp_path, ts):
    item = Dataset()
    item.CodeValue = "X"
    inner = Dataset()
    inner.CodeMeaning = "nested"
    item.ConceptCodeSequence = [inner]
    p = _write_ct(tmp_path / "seq", ts=ts, ProcedureCodeSequence=[item, item],
                  ReferencedImageSequence=[Dataset()], SliceThickness="2.5",
                  RescaleIntercept="-1024", RescaleSlope="1", PixelPaddingValue=0)
    st = os.stat(p)
    fast = read_fast(str(p), st.st_size, st.st_mtime_ns / 1e9)
    slow = read_header_pydicom(str(p), st.st_size, st.st_mtime_ns / 1e9)
    assert fast == slow
    assert fast["window_center"] == (40.0, 400.0)
    assert fast["image_position"] == (0.0, 0.0, 1.5)
    assert fast["slice_thickness"] == 2.5
    assert fast["pixel_padding_value"] == 0
    assert fast["rows"] == 4 and fast["bits_stored"] == 12


def test_undefined_length_sequences(tmp_path):
    """pydicom writes undefined-length sequences when asked: the walker must skip them."""
    item = Dataset()
    item.CodeValue = "X"
    p = _write_ct(tmp_path / "seq", ProcedureCodeSequence=[item])
    ds = pydicom.dcmread(p)
    ds["ProcedureCodeSequence"].is_undefined_length = True
    ds.ProcedureCodeSequence[0].is_undefined_length_sequence_item = True
    ds.save_as(p)
    assert b"\xfe\xff\xdd\xe0" in p.read_bytes()  # a sequence delimitation item is there
    st = os.stat(p)
    assert read_fast(str(p), st.st_size, 0.0) == read_header_pydicom(str(p), st.st_size, 0.0)


@pytest.mark.parametrize("uid, rows, kind", [
    ("1.2.840.10008.5.1.4.1.1.2", 512, "image"),
    ("1.2.840.10008.5.1.4.1.1.88.33", None, "sr"),
    ("1.2.840.10008.5.1.4.1.1.88.59", None, "ko"),
    ("1.2.840.10008.5.1.4.1.1.481.3", None, "rtstruct"),
    ("1.2.840.10008.5.1.4.1.1.481.5", None, "rtplan"),
    ("1.2.840.10008.5.1.4.1.1.481.2", 64, "rtdose"),
    ("1.2.840.10008.5.1.4.1.1.11.1", None, "pr"),
    ("1.2.840.10008.5.1.4.1.1.9.1.1", None, "waveform"),
    ("1.2.840.10008.1.3.10", None, "dicomdir"),
    ("1.2.840.10008.5.1.4.1.1.104.1", None, "other"),
])
def test_object_kind(uid, rows, kind):
    assert object_kind(uid, rows, rows) == kind


def test_truncated_pixel_data(tmp_path):
    p = _write_ct(tmp_path / "full")
    data = p.read_bytes()
    t = tmp_path / "cut"
    t.write_bytes(data[:-10])  # a copy interrupted in (7FE0,0010)
    s = _skip(t)
    assert s.category == "truncated data"
    start = data.index(b"\xe0\x7f\x10\x00")
    assert s.reason == (f"truncated pixel data (7FE0,0010) at byte {start} (the file ends at "
                        f"byte {len(data) - 10})")
    dcmdump = require_tool("dcmdump")
    assert subprocess.run([dcmdump, "-q", str(t)], capture_output=True).returncode != 0
    assert subprocess.run([dcmdump, "-q", str(p)], capture_output=True).returncode == 0
