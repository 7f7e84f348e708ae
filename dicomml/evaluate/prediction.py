"""``predict``: run a trained model on new, unlabelled studies and write DICOM results.

Steps: scan the inputs into a temporary Index (headers only) → keep the image instances of
the run's (0008,0060) Modality (``data.modality``, when set) → the run's slice selection →
the run's preprocessing → the model → ``predictions.csv`` (one row per image) → per study,
the aggregated probability (``"max"`` by default) and the decision at the threshold →
one Comprehensive 3D SR per study (:func:`dicomml.report.sr.build_sr`) and, for each
positive study, a Grad-CAM Secondary Capture of its highest-scoring image
(:func:`dicomml.report.sc.build_heatmap_sc`).

Output names are ``DIR/predictions.csv``, ``DIR/SR_<StudyInstanceUID>.dcm`` and
``DIR/GRADCAM_<StudyInstanceUID>.dcm`` (built with :func:`dicomml._atomic.safe_join`). The
threshold is, by default, the one ``evaluate`` chose for the study level in the run's
``metrics.json`` (else 0.5). Regression runs write predictions only (no coded finding).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dicomml._atomic import safe_join
from dicomml.errors import ConfigError

__all__ = ["PredictResult", "predict", "select_examples", "run_threshold",
           "write_study_reports"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictResult:
    """What :func:`predict` wrote and what it could not use."""

    predictions_csv: Path
    sr_paths: tuple[Path, ...] = ()
    sc_paths: tuple[Path, ...] = ()
    #: ``{"path", "reason"}`` for every input file or image that could not be used.
    skipped: tuple[dict, ...] = ()
    n_studies: int = 0
    threshold: float | None = None
    studies: tuple[dict, ...] = field(default=(), repr=False)

    @property
    def ok(self) -> bool:
        return not self.skipped


def run_threshold(run_dir, aggregation: str) -> float | None:
    """The threshold ``evaluate`` stored for level ``study_<aggregation>`` (or ``image``)."""
    path = Path(run_dir) / "metrics.json"
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for level in (f"study_{aggregation}", "image"):
        v = (metrics.get(level) or {}).get("threshold", {}).get("value")
        if v is not None:
            return float(v)
    return None


def select_examples(instances: pd.DataFrame, config: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Image instances matching the run's ``[data]`` (modality, slice selection) → examples.

    Returns ``(examples, not_selected)``; ``examples`` has ``patient_key``, the UIDs,
    ``frame`` and ``path`` (the Patient ID is replaced by its pseudonym).
    """
    from dicomml.data import patient_key
    from dicomml.data.slices import SliceSelection, select_slices

    dcfg = config.get("data", {})
    inst = instances
    keep = np.ones(len(inst), bool)
    if "is_image" in inst:
        keep &= inst["is_image"].fillna(False).astype(bool).to_numpy()
    modality = str(dcfg.get("modality") or "").upper()
    if modality and "modality" in inst:
        keep &= (inst["modality"].fillna("").astype(str).str.upper() == modality).to_numpy()
    not_selected = inst.loc[~keep, ["path"]].reset_index(drop=True)
    inst = inst[keep]
    for c in ("study_instance_uid", "series_instance_uid", "sop_instance_uid", "path"):
        inst = inst.assign(**{c: inst[c].astype(str)})
    sel = dcfg.get("slices") or {}
    ex = select_slices(inst, SliceSelection(**sel) if sel else SliceSelection())
    pid = ex["patient_id"] if "patient_id" in ex else pd.Series([""] * len(ex), index=ex.index)
    out = pd.DataFrame({
        "patient_key": pid.fillna("").astype(str).map(patient_key).to_numpy(),
        "study_instance_uid": ex["study_instance_uid"].to_numpy(),
        "series_instance_uid": ex["series_instance_uid"].to_numpy(),
        "sop_instance_uid": ex["sop_instance_uid"].to_numpy(),
        "frame": ex["frame"].astype(int).to_numpy() if len(ex) else [],
        "path": ex["path"].to_numpy(),
    })
    return out, not_selected


