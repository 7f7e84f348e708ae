"""The per-study outputs of a run: one Structured Report per study and Grad-CAM heatmaps.

Written by :func:`write_study_reports` for ``predict`` (:mod:`dicomml.evaluate.prediction`)
and for ``evaluate`` (:mod:`dicomml.evaluate.evaluation`); messages name a study by its
pseudonym (:func:`study_key`) and never hold patient identifiers (:func:`safe_message`);
the UIDs of the objects written are derived by :func:`result_uids`.
"""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from dicomml._atomic import safe_join
from dicomml.evaluate.selection import skip_row
from dicomml.io.guards import DEFER_SIZE

__all__ = ["write_study_reports", "study_key", "result_uids", "safe_message"]

log = logging.getLogger("dicomml.evaluate.prediction")


def study_key(study_instance_uid: str) -> str:
    """Pseudonym of a study in messages: 16 hex digits of
    ``sha256("dicomml-study:" + StudyInstanceUID)`` (listed beside the UID in the JSON)."""
    return hashlib.sha256(("dicomml-study:" + str(study_instance_uid)).encode()).hexdigest()[:16]


def _algorithm(run, threshold, how, op: dict | None = None, forced: str = ""):
    from dicomml import __version__
    from dicomml.report.sr import AlgorithmInfo

    params = [f"threshold={threshold:.6g}", f"aggregation={how}",
              "classes=" + ",".join(run.classes)]
    if op and op.get("threshold") is not None and float(op["threshold"]) == threshold:
        params.append(f"operating_point={op.get('method') or 'given'} on "
                      f"{op.get('chosen_on') or 'unknown split'} ({op.get('level') or ''})")
    try:
        params.append(f"preprocess={run.pipeline.config_hash()[:12]}")
    except AttributeError:
        pass
    params.append(f"input_contract=FORCED outside the contract ({forced})" if forced
                  else "input_contract=met")
    return AlgorithmInfo(name=str(run.config.model.name or "dicomml model")[:64],
                         version=f"dicomml {__version__} config {run.config_hash}",
                         parameters=tuple(params))


def write_study_reports(out_dir, run, model, examples: pd.DataFrame, table: pd.DataFrame, *,
                        threshold: float, aggregation: str = "max", write_sr: bool = True,
                        write_sc: bool = True, skipped: list | None = None,
                        forced: dict | None = None, operating: dict | None = None,
                        notes: list | None = None, uid_key: str | None = None,
                        result_version: int = 0):
    """One SR per study of ``table`` and a Grad-CAM heatmap per positive study.

    ``table`` holds the probability columns and ``study_instance_uid`` of the decoded
    examples, indexed like ``examples`` (``path``, ``frame``). ``forced`` maps the Series
    Instance UIDs predicted outside the input contract to the rule they failed (their SRs
    say so). Returns ``(sr_paths, sc_paths, studies)`` where ``studies`` are per-study
    summaries (with the pseudonymous ``study_key`` that messages use); ``sc_paths`` holds
    the Secondary Captures and the Parametric Maps (``PM_GRADCAM_*``). ``uid_key`` and
    ``result_version``: see :func:`predict`.
    """
    from dicomml.evaluate.aggregate import aggregate_studies
    from dicomml.evaluate.runio import prob_columns

    classes = run.classes
    pos = run.positive_index
    cols = prob_columns(classes, run.task)
    skipped = [] if skipped is None else skipped
    notes = [] if notes is None else notes
    forced = forced or {}
    studies = aggregate_studies(table, cols, how=aggregation, task=run.task)
    sr_paths, sc_paths, summary = [], [], []
    # a study's Grad-CAM (TensorFlow, which releases the GIL) runs in a thread while this
    # one builds its SR (highdicom, pure Python): on two cores they overlap
    with ThreadPoolExecutor(1, thread_name_prefix="dicomml-gradcam") as pool:
        for row in studies.itertuples(index=False):
            _study_reports(row, out_dir, run, model, examples, table, pool, classes=classes,
                           pos=pos, cols=cols, threshold=threshold, aggregation=aggregation,
                           write_sr=write_sr, write_sc=write_sc, skipped=skipped,
                           forced=forced, operating=operating, notes=notes, uid_key=uid_key,
                           version=result_version, out=(sr_paths, sc_paths, summary))
    return sr_paths, sc_paths, summary


