"""The fast functional-group parser against pydicom, on every enhanced file of the datasets.

:mod:`dicomml.io.functional_groups` keeps the attributes of :data:`WANTED` of the Shared
and Per-Frame Functional Groups; pydicom parses every element. On each enhanced object of
dcm2niix's validation datasets (Siemens XA30 Enhanced MR, ``../shared/realdata``) and of a
synthetic Enhanced CT, both must give the same values, in explicit and implicit VR and
with defined or undefined lengths; what the parser does not follow must fall back.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pydicom
import pydicom.data
import pytest

from dicomml.io._read_dataset import load_dataset
from dicomml.io.fields import functional_group_values
from dicomml.io.functional_groups import (
    WANTED,
    Item,
    groups_of_file,
    per_frame_groups,
    read_groups,
    shared_groups,
)
from dicomml.io.walker import Fallback, Truncated
from dicomml.testing.enhanced import write_enhanced_ct
from tests.io.encodings import rewrite_encoding
from tests.io.realdata import dataset

_KEYWORDS = {k for k, _ in WANTED.values()}


def _reference(ds) -> Item:
    """pydicom's values of the wanted attributes of one item (sequences recursively)."""
    out = Item()
    for elem in ds:
        if elem.keyword not in _KEYWORDS:
            continue
        if elem.VR == "SQ":
            out[elem.keyword] = [_reference(i) for i in elem.value]
            continue
        v = elem.value
        if type(v).__name__ == "MultiValue":
            v = list(v)
        out[elem.keyword] = v
    return out


def _enhanced_files() -> list[Path]:
    root = dataset("dcm_qa_xa30") / "In"
    out = []
    for p in sorted(root.rglob("*")):
        if p.is_file():
            ds = pydicom.dcmread(p, stop_before_pixels=True, specific_tags=[0x52009230])
            if "PerFrameFunctionalGroupsSequence" in ds:
                out.append(p)
    return out


def _check_equal(path) -> int:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    groups = groups_of_file(path)
    per = [_reference(i) for i in ds.PerFrameFunctionalGroupsSequence]
    assert groups.per_frame == per, path
    assert groups.shared == _reference(ds.SharedFunctionalGroupsSequence[0]), path
    return len(per)


@pytest.fixture(scope="module")
def xa30_files():
    files = _enhanced_files()
    assert len(files) >= 60  # 62 Enhanced MR objects in dcm_qa_xa30
    return files


@pytest.mark.slow
def test_every_xa30_enhanced_file_equals_pydicom(xa30_files):
    frames = sum(_check_equal(p) for p in xa30_files)
    assert frames > 3000


def test_xa30_sample_equals_pydicom_and_index_values(xa30_files):
    for p in xa30_files[::15]:
        _check_equal(p)
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        assert functional_group_values(str(p)) == functional_group_values(ds)


@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("defined", [False, True])
def test_encodings_equal_pydicom(xa30_files, tmp_path, implicit, defined):
    """Implicit VR (the data dictionary's VRs) and defined-length items, on edited copies."""
    src = xa30_files[0]
    dst = rewrite_encoding(src, tmp_path / "copy.dcm", implicit=implicit, defined=defined)
    assert _check_equal(dst) > 1
    assert functional_group_values(str(dst)) == functional_group_values(str(src))


@pytest.mark.parametrize("shared", [True, False])
def test_synthetic_enhanced_ct_equals_pydicom(tmp_path, shared):
    path = tmp_path / "ect.dcm"
    write_enhanced_ct(path, n_frames=5, rows=32, columns=32, shared=shared)
    assert _check_equal(path) == 5


def test_load_dataset_attaches_the_parsed_frames(xa30_files):
    path = xa30_files[0]
    ds, _ = load_dataset(path, frame_groups=True)
    assert "PerFrameFunctionalGroupsSequence" not in ds
    assert "SharedFunctionalGroupsSequence" not in ds
    ref = pydicom.dcmread(path)
    assert per_frame_groups(ds) == [_reference(i) for i in ref.PerFrameFunctionalGroupsSequence]
    assert shared_groups(ds) == [_reference(ref.SharedFunctionalGroupsSequence[0])]
    assert ds.PixelData == ref.PixelData
    # the light parser's dataset: the Dimension Index Sequence with its items' pointers
    assert not hasattr(ds, "private_block")
    assert [(i["DimensionIndexPointer"], i["FunctionalGroupPointer"])
            for i in ds.DimensionIndexSequence] == [
        (int(i.DimensionIndexPointer), int(i.FunctionalGroupPointer))
        for i in ref.DimensionIndexSequence]
    heavy, _ = load_dataset(path, frame_groups=True, fast=False)  # pydicom beside the groups
    assert "PerFrameFunctionalGroupsSequence" not in heavy
    assert per_frame_groups(heavy) == per_frame_groups(ds)
    assert shared_groups(heavy) == shared_groups(ds)
    assert heavy.DimensionIndexSequence == ref.DimensionIndexSequence
    plain, _ = load_dataset(path)
    assert per_frame_groups(plain) == ref.PerFrameFunctionalGroupsSequence
    assert shared_groups(plain) == ref.SharedFunctionalGroupsSequence


