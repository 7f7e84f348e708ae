"""``evaluate_run``: metrics, predictions and plots of a trained run on held-out data.

:func:`evaluate_predictions` is the pure part (a predictions table in, the ``metrics.json``
content out; no TensorFlow). :func:`evaluate_run` predicts the run's test split (or new
labelled data), then writes into the run folder:

* ``metrics.json``: ``{"meta": {...}, "image": {...}, "study_max": {...},
  "study_mean": {...}}``; each level maps every metric name (``roc_auc``, ``pr_auc``,
  ``accuracy``, ``sensitivity``, ``specificity``, ``precision``, ``f1``, ``brier``,
  ``ece``; ``mse``, ``mae``, ``r2`` for regression) to ``{"value": v, "ci95": [lo, hi]}``
  and also holds ``threshold`` (value, method, and the split it was chosen on),
  ``counts`` and ``confusion_matrix``. Intervals: 95% percentile bootstrap resampling
  patients (``patient_key``). ``meta.operating_point`` is the run's one decision threshold
  (:func:`operating_point`), used by ``predictions.csv``, the plots, ``predict`` and the SRs.
* ``predictions.csv``: one row per image/frame, UIDs, frame, one probability column per
  class, label, target, prediction; never a patient identifier (not even the pseudonymous
  key).
* ``plots/roc_<level>.png``, ``pr_<level>.png``, ``confusion_<level>.png``,
  ``calibration_<level>.png`` and ``plots/training_curves.png`` (from ``history.csv``).
* with ``reports=True``: ``reports/SR_<StudyInstanceUID>.dcm`` per study and
  ``reports/GRADCAM_<StudyInstanceUID>.dcm`` per positive study.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from dicomml.errors import ConfigError
from dicomml.evaluate import metrics as M
from dicomml.evaluate.aggregate import aggregate_studies, normalize_aggregation
from dicomml.evaluate.bootstrap import classification_metrics, regression_metrics
from dicomml.evaluate.predictions_table import LEVEL_IMAGE, operating_point, predictions_table

__all__ = ["evaluate_predictions", "evaluate_run", "headline", "operating_point",
           "LEVEL_IMAGE"]

log = logging.getLogger(__name__)



def _levels(df: pd.DataFrame, cols: list[str], task: str, aggregation) -> dict:
    out = {LEVEL_IMAGE: df}
    for how in aggregation:
        out[f"study_{how}"] = aggregate_studies(df, cols, how=how, task=task)
    return out


def _binary(df: pd.DataFrame, cols: list[str], pos: int):
    y = (df["target"].astype(int).to_numpy() == pos).astype(np.int64)
    return y, df[cols[pos]].to_numpy(dtype=np.float64)


def evaluate_predictions(predictions: pd.DataFrame, *, classes: Sequence[str],
                         task: str = "classification", positive: int = 1,
                         aggregation=("max", "mean"), threshold: str | float = "youden",
                         threshold_data: pd.DataFrame | None = None,
                         n_resamples: int = 1000, seed: int = 0, n_bins: int = 10) -> dict:
    """Every metric, per image and per study, from a predictions table.

    Parameters
    ----------
    predictions : pandas.DataFrame
        One row per image: ``patient_key``, ``study_instance_uid``, ``target`` and the
        probability columns :func:`dicomml.evaluate.runio.prob_columns` (``prediction``
        for regression).
    classes : sequence of str
        Class names, in output order.
    positive : int
        Index of the positive class (binary tasks).
    aggregation : str or sequence of {"max", "mean"}
        Study-level aggregations; each adds a level ``study_<how>``.
    threshold : float or str
        Binary operating point: a number, ``"youden"`` or ``"sensitivity:0.9"``. A rule is
        applied at each level on ``threshold_data`` (e.g. the validation split) when it has
        both classes, else on ``predictions`` itself (then ``chosen_on`` says so: the
        interval of threshold-dependent metrics is then optimistic).

    Returns
    -------
    dict
        The content of ``metrics.json`` (JSON-ready).
    """
    from dicomml.evaluate.runio import prob_columns

    task = str(task).lower()
    aggregation = normalize_aggregation(aggregation)
    classes = [str(c) for c in classes]
    cols = prob_columns(classes, task)
    missing = {"study_instance_uid", "target", *cols} - set(predictions.columns)
    if missing:
        raise ConfigError(f"the predictions table lacks columns {sorted(missing)}")
    df = predictions[np.isfinite(predictions[cols].to_numpy(dtype=np.float64)).all(axis=1)]
    if len(predictions) and not len(df):
        raise ConfigError(f"none of the {len(predictions)} predictions is a number: no "
                          "example could be decoded (the warnings above name the first "
                          "reason; 'dicomml scan' of the data folder reports the files "
                          "it cannot read), so there is nothing to evaluate")
    if "patient_key" not in df:
        df = df.assign(patient_key=df["study_instance_uid"])
    levels = _levels(df, cols, task, aggregation)
    ref_levels = None
    if threshold_data is not None and len(threshold_data):
        td = threshold_data[np.isfinite(threshold_data[cols].to_numpy(np.float64)).all(axis=1)]
        ref_levels = _levels(td, cols, task, aggregation)
    out: dict = {"meta": {
        "task": task, "classes": classes,
        "positive_class": classes[positive] if task != "regression" and len(classes) == 2
        else None,
        "aggregation": list(aggregation), "n_resamples": n_resamples, "seed": seed,
        "confidence": 0.95, "bootstrap_unit": "patient", "n_bins": n_bins,
        "excluded_undecodable": int(len(predictions) - len(df)),
    }}
    for level, data in levels.items():
        groups = data["patient_key"].astype(str).to_numpy()
        if task == "regression":
            res = regression_metrics(data["target"].astype(float), data["prediction"],
                                     groups=groups, n_resamples=n_resamples, seed=seed)
        elif len(classes) == 2:
            y, s = _binary(data, cols, positive)
            chosen_on, ty, ts = "evaluated", y, s
            if ref_levels is not None:
                ry, rs = _binary(ref_levels[level], cols, positive)
                if 0 < ry.sum() < ry.size:
                    chosen_on, ty, ts = "threshold_data", ry, rs
            thr, method = M.choose_threshold(ty, ts, threshold)
            res = classification_metrics(y, s, threshold=thr, groups=groups,
                                         n_resamples=n_resamples, seed=seed, n_bins=n_bins)
            res["threshold"] = {"value": float(thr), "method": method,
                                "chosen_on": chosen_on if method != "fixed" else None}
        else:
            p = data[cols].to_numpy(dtype=np.float64)
            res = classification_metrics(data["target"].astype(int), p, groups=groups,
                                         n_resamples=n_resamples, seed=seed, n_bins=n_bins,
                                         classes=classes)
            res["threshold"] = {"value": None, "method": "argmax", "chosen_on": None}
        entry = dict(res.pop("metrics"))
        entry.update(res)
        out[level] = entry
    return out


def headline(metrics: dict) -> str:
    """A short summary: ROC AUC with its interval and sensitivity/specificity per level,
    then the operating point (:func:`operating_point`)."""
    lines = []
    for level, m in metrics.items():
        if level == "meta":
            continue

        def fmt(name):
            e = m.get(name) or {}
            v, (lo, hi) = e.get("value"), e.get("ci95") or (None, None)
            if v is None:
                return f"{name} n/a"
            ci = f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else ""
            return f"{name} {v:.3f}{ci}"

        names = ("mae", "r2") if "mae" in m else ("roc_auc", "sensitivity", "specificity")
        n = m.get("counts", {}).get("n")
        lines.append(f"{level:<11} n={n}: " + ", ".join(fmt(k) for k in names if k in m))
    op = operating_point(metrics)
    if op:
        lines.append(f"operating point: threshold {op['threshold']:.4g} ({op.get('method')} "
                     f"on {op.get('chosen_on') or 'the evaluated data'}, {op['level']})")
    return "\n".join(lines)


def _write_plots(plots_dir: Path, metrics: dict, levels: dict, classes, task, cols,
                 positive: int, n_resamples: int, seed: int,
                 threshold: float | None = None) -> list[Path]:
    from dicomml.evaluate import plots as P

    written = []
    if task == "regression":
        return written
    for level, data in levels.items():
        groups = data["patient_key"].astype(str).to_numpy()
        if len(classes) == 2:
            y, s = _binary(data, cols, positive)
            if 0 < y.sum() < y.size:
                written.append(P.plot_roc(y, s, plots_dir / f"roc_{level}.png", groups=groups,
                                          n_resamples=min(n_resamples, 200), seed=seed,
                                          title=f"ROC ({level})", threshold=threshold))
                written.append(P.plot_pr(y, s, plots_dir / f"pr_{level}.png",
                                         title=f"Precision-recall ({level})",
                                         threshold=threshold))
            written.append(P.plot_calibration(y, s, plots_dir / f"calibration_{level}.png",
                                              n_bins=metrics["meta"]["n_bins"],
                                              title=f"Calibration ({level})"))
        else:
            t = data["target"].astype(int).to_numpy()
            p = data[cols].to_numpy(np.float64)
            written.append(P.plot_roc(t, p, plots_dir / f"roc_{level}.png", classes=classes,
                                      title=f"ROC ({level})"))
            written.append(P.plot_pr(t, p, plots_dir / f"pr_{level}.png", classes=classes,
                                     title=f"Precision-recall ({level})"))
        written.append(P.plot_confusion(metrics[level]["confusion_matrix"],
                                        plots_dir / f"confusion_{level}.png", classes=classes,
                                        title=f"Confusion matrix ({level})"))
    return written


def _labelled_examples(run, data, labels, workers=None) -> pd.DataFrame:
    """Examples of new labelled data: scan ``data`` into a temporary Index, then the run's
    example selection with ``labels`` (:func:`dicomml.data.selection.select_examples`)."""
    import dataclasses
    import tempfile

    from dicomml.data.selection import select_examples
    from dicomml.io import scan

    with tempfile.TemporaryDirectory(prefix="dicomml-eval-") as tmp:
        res = scan(data, Path(tmp) / "index.sqlite", progress=False, workers=workers)
        with res.index() as idx:
            inst = idx.instances()
    # the run's classes (recovered from its manifest when config.toml lists none)
    dcfg = dataclasses.replace(run.config.data, task=run.task, classes=tuple(run.classes))
    return select_examples(inst, dcfg, labels=labels).examples


def evaluate_run(run_dir: str | os.PathLike, *, data=None, labels=None,
                 aggregation=("max", "mean"), threshold: str | float = "youden",
                 split: str = "test", n_resamples: int = 1000, seed: int = 0,
                 batch_size: int = 32, workers: int | None = None, plots: bool = True,
                 reports: bool = False, progress: bool = True) -> dict:
    """Evaluate a trained run and write ``metrics.json``, ``predictions.csv`` and plots.

    Parameters
    ----------
    run_dir : path
        The run folder (``config.toml``, ``manifest.csv``, ``model.keras``).
    data, labels : path, optional
        New labelled data (a DICOM folder and its labels CSV, keyed like the run's). By
        default, the run's own ``split`` rows of ``manifest.csv``.
    aggregation : sequence of {"max", "mean"}
        Study-level aggregations (one metrics level each).
    threshold : float or str
        Binary operating point: a number, ``"youden"`` (default) or ``"sensitivity:0.9"``,
        chosen on the run's validation split when available.
    split : str
        Manifest split evaluated by default (``"test"``).
    n_resamples, seed : int
        Bootstrap resamples (patients) and seed.
    batch_size, workers : int
        Prediction batch size and CPUs for the scan and the preprocessing
        (:func:`dicomml.parallel.resolve_workers`: None or -1 every CPU, 0 in this process).
    plots : bool
        Write ``plots/*.png``.
    reports : bool
        Also write one DICOM SR per evaluated study (and a Grad-CAM Secondary Capture per
        positive study) into ``RUN_DIR/reports/``, decided at the threshold of the level
        ``study_<first aggregation>``.

    Returns
    -------
    dict
        The content of ``metrics.json``.
    """
    from dicomml.evaluate.runio import load_run, predict_examples, prob_columns
    from dicomml.report.tables import write_csv, write_json

    run = load_run(run_dir)
    run_dir = Path(run_dir)
    task = run.task
    classes = run.classes
    if task != "regression" and len(classes) < 2:
        raise ConfigError(f"{run_dir}: the run's classes are unknown (data.classes in "
                          "config.toml is empty and manifest.csv has no labels)")
    pos = run.positive_index if task != "regression" else 0
    cols = prob_columns(classes, task)
    if data is not None:
        if labels is None:
            raise ConfigError("evaluate --data needs --labels (the CSV of the new data)")
        examples = _labelled_examples(run, data, labels, workers)
        ref = None
        source = {"data": os.fspath(data), "labels": os.fspath(labels)}
    else:
        man = run.manifest
        if man.empty or "split" not in man:
            raise ConfigError(f"{run_dir}: manifest.csv is missing or has no split column")
        examples = man[man["split"].astype(str) == split].reset_index(drop=True)
        ref = man[man["split"].astype(str) == "val"].reset_index(drop=True)
        source = {"split": split}
    if examples.empty:
        raise ConfigError(f"{run_dir}: no examples to evaluate ({source}); check the "
                          "manifest's split column or the --data/--labels arguments")
    model = run.model()
    probs = predict_examples(model, examples, run.pipeline, batch_size=batch_size,
                             workers=workers, progress=progress)
    table = predictions_table(examples, probs, classes, task, cols, pos, None)
    table["patient_key"] = examples["patient_key"].astype(str).to_numpy()
    ref_table = None
    if ref is not None and len(ref) and task != "regression" and not isinstance(
            threshold, (int, float)):
        rprobs = predict_examples(model, ref, run.pipeline, batch_size=batch_size,
                                  workers=workers, progress=progress)
        ref_table = predictions_table(ref, rprobs, classes, task, cols, pos, None)
        ref_table["patient_key"] = ref["patient_key"].astype(str).to_numpy()
    metrics = evaluate_predictions(table, classes=classes, task=task, positive=pos,
                                   aggregation=aggregation, threshold=threshold,
                                   threshold_data=ref_table, n_resamples=n_resamples,
                                   seed=seed, n_bins=10)
    metrics["meta"].update(source)
    if ref_table is not None:
        metrics["meta"]["threshold_data"] = "val"
    op = operating_point(metrics)
    if op:
        metrics["meta"]["operating_point"] = op
    # predictions.csv: the image-level decision at the operating point, without the key
    thr = op.get("threshold") if op else metrics[LEVEL_IMAGE].get("threshold", {}).get("value")
    final = predictions_table(examples, probs, classes, task, cols, pos, thr)
    write_csv(run_dir / "predictions.csv", final)
    write_json(run_dir / "metrics.json", metrics)
    if plots:
        ok = np.isfinite(table[cols].to_numpy(np.float64)).all(axis=1)
        levels = _levels(table[ok], cols, task, normalize_aggregation(aggregation))
        _write_plots(run_dir / "plots", metrics, levels, classes, task, cols, pos,
                     n_resamples, seed, threshold=thr)
        from dicomml.evaluate.plots import plot_training_curves

        plot_training_curves(run_dir / "history.csv", run_dir / "plots" / "training_curves.png")
    if reports and task != "regression":
        from dicomml.evaluate.reports import write_study_reports

        how = normalize_aggregation(aggregation)[0]
        thr_r = thr if op else metrics[f"study_{how}"].get("threshold", {}).get("value")
        ok = np.isfinite(table[cols].to_numpy(np.float64)).all(axis=1)
        write_study_reports(run_dir / "reports", run, model, examples, table[ok],
                            threshold=0.5 if thr_r is None else float(thr_r), aggregation=how)
    n_bad = metrics["meta"]["excluded_undecodable"]
    if n_bad:
        log.warning("%d of %d examples could not be decoded and were left out", n_bad,
                    len(examples))
    return metrics