def _study_reports(row, out_dir, run, model, examples, table, pool, *, classes, pos, cols,
                   threshold, aggregation, write_sr, write_sc, skipped, forced, operating,
                   notes, uid_key, version, out):
    """The SR and the heatmaps of one study (a row of the aggregated table) into ``out``
    = ``(sr_paths, sc_paths, summary)``; the heatmaps are computed in ``pool``."""
    import pydicom

    from dicomml.report.sr import write_sr as _write

    sr_paths, sc_paths, summary = out
    study_uid = getattr(row, "study_instance_uid")
    key = study_key(study_uid)
    p = np.array([getattr(row, c) for c in cols], dtype=np.float64)
    if len(classes) == 2:
        finding_idx, prob = pos, float(p[pos])
        present = prob >= threshold
    else:
        finding_idx = int(np.argmax(p))
        prob, present = float(p[finding_idx]), True
    rows = table[table["study_instance_uid"] == study_uid]
    ex = examples.loc[rows.index]
    paths = list(dict.fromkeys(ex["path"].astype(str)))
    rules = sorted({forced[s] for s in ex["series_instance_uid"].astype(str) if s in forced})
    summary.append({"study_instance_uid": study_uid, "study_key": key,
                    "finding": classes[finding_idx], "probability": prob,
                    "present": bool(present), "threshold": threshold,
                    "n_images": len(rows), "forced": ",".join(rules)})
    algorithm = _algorithm(run, threshold, aggregation, operating, ",".join(rules))
    heat, heat_skipped = None, []
    if write_sc and present:
        best = getattr(row, "best_index")
        heat = pool.submit(
            _heatmaps, model, run.pipeline, examples.loc[best], finding_idx, heat_skipped,
            where=f"study {key}", forced=bool(rules),
            uids={k: {**result_uids(uid_key, study_uid, k, version),
                      "instance_number": version + 1} for k in ("SC", "PM")})
    if write_sr:
        where = f"study {key}"
        sources = []
        try:
            sources = [pydicom.dcmread(q, stop_before_pixels=True,
                                       defer_size=DEFER_SIZE) for q in paths]
            sr = _build_sr(sources, classes[finding_idx], prob, present, algorithm,
                           run.config, where=where, notes=notes, forced=bool(rules),
                           instance_number=version + 1,
                           predecessors=previous_sr(uid_key, study_uid, version),
                           **result_uids(uid_key, study_uid, "SR", version))
            sr_paths.append(_write(sr, safe_join(out_dir, f"SR_{study_uid}.dcm")))
        except Exception as e:  # noqa: BLE001 - one study's SR never stops the others
            why = safe_message(e, sources)
            log.warning("%s: no SR: %s", where, why)
            skipped.append(skip_row("study", "sr", f"SR not written: {why}",
                                    path=paths[0], study=study_uid))
    if heat is not None:
        made = heat.result()
        skipped.extend(heat_skipped)  # after the SR's: the order of a serial run
        for kind, obj in made:
            name = f"GRADCAM_{study_uid}.dcm" if kind == "sc" else \
                f"PM_GRADCAM_{study_uid}.dcm"
            sc_paths.append(_write(obj, safe_join(out_dir, name)))


_IDENTIFYING = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber",
                "OtherPatientIDs", "ReferringPhysicianName")


def safe_message(e: BaseException, sources=()) -> str:
    """An exception as a message: its text (its type only when the text is empty), with
    any patient identifier of ``sources`` that a library put into it replaced."""
    text = str(e).strip() or f"{type(e).__name__} (no message)"
    for ds in sources:
        for kw in _IDENTIFYING:
            elem = ds.get_item(kw) if kw in ds else None
            raw = getattr(elem, "value", None)
            raw = raw.decode("latin-1", "replace") if isinstance(raw, bytes) else str(raw or "")
            for v in {raw.strip(" \x00"), *raw.strip(" \x00").split("^")}:
                if len(v) >= 3 and v in text:
                    text = text.replace(v, f"<{kw}>")
    return text


