"""Every reference volume of dcm2niix's five validation datasets against ``read_series``.

``../shared/realdata/dcm_qa`` (see its README): real Siemens (VB/VD/VE mosaics, XA30 enhanced),
GE and transfer-syntax variants, with the NIfTI volume dcm2niix wrote for each series / echo.
The files of a reference are chosen from its JSON sidecar (SeriesNumber, Manufacturer, echo
time); the grids are matched through the affines (``tests.io.niftiref``).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicomml.io import read_series
from tests.io.niftiref import geometry_error_mm, on_reference_grid
from tests.io.realdata import ROOT, dataset

DATASETS = ("dcm_qa_ts", "dcm_qa_nih", "dcm_qa_mosaic", "dcm_qa_xa30", "dcm_qa_12bit")
#: dcm2niix writes colour (RGB) FA maps as RGB NIfTI (a structured R, G, B dtype):
#: read_series gives (slices, rows, columns, 3), compared channel by channel.
COLOUR = {"dcm_qa_xa30/14_DWI_dir80_PA", "dcm_qa_xa30/22_DWI_dir80_AP"}


def _references() -> list[str]:
    refs = sorted(f"{p.parts[-3]}/{p.stem}" for name in DATASETS
                  for p in (ROOT / name / "Ref").resolve().glob("*.nii"))
    return refs or [f"{name}/missing" for name in DATASETS]


def _headers(name: str) -> list[tuple[Path, pydicom.Dataset]]:
    out = []
    for path in sorted((dataset(name) / "In").rglob("*")):
        if not path.is_file() or path.suffix == ".txt":
            continue
        with warnings.catch_warnings():  # some files declare implicit VR but are explicit
            warnings.simplefilter("ignore", UserWarning)
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True,
                                 specific_tags=["SeriesNumber", "Manufacturer", "Rows",
                                                "PerFrameFunctionalGroupsSequence"])
        if "Rows" in ds:
            out.append((path, ds))
    return out


_HEADERS: dict[str, list] = {}


def _files_of(name: str, sidecar: dict) -> list[str]:
    """The input files of one reference: same Series Number and manufacturer, and for
    enhanced objects the same effective echo time (one file per echo)."""
    if name not in _HEADERS:
        _HEADERS[name] = _headers(name)
    out = []
    for path, ds in _HEADERS[name]:
        if int(ds.get("SeriesNumber", -1)) != sidecar["SeriesNumber"]:
            continue
        if sidecar["Manufacturer"].lower()[:2] not in str(ds.get("Manufacturer", "")).lower():
            continue
        per = ds.get("PerFrameFunctionalGroupsSequence")
        if per and "EchoTime" in sidecar and "MREchoSequence" in per[0]:
            te = float(per[0].MREchoSequence[0].EffectiveEchoTime)
            if abs(te - 1000 * sidecar["EchoTime"]) > 0.01:
                continue
        out.append(str(path))
    assert out, f"no input file for Series Number {sidecar['SeriesNumber']}"
    return out


def _load_reference(ref: str):
    import nibabel

    name, stem = ref.split("/")
    folder = dataset(name) / "Ref"
    if not (folder / f"{stem}.nii").exists():
        pytest.fail(f"no reference volume in {folder}")
    sidecar = json.loads((folder / f"{stem}.json").read_text())
    return name, sidecar, nibabel.load(folder / f"{stem}.nii")


def _compare(vol, img) -> np.ndarray:
    """Shape, geometry (≤ 1e-3 mm at the corners), spacing and voxel values; returns the
    reference array."""
    arr, affine = on_reference_grid(vol, img.affine)
    expected = np.asarray(img.dataobj)
    assert arr.shape == expected.shape
    assert geometry_error_mm(affine, img.affine, expected.shape) <= 1e-3
    assert np.allclose(np.linalg.norm(affine[:3, :3], axis=0),
                       img.header.get_zooms()[:3], atol=1e-4)
    slope, inter = img.dataobj.slope, img.dataobj.inter
    if slope == 1 and inter == 0:
        np.testing.assert_array_equal(arr, expected)
    else:
        # dcm2niix stores (0028,1053) Rescale Slope in the float32 scl_slope field: the
        # reference is off by the slope's float32 rounding (≤ 2**-24 relative) and dicomml's
        # float32 result by its own rounding.
        tol = 2.0 ** -23 * (np.abs(expected) + abs(inter))
        assert np.all(np.abs(arr - expected) <= tol)
    return expected


def _compare_colour(vol, img) -> None:
    """An RGB reference: each of R, G, B as a grayscale volume on the same grid."""
    assert vol.is_color and vol.photometric_interpretation == "RGB" and vol.issues == ()
    assert vol.pixels.shape[-1] == 3 and vol.n_volumes == 1
    rgb = np.asarray(img.dataobj)
    for c, name in enumerate("RGB"):
        channel = replace(vol, pixels=vol.pixels[..., c], photometric_interpretation="")
        arr, affine = on_reference_grid(channel, img.affine)
        np.testing.assert_array_equal(arr, rgb[name])
        assert geometry_error_mm(affine, img.affine, arr.shape) <= 1e-3


def test_colour_fa_map_equals_dcm2niix():
    """One of XA30's two colour FA maps in every run (the other with the slow references)."""
    test_volume_equals_dcm2niix("dcm_qa_xa30/14_DWI_dir80_PA")