def _algorithm(run, threshold, how):
    from dicomml import __version__
    from dicomml.evaluate.runio import config_hash
    from dicomml.report.sr import AlgorithmInfo

    model_cfg = run.config.get("model", {})
    params = [f"threshold={threshold:.6g}", f"aggregation={how}",
              "classes=" + ",".join(run.classes)]
    try:
        params.append(f"preprocess={run.pipeline.config_hash()[:12]}")
    except AttributeError:
        pass
    return AlgorithmInfo(name=str(model_cfg.get("name") or "dicomml model")[:64],
                         version=f"dicomml {__version__} config {config_hash(run.config)}",
                         parameters=tuple(params))


def predict(run_dir, inputs, out_dir, *, threshold: float | None = None,
            write_sr: bool = True, write_sc: bool = True, aggregation: str = "max",
            batch_size: int = 32, workers: int | None = None,
            progress: bool = True) -> PredictResult:
    """Predict new studies and write ``predictions.csv``, one SR per study and Grad-CAM SCs.

    Parameters
    ----------
    run_dir : path
        A trained run folder.
    inputs : path
        A DICOM folder (or file); never written to.
    out_dir : path
        Where the results go (created).
    threshold : float, optional
        Decision threshold on the positive-class probability (binary runs); default the
        study-level threshold of the run's ``metrics.json``, else 0.5.
    write_sr, write_sc : bool
        Write the SRs / the Grad-CAM Secondary Captures of positive studies.
    aggregation : {"max", "mean"}
        How image probabilities make the study's.

    Returns
    -------
    PredictResult
    """
    from dicomml.evaluate.aggregate import normalize_aggregation
    from dicomml.evaluate.evaluation import _predictions_table
    from dicomml.evaluate.runio import load_run, positive_index, predict_examples, prob_columns
    from dicomml.io import scan
    from dicomml.report.tables import write_csv

    (how,) = normalize_aggregation(aggregation)
    run = load_run(run_dir)
    task, classes = run.task, run.classes
    if task != "regression" and len(classes) < 2:
        raise ConfigError(f"{run_dir}: the run's classes are unknown (data.classes is empty)")
    pos = positive_index(run.config, classes) if task != "regression" else 0
    if threshold is None:
        threshold = run_threshold(run_dir, how)
        threshold = 0.5 if threshold is None else threshold
    threshold = float(threshold)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="dicomml-predict-") as tmp:
        res = scan(inputs, Path(tmp) / "index.sqlite", progress=progress, workers=workers)
        with res.index() as idx:
            instances = idx.instances()
    skipped = [{"path": p, "reason": r} for p, r in res.skipped]
    examples, _ = select_examples(instances, run.config)
    cols = prob_columns(classes, task)
    if examples.empty:
        path = write_csv(out_dir / "predictions.csv", pd.DataFrame(columns=[
            "study_instance_uid", "series_instance_uid", "sop_instance_uid", "frame", *cols]))
        return PredictResult(path, skipped=tuple(skipped), threshold=threshold)

    model = run.model()
    probs = predict_examples(model, examples, run.pipeline, batch_size=batch_size,
                             workers=workers, progress=progress)
    bad = ~np.isfinite(probs).all(axis=1)
    for i in np.flatnonzero(bad):
        skipped.append({"path": str(examples["path"].iat[i]),
                        "reason": f"frame {int(examples['frame'].iat[i])} could not be "
                                  "decoded or preprocessed"})
    table = _predictions_table(examples, probs, classes, task, cols, pos,
                               threshold if task != "regression" else None)
    csv_path = write_csv(out_dir / "predictions.csv", table)
    if task == "regression" or not (write_sr or write_sc):
        return PredictResult(csv_path, skipped=tuple(skipped), threshold=threshold,
                             n_studies=int(examples["study_instance_uid"].nunique()))

    good = table[~bad].assign(patient_key=examples.loc[~bad, "patient_key"].to_numpy())
    sr_paths, sc_paths, summary = write_study_reports(
        out_dir, run, model, examples, good, threshold=threshold, aggregation=how,
        write_sr=write_sr, write_sc=write_sc, skipped=skipped)
    return PredictResult(csv_path, tuple(sr_paths), tuple(sc_paths), tuple(skipped),
                         n_studies=len(summary), threshold=threshold, studies=tuple(summary))


