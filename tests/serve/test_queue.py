"""The persistent queue and the serve options (no network, no TensorFlow)."""

from __future__ import annotations

import pytest

from dicomml.errors import ConfigError
from dicomml.serve.config import ServeConfig, load_serve_toml, parse_destination
from dicomml.evaluate.prediction import study_key
from dicomml.serve.queue import JobQueue


def _add(q, study, sop, now, series="1.2.3.1"):
    return q.add_instance(study, series, sop, "1.2.840.10008.5.1.4.1.1.2", f"/s/{sop}", 100,
                          now=now)


def test_state_machine_quiet_period_and_claims(tmp_path):
    q = JobQueue(tmp_path / "queue.sqlite")
    assert _add(q, "1.2.3", "1.2.3.1.1", now=100.0)
    assert _add(q, "1.2.3", "1.2.3.1.2", now=104.0)
    assert not _add(q, "1.2.3", "1.2.3.1.2", now=105.0)  # received twice: stored once
    row = q.study("1.2.3")
    assert (row["state"], row["n_instances"], row["bytes"]) == ("receiving", 2, 200)
    assert row["key"] == study_key("1.2.3") and "1.2.3" not in row["key"]
    assert q.complete_quiet(10, now=113.9) == []  # 9.9 s since the last instance
    assert q.complete_quiet(10, now=114.0) == ["1.2.3"]
    assert q.claim(2, now=115) == [("1.2.3", "infer")]
    assert q.claim(2, now=115) == []  # claimed once
    q.to_sending("1.2.3", [{"series": "1.2.3.1", "eligible": True}], ["/o/SR.dcm"], "x")
    q.send_failed("1.2.3", "refused", retry_at=130.0)
    assert q.claim(2, now=129) == []
    assert q.claim(2, now=130) == [("1.2.3", "send")]
    q.finish("1.2.3", "done", latency=1.5)
    st = q.status()
    assert st["counts"]["done"] == 1 and st["latency_s"]["median"] == 1.5
    assert st["studies"][0]["attempts"] == 1


def test_recover_after_a_crash(tmp_path):
    q = JobQueue(tmp_path / "queue.sqlite")
    for i, study in enumerate(("1.1", "1.2")):
        _add(q, study, f"{study}.9", now=0.0 + i)
    q.complete_quiet(1, now=10)
    assert len(q.claim(5, now=10)) == 2
    q.to_sending("1.2", [], ["/o"], "x")
    q.close()
    q = JobQueue(tmp_path / "queue.sqlite")  # a new process after kill -9
    assert q.recover(now=11) == {"inferring": 1, "sending": 1, "receiving": 0}
    assert sorted(q.claim(5, now=11)) == [("1.1", "infer"), ("1.2", "send")]


def test_recover_restarts_the_quiet_period_of_a_receiving_study(tmp_path):
    """Killed while a study was received: its quiet time is counted from the restart, so
    the instances a sender sends again are in it before it is inferred."""
    q = JobQueue(tmp_path / "queue.sqlite")
    _add(q, "1.3", "1.3.1", now=0.0)  # one of its instances, then the crash
    q.close()
    q = JobQueue(tmp_path / "queue.sqlite")
    assert q.recover(now=100.0)["receiving"] == 1
    assert q.complete_quiet(5, now=102.0) == []  # quiet since the restart: 2 s only
    _add(q, "1.3", "1.3.2", now=103.0)  # the sender's second attempt
    assert q.complete_quiet(5, now=107.0) == []
    assert q.complete_quiet(5, now=108.5) == ["1.3"]
    assert q.study("1.3")["n_instances"] == 2


def test_new_instance_reopens_a_study_without_duplicating(tmp_path):
    q = JobQueue(tmp_path / "queue.sqlite")
    _add(q, "1.5", "1.5.1", now=0)
    q.complete_quiet(1, now=5)
    q.claim(1, now=5)
    _add(q, "1.5", "1.5.2", now=6)  # arrives while inferring
    assert q.study("1.5")["state"] == "inferring"
    q.finish("1.5", "done")
    assert q.study("1.5")["state"] == "receiving"  # inferred again with both instances
    assert q.trigger("1.5") and q.complete_quiet(1000, now=7) == ["1.5"]
    q.mark_purged("1.5")
    assert q.spool_bytes() == 0 and q.instances("1.5") == []


def test_destinations_and_toml(tmp_path):
    d = parse_destination("dimse://ORTHANC@10.0.0.5:4242")
    assert (d.kind, d.aet, d.host, d.port) == ("dimse", "ORTHANC", "10.0.0.5", 4242)
    assert parse_destination("http://pacs:8042/dicom-web/").url == "http://pacs:8042/dicom-web"
    for bad in ("ORTHANC@host:4242", "dimse://ORTHANC@host:99999", "dimse://@h:1"):
        with pytest.raises(ConfigError):
            parse_destination(bad)
    (tmp_path / "serve.toml").write_text(
        '[serve]\nrun_dir = "run"\nport = 11113\nsend_to = ["dimse://A@h:1"]\n'
        'allowed_aets = ["ORTHANC"]\n', encoding="utf-8")
    cfg = load_serve_toml(tmp_path / "serve.toml", port=11114)
    assert cfg.run_dir == tmp_path / "run" and cfg.port == 11114
    assert cfg.allowed_aets == ("ORTHANC",) and cfg.destinations[0].aet == "A"
    assert cfg.bind == "127.0.0.1"
    (tmp_path / "bad.toml").write_text('[serve]\nrun_dir = "r"\nstable_secnds = 3\n',
                                       encoding="utf-8")
    with pytest.raises(ConfigError, match="stable_seconds"):
        load_serve_toml(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="AE title"):
        ServeConfig(run_dir="r", ae_title="A" * 17)


