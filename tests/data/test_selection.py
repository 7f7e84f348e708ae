"""select_examples(instances, DataConfig): the one example selection, on a real Index (a
generated CT series, pydicom's MR_small and an SR), against pydicom's reading of the files."""

from __future__ import annotations

import shutil

import pandas as pd
import pydicom
import pytest

from dicomml.data.config import DataConfig
from dicomml.data.manifest import patient_key
from dicomml.data.selection import EXAMPLE_COLUMNS, select_examples
from dicomml.data.slices import SliceSelection
from dicomml.errors import ConfigError
from tests.conftest import testdata


@pytest.fixture(scope="module")
def index_rows(tmp_path_factory):
    from dicomml.io import scan
    from dicomml.testing import write_ct_series

    d = tmp_path_factory.mktemp("selection")
    ct = write_ct_series(d / "data" / "ct", seed=5, n_slices=5, rows=16, columns=16)
    shutil.copy(testdata("MR_small.dcm"), d / "data" / "mr.dcm")
    shutil.copy(testdata("reportsi.dcm"), d / "data" / "sr.dcm")
    res = scan(d / "data", d / "index.sqlite", workers=0, progress=False)
    with res.index() as idx:
        return idx.instances(), [str(p) for p in ct]


def _z(path) -> float:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return float(ds.ImagePositionPatient[2])


def test_images_of_the_modality_only(index_rows):
    inst, ct = index_rows
    sel = select_examples(inst, DataConfig(modality="ct"))
    assert list(sel.examples.columns) == list(EXAMPLE_COLUMNS)
    assert sorted(sel.examples["path"]) == sorted(ct)
    left = set(sel.not_selected["path"].map(lambda p: p.rsplit("/", 1)[-1]))
    assert left == {"mr.dcm", "sr.dcm"}
    assert sel.manifest is None
    # modality=False (the input contract decided): every image, never the SR
    every = select_examples(inst, DataConfig(modality="CT"), modality=False)
    assert {p.rsplit("/", 1)[-1] for p in every.examples["path"]} - \
        {p.rsplit("/", 1)[-1] for p in ct} == {"mr.dcm"}
    assert list(every.not_selected["path"].map(lambda p: p.rsplit("/", 1)[-1])) == ["sr.dcm"]


def test_slices_central_along_the_normal(index_rows):
    inst, ct = index_rows
    sel = select_examples(inst, DataConfig(modality="CT", slices=SliceSelection("central", 3)))
    by_z = sorted(ct, key=_z)
    assert list(sel.examples["path"]) == by_z[1:4]  # anatomical order
    assert (sel.examples["frame"] == 0).all()


def test_patient_key_never_the_patient_id(index_rows):
    inst, _ = index_rows
    ex = select_examples(inst, DataConfig()).examples
    ids = set(inst["patient_id"].fillna("").astype(str))
    assert not set(ex["patient_key"]) & ids
    mr = ex[ex["path"].str.endswith("mr.dcm")]
    pid = pydicom.dcmread(testdata("MR_small.dcm")).PatientID
    assert set(mr["patient_key"]) == {patient_key(pid)}
    # a missing Patient ID is the empty one (the same key for the trainer and predict)
    blank = inst.assign(patient_id=None)
    assert set(select_examples(blank, DataConfig()).examples["patient_key"]) == \
        {patient_key("")}


def test_instances_are_not_modified(index_rows):
    inst, _ = index_rows
    before = inst.copy()
    select_examples(inst, DataConfig(modality="CT", slices=SliceSelection("every", every=2)))
    pd.testing.assert_frame_equal(inst, before)


def test_with_labels_a_manifest(index_rows, tmp_path):
    inst, ct = index_rows
    study = str(pydicom.dcmread(ct[0], stop_before_pixels=True).StudyInstanceUID)
    labels = tmp_path / "labels.csv"
    labels.write_text(f"StudyInstanceUID,label\n{study},lesion\n1.2.3.999,normal\n")
    sel = select_examples(inst, DataConfig(modality="CT", classes=("normal", "lesion")),
                          labels=labels)
    assert sel.manifest is not None and sel.examples is sel.manifest.df
    assert sorted(sel.examples["path"]) == sorted(ct)
    assert set(sel.examples["label"]) == {"lesion"} and set(sel.examples["target"]) == {1}
    assert len(sel.manifest.unmatched_labels) == 1


def test_a_config_that_is_not_a_data_config(index_rows):
    inst, _ = index_rows
    with pytest.raises(ConfigError, match="DataConfig"):
        select_examples(inst, {"data": {"modality": "CT"}})
    with pytest.raises(ConfigError, match="lack columns"):
        select_examples(inst.drop(columns=["patient_id"]), DataConfig())
