"""The demo: one call from the bundled ``sample_dicom/`` export to DICOM reports.

:func:`run_demo` chains the public APIs of every stage on the committed sample export:

1. **scan** the whole export (headers only) into ``DIR/index.sqlite`` and summarize it
   (the deliberately broken files — a truncated slice, a non-DICOM file — are listed as
   skipped, as any real export's would be);
2. **train** the reference CNN on the head-CT learning task ``sample_dicom/head_ct_task/``
   with the training configuration ``sample_dicom/train.toml`` (scan → manifest keyed by
   (0020,000D) Study Instance UID → patient-level split → preprocessed tensor cache in
   ``DIR/cache/`` → Keras fit) into the run folder ``DIR/run/``;
3. **evaluate** the held-out test patients (:func:`dicomml.evaluate.evaluate_run`): metrics
   per image and per study with 95 % patient-bootstrap intervals, ``predictions.csv`` and
   plots in ``DIR/run/``;
4. **DICOM reports**: one DICOM Comprehensive 3D SR (TID 1500 Measurement Report, PS3.16) per test
   study and a Grad-CAM Secondary Capture per positive study in ``DIR/reports/``, with the
   test predictions (``predictions.csv``, ``studies.csv``);
5. **report page**: ``DIR/run/report.html``
   (:func:`dicomml.evaluate.report_page.write_report`), one self-contained page with the
   data, configuration, curves, metrics, plots and a gallery of the worst errors with
   Grad-CAM heatmaps.

No output contains a patient name, ID, birth date or accession number, except the DICOM
reports themselves, which carry their source study's Patient module as PS3.3 C.7.1.1
requires. Source files are never written to; ``DIR`` may not lie inside the export.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from dicomml.errors import ConfigError

__all__ = ["DemoResult", "find_sample_data", "run_demo", "summary_lines", "DEFAULT_OUT",
           "TASK_FOLDER"]

log = logging.getLogger(__name__)

#: Default output folder of the demo (relative to the working directory).
DEFAULT_OUT = "dicomml-demo"
#: The learning task inside the sample export, with its ``labels.csv``.
TASK_FOLDER = "head_ct_task"
#: The training configuration inside the sample export.
CONFIG_NAME = "train.toml"

@dataclass(frozen=True)
class DemoResult:
    """Where the demo wrote everything and its headline numbers."""

    out_dir: Path
    data_dir: Path
    index_db: Path
    run_dir: Path
    reports_dir: Path
    metrics: dict = field(repr=False)
    sr_paths: tuple[Path, ...] = ()
    sc_paths: tuple[Path, ...] = ()
    #: Per test study: ``study_instance_uid``, ``finding``, ``probability``, ``present``,
    #: ``n_images``, ``label`` (the truth).
    studies: tuple[dict, ...] = field(default=(), repr=False)
    #: ``(path, reason)`` of every file of the export the scan could not use.
    scan_skipped: tuple = field(default=(), repr=False)
    #: Examples of the learning task that could not be decoded (left out).
    n_failed: int = 0
    seconds: dict = field(default_factory=dict)
    #: The run's self-contained HTML report (``run/report.html``).
    report_html: Path | None = None

    @property
    def ok(self) -> bool:
        """True when every example of the learning task was used."""
        return self.n_failed == 0


def find_sample_data(data: str | os.PathLike | None = None) -> Path:
    """The sample export: ``data`` if given, else ``./sample_dicom``, else the repository's.

    Raises
    ------
    ConfigError
        When the folder does not exist or lacks ``head_ct_task/labels.csv``.
    """
    if data is not None:
        candidates = [Path(data)]
    else:
        import dicomml

        candidates = [Path("sample_dicom"), Path(dicomml.__file__).resolve().parents[1]
                      / "sample_dicom"]
    for c in candidates:
        if c.is_dir():
            root = c.resolve()
            if not (root / TASK_FOLDER / "labels.csv").is_file():
                raise ConfigError(
                    f"{root} has no {TASK_FOLDER}/labels.csv: pass the sample export "
                    "(regenerate it with 'python -m dicomml.testing.sample sample_dicom')")
            return root
    raise ConfigError(
        f"sample export not found (looked in {', '.join(str(c) for c in candidates)}): pass "
        "--data DIR, or regenerate it with 'python -m dicomml.testing.sample sample_dicom'")


def _check_out(out: Path, data: Path) -> None:
    o, d = out.resolve(), data.resolve()
    if o == d or d in o.parents:
        raise ConfigError(f"output folder {out} lies inside the sample export {data}: the "
                          "export is read-only; choose another --out")
    if o.exists() and not o.is_dir():
        raise ConfigError(f"output folder {out} exists and is not a folder: choose another "
                          "--out")


def _config(data: Path, out: Path, epochs: int | None, workers: int | None):
    """The training configuration with the demo's index, cache and overrides."""
    from dicomml.train.config import load_config

    path = data / CONFIG_NAME
    if not path.is_file():
        raise ConfigError(f"{path} not found: the demo trains with the export's own "
                          f"{CONFIG_NAME} (sample_dicom/{CONFIG_NAME} in the repository); copy "
                          "it next to the export's DICOMDIR, or run 'dicomml train --config "
                          "FILE' with a configuration of your own")
    cfg = load_config(path)
    d = {"index": str(out / "head_ct_index.sqlite"), "cache": str(out / "cache")}
    if not cfg.data.folder:
        d["folder"] = str(data / TASK_FOLDER)
    if workers is not None:
        d["workers"] = int(workers)
    t = {}
    if epochs is not None:
        t["epochs"] = int(epochs)
    return cfg.replace(data=d, train=t)


