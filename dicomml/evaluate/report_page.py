"""One self-contained HTML page per run: ``RUN/report.html`` (``dicomml report RUN``).

The page needs no network and no other file: styles are inline and every picture is a PNG
embedded as a ``data:`` URI. It shows, from the run folder's own files (the run-folder
contract of DESIGN.md):

* the data: patients, studies, series and images per split, the label balance, and the
  inputs left out by reason (``failed.csv``, ``unmatched_labels.csv``,
  ``unlabeled_images.csv``, undecodable test images from ``metrics.json``);
* the resolved configuration (``config.toml``);
* the training curves (``history.csv``; epochs numbered from 1);
* the metrics of every level with their 95 % patient-bootstrap intervals and the operating
  point (``metrics.json``), and the plots ``dicomml evaluate`` wrote (ROC, precision-recall,
  calibration, confusion matrix);
* a gallery (the fastai ``plot_top_losses`` idea for DICOM): the worst false positives and
  false negatives and the most confident true positives at image level, each as the
  model's input with its Grad-CAM heatmap of the positive class, the file name and frame,
  the probability, the truth, and its study's decision at the study-level threshold.

No patient name, ID or pseudonymous patient key appears on the page. A short inline script
reports an image that failed to decode on the browser console (the test in
``tests/evaluate/test_report_page.py`` fails on any console message).
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from dicomml._atomic import atomic_write_text
from dicomml.errors import ConfigError

__all__ = ["build_report", "write_report", "REPORT_NAME"]

log = logging.getLogger(__name__)

#: The page's file name inside the run folder.
REPORT_NAME = "report.html"

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;
max-width:1180px;padding:16px 24px;color:#1b1f24;background:#fff}
h1{font-size:1.6em;margin:.2em 0}h2{border-bottom:2px solid #d0d7de;padding-bottom:4px;
margin-top:1.6em}h3{margin:1em 0 .4em}
table{border-collapse:collapse;margin:.4em 0 1em}td,th{border:1px solid #d0d7de;
padding:3px 9px;text-align:right}th{background:#f3f5f7}td.l,th.l{text-align:left}
pre{background:#f6f8fa;padding:10px;overflow:auto;font-size:.85em;max-height:420px}
.note{color:#57606a}.plots{display:flex;flex-wrap:wrap;gap:12px}
.plots figure{margin:0}.plots img{max-width:360px;border:1px solid #d0d7de}
.plots img.wide{max-width:100%}
.gallery{display:flex;flex-wrap:wrap;gap:14px}.card{border:1px solid #d0d7de;padding:8px;
width:460px;font-size:.85em}.card img{width:224px;height:224px;image-rendering:pixelated}
.bad{color:#b42318;font-weight:600}.good{color:#116329;font-weight:600}
figcaption{font-size:.85em;color:#57606a}
"""

# Reports an image that could not be decoded (the browser test fails on any console line).
_CHECK = """
window.addEventListener('load', function () {
  var bad = 0;
  for (var i = 0; i < document.images.length; i++) {
    var im = document.images[i];
    if (!im.complete || im.naturalWidth === 0) {
      bad++; console.error('image failed to load: ' + im.alt);
    }
  }
  document.body.setAttribute('data-images', document.images.length + ' ' + bad);
});
"""


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _img(data: bytes, alt: str, caption: str | None = None, *, wide: bool = False) -> str:
    fig = f'<img src="{_png_uri(data)}" alt="{_e(alt)}"{" class=wide" if wide else ""}>'
    if caption:
        fig += f"<figcaption>{_e(caption)}</figcaption>"
    return f"<figure>{fig}</figure>"


def _array_png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG")
    return buf.getvalue()


