"""Result UIDs derived from (study, run, model version): a re-run replaces, never duplicates."""

from __future__ import annotations

import pydicom
import pytest

from tests.evaluate.runfolder import shared_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return shared_run(tmp_path_factory)


def _uids(paths) -> dict[str, tuple[str, str, str]]:
    out = {}
    for p in paths:
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        out[p.name] = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID),
                       str(ds.SOPInstanceUID))
    return out


@pytest.mark.slow
def test_uid_key_gives_the_same_result_uids_on_a_rerun(run, tmp_path):
    from dicomml.evaluate.prediction import predict, result_uids
    from dicomml.serve.node import run_identity

    import shutil

    from tests.evaluate.runfolder import source_instances

    src = source_instances(run.parent / "data")
    data = tmp_path / "in"
    for i, study in enumerate(sorted(src["study_instance_uid"].unique())[:2]):
        for j, p in enumerate(src.loc[src["study_instance_uid"] == study, "path"]):
            (data / str(i)).mkdir(parents=True, exist_ok=True)
            shutil.copy(p, data / str(i) / f"{j}.dcm")
    key = run_identity(run)
    a = predict(run, data, tmp_path / "a", threshold=0.0, workers=0, progress=False,
                uid_key=key)
    b = predict(run, data, tmp_path / "b", threshold=0.0, workers=0, progress=False,
                uid_key=key)
    c = predict(run, data, tmp_path / "c", threshold=0.0, workers=0, progress=False,
                uid_key=key + "-other-model")
    first = _uids([*a.sr_paths, *a.sc_paths, *a.pm_paths])
    assert len(a.sr_paths) == a.n_studies == 2 and len(a.sc_paths) == 2
    assert first == _uids([*b.sr_paths, *b.sc_paths, *b.pm_paths])
    other = _uids([*c.sr_paths, *c.sc_paths, *c.pm_paths])
    assert set(first) == set(other)
    for name, (study, series, sop) in first.items():
        assert other[name][0] == study and other[name][2] != sop  # another model: new UIDs
        kind = {"SR": "SR", "GRADCAM": "SC", "PM": "PM"}[name.split("_")[0]]
        assert result_uids(key, study, kind) == {"series_instance_uid": series,
                                                 "sop_instance_uid": sop}
    sops = [sop for _, _, sop in first.values()]
    assert len(set(sops)) == len(sops)  # SR, SC and PM of every study all differ
    plain = predict(run, data, tmp_path / "d", threshold=0.0, workers=0, progress=False)
    assert not set(sops) & {v[2] for v in _uids(plain.sr_paths).values()}


@pytest.mark.parametrize("bad", [-1, 1.0, True, "1"])
def test_result_version_must_be_a_count(tmp_path, bad):
    from dicomml.errors import ConfigError
    from dicomml.evaluate.prediction import predict

    with pytest.raises(ConfigError, match="result_version must be an integer >= 0"):
        predict(tmp_path / "no-run", tmp_path, tmp_path / "out", result_version=bad,
                progress=False)
