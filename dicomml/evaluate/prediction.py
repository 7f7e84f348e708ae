"""``predict``: run a trained model on new, unlabelled studies and write DICOM results.

Steps: the inputs' Index rows (a folder is scanned into a temporary Index, headers only;
an existing Index database is read as it is) → the run's **input contract**
(``RUN/contract.json``, :mod:`dicomml.data.contract`) applied series by series
(:func:`dicomml.evaluate.selection.select_series`): only eligible series go on, every
other series is listed with the rule it failed (``force=True`` predicts them too, and
their SR says so) → the run's slice selection and preprocessing → the model; an image the
preprocessing maps to a constant, or that cannot be read, is skipped with its reason and
never gets a probability → ``predictions.csv`` (one row per image: probabilities, the
image decision and its study's decision with the threshold each used, and a ``reason``
for every row without a probability) → per study, the aggregated probability (``"max"``
by default) and the decision at the run's **operating point** → one Comprehensive 3D SR
per study with a probability (:func:`dicomml.report.sr.build_sr`) and, for each positive
study, a Grad-CAM heatmap of its highest-scoring image on the source image's geometry
(:mod:`dicomml.evaluate.heatmaps`, :mod:`dicomml.report.heatmap`). Every skip is a row of
``skipped.csv`` (:data:`dicomml.evaluate.selection.SKIP_COLUMNS`).

Output names are ``DIR/predictions.csv``, ``DIR/skipped.csv``,
``DIR/SR_<StudyInstanceUID>.dcm``, ``DIR/GRADCAM_<StudyInstanceUID>.dcm`` (Secondary
Capture) and ``DIR/PM_GRADCAM_<StudyInstanceUID>.dcm`` (Parametric Map), built with
:func:`dicomml._atomic.safe_join`. The threshold is, by default, the run's operating point
(:func:`run_threshold`: ``metrics.json``'s ``operating_point``, else its study-level
threshold, else 0.5). Regression runs write predictions only (no coded finding).
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dicomml._atomic import ensure_writable_dir
from dicomml.data.selection import select_examples
from dicomml.errors import ConfigError
from dicomml.evaluate.reports import result_uids, safe_message, study_key, write_study_reports
from dicomml.evaluate.selection import SKIP_COLUMNS, select_series, skip_row

__all__ = ["PredictResult", "predict", "select_examples", "run_threshold",
           "write_study_reports", "study_key", "result_uids"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictResult:
    """What :func:`predict` wrote and what it could not use."""

    predictions_csv: Path
    sr_paths: tuple[Path, ...] = ()
    #: Grad-CAM Secondary Captures (``GRADCAM_<study>.dcm``).
    sc_paths: tuple[Path, ...] = ()
    #: Rows of :data:`~dicomml.evaluate.selection.SKIP_COLUMNS` (``path``, ``rule``,
    #: ``reason``...) for every file, series, image or study that was not used.
    skipped: tuple[dict, ...] = ()
    n_studies: int = 0
    threshold: float | None = None
    studies: tuple[dict, ...] = field(default=(), repr=False)
    #: One dict per input series: UIDs, modality, decision ("predict", "forced",
    #: "skipped"), rule and reason.
    series: tuple[dict, ...] = field(default=(), repr=False)
    skipped_csv: Path | None = None
    forced: bool = False
    #: Source attributes that were malformed and left out of the result objects.
    notes: tuple[str, ...] = field(default=(), repr=False)
    operating_point: dict = field(default_factory=dict, repr=False)
    #: Grad-CAM Parametric Maps (``PM_GRADCAM_<study>.dcm``).
    pm_paths: tuple[Path, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.skipped

    def to_dict(self) -> dict:
        """Machine-readable summary (``dicomml predict --json``): no patient identifier."""
        return {"threshold": self.threshold, "operating_point": self.operating_point,
                "forced": self.forced, "n_studies": self.n_studies,
                "studies": list(self.studies), "series": list(self.series),
                "skipped": list(self.skipped), "notes": list(self.notes),
                "outputs": {"predictions": str(self.predictions_csv),
                            "skipped": str(self.skipped_csv) if self.skipped_csv else None,
                            "sr": [str(p) for p in self.sr_paths],
                            "heatmaps": [str(p) for p in (*self.sc_paths,
                                                          *self.pm_paths)]}}


def operating_point(run_dir, aggregation: str = "max") -> dict:
    """The run's operating point (:func:`dicomml.evaluate.evaluation.operating_point` of its
    ``metrics.json``; the level ``study_<aggregation>`` when evaluate stored none); ``{}``
    when the run has not been evaluated."""
    from dicomml.evaluate.predictions_table import operating_point as _from_metrics

    path = Path(run_dir) / "metrics.json"
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not metrics.get("meta", {}).get("operating_point"):
        metrics.setdefault("meta", {})["aggregation"] = [aggregation]
    return _from_metrics(metrics)


def run_threshold(run_dir, aggregation: str) -> float | None:
    """The threshold of :func:`operating_point` (None when the run has none)."""
    v = operating_point(run_dir, aggregation).get("threshold")
    return None if v is None else float(v)


def _is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def _input_instances(inputs, tmp: str, *, progress: bool, workers) -> tuple[pd.DataFrame,
                                                                           list[dict]]:
    """Index rows of ``inputs`` (a folder or file to scan, an Index database or an
    :class:`~dicomml.io.Index`) and the files the scan skipped."""
    from dicomml.io import Index, open_index, scan

    if isinstance(inputs, Index):
        return inputs.instances(), [skip_row("file", "unreadable", r, path=p)
                                    for p, r in inputs.skipped()[["path", "reason"]]
                                    .itertuples(index=False)]
    path = Path(inputs)
    if path.is_file() and _is_sqlite(path):
        with open_index(db=path) as idx:
            return _input_instances(idx, tmp, progress=progress, workers=workers)
    res = scan(path, Path(tmp) / "index.sqlite", progress=progress, workers=workers)
    with res.index() as idx:
        instances = idx.instances()
    return instances, [skip_row("file", "unreadable", r, path=p) for p, r in res.skipped]


def _unreadable_reasons(pipeline, rows: list[tuple[str, int]], workers) -> list[str]:
    """Why examples gave no tensor: each file read again **isolated** (a decoder that
    crashes kills a worker, not this process), then its frame preprocessed here."""
    from dicomml.io import read_images
    from dicomml.parallel import resolve_workers

    paths = list(dict.fromkeys(p for p, _ in rows))
    n = resolve_workers(workers)
    isolate = n != 0  # with workers=0 the batch decoded in this process already
    read = dict(read_images(paths, isolate=isolate, workers=max(1, min(len(paths), n)),
                            progress=False))
    out = []
    for path, frame in rows:
        image = read.get(path)
        if isinstance(image, BaseException) or image is None:
            out.append(f"frame {frame} could not be read: {safe_message(image)}"
                       if image is not None else f"frame {frame} could not be read")
            continue
        try:
            pipeline(image, frame)
        except Exception as e:  # noqa: BLE001 - we only want its message
            out.append(f"frame {frame} could not be preprocessed: {safe_message(e)}")
        else:
            out.append(f"frame {frame} could not be read or preprocessed in a worker process")
    return out


def predict(run_dir, inputs, out_dir, *, threshold: float | None = None,
            write_sr: bool = True, write_sc: bool = True, aggregation: str = "max",
            batch_size: int = 32, workers: int | None = None, progress: bool = True,
            force: bool = False, uid_key: str | None = None,
            result_version: int = 0) -> PredictResult:
    """Predict new studies: ``predictions.csv``, ``skipped.csv``, SRs and Grad-CAMs.

    Parameters
    ----------
    run_dir : path
        A trained run folder (with ``contract.json``, see :mod:`dicomml.data.contract`).
    inputs : path or Index
        A DICOM folder (or file), an Index database file, or an open
        :class:`~dicomml.io.Index`; never written to.
    out_dir : path
        Where the results go (created).
    threshold : float, optional
        Decision threshold on the positive-class probability (binary runs), for images and
        studies; default the run's operating point (:func:`run_threshold`), else 0.5.
    write_sr, write_sc : bool
        Write the SRs / the Grad-CAM heatmaps of positive studies.
    aggregation : {"max", "mean"}
        How image probabilities make the study's.
    batch_size, workers : int
        Prediction batch size, and the CPUs for the scan and the preprocessing
        (:func:`dicomml.parallel.resolve_workers`: None or -1 every CPU, 0 in this process,
        as ``dicomml serve`` does).
    force : bool
        Also predict series outside the input contract (their SRs say so); never a
        non-image, a segmentation or a colour image for a grayscale model.
    uid_key : str, optional
        When given, the Series and SOP Instance UIDs of each study's SR and heatmaps derive
        from (``uid_key``, Study Instance UID) (:func:`result_uids`), so that writing the
        results of a study again (e.g. after a crash) gives the same UIDs and a PACS
        replaces rather than duplicates them; new UIDs otherwise.
    result_version : int
        With ``uid_key``: the how-manieth result of these studies this run writes (0: the
        first). A later version keeps each result's series, takes new SOP Instance UIDs
        and Instance Number ``result_version + 1``, and its SR names the previous version
        in (0040,A360) Predecessor Documents Sequence, so that a PACS that keeps the first
        copy of a UID still receives the revised result (``dicomml serve`` counts the
        versions of each study).

    Returns
    -------
    PredictResult

    Raises
    ------
    ConfigError
        The run has no ``contract.json`` (unless ``force``), or no classes.
    """
    from dicomml.data.contract import InputContract
    from dicomml.evaluate.aggregate import normalize_aggregation
    from dicomml.evaluate.predictions_table import predictions_table
    from dicomml.evaluate.runio import load_run, predict_examples, prob_columns
    from dicomml.report.tables import write_csv

    (how,) = normalize_aggregation(aggregation)
    if isinstance(result_version, bool) or not isinstance(result_version, int) \
            or result_version < 0:
        raise ConfigError("predict: result_version must be an integer >= 0 (0: a study's "
                          f"first result). Received: result_version={result_version!r}")
    run = load_run(run_dir)
    task, classes = run.task, run.classes
    if task != "regression" and len(classes) < 2:
        raise ConfigError(f"{run_dir}: the run's classes are unknown (data.classes is empty)")
    try:
        contract = InputContract.from_run_dir(run_dir)
    except ConfigError:
        if not force:
            raise
        contract = None
    pos = run.positive_index if task != "regression" else 0
    op = operating_point(run_dir, how)
    if threshold is None:
        threshold = op.get("threshold")
        threshold = 0.5 if threshold is None else threshold
    else:
        op = {"threshold": float(threshold), "method": "given", "chosen_on": "command line",
              "level": f"study_{how}"}
    threshold = float(threshold)
    out_dir = Path(out_dir)
    ensure_writable_dir(out_dir, "prediction output folder", " (--out DIR)")

    with tempfile.TemporaryDirectory(prefix="dicomml-predict-") as tmp:
        instances, skipped = _input_instances(inputs, tmp, progress=progress, workers=workers)
    rgb = run.pipeline.config.mode == "rgb"
    sel = select_series(instances, contract, force=force, rgb_model=rgb)
    skipped += sel.skipped
    examples = select_examples(sel.instances, run.config.data, modality=not force).examples
    cols = prob_columns(classes, task)
    common = dict(threshold=threshold, series=tuple(sel.series), forced=bool(sel.forced),
                  operating_point=op)
    if examples.empty:
        path = write_csv(out_dir / "predictions.csv", pd.DataFrame(columns=[
            "study_instance_uid", "series_instance_uid", "sop_instance_uid", "frame", *cols,
            "reason"]))
        return PredictResult(path, skipped=tuple(skipped),
                             skipped_csv=_write_skipped(out_dir, skipped), **common)

    model = run.model()
    probs, status = predict_examples(model, examples, run.pipeline, batch_size=batch_size,
                                     workers=workers, progress=progress, return_status=True)
    reasons = np.full(len(examples), "", dtype=object)
    failed = np.flatnonzero(status == "unreadable")
    why_failed = dict(zip(failed, _unreadable_reasons(
        run.pipeline, [(str(examples["path"].iat[i]), int(examples["frame"].iat[i]))
                       for i in failed], workers))) if len(failed) else {}
    for i in np.flatnonzero(status != ""):
        path, frame = str(examples["path"].iat[i]), int(examples["frame"].iat[i])
        if status[i] == "constant":
            rule, why = "constant", (f"frame {frame}: the run's preprocessing maps this image "
                                     "to one constant value (its windows do not cover the "
                                     "image's values); no probability")
        else:
            rule, why = "unreadable", why_failed[i]
        reasons[i] = why
        skipped.append(skip_row("image", rule, why, path=path,
                                study=examples["study_instance_uid"].iat[i],
                                series=examples["series_instance_uid"].iat[i],
                                sop=examples["sop_instance_uid"].iat[i], frame=frame))
    bad = status != ""
    table = predictions_table(examples, probs, classes, task, cols, pos,
                               threshold if task != "regression" else None)
    summary, sr_paths, sc_paths, notes = [], [], [], []
    good = table[~bad].assign(patient_key=examples.loc[~bad, "patient_key"].to_numpy())
    if task != "regression" and len(good):
        sr_paths, sc_paths, summary = write_study_reports(
            out_dir, run, model, examples, good, threshold=threshold, aggregation=how,
            write_sr=write_sr, write_sc=write_sc, skipped=skipped, forced=sel.forced,
            operating=op, notes=notes, uid_key=uid_key, result_version=result_version)
    # a file without (0020,000D) has no study to report (its image rows say why)
    for st in sorted(set(examples["study_instance_uid"].dropna().astype(str))
                     - {str(s["study_instance_uid"]) for s in summary}):
        if task != "regression":
            skipped.append(skip_row("study", "no_image", "no image of the study could be "
                                    "given to the model (see its image rows)", study=st))
    table = _decision_columns(table, summary, examples, sel.forced, reasons, threshold, how,
                              task, cols)
    csv_path = write_csv(out_dir / "predictions.csv", table)
    pm_paths = tuple(p for p in sc_paths if p.name.startswith("PM_"))
    sc_paths = tuple(p for p in sc_paths if not p.name.startswith("PM_"))
    n_studies = len(summary) if task != "regression" else \
        int(table.loc[~bad, "study_instance_uid"].nunique())
    return PredictResult(csv_path, tuple(sr_paths), sc_paths, tuple(skipped),
                         n_studies=n_studies, studies=tuple(summary), pm_paths=pm_paths,
                         skipped_csv=_write_skipped(out_dir, skipped), notes=tuple(notes),
                         **common)


def _decision_columns(table, summary, examples, forced, reasons, threshold, how, task, cols):
    """predictions.csv: each image's decision and its study's, with the threshold each used."""
    out = table.copy()
    binary = task != "regression" and len(cols) == 2
    out = out.rename(columns={"prediction": "image_prediction"}) if "prediction" in out else out
    if task != "regression":
        by_study = {s["study_instance_uid"]: s for s in summary}
        st = out["study_instance_uid"].map(by_study)
        out["image_threshold"] = threshold if binary else ""
        out["study_probability"] = [s["probability"] if isinstance(s, dict) else np.nan
                                    for s in st]
        out["study_prediction"] = [("present" if s["present"] else "absent")
                                   if isinstance(s, dict) else "" for s in st]
        out["study_threshold"] = threshold if binary else ""
        out["aggregation"] = how
    series = examples["series_instance_uid"].astype(str).to_numpy()
    out["input_contract"] = [f"forced ({forced[s]})" if s in forced else "met" for s in series]
    out["reason"] = reasons
    return out


def _write_skipped(out_dir: Path, skipped: list[dict]) -> Path:
    from dicomml.report.tables import write_csv

    return write_csv(out_dir / "skipped.csv", pd.DataFrame(skipped, columns=SKIP_COLUMNS))