def result_uids(uid_key: str | None, study_uid: str, kind: str, version: int = 0) -> dict:
    """``series_instance_uid`` / ``sop_instance_uid`` of a study's ``kind`` result object.

    Derived (PS3.5 B.2, :func:`pydicom.uid.generate_uid` with entropy sources) from
    ``uid_key`` (e.g. the run and model version), the Study Instance UID and ``kind``
    (``"SR"``, ``"SC"``, ``"PM"``); empty (new random UIDs) when ``uid_key`` is None.

    ``version``: the how-manieth result of the study this is (0: the first). A later
    version keeps the series and gets a new SOP Instance UID: a PACS keeps the first
    instance it stored under a UID (Orthanc's default), so a revised result written under
    the old UID would be dropped there and the stale one shown.
    """
    if uid_key is None:
        return {}
    from pydicom.uid import generate_uid

    src = ["dicomml-result", str(uid_key), str(study_uid), kind]
    inst = [*src, "instance"] + ([f"version {int(version)}"] if version else [])
    return {"series_instance_uid": generate_uid(entropy_srcs=[*src, "series"]),
            "sop_instance_uid": generate_uid(entropy_srcs=inst)}


def previous_sr(uid_key: str | None, study_uid: str, version: int) -> list:
    """The SR this version of a study's result replaces (:func:`result_uids`), as the
    reference of its (0040,A360) Predecessor Documents Sequence (PS3.3 C.17.2.3): version
    ``version - 1`` (which named its own predecessor); empty for the first version or
    without ``uid_key``."""
    if uid_key is None or version <= 0:
        return []
    from pydicom.dataset import Dataset
    from pydicom.uid import Comprehensive3DSRStorage

    prev = result_uids(uid_key, study_uid, "SR", version - 1)
    ref = Dataset()
    ref.StudyInstanceUID = str(study_uid)
    ref.SeriesInstanceUID = prev["series_instance_uid"]
    ref.SOPClassUID = Comprehensive3DSRStorage
    ref.SOPInstanceUID = prev["sop_instance_uid"]
    return [ref]


def _build_sr(sources, finding, prob, present, algorithm, config=None, *, where="",
              notes=None, forced=False, **uids):
    from dicomml.report.sr import build_sr
    from dicomml.train.findings import run_finding

    finding, site = run_finding(config, finding)  # [report] finding_code / _site
    desc = "dicomml AI result FORCED outside input contract" if forced else "dicomml AI result"
    return build_sr(sources, finding=finding, probability=min(max(prob, 0.0), 1.0),
                    present=bool(present), algorithm=algorithm, finding_site=site,
                    where=where, notes=notes, series_description=desc, **uids)


def _heatmaps(model, pipeline, example, class_index: int, skipped: list, *, where: str,
              forced: bool = False, uids: dict | None = None) -> list:
    """The Grad-CAM objects of one example on its source's geometry: ``[(kind, dataset)]``
    with kind "sc" (Secondary Capture) and "pm" (Parametric Map, when the source has plane
    geometry); failures are skips, never fatal to the batch."""
    import pydicom

    from dicomml.evaluate.grad_cam import gradcam
    from dicomml.io import read_image
    from dicomml.evaluate.heatmaps import heatmap_objects

    from dicomml.models.mil import is_study_model, slice_model_of

    path, frame = str(example["path"]), int(example["frame"])
    source = None
    if is_study_model(model):  # explain the slice through the study model's own encoder
        model = slice_model_of(model)
    try:
        source = pydicom.dcmread(path, stop_before_pixels=True, defer_size=DEFER_SIZE)
        image = read_image(path, frames=[frame])
        tensor = pipeline(image, 0)
        heat = gradcam(model, tensor, class_index=class_index)
        errors: list = []
        made = heatmap_objects(source, image, heat, pipeline.config, frame=frame,
                                     where=where, forced=forced, errors=errors, uids=uids)
    except Exception as e:  # noqa: BLE001 - recorded and reported, never fatal to the batch
        made, errors = [], [("heatmap", e)]
    for kind, e in errors:
        what = {"pm": "Parametric Map", "sc": "Secondary Capture"}.get(kind, "heatmap")
        why = safe_message(e, [source] if source is not None else [])
        log.warning("%s: no Grad-CAM %s for frame %d: %s", where, what, frame, why)
        skipped.append(skip_row("image", "heatmap", f"Grad-CAM {what} not written: {why}",
                                path=path, study=example["study_instance_uid"],
                                series=example["series_instance_uid"],
                                sop=example["sop_instance_uid"], frame=frame))
    return made