def test_retention_cleans_finished_studies_only(tmp_path):
    from dicomml.serve.node import Node

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text('[data]\nmodality = "CT"\n', encoding="utf-8")
    (run / "model.keras").write_bytes(b"not loaded by the clean-up")
    node = Node(ServeConfig(run_dir=run, spool=tmp_path / "spool", retention_hours=1))
    q = node.queue
    dirs = {}
    for study in ("1.7", "1.8"):
        d = node.scp.root / study / "1.1"
        d.mkdir(parents=True)
        (d / "x.dcm").write_bytes(b"x")
        dirs[study] = d.parent
        _add(q, study, f"{study}.1", now=0)
    q.complete_quiet(0, now=1)
    ((done, _),) = q.claim(1, now=1)  # one → inferring, the other stays complete
    other = ({"1.7", "1.8"} - {done}).pop()
    q.finish(done, "done")
    import time

    assert node.clean(now=time.time() + 1800) == 0  # within the retention
    assert node.clean(now=time.time() + 3601) == 1
    assert not dirs[done].exists() and dirs[other].exists()
    assert q.study(done)["purged"] == 1 and q.spool_bytes() == 100
    q.close()


def test_status_verb_prints_json_without_uids(tmp_path, capsys):
    import json

    from dicomml.cli import main

    q = JobQueue(tmp_path / "spool" / "queue.sqlite")
    _add(q, "1.2.826.0.1.99", "1.2.826.0.1.99.1", now=0)
    q.close()
    assert main(["serve", "--status", "--spool", str(tmp_path / "spool")]) == 0
    out = capsys.readouterr().out
    st = json.loads(out)
    assert st["counts"]["receiving"] == 1 and st["spool_bytes"] == 100
    assert "1.2.826.0.1.99" not in out
    assert main(["serve", "--trigger", "1.2.826.0.1.99", "--spool",
                 str(tmp_path / "spool")]) == 0
    assert main(["serve", "--status", "--spool", str(tmp_path / "nowhere")]) == 2


def test_a_study_reopened_after_its_result_was_sent_is_a_new_version(tmp_path):
    q = JobQueue(tmp_path / "queue.sqlite")
    _add(q, "1.7", "1.7.1", now=0)
    q.complete_quiet(1, now=5)
    q.claim(1, now=5)
    assert q.begin_inference("1.7") == 0
    q.close()
    q = JobQueue(tmp_path / "queue.sqlite")  # killed while inferring: nothing was sent
    q.recover(now=6)
    q.claim(1, now=6)
    assert q.begin_inference("1.7") == 0  # the same version, so the same result UIDs
    q.to_sending("1.7", [], ["/o/SR.dcm"], "x")
    q.mark_sent("1.7")
    q.close()
    q = JobQueue(tmp_path / "queue.sqlite")  # killed while sending: sent again as it is
    q.recover(now=7)
    assert q.claim(1, now=7) == [("1.7", "send")]
    q.mark_sent("1.7")
    q.finish("1.7", "done")
    assert q.study("1.7")["version"] == 0
    _add(q, "1.7", "1.7.2", now=8)  # a new instance after the result went out
    assert q.trigger("1.7") and q.complete_quiet(1000, now=9) == ["1.7"]
    q.claim(1, now=9)
    assert q.begin_inference("1.7") == 1  # a revised result: new SOP Instance UIDs
    assert q.begin_inference("1.7") == 1  # (again, e.g. after a crash: still 1)
    assert q.status()["studies"][0]["version"] == 1


def test_a_queue_of_an_earlier_dicomml_gets_the_version_columns(tmp_path):
    import sqlite3

    path = tmp_path / "queue.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE studies (study_uid TEXT PRIMARY KEY, key TEXT NOT NULL, "
                "state TEXT NOT NULL, reason TEXT, outcome TEXT, n_instances INTEGER NOT NULL "
                "DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0, first_received REAL, "
                "last_received REAL, completed REAL, trigger INTEGER NOT NULL DEFAULT 0, "
                "reopened INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0, "
                "next_attempt REAL, first_send REAL, finished REAL, latency REAL, "
                "decisions TEXT, outputs TEXT, purged INTEGER NOT NULL DEFAULT 0)")
    con.execute("INSERT INTO studies (study_uid, key, state) VALUES ('1.8', 'k', 'done')")
    con.commit()
    con.close()
    q = JobQueue(path)
    assert (q.study("1.8")["version"], q.study("1.8")["sent"]) == (0, 0)
    assert q.begin_inference("1.8") == 0