def _study_reports(run_dir: Path, reports_dir: Path, metrics: dict):
    """SRs and Grad-CAM SCs of the test studies, from the run's ``predictions.csv``."""
    import pandas as pd

    from dicomml.evaluate.prediction import write_study_reports
    from dicomml.evaluate.runio import load_run, prob_columns
    from dicomml.report.tables import write_csv

    run = load_run(run_dir)
    man = run.manifest
    examples = man[man["split"].astype(str) == "test"].reset_index(drop=True)
    pred = pd.read_csv(run_dir / "predictions.csv",
                       dtype={"study_instance_uid": str, "series_instance_uid": str,
                              "sop_instance_uid": str})
    if len(pred) != len(examples) or not (
            pred["sop_instance_uid"].to_numpy() == examples["sop_instance_uid"].astype(str)
            .to_numpy()).all():
        raise ConfigError(f"{run_dir}/predictions.csv does not match the test rows of "
                          "manifest.csv: run 'dicomml evaluate' on the run again")
    cols = prob_columns(run.classes, run.task)
    ok = pred[cols].notna().all(axis=1).to_numpy()
    table = pred[ok].assign(patient_key=examples.loc[ok, "patient_key"].astype(str).to_numpy())
    how = metrics["meta"]["aggregation"][0]
    thr = (metrics.get(f"study_{how}") or {}).get("threshold", {}).get("value")
    reports_dir.mkdir(parents=True, exist_ok=True)
    sr, sc, studies = write_study_reports(reports_dir, run, run.model(), examples, table,
                                          threshold=0.5 if thr is None else float(thr),
                                          aggregation=how)
    truth = examples.drop_duplicates("study_instance_uid").set_index(
        "study_instance_uid")["label"].astype(str)
    studies = [dict(s, label=truth.get(s["study_instance_uid"], "")) for s in studies]
    write_csv(reports_dir / "predictions.csv", pred)
    write_csv(reports_dir / "studies.csv", pd.DataFrame(
        studies, columns=["study_instance_uid", "finding", "probability", "present",
                          "n_images", "label"]))
    return tuple(sr), tuple(sc), tuple(studies)


