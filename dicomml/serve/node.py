"""The DICOM node: receive (C-STORE SCP) → study complete → eligible series → predict →
results back to the PACS, driven by the persistent :class:`~dicomml.serve.queue.JobQueue`.

One loop (the calling thread) marks quiet studies complete, hands jobs to a bounded pool of
``max_concurrent`` threads, and cleans the spool after the retention period; with ``poll``
a thread polls a DICOMweb PACS (:class:`~dicomml.serve.poll.DicomwebPoller`). A job infers a
study (:func:`dicomml.evaluate.predict` on its eligible series, result UIDs derived from the
study, the run, the model and the study's result version:
:func:`dicomml.evaluate.prediction.result_uids`; a study re-opened after its result was sent
gets a revised result under new SOP Instance UIDs, its SR naming the previous one) and sends
the SR and heatmaps to every destination; a failed send is retried with exponential
back-off (up to a minute between tries) for ``send_timeout_hours``. SIGTERM (or
:meth:`Node.stop`) stops receiving, lets the jobs in progress finish, and returns; whatever
is left is in the queue for the next start. Logs name studies by pseudonymous keys only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dicomml.errors import ConfigError
from dicomml.serve.queue import JobQueue
from dicomml.serve.scp import StoreSCP

__all__ = ["Node", "serve", "run_identity"]

log = logging.getLogger("dicomml.serve")

_TICK = 0.2
_MAX_BACKOFF = 60.0


def run_identity(run_dir) -> str:
    """The run and model version: SHA-256 of ``config.toml`` and ``model.keras`` (16 hex)."""
    h = hashlib.sha256()
    for name in ("config.toml", "model.keras"):
        p = Path(run_dir) / name
        if not p.is_file():
            raise ConfigError(f"{p}: missing; 'dicomml serve' needs a trained run folder")
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


class Node:
    """A running node; :meth:`run` until :meth:`stop` (or SIGTERM)."""

    def __init__(self, config):
        self.config = config
        Path(config.spool).mkdir(parents=True, exist_ok=True)
        self.run_id = run_identity(config.run_dir)
        self.queue = JobQueue(config.queue_path)
        self.scp = StoreSCP(config, self.queue, own=self.is_own_result)
        self._stop = threading.Event()
        self._busy: set[str] = set()
        self._lock = threading.Lock()
        self._last_clean = 0.0

    def is_own_result(self, study_uid: str, series_uid: str) -> bool:
        """Whether a series is one of this run's results for the study (SR, SC, PM)."""
        from dicomml.evaluate.prediction import result_uids

        return any(result_uids(self.run_id, study_uid, kind)["series_instance_uid"]
                   == series_uid for kind in ("SR", "SC", "PM"))

    # -- life cycle --------------------------------------------------------------------
    def stop(self) -> None:
        """Ask :meth:`run` to drain and return."""
        self._stop.set()

    def run(self, *, install_signals: bool = True) -> None:
        """Receive and process until stopped; finishes the jobs in progress before returning."""
        rec = self.queue.recover()
        if any(rec.values()):
            log.warning("recovered after an interruption: %d study(ies) to infer again, "
                        "%d to send again, %d still receiving (complete after "
                        "stable_seconds from now)", rec["inferring"], rec["sending"],
                        rec["receiving"])
        if install_signals and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self.stop())
            signal.signal(signal.SIGINT, lambda *_: self.stop())
        self.scp.start()
        poller = None
        if self.config.poll:
            poller = threading.Thread(target=self._poll, name="serve-poll", daemon=True)
            poller.start()
        log.info("listening as %s on %s:%d; spool %s; results to %s", self.config.ae_title,
                 self.config.bind, self.config.port, self.config.spool,
                 ", ".join(map(str, self.config.destinations)) or "the spool only")
        pool = ThreadPoolExecutor(self.config.max_concurrent, thread_name_prefix="serve")
        try:
            while not self._stop.is_set():
                self.tick(pool)
                self._stop.wait(_TICK)
        finally:
            self.scp.stop()
            if poller is not None:
                poller.join(timeout=120)
            pool.shutdown(wait=True)
            self.queue.close()
            log.info("stopped; the work in progress is finished")

    def tick(self, pool) -> None:
        """One round: completions, new jobs for free slots, retention clean-up."""
        now = time.time()
        for uid in self.queue.complete_quiet(self.config.stable_seconds, now):
            log.info("study %s complete", self.queue.study(uid)["key"])
        with self._lock:
            free = self.config.max_concurrent - len(self._busy)
        for uid, kind in self.queue.claim(free, now):
            with self._lock:
                self._busy.add(uid)
            pool.submit(self._job, uid, kind)
        if now - self._last_clean > 60:
            self._last_clean = now
            self.clean(now)

    def _poll(self) -> None:
        """Poll the configured DICOMweb PACS every ``poll_seconds`` until stopped."""
        from dicomml.pacs.errors import PacsError
        from dicomml.serve.poll import DicomwebPoller

        poller = DicomwebPoller(self.config.poll, self.queue, self.scp.root,
                                self.is_own_result, self.scp.max_spool)
        while not self._stop.is_set():
            try:
                n = poller.poll_once()
                if n:
                    log.info("polling: %d new instance(s)", n)
            except PacsError as e:
                log.warning("polling %s failed: %s", self.config.poll, e)
                self.queue.log_event("", "WARNING", f"polling failed: {e}")
            self._stop.wait(self.config.poll_seconds)

    def _job(self, uid: str, kind: str) -> None:
        try:
            if kind == "infer":
                self.infer(uid)
            self.send(uid)
        except Exception as e:  # noqa: BLE001 - one study never stops the node
            key = self.queue.study(uid)["key"]
            msg = f"{type(e).__name__}: {e}"
            log.error("study %s failed: %s", key, msg)
            self.queue.log_event(key, "ERROR", msg)
            self.queue.finish(uid, "failed", reason=msg)
        finally:
            with self._lock:
                self._busy.discard(uid)

    # -- work --------------------------------------------------------------------------
    def _work_dir(self, key: str) -> Path:
        return Path(self.config.spool) / "work" / key

    def infer(self, uid: str) -> None:
        """Predict the study (the run's input contract picks its series), record the
        decision for every series and the outputs (→ sending; no result: done)."""
        from dicomml.evaluate.prediction import predict

        row = self.queue.study(uid)
        key = row["key"]
        work = self._work_dir(key)
        shutil.rmtree(work, ignore_errors=True)
        received = work / "received"  # exactly the recorded instances (no stray files)
        received.mkdir(parents=True)
        for i, inst in enumerate(self.queue.instances(uid)):
            _link(inst["path"], received / f"{i:06d}.dcm")
        version = self.queue.begin_inference(uid)
        if version:
            log.info("study %s: new instances after its result was sent; inferring result "
                     "version %d (new SOP Instance UIDs, the SR names version %d)", key,
                     version + 1, version)
        t0 = time.monotonic()
        result = predict(self.config.run_dir, received, work / "out",
                         threshold=self.config.threshold, aggregation=self.config.aggregation,
                         write_sc=self.config.write_sc, workers=0, progress=False,
                         uid_key=self.run_id, result_version=version)
        decisions = [{"series": s.get("series_instance_uid", ""),
                      **{k: s.get(k) for k in ("modality", "n_instances", "decision", "rule",
                                               "reason")}} for s in result.series]
        if not any(d["decision"] in ("predict", "forced") for d in decisions):
            log.warning("study %s: no series meets the run's input contract (%s); no result",
                        key, "; ".join(f"{d['modality']}: {d['reason']}" for d in decisions)
                        or "nothing readable")
            self.queue.finish(uid, "done", decisions=decisions, outcome="ineligible")
            return
        if not result.sr_paths:
            why = "; ".join(s["reason"] for s in result.skipped[:3]) or "no image predicted"
            raise RuntimeError(f"no SR could be made ({why})")
        outputs = [str(p) for p in (*result.sr_paths, *result.sc_paths, *result.pm_paths)]
        s = result.studies[0]
        outcome = (f"{s['finding']}: {'present' if s['present'] else 'absent'} "
                   f"p={s['probability']:.3f}")
        log.info("study %s inferred in %.1f s: %s", key, time.monotonic() - t0, outcome)
        self.queue.to_sending(uid, decisions, outputs, outcome)

    def send(self, uid: str) -> None:
        """Store the study's outputs to every destination; done, or retry later."""
        from dicomml.pacs.errors import PacsError
        from dicomml.pacs.remote import store_results

        row = self.queue.study(uid)
        if row["state"] != "sending":
            return
        key = row["key"]
        outputs = json.loads(row["outputs"] or "[]")
        if not all(os.path.exists(p) for p in outputs):  # work folder lost: infer again
            log.warning("study %s: results missing from the spool; inferring again", key)
            self.queue.requeue(uid)
            return
        now = time.time()
        if not row["sent"]:  # committed before the first byte of the first attempt
            self.queue.mark_sent(uid)
        try:
            for dest in self.config.destinations:
                with dest.client(self.config.ae_title) as client:
                    store_results(client, outputs, uid)
        except PacsError as e:
            first = row["first_send"] or now
            attempts = int(row["attempts"])
            give_up = (not e.transient
                       or now - first > self.config.send_timeout_hours * 3600)
            wait = min(2.0 ** attempts, _MAX_BACKOFF)
            log.warning("study %s: sending failed (attempt %d): %s%s", key, attempts + 1, e,
                        "; giving up" if give_up else f"; retry in {wait:.0f} s")
            self.queue.log_event(key, "WARNING", f"send attempt {attempts + 1}: {e}")
            self.queue.send_failed(uid, str(e), None if give_up else now + wait)
            return
        start = (row["completed"] if row["trigger"]
                 else row["last_received"] + self.config.stable_seconds)
        latency = time.time() - start
        self.queue.finish(uid, "done", latency=latency)
        log.info("study %s done: %d object(s) stored, %.2f s after completion", key,
                 len(outputs), latency)

    def clean(self, now: float | None = None) -> int:
        """Delete the spool and work folders of studies finished before the retention."""
        n = 0
        for uid in self.queue.expired(self.config.retention_hours * 3600, now):
            from dicomml._atomic import safe_join

            row = self.queue.study(uid)
            shutil.rmtree(safe_join(Path(self.config.spool) / "studies", uid),
                          ignore_errors=True)
            shutil.rmtree(self._work_dir(row["key"]), ignore_errors=True)
            self.queue.mark_purged(uid)
            n += 1
        return n


def _link(src, dst: Path) -> None:
    """Hard-link ``src`` at ``dst`` (a copy across file systems)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def serve(config) -> None:
    """Run a node with ``config`` (:class:`~dicomml.serve.config.ServeConfig`) until SIGTERM."""
    Node(config).run()