def _table(header: list[str], rows: list[list], left: int = 1) -> str:
    def cell(tag, k, v):
        return f"<{tag}{' class=l' if k < left else ''}>{_e(v)}</{tag}>"

    head = "".join(cell("th", k, h) for k, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", k, v) for k, v in enumerate(r)) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _read_csv(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return None


# -- sections -------------------------------------------------------------------------------
def _data_section(run_dir: Path, manifest: pd.DataFrame, metrics: dict | None) -> str:
    out = ["<h2 id=data>Data</h2>"]
    if manifest.empty:
        return out[0] + "<p class=note>manifest.csv is missing or empty.</p>"
    m = manifest
    split = m["split"].astype(str) if "split" in m else pd.Series("all", index=m.index)
    groups = [(s, m[split == s]) for s in ("train", "val", "test") if (split == s).any()]
    groups += [(s, m[split == s]) for s in sorted(set(split) - {"train", "val", "test"})]
    labels = sorted(m["label"].astype(str).unique()) if "label" in m else []

    def counts(df):
        row = [df["patient_key"].nunique() if "patient_key" in df else "-",
               df["study_instance_uid"].nunique(), df["series_instance_uid"].nunique(),
               len(df)]
        vc = df["label"].astype(str).value_counts() if "label" in df else {}
        return row + [int(vc.get(lab, 0)) for lab in labels]

    rows = [[name, *counts(df)] for name, df in groups] + [["all", *counts(m)]]
    out.append(_table(["split", "patients", "studies", "series", "images"]
                      + [f"label {lab} (images)" for lab in labels], rows))
    if "label" in m and "study_instance_uid" in m:
        st = m.drop_duplicates("study_instance_uid")
        st_split = split.loc[st.index]
        rows = [[name, *[int(((st_split == name) & (st["label"].astype(str) == lab)).sum())
                         for lab in labels]] for name, _ in groups]
        out.append("<h3>Label balance by study</h3>"
                   + _table(["split"] + [f"{lab} (studies)" for lab in labels], rows))
    skipped = _scan_skipped(run_dir)
    failed = _read_csv(run_dir / "failed.csv")
    if failed is not None and len(failed):
        for reason, n in failed["reason"].value_counts().items():
            skipped.append([f"not decodable (failed.csv): {reason}", int(n)])
    for name, what in (("unmatched_labels.csv", "labels that matched no image"),
                       ("unlabeled_images.csv", "images without a label")):
        df = _read_csv(run_dir / name)
        if df is not None and len(df):
            skipped.append([f"{what} ({name})", len(df)])
    bad = ((metrics or {}).get("meta") or {}).get("excluded_undecodable", 0)
    if bad:
        skipped.append(["evaluated images that could not be decoded (metrics.json)", int(bad)])
    out.append("<h3>Inputs left out</h3>")
    out.append(_table(["reason", "count"], skipped) if skipped
               else "<p>None: every labelled image was used.</p>")
    return "".join(out)


def _scan_skipped(run_dir: Path) -> list[list]:
    """Files the run's scan could not use, by category (the Index named in config.toml)."""
    from dicomml.train.toml_io import load_toml

    try:
        db = (load_toml(run_dir / "config.toml").get("data") or {}).get("index")
    except Exception:  # noqa: BLE001 - an unreadable config is shown as such below
        return []
    if not db or not os.path.isfile(db):
        return []
    from dicomml.io.index import Index

    try:
        with Index(db) as idx:
            sk = idx.skipped()
    except Exception as e:  # noqa: BLE001 - the page still shows everything else
        return [[f"the run's Index {db} could not be read: {e}", "-"]]
    return [[f"file not indexed by the scan: {cat}", int(n)]
            for cat, n in sk["category"].fillna("other").value_counts().items()]


def _config_section(run_dir: Path) -> str:
    path = run_dir / "config.toml"
    text = path.read_text(encoding="utf-8") if path.is_file() else "(config.toml is missing)"
    return f"<h2 id=config>Configuration</h2><pre>{_e(text)}</pre>"


def _training_section(run_dir: Path) -> str:
    out = ["<h2 id=training>Training curves</h2>"]
    png = run_dir / "plots" / "training_curves.png"
    if not png.is_file():
        from dicomml.evaluate.plots import plot_training_curves

        with tempfile.TemporaryDirectory(prefix="dicomml-report-") as tmp:
            made = plot_training_curves(run_dir / "history.csv", Path(tmp) / "curves.png")
            data = made.read_bytes() if made else None
    else:
        data = png.read_bytes()
    if data is None:
        out.append("<p class=note>history.csv is missing or empty: no curves.</p>")
    else:
        out.append('<div class=plots>' + _img(data, "training curves",
                                               "loss and metrics per epoch (epoch 1 is the "
                                               "first)", wide=True) + "</div>")
    return "".join(out)


_METRIC_ORDER = ("roc_auc", "pr_auc", "sensitivity", "specificity", "precision", "f1",
                 "accuracy", "brier", "ece", "mae", "mse", "r2")


def _fmt(v, digits: int = 3) -> str:
    return "-" if v is None else f"{float(v):.{digits}f}"


def _threshold_text(thr: dict) -> str:
    if not thr or thr.get("value") is None:
        return "arg-max of the class probabilities"
    where = {"threshold_data": "on the validation split", "evaluated":
             "on the evaluated data itself (optimistic)"}.get(thr.get("chosen_on"), "")
    return f"{thr['value']:.4g} ({thr.get('method', '?')}{', chosen ' + where if where else ''})"


def _metrics_section(run_dir: Path, metrics: dict | None) -> str:
    out = ["<h2 id=metrics>Metrics</h2>"]
    if not metrics:
        return out[0] + ("<p class=note>metrics.json is missing: run 'dicomml evaluate "
                         f"{_e(run_dir)}' first.</p>")
    meta = metrics.get("meta", {})
    levels = [k for k in metrics if k != "meta"]
    names = [n for n in _METRIC_ORDER if any(n in metrics[lv] for lv in levels)]
    rows = []
    for n in names:
        row = [n]
        for lv in levels:
            e = metrics[lv].get(n) or {}
            lo, hi = (e.get("ci95") or (None, None))
            row.append(f"{_fmt(e.get('value'))} [{_fmt(lo)}, {_fmt(hi)}]"
                       if lo is not None else _fmt(e.get("value")))
        rows.append(row)
    rows.append(["n"] + [metrics[lv].get("counts", {}).get("n", "-") for lv in levels])
    rows.append(["operating point"] + [_threshold_text(metrics[lv].get("threshold", {}))
                                       for lv in levels])
    out.append(f"<p>Evaluated: {_e(meta.get('split') or meta.get('data') or '-')}; 95% "
               f"intervals: percentile bootstrap over {_e(meta.get('bootstrap_unit', '-'))}s, "
               f"{_e(meta.get('n_resamples', '-'))} resamples.</p>")
    out.append(_table(["metric", *levels], rows))
    plots = run_dir / "plots"
    for lv in levels:
        figs = [_img((plots / f"{kind}_{lv}.png").read_bytes(), f"{title} ({lv})")
                for kind, title in (("roc", "ROC"), ("pr", "precision-recall"),
                                    ("calibration", "calibration"),
                                    ("confusion", "confusion matrix"))
                if (plots / f"{kind}_{lv}.png").is_file()]
        out.append(f"<h3>{_e(lv)}</h3>")
        out.append('<div class=plots>' + "".join(figs) + "</div>" if figs else
                   "<p class=note>no plots: run 'dicomml evaluate' without --no-plots.</p>")
    return "".join(out)


def _gallery_cases(table: pd.DataFrame, pcol: str, pos: int, thr: float, n: int):
    y = table["target"].astype(int).to_numpy() == pos
    p = table[pcol].to_numpy(np.float64)
    order = np.argsort(-p, kind="stable")
    fp = [i for i in order if not y[i] and p[i] >= thr][:n]
    fn = [i for i in order[::-1] if y[i] and p[i] < thr][:n]
    tp = [i for i in order if y[i] and p[i] >= thr][:n]
    return [("Worst false positives (highest probability, truth negative)", fp),
            ("Worst false negatives (lowest probability, truth positive)", fn),
            ("Most confident true positives", tp)]


def _gallery_section(run_dir: Path, metrics: dict | None, n: int, heatmaps: bool) -> str:
    out = ["<h2 id=gallery>Gallery</h2>"]
    meta = (metrics or {}).get("meta", {})
    classes = meta.get("classes") or []
    pred = _read_csv(run_dir / "predictions.csv")
    if not metrics or meta.get("task") == "regression" or len(classes) != 2 or pred is None:
        return out[0] + ("<p class=note>a gallery needs a binary classification run with "
                         "metrics.json and predictions.csv ('dicomml evaluate').</p>")
    from dicomml.evaluate.aggregate import aggregate_studies
    from dicomml.evaluate.runio import load_run, prob_columns
    from dicomml.train.run import positive_index

    run = load_run(run_dir)
    pos = positive_index(run.config, classes)  # the classes of metrics.json
    cols = prob_columns(classes, "classification")
    pcol = cols[pos]
    man = run.manifest.astype({"sop_instance_uid": str, "frame": int})
    table = pred.astype({"frame": int}).merge(
        man[["sop_instance_uid", "frame", "path"]].drop_duplicates(["sop_instance_uid", "frame"]),
        on=["sop_instance_uid", "frame"], how="left")
    table = table[table["target"] != ""]
    for c in cols:
        table[c] = pd.to_numeric(table[c], errors="coerce")
    table = table[np.isfinite(table[cols].to_numpy(np.float64)).all(axis=1)]
    table = table[table["path"].notna()].reset_index(drop=True)
    table["target"] = table["target"].astype(int)
    how = (meta.get("aggregation") or ["max"])[0]
    thr_img = metrics.get("image", {}).get("threshold", {}).get("value")
    thr_img = 0.5 if thr_img is None else float(thr_img)
    thr_st = (metrics.get(f"study_{how}") or {}).get("threshold", {}).get("value")
    thr_st = 0.5 if thr_st is None else float(thr_st)
    studies = aggregate_studies(table.assign(patient_key=table["study_instance_uid"]), cols,
                                how=how).set_index("study_instance_uid")
    out.append(f"<p>Image-level operating point {thr_img:.4g}; a study's decision is its "
               f"images' {_e(how)} probability of <b>{_e(classes[pos])}</b> at the "
               f"study-level operating point {thr_st:.4g}. Heatmaps: Grad-CAM of "
               f"{_e(classes[pos])} over the model's input.</p>")
    model = run.model() if heatmaps else None
    for title, idx in _gallery_cases(table, pcol, pos, thr_img, n):
        out.append(f"<h3>{_e(title)}</h3>")
        if not idx:
            out.append("<p class=note>none.</p>")
            continue
        cards = [_card(table.iloc[i], run, model, pos, pcol, classes, studies, thr_st)
                 for i in idx]
        out.append('<div class=gallery>' + "".join(cards) + "</div>")
    return "".join(out)


def _card(row, run, model, pos: int, pcol: str, classes, studies, thr_st: float) -> str:
    from dicomml.report.overlay import heatmap_overlay, to_display_gray

    path, frame = str(row["path"]), int(row["frame"])
    name = os.path.basename(path)
    try:
        tensor = run.pipeline.from_path(path, frame)
    except Exception as e:  # noqa: BLE001 - shown on the card, never fatal to the page
        log.warning("report: cannot read %s frame %d: %s", name, frame, e)
        pics = f"<p class=bad>could not read the image: {_e(e)}</p>"
    else:
        gray = np.rint(to_display_gray(tensor) * 255).astype(np.uint8)
        pics = f'<img src="{_png_uri(_array_png(gray))}" alt="input {_e(name)}">'
        if model is not None:
            from dicomml.evaluate.grad_cam import gradcam

            heat = gradcam(model, tensor, class_index=pos)
            pics += (f'<img src="{_png_uri(_array_png(heatmap_overlay(tensor, heat)))}" '
                     f'alt="Grad-CAM {_e(name)}">')
    truth = classes[int(row["target"])]
    st_uid = row["study_instance_uid"]
    st_p = float(studies.loc[st_uid, pcol]) if st_uid in studies.index else float("nan")
    decided = classes[pos] if st_p >= thr_st else classes[1 - pos]
    st_truth = classes[int(studies.loc[st_uid, "target"])] if st_uid in studies.index else "?"
    cls = "good" if decided == st_truth else "bad"
    return (f"<div class=card>{pics}<div><b>{_e(name)}</b> frame {frame + 1}; "
            f"p({_e(classes[pos])}) = {float(row[pcol]):.3f}; truth {_e(truth)}</div>"
            f"<div>study …{_e(str(st_uid)[-12:])}: p = {st_p:.3f} → "
            f"<span class={cls}>{_e(decided)}</span> (truth {_e(st_truth)})</div></div>")


# -- the page -------------------------------------------------------------------------------
def build_report(run_dir: str | os.PathLike, *, n_gallery: int = 4,
                 heatmaps: bool = True) -> str:
    """The HTML text of a run's report page (see the module docstring).

    Parameters
    ----------
    run_dir : path
        A run folder written by ``dicomml train`` (and ``dicomml evaluate`` for the metrics,
        plots and gallery).
    n_gallery : int
        Images per gallery row (false positives, false negatives, true positives).
    heatmaps : bool
        Compute a Grad-CAM heatmap per gallery image (loads the model with TensorFlow).

    Raises
    ------
    ConfigError
        When ``run_dir`` is not a run folder (no ``config.toml``).
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").is_file():
        raise ConfigError(f"{run_dir} is not a run folder (no config.toml): pass the folder "
                          "'dicomml train --out' wrote")
    if n_gallery < 0:
        raise ConfigError(f"the gallery size must be 0 or more. Received: {n_gallery}")
    manifest = _read_csv(run_dir / "manifest.csv")
    manifest = pd.DataFrame() if manifest is None else manifest
    mpath = run_dir / "metrics.json"
    metrics = json.loads(mpath.read_text(encoding="utf-8")) if mpath.is_file() else None
    sections = [_data_section(run_dir, manifest, metrics), _config_section(run_dir),
                _training_section(run_dir), _metrics_section(run_dir, metrics)]
    if n_gallery:
        sections.append(_gallery_section(run_dir, metrics, n_gallery, heatmaps))
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    from dicomml import __version__

    return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            f"<title>dicomml report: {_e(run_dir.resolve().name)}</title>"
            f"<style>{_CSS}</style></head><body>"
            f"<h1>dicomml run report: {_e(run_dir.resolve().name)}</h1>"
            f"<p class=note>{_e(run_dir.resolve())}; written {when} by dicomml "
            f"{_e(__version__)}. No patient names or IDs are shown.</p>"
            + "".join(sections) + f"<script>{_CHECK}</script></body></html>\n")


def write_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *,
                 n_gallery: int = 4, heatmaps: bool = True) -> Path:
    """Write :func:`build_report` to ``out`` (default ``RUN/report.html``) atomically."""
    target = Path(out) if out is not None else Path(run_dir) / REPORT_NAME
    atomic_write_text(target, build_report(run_dir, n_gallery=n_gallery, heatmaps=heatmaps))
    return target
