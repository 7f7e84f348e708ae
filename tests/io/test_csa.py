"""The Siemens CSA header parser against nibabel's independent reader, on real scanner files."""

from __future__ import annotations

import struct

import numpy as np
import pydicom
import pytest

from dicomml.errors import InvalidDicomError
from dicomml.io import csa
from tests.io.realdata import dataset


def _siemens_files():
    files = []
    for name, pattern in (("dcm_qa_ts", "In/1.dcm"), ("dcm_qa_mosaic", "In/*/IM-*-0001.dcm"),
                          ("dcm_qa_nih", "In/20180918Si/*/*-00001.dcm")):
        files += sorted(dataset(name).glob(pattern))
    assert len(files) >= 10
    return files


def _same(ours, theirs):
    if isinstance(theirs, float):
        return np.isclose(ours, theirs)
    return ours == theirs


def test_parse_equals_nibabel_on_real_files():
    import warnings

    with warnings.catch_warnings():  # nibabel.nicom warns that it is experimental on import
        warnings.simplefilter("ignore", UserWarning)
        from nibabel.nicom import csareader

    n_tags = 0
    for path in _siemens_files():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        for which, elem in ((csa.CSA_IMAGE, (0x0029, 0x1010)), (csa.CSA_SERIES, (0x0029, 0x1020))):
            ours = csa.csa_header(ds, which)
            theirs = csareader.read(ds[elem].value)["tags"]
            assert set(ours) == set(theirs), path
            for name, tag in theirs.items():
                # nibabel keeps empty string items up to the VM; dicomml drops empty items
                items = [v for v in tag["items"] if v not in ("", b"")]
                assert len(ours[name]) == len(items), (path, name)
                assert all(_same(a, b) for a, b in zip(ours[name], items)), (path, name)
                n_tags += 1
    assert n_tags > 1000


def test_mosaic_fields_of_a_real_mosaic():
    ds = pydicom.dcmread(dataset("dcm_qa_ts") / "In" / "1.dcm", stop_before_pixels=True)
    assert csa.mosaic_images(ds) == 35
    head = csa.csa_header(ds)
    normal = np.array(head["SliceNormalVector"])
    assert np.isclose(np.linalg.norm(normal), 1.0, atol=1e-6)


def test_not_a_mosaic_is_zero():
    path = next(dataset("dcm_qa_xa30").glob("In/17_DWI_dir80_AP/*.dcm"))
    assert csa.mosaic_images(pydicom.dcmread(path, stop_before_pixels=True)) == 0
    assert csa.mosaic_images(pydicom.Dataset()) == 0


def _tag(name: bytes, vr: bytes, values: list[bytes], vm: int | None = None) -> bytes:
    out = name.ljust(64, b"\0") + struct.pack("<i4s3i", len(values) if vm is None else vm,
                                              vr, 3, len(values), 77)
    for v in values:
        out += struct.pack("<4i", len(v), len(v), 77, len(v)) + v + b"\0" * (-len(v) % 4)
    return out


def test_synthetic_csa2_types_and_empty_values():
    body = (_tag(b"B_value", b"IS", [b"1000\0"]) + _tag(b"SliceNormalVector", b"FD",
            [b"0.5\0", b"0\0", b"-0.5\0"]) + _tag(b"ImaComments", b"LT", [b"hi\0"])
            + _tag(b"Empty", b"DS", [], vm=0))
    data = b"SV10\4\3\2\1" + struct.pack("<2I", 4, 77) + body
    assert csa.parse(data) == {"B_value": [1000], "SliceNormalVector": [0.5, 0.0, -0.5],
                                   "ImaComments": ["hi"], "Empty": []}


@pytest.mark.parametrize("cut", [3, 12, 60, 100])
def test_truncated_header_raises_invalid_dicom(cut):
    data = b"SV10\4\3\2\1" + struct.pack("<2I", 1, 77) + _tag(b"B_value", b"IS", [b"1000\0"])
    with pytest.raises(InvalidDicomError, match="CSA header"):
        csa.parse(data[:cut])


def test_number_of_images_in_mosaic_of_raw_bytes():
    ds = pydicom.dcmread(dataset("dcm_qa_ts") / "In" / "1.dcm", stop_before_pixels=True)
    assert csa.number_of_images_in_mosaic(ds[0x0029, 0x1010].value) == 35
    assert csa.number_of_images_in_mosaic(None) is None
    assert csa.number_of_images_in_mosaic(b"SV10garbage") is None


def test_implausible_counts_raise():
    with pytest.raises(InvalidDicomError, match="number of tags"):
        csa.parse(b"SV10\4\3\2\1" + struct.pack("<2I", 10**6, 77))