@pytest.mark.slow
@pytest.mark.parametrize("ref", _references())
def test_volume_equals_dcm2niix(ref):
    name, sidecar, img = _load_reference(ref)
    files = _files_of(name, sidecar)
    if ref in COLOUR:
        _compare_colour(read_series(files), img)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vol = read_series(files)
    assert vol.issues == (), vol.issues
    expected = _compare(vol, img)
    if vol.pixels.ndim == 4:
        assert len(vol.volumes) == vol.pixels.shape[0] == expected.shape[3]
        assert [v.index for v in vol.volumes] == list(range(len(vol.volumes)))


def test_mosaic_is_cut_into_slices_with_geometry():
    """The first reference of the transfer-syntax set (a VB mosaic), fast enough for every run."""
    test_volume_equals_dcm2niix("dcm_qa_ts/1")
    vol = read_series(dataset("dcm_qa_ts") / "In" / "1.dcm")
    assert vol.pixels.shape == (35, 64, 64) and vol.extra["mosaic"] is True
    assert vol.frames == tuple(range(35))


def test_ge_fmri_reads_as_all_volumes_in_order():
    test_volume_equals_dcm2niix("dcm_qa_nih/DCM2NIIX_regression_test_7")


@pytest.mark.slow
@pytest.mark.parametrize("series", ["10_DWI_dir80_PA", "17_DWI_dir80_AP"])
def test_xa30_diffusion_b_values_in_order(series):
    """No NIfTI is kept for these 4-D series, but dcm2niix's .bval is: same b-values, same order."""
    folder = dataset("dcm_qa_xa30")
    bvals = [float(b) for b in (folder / "Ref" / f"{series}.bval").read_text().split()]
    vol = read_series(folder / "In" / series)
    assert vol.pixels.shape[:2] == (len(bvals), 39)
    assert [v.b_value for v in vol.volumes] == bvals
    bvec = np.loadtxt(folder / "Ref" / f"{series}.bvec")
    weighted = [i for i, b in enumerate(bvals) if b > 0]
    # FSL's bvec is in image coordinates, dicomml's gradient in patient coordinates: the
    # norms agree (unit vectors for b > 0).
    norms = [np.linalg.norm(vol.volumes[i].gradient) for i in weighted]
    assert np.allclose(norms, np.linalg.norm(bvec[:, weighted], axis=0), atol=1e-3)


def test_choosing_one_volume_is_explicit():
    folder = dataset("dcm_qa_mosaic") / "In" / "ep2d_Asc_2"
    full = read_series(folder)
    assert full.pixels.shape == (6, 36, 64, 64) and full.n_volumes == 6
    third = read_series(folder, volume=2)
    assert third.pixels.shape == (36, 64, 64)
    assert third.extra["n_volumes"] == 6 and third.extra["volume"] == 2
    np.testing.assert_array_equal(third.pixels, full.pixels[2])
    np.testing.assert_array_equal(full.volume(2).pixels, third.pixels)
    assert third.sop_instance_uids == full.volume(2).sop_instance_uids
    assert third.origin == full.origin
    with pytest.raises(Exception, match="out of range"):
        read_series(folder, volume=6)


@pytest.mark.slow
@pytest.mark.parametrize("name", DATASETS)
def test_series_keys_of_scan_read_as_the_references(name, tmp_path):
    """What a new user does: scan the export, read every series key; each reference volume
    is one key read as is."""
    import nibabel

    from dicomml.io import Index, scan

    root = dataset(name)
    db = tmp_path / "index.sqlite"
    scan(root / "In", db, workers=0, progress=False)
    by_files = {}
    with Index(db) as idx:
        for key in idx.series()["series_key"]:
            files = frozenset(str(p) for p in idx.series_files(key))
            by_files[files] = key
        matched = 0
        for nii in sorted((root / "Ref").glob("*.nii")):
            ref = f"{name}/{nii.stem}"
            sidecar = json.loads(nii.with_suffix(".json").read_text())
            key = by_files.get(frozenset(_files_of(name, sidecar)))
            assert key is not None, f"{ref}: no series key holds exactly its files"
            if ref in COLOUR:
                continue
            vol = read_series((key, idx))
            assert vol.issues == (), (ref, vol.issues)
            _compare(vol, nibabel.load(nii))
            matched += 1
    assert matched == len(list((root / "Ref").glob("*.nii"))) - sum(
        c.startswith(name) for c in COLOUR)