def run_demo(out_dir: str | os.PathLike = DEFAULT_OUT, *, data: str | os.PathLike | None = None,
             epochs: int | None = None, workers: int | None = None, n_resamples: int = 1000,
             progress: bool = True, echo=None) -> DemoResult:
    """Scan → train → evaluate → report on the sample export; see the module docstring.

    Parameters
    ----------
    out_dir : path
        Output folder (created): ``index.sqlite``, ``cache/``, ``run/``, ``reports/``.
        Must not lie inside the sample export.
    data : path, optional
        The sample export (default: :func:`find_sample_data`).
    epochs : int, optional
        Override ``train.epochs`` of ``sample_dicom/train.toml``.
    workers : int, optional
        Worker processes for scanning and preprocessing (0: in this process; default: the
        configuration's).
    n_resamples : int
        Bootstrap resamples (patients) of the metrics' 95 % intervals.
    progress : bool
        Progress bars and training progress on stderr.
    echo : callable, optional
        Called with one line of text at each step (e.g. ``print``); default: nothing.

    Returns
    -------
    DemoResult
    """
    from dicomml.io import scan

    say = echo or (lambda line: None)
    data_dir = find_sample_data(data)
    out = Path(out_dir)
    _check_out(out, data_dir)
    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()
    seconds = {}

    t0 = time.perf_counter()
    say(f"[1/5] scan {data_dir} (headers only)")
    res = scan(data_dir, out / "index.sqlite", workers=workers, progress=progress)
    seconds["scan"] = time.perf_counter() - t0

    for line in res.format().splitlines():
        say("      " + line)

    t0 = time.perf_counter()
    cfg = _config(data_dir, out, epochs, workers)
    say(f"[2/5] train {cfg.model.name} on {TASK_FOLDER}/ ({cfg.train.epochs} epochs) "
        f"into {out / 'run'}")
    from dicomml.train.trainer import Trainer

    if not progress:
        cfg = cfg.replace(train={"verbose": 0})
    with contextlib.redirect_stdout(sys.stderr):  # Keras' epoch lines are progress
        tr = Trainer(cfg).fit(out / "run", progress=progress)
    seconds["train"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    say("[3/5] evaluate the held-out test patients")
    from dicomml.evaluate.evaluation import evaluate_run

    metrics = evaluate_run(out / "run", n_resamples=n_resamples, workers=workers,
                           progress=progress)
    seconds["evaluate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    say(f"[4/5] DICOM SR per test study, Grad-CAM for positives into {out / 'reports'}")
    sr, sc, studies = _study_reports(out / "run", out / "reports", metrics)
    seconds["reports"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    say(f"[5/5] the run's report page {out / 'run' / 'report.html'}")
    from dicomml.evaluate.report_page import write_report

    page = write_report(out / "run")
    seconds["report page"] = time.perf_counter() - t0
    return DemoResult(out, data_dir, Path(res.db_path), out / "run", out / "reports",
                      metrics, sr, sc, studies, tuple(res.skipped), len(tr.failed), seconds,
                      page)


def summary_lines(result: DemoResult) -> list[str]:
    """What the demo prints at the end: where everything went and the headline metrics."""
    from dicomml.evaluate.evaluation import headline

    r = result
    n_pos = sum(1 for s in r.studies if s["present"])
    total = sum(r.seconds.values())
    lines = [
        "",
        f"dicomml demo: done in {total:.0f} s "
        + "(" + ", ".join(f"{k} {v:.0f} s" for k, v in r.seconds.items()) + ")",
        f"  index        {r.index_db}",
        f"  run folder   {r.run_dir}  (config.toml, model.keras, history.csv, "
        "metrics.json, predictions.csv, plots/)",
        f"  report page  {r.report_html}",
        f"  reports      {r.reports_dir}  ({len(r.sr_paths)} SR, {len(r.sc_paths)} Grad-CAM "
        f"SC; {n_pos} of {len(r.studies)} test studies positive; predictions.csv, "
        "studies.csv)",
        "",
        "Test patients, ROC AUC / sensitivity / specificity with 95% patient-bootstrap "
        "intervals:",
        *("  " + line for line in headline(r.metrics).splitlines()),
    ]
    if r.n_failed:
        lines.append(f"{r.n_failed} examples could not be decoded; see {r.run_dir}/failed.csv")
    return lines
