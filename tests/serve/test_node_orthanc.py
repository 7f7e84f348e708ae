"""dicomml as a node of a real PACS: Orthanc (in a private network namespace) sends studies
to ``dicomml serve`` (a child process), which stores its SR and heatmaps back into Orthanc.

The model is the shared tiny run of :mod:`tests.evaluate.runfolder` (head CT, 64x64).
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pydicom
import pytest

from dicomml.report.sr import read_sr
from dicomml.evaluate.prediction import study_key
from tests.evaluate.runfolder import shared_run
from tests.pacs.orthanc import orthanc, running_orthanc  # noqa: F401 - fixtures
from tests.serve.harness import (NodeProcess, orthanc_send, results_in, storescu, upload,
                                 wait_for)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return shared_run(tmp_path_factory)


def ct_study(folder: Path, seed: int, n_slices: int = 3) -> list[Path]:
    from dicomml.testing import write_ct_series

    return write_ct_series(folder / f"ct{seed}", seed=seed, n_slices=n_slices, rows=64,
                           columns=64, body="head")


def _uids(paths) -> tuple[str, set[str]]:
    dss = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    return str(dss[0].StudyInstanceUID), {str(d.SOPInstanceUID) for d in dss}


def _check_one_result(orthanc, study_uid: str, sources: set[str]) -> None:
    res = results_in(orthanc, study_uid)
    assert len(res.get("SR", [])) == 1, {k: len(v) for k, v in res.items()}
    sr = res["SR"][0]
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".dcm") as f:
        sr.save_as(f.name)
        content = read_sr(f.name)
    assert content.study_instance_uid == study_uid
    got = {sop for _, sop in content.references}
    assert got == sources, (f"the SR references {len(got)} of the study's {len(sources)} "
                            f"instances ({len(got - sources)} others)")
    # a heatmap (Secondary Capture and Parametric Map) for a positive study only, once
    n = 1 if content.present else 0
    assert (len(res.get("SC", [])), len(res.get("PM", []))) == (n, n), res.keys()


@pytest.fixture
def node(running_orthanc, run, tmp_path):
    n = NodeProcess(run, tmp_path / "spool", running_orthanc)
    n.start()
    yield n
    if n.proc is not None:
        n.kill()


@pytest.mark.slow
def test_orthanc_sends_a_study_and_gets_one_sr_back(running_orthanc, run, tmp_path):
    # threshold 0: every study is positive, so its heatmaps are sent too
    node = NodeProcess(run, tmp_path / "spool", running_orthanc, extra=("--threshold", "0"))
    node.start()
    try:
        _one_study_then_mr(running_orthanc, node, tmp_path)
    finally:
        node.kill()


def _one_study_then_mr(running_orthanc, node, tmp_path):
    paths = ct_study(tmp_path, seed=101)
    study_uid, sources = _uids(paths)
    orthanc_send(running_orthanc, upload(running_orthanc, paths))
    wait_for(lambda: node.states().get(study_key(study_uid)) == "done", 180, "the study")
    _check_one_result(running_orthanc, study_uid, sources)
    assert len(results_in(running_orthanc, study_uid)["SC"]) == 1
    # Orthanc routes the whole study (sources + our SR, SC, PM) back: nothing to do
    orthanc_send(running_orthanc, upload(running_orthanc, paths[:1]))
    row = {s["key"]: s for s in node.status()["studies"]}[study_key(study_uid)]
    assert (row["state"], row["n_instances"]) == ("done", len(paths))
    # an MR study is not for a CT model: no result, the decision recorded
    from dicomml.testing import write_mr_series

    mr = write_mr_series(tmp_path / "mr", seed=5, n_slices=3, rows=64, columns=64)
    mr_uid, _ = _uids(mr)
    assert storescu(mr).returncode == 0
    wait_for(lambda: node.states().get(study_key(mr_uid)) == "done", 120, "the MR study")
    assert results_in(running_orthanc, mr_uid).get("SR") is None
    st = {s["key"]: s for s in node.status()["studies"]}[study_key(mr_uid)]
    assert st["outcome"] == "ineligible"
    assert [(d["decision"], d["modality"], d["rule"]) for d in st["decisions"]] == [
        ("skipped", "MR", "modality")], st["decisions"]
    assert "MR" in st["decisions"][0]["reason"]
    # sending the first study again changes nothing in Orthanc (same result UIDs)
    assert storescu(paths).returncode == 0
    time.sleep(3)
    _check_one_result(running_orthanc, study_uid, sources)
    # SIGTERM drains and exits 0; nothing identifying in the log
    assert node.terminate() == 0
    log = node.log.read_text(errors="replace")
    for p in (paths[0], mr[0]):
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        assert str(ds.PatientName) not in log and str(ds.PatientID) not in log
        assert str(ds.StudyInstanceUID) not in log


@pytest.mark.slow
def test_results_by_stow_rs(running_orthanc, run, tmp_path):
    node = NodeProcess(run, tmp_path / "spool", running_orthanc, extra=("--threshold", "0"),
                       send_to=running_orthanc.url)
    node.start()
    try:
        paths = ct_study(tmp_path, seed=111)
        study_uid, sources = _uids(paths)
        assert storescu(paths).returncode == 0
        wait_for(lambda: node.states().get(study_key(study_uid)) == "done", 180, "the study")
    finally:
        node.kill()
    _check_one_result(running_orthanc, study_uid, sources)


@pytest.mark.slow
def test_polling_a_dicomweb_pacs(running_orthanc, run, tmp_path):
    running_orthanc.clear()  # only this study to poll
    paths = ct_study(tmp_path, seed=121)
    study_uid, sources = _uids(paths)
    upload(running_orthanc, paths)  # in the PACS; nobody sends it to the node
    node = NodeProcess(run, tmp_path / "spool", running_orthanc,
                       extra=("--poll", running_orthanc.url, "--poll-seconds", "1"))
    node.start()
    try:
        key = study_key(study_uid)
        wait_for(lambda: node.states().get(key) == "done", 180, "the polled study")
        time.sleep(4)  # more polls see our results in the study: they are not inputs
        row = {s["key"]: s for s in node.status()["studies"]}[key]
        assert (row["state"], row["n_instances"]) == ("done", len(paths))
    finally:
        node.kill()
    _check_one_result(running_orthanc, study_uid, sources)


@pytest.mark.slow
def test_twenty_concurrent_senders(running_orthanc, node, tmp_path):
    studies = [ct_study(tmp_path, seed=200 + i) for i in range(20)]
    done: list = []
    threads = [threading.Thread(target=lambda p=p: done.append(storescu(p)))
               for p in studies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.returncode for r in done] == [0] * 20, [r.stderr for r in done if r.returncode]
    keys = {study_key(_uids(p)[0]) for p in studies}
    wait_for(lambda: all(node.states().get(k) == "done" for k in keys), 600, "20 studies")
    for p in studies:
        _check_one_result(running_orthanc, *_uids(p))
    assert node.status()["counts"]["done"] == 20


@pytest.mark.slow
def test_orthanc_down_while_sending_is_retried_and_stored_once(running_orthanc, node, tmp_path):
    paths = ct_study(tmp_path, seed=301)
    study_uid, sources = _uids(paths)
    key = study_key(study_uid)
    assert storescu(paths).returncode == 0
    running_orthanc.stop()
    try:
        wait_for(lambda: (node.status()["studies"][0]["attempts"] or 0) >= 2, 240,
                 "two failed sends")
        assert node.states()[key] == "sending"
    finally:
        running_orthanc.start()
    wait_for(lambda: node.states()[key] == "done", 120, "the send after Orthanc is back")
    _check_one_result(running_orthanc, study_uid, sources)


@pytest.mark.slow
def test_sigkill_at_any_moment_then_every_study_has_one_sr(running_orthanc, run, tmp_path):
    rng = random.Random(17)
    studies = [ct_study(tmp_path, seed=400 + i, n_slices=4) for i in range(10)]
    uids = [_uids(p) for p in studies]
    keys = [study_key(u) for u, _ in uids]
    # stable: longer than a sender needs to send again after the restart (see the queue's
    # recover); with 0.5 s the resend could arrive after the study was inferred on part
    node = NodeProcess(run, tmp_path / "spool", running_orthanc, stable=2.0)
    pending = list(range(len(studies)))  # studies whose send was not acknowledged
    kills = {"receiving": 0, "inferring": 0, "sending": 0, "other": 0}

    def send(which):
        for i in which:
            if storescu(studies[i], timeout=60).returncode == 0:
                pending.remove(i)

    try:
        for round_ in range(10):
            node.start()
            # one study per round (the first one not acknowledged): a whole batch sent at
            # once was received, inferred and sent within the first round on a fast machine
            sender = threading.Thread(target=send, args=(pending[:1],))
            sender.start()
            if round_ == 0:  # one kill while results wait for a stopped Orthanc
                running_orthanc.stop()
                wait_for(lambda: "sending" in node.states().values(), 120, "a study sending")
            else:  # at a random moment of this round's phase (fixed delays after the
                # start were machine-dependent: a fast machine was past every phase)
                want = ("receiving", "inferring")[round_ % 2]
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    now = node.states()
                    if want in now.values() or (not pending and all(
                            now.get(k) == "done" for k in keys)):
                        break
                    time.sleep(0.02)
                time.sleep(rng.uniform(0.0, 0.15))
            states = set(node.states().values())
            node.kill()
            running_orthanc.start()
            sender.join()
            hit = [s for s in ("sending", "inferring", "receiving") if s in states]
            kills[hit[0] if hit else "other"] += 1
        node.start()
        while pending:
            send(list(pending))
        wait_for(lambda: all(node.states().get(k) == "done" for k in keys), 600,
                 "every study done after the kills")
    finally:
        node.kill()
    for u, sources in uids:
        _check_one_result(running_orthanc, u, sources)
    assert kills["sending"] >= 1 and kills["inferring"] + kills["receiving"] >= 5, kills
    assert node.status()["counts"]["done"] == len(studies)


@pytest.mark.slow
def test_new_instances_after_the_result_was_sent_give_a_revised_result(running_orthanc, run,
                                                                      tmp_path):
    """Orthanc keeps the first copy of a SOP Instance UID (``OverwriteInstances`` is false by
    default): a result revised under the old UIDs would be dropped and the stale one shown.
    The revision is a new instance of the same series, Instance Number 2, and its SR names
    the first in (0040,A360) Predecessor Documents Sequence."""
    node = NodeProcess(run, tmp_path / "spool", running_orthanc, extra=("--threshold", "0"))
    node.start()
    try:
        paths = ct_study(tmp_path, seed=501, n_slices=4)
        study_uid, sources = _uids(paths)
        key = study_key(study_uid)
        assert storescu(paths[:3]).returncode == 0
        wait_for(lambda: node.states().get(key) == "done", 180, "the first result")
        _check_one_result(running_orthanc, study_uid, _uids(paths[:3])[1])
        first = results_in(running_orthanc, study_uid)
        assert storescu(paths[3:]).returncode == 0  # a late slice of the same series
        wait_for(lambda: node.states().get(key) == "done"
                 and node.status()["studies"][0]["n_instances"] == 4, 180,
                 "the revised result")
        assert node.status()["studies"][0]["version"] == 1
    finally:
        node.kill()
    res = results_in(running_orthanc, study_uid)
    assert {k: len(v) for k, v in res.items()} == {"SR": 2, "SC": 2, "PM": 2}
    for kind in ("SR", "SC", "PM"):
        (old,) = first[kind]
        new = [d for d in res[kind] if d.SOPInstanceUID != old.SOPInstanceUID]
        assert len(new) == 1 and int(new[0].InstanceNumber) == 2
        assert new[0].SeriesInstanceUID == old.SeriesInstanceUID
    (old,) = first["SR"]
    (new,) = [d for d in res["SR"] if d.SOPInstanceUID != old.SOPInstanceUID]
    (ref,) = new.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0] \
        .ReferencedSOPSequence
    assert ref.ReferencedSOPInstanceUID == old.SOPInstanceUID
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".dcm") as f:
        new.save_as(f.name)
        assert {sop for _, sop in read_sr(f.name).references} == sources  # all four slices
