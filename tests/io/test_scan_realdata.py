"""scan() of real scanner exports against dcm2niix's references (``../shared/realdata``).

dcm2niix writes one NIfTI file and one BIDS sidecar per series / echo / magnitude-phase
part (``Ref/*.json``). The Index must make exactly one image series key per sidecar, with
the sidecar's SeriesNumber, EchoTime (EchoNumber where the file has one) and part, and
say what the NIfTI holds: the number of volumes (4th dimension), the number of mosaic
tiles (3rd dimension of a Siemens mosaic), the b-values of the ``.bval`` file.
"""

from __future__ import annotations

import json
import os
import warnings

import pandas as pd
import pytest

from dicomml.io import scan
from dicomml.io._scan_fast import Fallback, read_fast
from dicomml.io.header import read_header_pydicom
from dicomml.io.index import Index
from dicomml.io.series import image_part
from tests.io.realdata import dataset

#: dcm_qa_xa30 (93 enhanced objects whose functional groups are read) takes seconds: slow.
DATASETS = ["dcm_qa_ts", "dcm_qa_nih", "dcm_qa_mosaic",
            pytest.param("dcm_qa_xa30", marks=pytest.mark.slow), "dcm_qa_12bit"]


def _refs(root):
    """The sidecars: (name, json dict, NIfTI shape or None when the file is not shipped)."""
    import nibabel as nib
    out = []
    for name in sorted(os.listdir(root / "Ref")):
        if not name.endswith(".json"):
            continue
        side = json.loads((root / "Ref" / name).read_text())
        nii = root / "Ref" / (name[:-5] + ".nii")
        out.append((name[:-5], side, nib.load(nii).shape if nii.exists() else None))
    return out


def _part(image_type) -> str:
    """dcm2niix labels every image that is not phase / real / imaginary MAGNITUDE."""
    return image_part(image_type) or "M"


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    out = {}

    def get(name):
        if name not in out:
            root = dataset(name)
            db = tmp_path_factory.mktemp(name) / "index.sqlite"
            result = scan(root / "In", db, workers=0, progress=False)
            with Index(db) as idx:
                out[name] = (root, result, idx.series(), idx.instances())
        return out[name]

    return get


@pytest.mark.parametrize("name", DATASETS)
def test_one_series_key_per_dcm2niix_volume(scanned, name):
    root, _result, series, _inst = scanned(name)
    images = series[series["is_image"]]
    refs = _refs(root)
    assert len(images) == len(refs), (list(images["series_key"]), [r[0] for r in refs])
    matched = set()
    for ref_name, side, shape in refs:
        te = side["EchoTime"] * 1000.0  # s -> ms
        hits = images[(images["series_number"] == side["SeriesNumber"])
                      & ((images["echo_time"] - te).abs() < 0.01)
                      & (images["image_type"].map(_part) == _part("\\".join(side["ImageType"])))]
        assert len(hits) == 1, (ref_name, list(hits["series_key"]))
        row = hits.iloc[0]
        if "EchoNumber" in side and not pd.isna(row["echo_number"]):
            assert row["echo_number"] == side["EchoNumber"], ref_name
        matched.add(row["series_key"])
        if shape is not None:
            assert row["n_volumes"] == (shape[3] if len(shape) == 4 else 1), ref_name
            if row["mosaic"]:
                assert row["mosaic_images"] == shape[2], ref_name
    assert len(matched) == len(refs)


@pytest.mark.slow
def test_xa30_field_map_splits_by_echo_and_part(scanned):
    _root, _result, series, inst = scanned("dcm_qa_xa30")
    fmap = series[series["series_number"].isin([8, 9])].sort_values(["series_number",
                                                                       "echo_time"])
    assert list(fmap["series_number"]) == [8, 8, 9]
    assert list(fmap["echo_time"].round(2)) == [10.0, 12.46, 12.46]
    assert (fmap["n_echoes"] == [2, 2, 1]).all()
    parts = [image_part(r.image_type, r.complex_image_component)
             for r in inst[inst["series_number"].isin([8, 9])].sort_values(
                 ["series_number", "echo_time"]).itertuples()]
    assert parts == ["M", "M", "P"]
    # the two echoes share one Series Instance UID: the larger (first) keeps the plain key
    uid = fmap.iloc[0]["series_instance_uid"]
    assert list(fmap["series_key"][:2]) == [uid, uid + ".1"]


@pytest.mark.slow
def test_xa30_diffusion_b_values_match_bval(scanned):
    """(0018,9087) from the enhanced functional groups, one b-value per file (volume)."""
    root, _result, series, inst = scanned("dcm_qa_xa30")
    for number, ref in ((10, "10_DWI_dir80_PA"), (17, "17_DWI_dir80_AP")):
        want = [float(b) for b in (root / "Ref" / f"{ref}.bval").read_text().split()]
        rows = inst[inst["series_number"] == number].sort_values("acquisition_number")
        assert list(rows["diffusion_bvalue"]) == want
        assert list(rows["frames_per_position"]) == [1] * len(want)
        assert series.set_index("series_number").loc[number, "n_volumes"] == len(want)


def test_twelve_bit_shared_sop_instance_uid_are_conflicts(scanned):
    """Three files share one SOP Instance UID, differ in Series Number and pixels: all three
    are indexed (dcm2niix makes three volumes), two reported as conflicting duplicates of
    the lexically first file."""
    root, result, series, inst = scanned("dcm_qa_12bit")
    files = sorted(str(p) for p in (root / "In").iterdir() if p.suffix == ".dcm")
    assert list(inst["path"].sort_values()) == files
    assert len(set(inst["sop_instance_uid"])) == 1
    assert result.conflicts == tuple((p, files[0]) for p in files[1:])
    assert not [r for _p, r in result.skipped if "duplicate" in r]
    assert inst["conflict"].all()
    assert sorted(series["series_number"]) == [2, 3, 4]
    assert list(series["n_instances"]) == [1, 1, 1]
    assert result.summary["conflicting_duplicates"] == 3


@pytest.mark.slow
@pytest.mark.parametrize("name", DATASETS)
def test_struct_reader_equals_pydicom_on_real_files(name):
    """Every new column (echo, b-value, stack, temporal position, CSA mosaic count) is read
    the same by the struct walker and by pydicom, on every transfer syntax of dcm_qa_ts."""
    root = dataset(name)
    n_fast = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for folder, _dirs, names in os.walk(root / "In"):
            for n in sorted(names):
                path = os.path.join(folder, n)
                st = os.stat(path)
                try:
                    slow = read_header_pydicom(path, st.st_size, st.st_mtime)
                except Exception:  # noqa: BLE001 - README files: not DICOM for both
                    continue
                try:
                    fast = read_fast(path, st.st_size, st.st_mtime)
                except Fallback:
                    continue
                n_fast += 1
                assert fast == slow, path
    assert n_fast > 0
