"""predict_remote: retrieve a study from Orthanc, predict it, store the SR back."""

from __future__ import annotations

import pydicom
import pytest

from dicomml.pacs import DicomwebPacs, PacsError
from dicomml.pacs.remote import predict_remote, store_results
from tests.pacs._data import ct_study, header, sr_for
from tests.pacs.orthanc import orthanc  # noqa: F401 - fixture

pytestmark = pytest.mark.tool


def test_store_results_goes_into_the_same_study(orthanc, tmp_path):  # noqa: F811
    pacs = DicomwebPacs(orthanc.url, timeout=10, retries=1)
    ct = ct_study(tmp_path / "ct", seed=61, n_slices=2)
    pacs.store(ct)
    sr = sr_for(ct, tmp_path / "sr.dcm", seed=61)
    study = str(header(ct[0]).StudyInstanceUID)
    other = ct_study(tmp_path / "other", seed=62, n_slices=1)
    sr_other = sr_for(other, tmp_path / "sr_other.dcm", seed=62)
    before = orthanc.instance_count()
    with pytest.raises(PacsError, match="must match"):
        store_results(pacs, [sr, sr_other], study)
    assert orthanc.instance_count() == before  # checked before anything was sent
    res = store_results(pacs, [sr], study)
    assert res.stored == [str(header(sr).SOPInstanceUID)]
    modalities = {r["SeriesInstanceUID"]: r["Modality"]
                  for r in pacs.query("series", StudyInstanceUID=study)}
    assert modalities[str(header(sr).SeriesInstanceUID)] == "SR"


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """A small run folder (untrained tiny CNN) and its synthetic studies, by study UID."""
    import keras  # noqa: F401 - a hard dependency: a broken install fails
    from tests.evaluate.runfolder import make_run

    root = tmp_path_factory.mktemp("local")
    run = make_run(root, n_patients=4, seed=3, train=False)
    studies: dict[str, list] = {}
    for p in sorted(q for q in (root / "data").rglob("*") if q.is_file()):
        try:
            d = pydicom.dcmread(p, stop_before_pixels=True)
        except pydicom.errors.InvalidDicomError:
            continue
        studies.setdefault(str(d.StudyInstanceUID), []).append(p)
    return run, studies


@pytest.mark.slow
def test_predict_remote_end_to_end(orthanc, local_run, tmp_path):  # noqa: F811
    run, studies = local_run
    study, in_study = sorted(studies.items())[0]
    pacs = DicomwebPacs(orthanc.url, timeout=30, retries=1)
    pacs.store(in_study)
    res = predict_remote(run, pacs, study, tmp_path / "out", progress=False, workers=0)
    assert res.retrieved.listed == len(in_study) and len(res.retrieved.fetched) == len(in_study)
    (sr_path,) = res.prediction.sr_paths
    sr = header(sr_path)
    assert str(sr.StudyInstanceUID) == study
    sent = {str(header(p).SOPInstanceUID) for p in
            [*res.prediction.sr_paths, *res.prediction.sc_paths, *res.prediction.pm_paths]}
    assert set(res.stored.stored) == sent
    series = {r["SeriesInstanceUID"]: r["Modality"]
              for r in pacs.query("series", StudyInstanceUID=study)}
    assert series[str(sr.SeriesInstanceUID)] == "SR"
    refs = {str(e.value) for e in pydicom.dcmread(sr_path).iterall()
            if e.keyword == "ReferencedSOPInstanceUID"}
    assert {str(header(p).SOPInstanceUID) for p in in_study} <= refs


@pytest.mark.slow
def test_predict_cli_source_over_dimse(orthanc, local_run, tmp_path, capsys):  # noqa: F811
    """The ``dicomml predict --aet ... --study UID`` source, wired as cli.predict expects."""
    import argparse

    from dicomml.cli import predict as predict_cli
    from dicomml.cli.predict import pacs_source as cli_source

    run, studies = local_run
    study, in_study = sorted(studies.items())[1]
    pacs = DicomwebPacs(orthanc.url, timeout=30, retries=1)
    pacs.store(in_study)
    parser = argparse.ArgumentParser()
    predict_cli.add_arguments(parser)
    args = parser.parse_args([str(run), "--out", str(tmp_path / "out"), "--aet", orthanc.aet,
                              "--host", orthanc.host, "--port", str(orthanc.dicom_port),
                              "--study", study, "--no-progress", "--workers", "0"])
    assert cli_source(args) == 0
    out = capsys.readouterr().out
    assert study in out and "stored " in out and "into study" in out
    series = {r["Modality"] for r in pacs.query("series", StudyInstanceUID=study)}
    assert "SR" in series
    assert cli_source(parser.parse_args([str(run), "--out", str(tmp_path)])) is None