def write_study_reports(out_dir, run, model, examples: pd.DataFrame, table: pd.DataFrame, *,
                        threshold: float, aggregation: str = "max", write_sr: bool = True,
                        write_sc: bool = True, skipped: list | None = None):
    """One SR per study of ``table`` and a Grad-CAM SC per positive study, into ``out_dir``.

    ``table`` holds the probability columns and ``study_instance_uid`` of the decoded
    examples, indexed like ``examples`` (``path``, ``frame``). Returns
    ``(sr_paths, sc_paths, studies)`` where ``studies`` are per-study summaries.
    """
    import pydicom

    from dicomml.evaluate.aggregate import aggregate_studies
    from dicomml.evaluate.runio import positive_index, prob_columns
    from dicomml.report.sr import write_sr as _write

    classes = run.classes
    pos = positive_index(run.config, classes)
    cols = prob_columns(classes, run.task)
    skipped = [] if skipped is None else skipped
    studies = aggregate_studies(table, cols, how=aggregation, task=run.task)
    algorithm = _algorithm(run, threshold, aggregation)
    sr_paths, sc_paths, summary = [], [], []
    for row in studies.itertuples(index=False):
        study_uid = getattr(row, "study_instance_uid")
        p = np.array([getattr(row, c) for c in cols], dtype=np.float64)
        if len(classes) == 2:
            finding_idx, prob = pos, float(p[pos])
            present = prob >= threshold
        else:
            finding_idx = int(np.argmax(p))
            prob, present = float(p[finding_idx]), True
        rows = table[table["study_instance_uid"] == study_uid]
        paths = list(dict.fromkeys(examples.loc[rows.index, "path"].astype(str)))
        summary.append({"study_instance_uid": study_uid, "finding": classes[finding_idx],
                        "probability": prob, "present": bool(present), "n_images": len(rows)})
        if write_sr:
            try:
                sources = [pydicom.dcmread(q, stop_before_pixels=True) for q in paths]
                sr = _build_sr(sources, classes[finding_idx], prob, present, algorithm,
                               run.config)
            except Exception as e:  # noqa: BLE001 - one study's SR never stops the others
                # e.g. invalid UIDs in the sources, which a valid SR cannot reference
                log.warning("no SR for a study of %d image(s) (%s): %s", len(rows),
                            os.path.basename(paths[0]), type(e).__name__)
                skipped.append({"path": paths[0], "reason": "SR not written: the sources "
                                f"cannot be referenced ({type(e).__name__}: {e})"})
            else:
                sr_paths.append(_write(sr, safe_join(out_dir, f"SR_{study_uid}.dcm")))
        if write_sc and present:
            best = getattr(row, "best_index")
            sc = _heatmap_sc(model, run.pipeline, examples.loc[best], finding_idx, skipped)
            if sc is not None:
                sc_paths.append(_write(sc, safe_join(out_dir, f"GRADCAM_{study_uid}.dcm")))
    return sr_paths, sc_paths, summary


def _build_sr(sources, finding, prob, present, algorithm, config=None):
    from dicomml.report.sr import build_sr
    from dicomml.train.findings import run_finding

    finding, site = run_finding(config or {}, finding)  # [report] finding_code / _site
    return build_sr(sources, finding=finding, probability=min(max(prob, 0.0), 1.0),
                    present=bool(present), algorithm=algorithm, finding_site=site)


def _heatmap_sc(model, pipeline, example, class_index: int, skipped: list):
    """The Grad-CAM Secondary Capture of one example; ``None`` (and a skip) if impossible."""
    import pydicom

    from dicomml.evaluate.grad_cam import gradcam
    from dicomml.report.overlay import heatmap_overlay
    from dicomml.report.sc import build_heatmap_sc

    from dicomml.models.mil import is_study_model, slice_model_of

    path, frame = str(example["path"]), int(example["frame"])
    if is_study_model(model):  # explain the slice through the study model's own encoder
        model = slice_model_of(model)
    try:
        source = pydicom.dcmread(path, stop_before_pixels=True)
        tensor = pipeline.from_path(path, frame)
        heat = gradcam(model, tensor, class_index=class_index)
        n_frames = int(source.get("NumberOfFrames", 1) or 1)
        return build_heatmap_sc(source, heatmap_overlay(tensor, heat),
                                frame_numbers=[frame + 1] if n_frames > 1 else None)
    except Exception as e:  # noqa: BLE001 - recorded and reported, never fatal to the batch
        log.warning("no Grad-CAM image for %s frame %d: %s", os.path.basename(path), frame, e)
        skipped.append({"path": path, "reason": f"Grad-CAM image not written: {e}"})
        return None