@pytest.mark.parametrize("implicit", [False, True])
def test_the_light_parser_hands_over_where_the_groups_start(xa30_files, tmp_path, implicit):
    """parse_light declines an enhanced file at its functional groups and says where they
    start; read_groups from there gives what a walk from the start gives (explicit and
    implicit VR); a classic file reports nothing."""
    from dicomml.io._read_fast import parse_light

    src = rewrite_encoding(xa30_files[0], tmp_path / "copy.dcm", implicit=implicit, defined=False)
    data = src.read_bytes()
    at: list = []
    assert parse_light(data, at) is None
    assert len(at) == 1 and at[0][1] is (not implicit)
    assert data[at[0][0]:at[0][0] + 4] == bytes.fromhex("00522992")   # (5200,9229)
    assert read_groups(data, *at[0]) == read_groups(data)
    assert _check_equal(src) > 1
    classic: list = []
    parse_light(Path(pydicom.data.get_testdata_file("CT_small.dcm")).read_bytes(), classic)
    assert classic == []


def test_big_endian_and_voi_lut_fall_back(tmp_path):
    path = tmp_path / "ect.dcm"
    write_enhanced_ct(path, n_frames=3, rows=16, columns=16, shared=False)
    ds = pydicom.dcmread(path)
    lut = pydicom.Dataset()
    lut.LUTDescriptor = [4, 0, 16]
    lut.add_new(0x00283006, "US", [0, 1, 2, 3])  # LUT Data
    voi = pydicom.Dataset()
    voi.VOILUTSequence = [lut]
    ds.PerFrameFunctionalGroupsSequence[0].FrameVOILUTSequence = [voi]
    ds.save_as(tmp_path / "voi.dcm", enforce_file_format=True)
    with pytest.raises(Fallback):
        groups_of_file(tmp_path / "voi.dcm")
    # the Index values still come (from pydicom)
    assert functional_group_values(str(tmp_path / "voi.dcm")) == functional_group_values(
        str(path))
    big = pydicom.dcmread(path)
    big.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRBigEndian
    del big.PixelData  # only the header matters here
    pydicom.dcmwrite(tmp_path / "big.dcm", big, implicit_vr=False, little_endian=False,
                     force_encoding=True)
    with pytest.raises(Fallback):
        groups_of_file(tmp_path / "big.dcm")


def test_truncated_inside_the_frames(xa30_files):
    data = Path(xa30_files[0]).read_bytes()
    _, span = read_groups(data)
    with pytest.raises(Truncated):
        read_groups(data[:(span[0] + span[1]) // 2])
    assert os.path.getsize(xa30_files[0]) == len(data)


@pytest.mark.slow
def test_mutated_bytes_fall_back_or_equal_pydicom(xa30_files):
    """Single-byte mutations inside the functional groups: the parser either raises one of
    PARSE_ERRORS (the caller then uses pydicom) or gives pydicom's values, never others."""
    import io

    import numpy as np

    from dicomml.io.functional_groups import PARSE_ERRORS

    data = Path(xa30_files[0]).read_bytes()
    _, (start, end) = read_groups(data)
    rng = np.random.default_rng(13)
    compared = 0
    for at in rng.integers(start, end, 150):
        mutated = bytearray(data)
        mutated[at] = int(rng.integers(0, 256))
        try:
            groups, _ = read_groups(bytes(mutated))
        except PARSE_ERRORS:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = pydicom.dcmread(io.BytesIO(bytes(mutated)), stop_before_pixels=True)
                per = [_reference(i) for i in ref.PerFrameFunctionalGroupsSequence]
                shared = _reference(ref.SharedFunctionalGroupsSequence[0])
        except Exception:  # noqa: BLE001 - pydicom cannot read it either: nothing to compare
            continue
        assert groups.per_frame == per and groups.shared == shared, int(at)
        compared += 1
    assert compared > 50



@pytest.mark.parametrize("defined", [False, True])
def test_a_group_that_repeats_is_parsed_once_and_one_that_changes_is_not_taken_for_it(
        tmp_path, defined):
    """A sequence byte-identical to the same tag's in the frame before is not parsed again
    (its items are the same objects); the same bytes but one value character (same length)
    are parsed anew: the values are pydicom's, frame by frame."""
    path = tmp_path / "ect.dcm"
    write_enhanced_ct(path, n_frames=5, rows=32, columns=32, shared=False)
    ds = pydicom.dcmread(path)
    frames = ds.PerFrameFunctionalGroupsSequence
    frames[2].PixelMeasuresSequence[0].PixelSpacing = [12.5, 12.4]   # same length as 12.5
    frames[2].CTImageFrameTypeSequence[0].FrameType = ["ORIGINAL", "PRIMARY", "AXIAL",
                                                       "NONE"]
    ds.save_as(path, enforce_file_format=True)
    dst = rewrite_encoding(path, tmp_path / "copy.dcm", implicit=False, defined=defined)
    assert _check_equal(dst) == 5
    per = groups_of_file(dst).per_frame
    spacing = [f["PixelMeasuresSequence"][0]["PixelSpacing"] for f in per]
    assert spacing == [[12.5, 12.5], [12.5, 12.5], [12.5, 12.4], [12.5, 12.5], [12.5, 12.5]]
    assert per[0]["PixelMeasuresSequence"] is per[1]["PixelMeasuresSequence"]
    assert per[3]["PixelMeasuresSequence"] is per[4]["PixelMeasuresSequence"]
    assert per[2]["PixelMeasuresSequence"] is not per[1]["PixelMeasuresSequence"]
