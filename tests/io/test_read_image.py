"""read_image on every sample image of pydicom and pydicom-data, against pydicom and SimpleITK.

References: pydicom's ``pixel_array`` + ``apply_modality_lut`` (or ``apply_color_lut``),
for Enhanced objects pydicom's ``apply_modality_lut`` applied with the (0028,9145) Pixel
Value Transformation functional group item, and SimpleITK (ITK/GDCM) ``ReadImage``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_color_lut, apply_modality_lut

from dicomml.errors import ConfigError, DicommlError
from dicomml.io import read_image


def _sample_files() -> list[Path]:
    import pydicom.data

    roots = [Path(pydicom.data.__file__).parent / "test_files"]
    try:
        import data_store  # the module of the pydicom-data package

        roots.append(Path(data_store.__file__).parent / "data")
    except ImportError:  # pragma: no cover - pydicom-data is a test dependency
        pass
    files = []
    for root in roots:
        files += sorted(p for p in root.rglob("*") if p.is_file()
                        and p.suffix not in (".py", ".pyc", ".txt", ".json", ".gz", ".icc",
                                             ".dump", ".bz2", ".xml", ".zip")
                        and "__pycache__" not in p.parts)
    return files


def _quiet_read(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, force=True, **kw)


def _is_image(path: Path) -> bool:
    try:
        ds = _quiet_read(path, stop_before_pixels=False)
    except Exception:  # noqa: BLE001 - not DICOM at all
        return False
    return "PixelData" in ds or "FloatPixelData" in ds or "DoubleFloatPixelData" in ds


FILES = [p for p in _sample_files() if _is_image(p)]
BIG = 2_000_000


def _id(p: Path) -> str:
    return p.name if p.parent.name in ("test_files", "data") else f"{p.parent.name}/{p.name}"


def _params():
    out = []
    for p in FILES:
        marks = [pytest.mark.slow] if p.stat().st_size > BIG or p.name.startswith(
            "color3d") else []
        out.append(pytest.param(p, id=_id(p), marks=marks))
    return out


def _reference(path: Path):
    """pydicom's result as float32 in modality units, or None when pydicom cannot decode."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, force=True)
        if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
            # No file meta (no 'DICM' prefix): the transfer syntax is how pydicom parsed it.
            from pydicom.dataset import FileMetaDataset
            from pydicom.uid import (ExplicitVRBigEndian, ExplicitVRLittleEndian,
                                     ImplicitVRLittleEndian)

            implicit, little = ds.original_encoding
            meta = getattr(ds, "file_meta", None) or FileMetaDataset()
            meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else (
                ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
            ds.file_meta = meta
        try:
            arr = ds.pixel_array
        except Exception:  # noqa: BLE001 - pydicom cannot decode: an error case
            return ds, None
        n = int(ds.get("NumberOfFrames") or 1)
        color = int(ds.SamplesPerPixel) > 1
        pi = ds.PhotometricInterpretation
        if pi == "PALETTE COLOR":
            ref = apply_color_lut(arr, ds)
            color = True
        elif color or "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            ref = arr
        elif "SharedFunctionalGroupsSequence" in ds and "PixelValueTransformationSequence" in \
                ds.SharedFunctionalGroupsSequence[0]:
            item = ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
            ref = apply_modality_lut(arr, item)
        else:
            ref = apply_modality_lut(arr, ds)
        ref = np.asarray(ref).astype(np.float32)
        shape = (n, ds.Rows, ds.Columns, 3) if color else (n, ds.Rows, ds.Columns)
        ds.sop_uid = str(ds.get("SOPInstanceUID", ""))
        return ds, ref.reshape(shape)


@pytest.mark.parametrize("path", _params())
def test_read_image_equals_pydicom(path):
    ds, ref = _reference(path)
    if ref is None:
        # pydicom cannot decode it either: we must raise one of our typed errors.
        with pytest.raises(DicommlError) as err:
            read_image(path)
        assert str(path) in str(err.value)
        return
    img = read_image(path)
    assert img.pixels.dtype == np.float32
    assert img.pixels.shape == ref.shape
    np.testing.assert_array_equal(img.pixels, ref)
    assert (img.sop_instance_uid or "") == ds.sop_uid
    assert img.path == str(path)


def _sitk_comparable(ds) -> str | None:
    """Why SimpleITK's value is not comparable to the modality value, or None."""
    ts = str(ds.file_meta.TransferSyntaxUID)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        return "GDCM inverts MONOCHROME1; dicomml keeps modality values (inversion is a VOI step)"
    if int(ds.BitsAllocated) == 1:
        return "GDCM scales 1-bit data to 0/255"
    if "ModalityLUTSequence" in ds:
        return "GDCM does not apply the (0028,3000) Modality LUT Sequence"
    if ts in ("1.2.840.10008.1.2.4.51",):
        return "lossy 12-bit JPEG: libjpeg builds differ by one unit"
    if ts == "1.2.840.10008.1.2.2" and int(ds.BitsAllocated) == 32:
        return "GDCM mis-swaps 32-bit big-endian pixel data"
    return None


def _gray(path: Path) -> bool:
    ds = _quiet_read(path, stop_before_pixels=True)
    return ds.get("SamplesPerPixel", 1) == 1 and ds.get("PhotometricInterpretation") in (
        "MONOCHROME1", "MONOCHROME2")


GRAY = [p for p in FILES if p.stat().st_size <= BIG and _gray(p)]


@pytest.mark.parametrize("path", [pytest.param(p, id=_id(p)) for p in GRAY])
def test_read_image_agrees_with_simpleitk(path):
    import SimpleITK as sitk
    ds, ref = _reference(path)
    if ref is None or ref.ndim == 4:
        pytest.skip("not a grayscale image pydicom decodes")
    why = _sitk_comparable(ds)
    if why:
        pytest.skip(why)
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError:
        pytest.skip("SimpleITK cannot read this file")
    if image.GetNumberOfComponentsPerPixel() != 1:
        pytest.skip("SimpleITK reads it as a vector image")
    arr = sitk.GetArrayFromImage(image).astype(np.float64)
    ours = read_image(path).pixels.astype(np.float64)
    assert arr.size == ours.size
    np.testing.assert_allclose(arr.reshape(ours.shape), ours, rtol=1e-6, atol=1e-3)


# ----------------------------------------------------------------------------- fast path
NATIVE_GRAY = []
for _p in FILES:
    try:
        _ds = _quiet_read(_p, stop_before_pixels=True)
        if (str(_ds.file_meta.get("TransferSyntaxUID", "")) in ("1.2.840.10008.1.2",
                                                                 "1.2.840.10008.1.2.1")
                and _ds.get("SamplesPerPixel") == 1
                and _ds.get("PhotometricInterpretation") in ("MONOCHROME1", "MONOCHROME2")):
            NATIVE_GRAY.append(_p)
    except Exception:  # noqa: BLE001
        pass


@pytest.mark.parametrize("path", [pytest.param(p, id=_id(p)) for p in NATIVE_GRAY])
def test_fast_header_parser_matches_pydicom(path):
    """The light parser decodes the same attribute values as pydicom, or declines the file."""
    from dicomml.io._read_fast import NEEDED, parse_light

    data = Path(path).read_bytes()
    light = parse_light(data)
    ds = _quiet_read(path)
    if light is None:  # declined only for what needs pydicom's full reader
        assert (ds.BitsAllocated not in (8, 16, 32) or "ModalityLUTSequence" in ds
                or "VOILUTSequence" in ds or "SharedFunctionalGroupsSequence" in ds)
        return
    for keyword, vr in NEEDED.values():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = ds.get(keyword)
        try:
            ours = light.get(keyword)
        except ValueError:  # an invalid number: pydicom keeps the text, we refuse it
            assert vr in ("DS", "IS") and not str(theirs).strip().lstrip("-").isdigit()
            continue
        if theirs is None or theirs == "":
            assert ours in (None, "", []) or keyword not in ds, keyword
            continue
        if isinstance(theirs, (list, pydicom.multival.MultiValue)):
            assert len(ours) == len(theirs), keyword
            for o, t in zip(ours, theirs):
                assert (o.strip() == str(t).strip()) if isinstance(o, str) else \
                    float(o) == float(t), keyword
        elif vr in ("DS", "IS", "US"):
            assert float(ours) == float(theirs), keyword
        else:  # text: leading/trailing spaces of each value are padding (PS3.5 6.2)
            assert str(ours).strip() == str(theirs).strip(), keyword
    assert bytes(light.PixelData) == ds.PixelData


def _value_offsets_agree(path) -> int:
    """The light parser's value offsets and lengths (its raw table and Pixel Data) are
    pydicom's ``value_tell`` and ``length`` of the same elements; the number compared, 0 when
    the light parser declines the file."""
    from dicomml.io._read_fast import NEEDED, parse_light

    data = Path(path).read_bytes()
    light = parse_light(data)
    if light is None:
        return 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
    by_keyword = {kw: tag for tag, (kw, _vr) in NEEDED.items()}
    n = 0
    for keyword, (start, length, _vr) in light._raw.items():
        elem = ds.get_item(by_keyword[keyword])
        if not hasattr(elem, "value_tell"):  # pydicom converts empty values as it reads
            assert length == 0 and elem.value in (None, "", b""), (path, keyword)
        else:
            assert (start, length) == (elem.value_tell, elem.length), (path, keyword)
        n += 1
    for tag in by_keyword.values():  # and nothing it skipped was needed
        if tag in ds and getattr(ds.get_item(tag), "length", 0) not in (0, 0xFFFFFFFF):
            assert NEEDED[tag][0] in light._raw, (path, NEEDED[tag][0])
    pix = ds.get_item(0x7FE00010)
    assert (light.pixel_offset, light.pixel_length) == (pix.value_tell, pix.length), path
    return n + 1


@pytest.mark.parametrize("path", [pytest.param(p, id=_id(p)) for p in NATIVE_GRAY])
def test_fast_header_parser_offsets_are_pydicoms(path):
    """Where the light parser finds each value (what ``read_image`` and the direct read
    use) is where pydicom's parser finds it."""
    _value_offsets_agree(path)


def test_fast_header_parser_offsets_on_real_scanner_files():
    """The same on every file of dcm2niix's NIH dataset (GE files with some 370 elements,
    many private, and Siemens mosaics): all of them are taken by the light parser."""
    from tests.io.realdata import dataset

    files = [p for p in sorted((dataset("dcm_qa_nih") / "In").rglob("*")) if p.is_file()]
    taken = [p for p in files if _value_offsets_agree(p)]
    assert len(taken) >= 600, len(taken)


def test_fast_path_is_bit_identical_to_pydicom_path(tmp_path):
    """Same file through the light parser and through pydicom: identical Image pixels."""
    from dicomml.io._read_dataset import load_dataset
    from dicomml.io.pixels import image_from_dataset
    from dicomml.testing import write_ct_series

    for signed, padding in ((False, False), (True, True)):
        paths = write_ct_series(tmp_path / f"s{signed}", seed=3, n_slices=2, rows=32,
                                columns=24, signed=signed, padding=padding)
        for p in paths:
            fast, _ = load_dataset(p, fast=True)
            slow, _ = load_dataset(p, fast=False)
            assert type(fast).__name__ == "LightDataset"
            a, b = image_from_dataset(fast, str(p)), image_from_dataset(slow, str(p))
            np.testing.assert_array_equal(a.pixels, b.pixels)
            assert a.pixels.tobytes() == b.pixels.tobytes()
            np.testing.assert_array_equal(a.padding_mask, b.padding_mask)
            assert a.windows == b.windows
            np.testing.assert_array_equal(a.positions, b.positions)


@pytest.mark.parametrize("bits_stored,signed", [(12, False), (12, True), (10, False),
                                                 (16, True), (8, False), (7, True)])
def test_unused_high_bits_corrected_like_pydicom(tmp_path, bits_stored, signed):
    """Garbage in the unused high bits (PS3.5 8.1.1) is masked / sign-extended as pydicom does."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    bits = 8 if bits_stored <= 8 else 16
    rng = np.random.default_rng(7)
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
    info = np.iinfo(dtype)
    raw = rng.integers(info.min, info.max, size=(5, 7), endpoint=True).astype(dtype)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 5, 7, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits_stored, bits_stored - 1
    ds.PixelRepresentation = int(signed)
    ds.RescaleSlope, ds.RescaleIntercept = "0.5", "-3.25"
    ds.PixelData = raw.tobytes() + (b"\0" if raw.nbytes % 2 else b"")
    path = tmp_path / "x.dcm"
    ds.save_as(path, enforce_file_format=True)
    ref = apply_modality_lut(_quiet_read(path).pixel_array, ds).astype(np.float32)
    img = read_image(path)
    np.testing.assert_array_equal(img.pixels[0], ref)


# ----------------------------------------------------------------------------- attributes
def test_windows_multi_valued_with_explanations(tmp_path):
    from dicomml.testing import write_ct_series

    p = write_ct_series(tmp_path, seed=1, n_slices=1, rows=16, columns=16)[0]
    ds = _quiet_read(p)
    img = read_image(p)
    assert len(img.windows) == len(ds.WindowCenter) >= 2
    for w, c, wd, e in zip(img.windows, ds.WindowCenter, ds.WindowWidth,
                           ds.WindowCenterWidthExplanation):
        assert (w.center, w.width, w.explanation, w.function) == (float(c), float(wd), e,
                                                                   "LINEAR")
    assert img.rescale_intercept == float(ds.RescaleIntercept)
    assert img.rescale_type == "HU"
    assert img.modality == "CT"
    np.testing.assert_array_equal(img.positions[0], np.asarray(ds.ImagePositionPatient, float))
    np.testing.assert_array_equal(img.orientations[0],
                                  np.asarray(ds.ImageOrientationPatient, float))
    assert img.pixel_spacing == tuple(float(v) for v in ds.PixelSpacing)


def test_voi_lut_sequence_items():
    from tests.conftest import testdata

    path = testdata("vlut_04.dcm")
    ds = _quiet_read(path)
    img = read_image(path)
    assert len(img.voi_luts) == len(ds.VOILUTSequence)
    item = ds.VOILUTSequence[0]
    lut = img.voi_luts[0]
    assert lut.first_mapped == item.LUTDescriptor[1]
    assert lut.bits == item.LUTDescriptor[2]
    assert len(lut.data) == (item.LUTDescriptor[0] or 65536)
    # pydicom's apply_voi_lut maps the first mapped value to the first LUT entry
    from pydicom.pixels import apply_voi_lut

    probe = np.array([lut.first_mapped, lut.first_mapped + 1], dtype=np.uint16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mapped = apply_voi_lut(probe, ds)
    assert list(mapped) == [int(lut.data[0]), int(lut.data[1])]


@pytest.mark.parametrize("signed", [False, True])
def test_padding_mask_from_pixel_padding_value(tmp_path, signed):
    from dicomml.testing import write_ct_series

    p = write_ct_series(tmp_path, seed=2, n_slices=1, rows=40, columns=40, padding=True,
                        signed=signed)[0]
    ds = _quiet_read(p)
    img = read_image(p)
    expected = ds.pixel_array == (-2000 if signed else 0)
    assert expected.any() and not expected.all()
    np.testing.assert_array_equal(img.padding_mask[0], expected)


@pytest.mark.parametrize("photometric,lo,hi", [("MONOCHROME2", 10, 20), ("MONOCHROME1", 20, 10)])
def test_padding_range_limit_inclusive(tmp_path, photometric, lo, hi):
    """PS3.3 C.7.5.1.1.2: values between Pixel Padding Value and Range Limit, inclusive."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 1, 30, 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelPaddingValue, ds.PixelPaddingRangeLimit = lo, hi
    ds.PixelData = np.arange(30, dtype="<u2").tobytes()
    path = tmp_path / "pad.dcm"
    ds.save_as(path, enforce_file_format=True)
    mask = read_image(path).padding_mask[0, 0]
    assert np.flatnonzero(mask).tolist() == list(range(10, 21))


def test_modality_lut_three_state(tmp_path):
    from tests.conftest import testdata

    ct = testdata("CT_small.dcm")
    ds = _quiet_read(ct)
    stored = ds.pixel_array.astype(np.float32)
    np.testing.assert_array_equal(read_image(ct, modality_lut=False).pixels[0], stored)
    np.testing.assert_array_equal(read_image(ct, modality_lut=True).pixels[0],
                                  apply_modality_lut(ds.pixel_array, ds).astype(np.float32))
    mr = testdata("MR_small.dcm")  # no rescale, no Modality LUT
    from dicomml.errors import MissingAttributeError

    with pytest.raises(MissingAttributeError, match="modality_lut=True"):
        read_image(mr, modality_lut=True)
    np.testing.assert_array_equal(read_image(mr).pixels[0],
                                  _quiet_read(mr).pixel_array.astype(np.float32))


def test_modality_lut_sequence_applied():
    from tests.conftest import testdata

    path = testdata("mlut_18.dcm")
    ds = _quiet_read(path)
    np.testing.assert_array_equal(read_image(path).pixels[0],
                                  apply_modality_lut(ds.pixel_array, ds).astype(np.float32))


def test_frames_selection():
    from tests.conftest import testdata

    for name in ("emri_small.dcm", "emri_small_RLE.dcm"):
        path = testdata(name)
        full = read_image(path).pixels
        part = read_image(path, frames=[7, 2])
        np.testing.assert_array_equal(part.pixels, full[[7, 2]])
        np.testing.assert_array_equal(read_image(path, frames=3).pixels, full[3:4])
    with pytest.raises(ConfigError, match="Number of Frames"):  # the caller's argument
        read_image(testdata("emri_small.dcm"), frames=[10])


def test_enhanced_ct_per_frame_groups(tmp_path):
    from dicomml.testing import write_enhanced_ct

    for shared in (True, False):
        path = write_enhanced_ct(tmp_path / f"e{shared}.dcm", seed=4, n_frames=5, rows=32,
                                 columns=32, shared=shared, oblique=True)
        ds = _quiet_read(path)
        img = read_image(path)
        per = ds.PerFrameFunctionalGroupsSequence
        for k in range(5):
            groups = per[k] if "PixelValueTransformationSequence" in per[k] else \
                ds.SharedFunctionalGroupsSequence[0]
            item = groups.PixelValueTransformationSequence[0]
            np.testing.assert_array_equal(
                img.pixels[k], apply_modality_lut(ds.pixel_array[k], item).astype(np.float32))
            np.testing.assert_array_equal(
                img.positions[k],
                np.asarray(per[k].PlanePositionSequence[0].ImagePositionPatient, float))
        assert img.windows and img.windows[0].center is not None


def test_ybr_full_converted_to_rgb():
    from pydicom.pixels import convert_color_space

    from tests.conftest import testdata

    path = testdata("SC_ybr_full_uncompressed.dcm")
    ds = _quiet_read(path)
    assert ds.PhotometricInterpretation == "YBR_FULL"
    img = read_image(path)
    assert img.photometric_interpretation == "RGB"
    ybr = ds.pixel_array_options  # noqa: F841 - pydicom option API exists
    raw = pydicom.pixels.pixel_array(path, as_rgb=False)
    np.testing.assert_array_equal(img.pixels[0],
                                  convert_color_space(raw, "YBR_FULL", "RGB").astype(np.float32))


def test_reading_does_not_modify_the_source(tmp_path):
    import hashlib
    import os

    from tests.conftest import testdata

    path = testdata("CT_small.dcm")
    before = (hashlib.sha256(Path(path).read_bytes()).hexdigest(), os.stat(path).st_mtime_ns)
    read_image(path)
    read_image(testdata("MR_small_RLE.dcm"))
    assert (hashlib.sha256(Path(path).read_bytes()).hexdigest(),
            os.stat(path).st_mtime_ns) == before


def test_no_tensorflow_import():
    import subprocess
    import sys

    from tests.conftest import testdata

    code = ("import sys; import dicomml.io; from dicomml.io import read_image, read_series; "
            f"read_image({testdata('CT_small.dcm')!r}); import dicomml.io.volume; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=str(Path(__file__).resolve().parents[2]))
    assert out.stdout.split() == ["False", "False"]


def test_caller_dataset_not_modified():
    """image_from_dataset on a data set without file meta does not add one to it."""
    from dicomml.io.pixels import image_from_dataset
    from tests.conftest import testdata

    path = testdata("OT-PAL-8-face.dcm")  # no preamble, no (0002,0010)
    ds = _quiet_read(path)
    assert "TransferSyntaxUID" not in getattr(ds, "file_meta", {})
    before = [(e.tag, e.VR) for e in ds]
    img = image_from_dataset(ds, path)
    assert img.pixels.shape == (1, 480, 640, 3)
    assert "TransferSyntaxUID" not in getattr(ds, "file_meta", {})
    assert [(e.tag, e.VR) for e in ds] == before
