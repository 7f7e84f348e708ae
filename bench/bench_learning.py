"""Benchmark: does training learn the finding? dicomml (slice and study level) against the
tutorial's plain Keras code, on the same patient split, per task and split seed.

Tasks (generated, with study labels):

* ``chest`` — :func:`dicomml.testing.write_chest_nodule_task`: a 7.5–17.5 mm nodule on 3–7
  of 24 slices among vessel-like dots; lung window.
* ``head`` — the bundled ``sample_dicom/head_ct_task`` (56 patients, 5–8 slices,
  :func:`dicomml.testing.write_head_ct_task`): a haemorrhage on every slice of the positive
  studies; the default brain / subdural / bone windows (no hand tuning).

Methods (same split, same test patients):

* ``tutorial`` — pydicom + numpy windowing + skimage resize + the reference CNN (Adam 1e-3,
  10 epochs, batch 32, the study label on every slice, the last epoch kept), study score
  the maximum slice probability;
* ``slice`` — ``dicomml train`` with ``[model] level = "slice"`` (the reference CNN and
  dicomml's defaults: augmentation, AdamW, cosine schedule, balance by study, best epoch
  by validation ROC AUC), evaluated with ``evaluate_run`` (``study_max``);
* ``study`` — ``level = "study"``: MIL over the slices with dicomml's defaults (the
  reference CNN as a patch classifier, ``head = "map"``, pooled by its maximum over the
  patches and the slices), evaluated the same way.

Reported per method: test study ROC AUC with its 95 % patient-bootstrap interval, wall
time end to end (DICOM folder → trained model → test predictions), and for the chest task
the share of true-positive studies whose Grad-CAM peak (on the slice with the highest
attention weight, or the highest slice probability) lies inside the lesion mask dilated
by 3 mm, for the coarse map (CAM / Grad-CAM) and the fine one (``gradcam(fine=True)``).

Usage::

    nice -n 5 python bench/bench_learning.py --task chest --seeds 0 1 2
    nice -n 5 python bench/bench_learning.py --task head --seeds 0 1 2 --write-readme
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np
import pandas as pd

WINDOWS = {"chest": ["lung"], "head": ["brain", "subdural", "bone"]}
#: (negative, positive) class of each task: the positive one is what slice labels mark
CLASSES = {"chest": ["normal", "nodule"], "head": ["normal", "haemorrhage"]}
# (centre, width) of the same windows, for the tutorial code
TUTORIAL_WINDOWS = {"chest": [(-600.0, 1500.0)],
                    "head": [(40.0, 80.0), (80.0, 200.0), (400.0, 1800.0)]}


def make_task(kind: str, folder: str, patients: int, rows: int) -> tuple[str, str]:
    """``(folder, labels CSV)`` of the task; both with ``slice_labels.csv`` and ``masks.npz``.

    The head task is the bundled ``sample_dicom/head_ct_task`` written again with its lesion
    masks (the same DICOM bytes: :func:`dicomml.testing.make_export`'s parameters)."""
    from pydicom.uid import JPEGLSLossless

    from dicomml.testing import write_chest_nodule_task, write_head_ct_task

    if kind == "chest":
        return folder, str(write_chest_nodule_task(folder, n_patients=patients, seed=11,
                                                   rows=rows))
    return folder, str(write_head_ct_task(folder, n_patients=56, seed=0, rows=224,
                                          columns=224, transfer_syntax=JPEGLSLossless,
                                          lesion_masks=True))


def slice_labels_with_split(folder: str, manifest: pd.DataFrame, work: str,
                            seed: int) -> str:
    """The task's ``slice_labels.csv`` with a ``split`` column: the study-label split of
    ``manifest`` (labels per slice would stratify differently), for ``study-sup``."""
    sl = pd.read_csv(os.path.join(folder, "slice_labels.csv"))
    split = dict(zip(manifest["sop_instance_uid"].astype(str), manifest["split"]))
    sl["split"] = sl["SOPInstanceUID"].astype(str).map(split)
    path = os.path.join(work, f"slice_labels_split{seed}.csv")
    sl.dropna(subset=["split"]).to_csv(path, index=False)
    return path


def dicomml_config(kind, folder, labels, work, method, split_seed, size, epochs, filters,
                   patience=8, pooling="", slice_labels="", augment=True, head=""):
    """The run configuration of ``method`` ("slice", "study" or "study-sup": the study
    model with slice supervision from ``slice_labels``, a CSV with a ``split`` column)."""
    from dicomml.train.config import ModelConfig, RunConfig

    pre = {"windows": WINDOWS[kind], "size": size,
           "mode": "replicate" if len(WINDOWS[kind]) == 1 else "windows"}
    if not augment:  # [preprocess.augment] all off
        pre["augment"] = {k: 0.0 for k in ("flip_lr", "flip_ud", "rotate_deg", "scale",
                                           "translate", "intensity", "window_center",
                                           "window_width")}
    level = "slice" if method == "slice" else "study"
    model = {"name": "reference_cnn", "level": level}
    if level == "study" and pooling:  # "" → the default of the study level
        model["pooling"] = pooling
    data, split, sup = {}, {"seed": split_seed, "train": 0.6, "val": 0.15, "test": 0.25}, {}
    if method == "study-sup":
        data = {"labels": slice_labels, "key": "SOPInstanceUID"}
        split = {"method": "column"}
    if filters:
        model["filters"] = list(filters)
    if head:
        model["head"] = head
    if method == "study-sup":  # attention supervision where the pooling dicomml uses is
        resolved = ModelConfig.from_dict(model).pooling
        sup = {"slice_loss": 0.5, "attention_loss": 1.0 if resolved == "attention" else 0.0}
    return RunConfig.from_dict({
        "data": {"folder": folder, "labels": labels, "index": os.path.join(work, "index.db"),
                 "cache": os.path.join(work, "cache"), "workers": 2,
                 "classes": CLASSES[kind], "positive_class": CLASSES[kind][1], **data},
        "split": split, "preprocess": pre, "model": model,
        "train": {"epochs": epochs, "tensorboard": False, "verbose": 0, "seed": 0,
                  "early_stopping_patience": patience, **sup}})


def study_auc(y, p, groups, n_resamples=1000):
    from dicomml.evaluate.bootstrap import classification_metrics

    m = classification_metrics(np.asarray(y), np.asarray(p), groups=np.asarray(groups),
                               n_resamples=n_resamples, seed=0)["metrics"]["roc_auc"]
    return float(m["value"]), [float(v) for v in m["ci95"]]


def run_dicomml(cfg, run_dir):
    from dicomml.evaluate.evaluation import evaluate_run
    from dicomml.train.trainer import Trainer

    t0 = time.perf_counter()
    res = Trainer(cfg).fit(run_dir, progress=False)
    metrics = evaluate_run(run_dir, plots=False, progress=False, workers=0)
    wall = time.perf_counter() - t0
    m = metrics["study_max"]["roc_auc"]
    thr = metrics["study_max"].get("threshold", {}).get("value", 0.5)
    return {"auc": float(m["value"]), "ci": [float(v) for v in m["ci95"]], "wall_s": wall,
            "best_epoch": res.best_epoch, "epochs": len(res.history), "threshold": thr}


def _tutorial_tensor(path, windows, size):
    import pydicom
    from skimage.transform import resize

    ds = pydicom.dcmread(path)
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    chans = [np.clip((hu - (c - w / 2)) / w, 0, 1) for c, w in windows]
    if len(chans) == 1:
        chans = chans * 3
    return np.stack([resize(ch, (size, size), anti_aliasing=True) for ch in chans],
                    -1).astype(np.float32)


def run_tutorial(kind, manifest, size, filters):
    import keras

    from dicomml.models import build_model

    t0 = time.perf_counter()
    tr, te = manifest[manifest["split"] == "train"], manifest[manifest["split"] == "test"]
    xtr = np.stack([_tutorial_tensor(p, TUTORIAL_WINDOWS[kind], size) for p in tr["path"]])
    xte = np.stack([_tutorial_tensor(p, TUTORIAL_WINDOWS[kind], size) for p in te["path"]])
    keras.utils.set_random_seed(0)
    kw = {"filters": list(filters)} if filters else {}
    model = build_model("reference_cnn", input_shape=(size, size, 3), n_classes=2, **kw)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    ytr = np.eye(2, dtype=np.float32)[tr["target"].to_numpy(int)]
    model.fit(xtr, ytr, epochs=10, batch_size=32, verbose=0, shuffle=True)
    p = model.predict(xte, verbose=0)[:, 1]
    wall = time.perf_counter() - t0
    df = te.assign(p=p).groupby("study_instance_uid").agg(
        p=("p", "max"), y=("target", "max"), g=("patient_key", "first"))
    auc, ci = study_auc(df["y"], df["p"], df["g"])
    return {"auc": auc, "ci": ci, "wall_s": wall}


def localisation(run_dir, masks, threshold, pos=1):
    """:func:`dicomml.evaluate.localisation.localise_studies` on the run's test split."""
    from dicomml.data.tfdata import load_tensors
    from dicomml.evaluate.localisation import localise_studies
    from dicomml.train.run import load_run

    run = load_run(run_dir)
    man = run.manifest
    te = man[man["split"] == "test"].reset_index(drop=True)
    x = load_tensors(te, run.pipeline, workers=0)
    r = localise_studies(run.model(), te, x, masks, run.pipeline.config, positive=pos,
                         threshold=threshold)
    r.pop("studies")
    return r


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=("chest", "head"), default="chest")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--patients", type=int, default=40)
    ap.add_argument("--rows", type=int, default=160)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--filters", type=int, nargs="*", default=[],
                    help="conv filters of the reference CNN (default: the reference)")
    ap.add_argument("--methods", nargs="+", default=["tutorial", "slice", "study", "study-sup"])
    ap.add_argument("--patience", type=int, default=8, help="train.early_stopping_patience")
    ap.add_argument("--pooling", default="", help="model.pooling (study level; default: "
                    "dicomml's)")
    ap.add_argument("--head", default="", help="reference_cnn head: dense or map "
                    "(default: dicomml's)")
    ap.add_argument("--no-augment", action="store_true",
                    help="[preprocess.augment] off (the default augmentation otherwise)")
    ap.add_argument("--work", default="", help="keep the task, cache and runs in this "
                    "folder (default: a temporary folder, removed at the end)")
    ap.add_argument("--json", default="")
    ap.add_argument("--write-readme", action="store_true")
    ap.add_argument("--readme-from", default="", metavar="JSON",
                    help="write the README table of an earlier run's --json file (with the "
                    "same --task and options) and exit")
    args = ap.parse_args(argv)
    if args.readme_from:
        with open(args.readme_from, encoding="utf-8") as f:
            rows = json.load(f)
        write_readme(rows, args)
        return rows
    from dicomml.testing import read_task_masks

    rows = []
    with (contextlib.nullcontext(os.path.abspath(args.work)) if args.work
          else tempfile.TemporaryDirectory()) as work:
        folder, labels = make_task(args.task, os.path.join(work, "dicom"), args.patients,
                                   args.rows)
        masks = read_task_masks(folder)
        for seed in args.seeds:
            from dicomml.train.trainer import prepare_manifest

            cfg = dicomml_config(args.task, folder, labels, work, "slice", seed, args.size,
                                 args.epochs, args.filters)
            manifest = prepare_manifest(cfg, progress=False)[0].df  # the split of every method
            for method in args.methods:
                load0 = os.getloadavg()[0]
                if method == "tutorial":
                    r = run_tutorial(args.task, manifest, args.size, args.filters)
                else:
                    sl = (slice_labels_with_split(folder, manifest, work, seed)
                          if method == "study-sup" else "")
                    cfg = dicomml_config(args.task, folder, labels, work, method, seed,
                                         args.size, args.epochs, args.filters, args.patience,
                                         args.pooling, sl, not args.no_augment, args.head)
                    run_dir = os.path.join(work, f"run-{method}-{seed}")
                    r = run_dicomml(cfg, run_dir)
                    r["localisation"] = localisation(run_dir, masks, r["threshold"])
                r.update(task=args.task, seed=seed, method=method,
                         load=[round(load0, 1), round(os.getloadavg()[0], 1)])
                rows.append(r)
                print(json.dumps(r), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    if args.write_readme:
        write_readme(rows, args)
    return rows


def write_readme(rows, args):
    """Append / replace this task's table in bench/README.md (section ``## learning``)."""
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"### learning: {args.task}", "",
             f"`nice -n 5 python bench/bench_learning.py --task {args.task} --seeds "
             f"{' '.join(map(str, args.seeds))} "
             + (f"--patients {args.patients} --rows {args.rows} " if args.task == "chest"
                else "")
             + f"--size {args.size} --epochs {args.epochs} --patience {args.patience} "
             f"--methods {' '.join(args.methods)}"
             + (f" --filters {' '.join(map(str, args.filters))}" if args.filters else "")
             + f"` on {when}, {platform.machine()}, {os.cpu_count()} CPUs shared with other "
             f"jobs, Python {platform.python_version()}. Split 60/15/25 % by patient; test "
             "study ROC AUC with its 95 % patient-bootstrap interval; wall time = DICOM "
             "folder → model → test predictions.", "",
             "| split seed | method | study ROC AUC [95 % CI] | wall s | load | model.keras "
             "epoch | top slice on lesion (TP) | Grad-CAM peak in lesion (TP) | fine map peak "
             "in lesion (TP) |",
             "| ---: | --- | --- | ---: | --- | --- | --- | --- | --- |"]
    for r in rows:
        loc = r.get("localisation") or {}
        n = loc.get("true_positives", 0)
        sl_s = f"{loc['slice_in_lesion']}/{n}" if loc else ""
        loc_s, fine_s = ((f"{loc[k]}/{n}" + (f" ({loc[k] / n:.0%})" if n else ""))
                         if k in loc else "" for k in ("peak_in_lesion", "fine_peak_in_lesion"))
        ep = f"{r['best_epoch']} of {r['epochs']}" if r.get("best_epoch") else ""
        ld = "–".join(f"{v:g}" for v in r.get("load", []))
        lines.append(f"| {r['seed']} | {r['method']} | {r['auc']:.3f} [{r['ci'][0]:.2f}, "
                     f"{r['ci'][1]:.2f}] | {r['wall_s']:.0f} | {ld} | {ep} | {sl_s} "
                     f"| {loc_s} | {fine_s} |")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "README.md")
    text = open(path, encoding="utf-8").read()
    block = "\n".join(lines) + "\n"
    head = f"### learning: {args.task}"
    if head in text:
        a = text.index(head)
        b = text.find("\n### ", a + 1)
        c = text.find("\n## ", a + 1)
        ends = [e for e in (b, c) if e >= 0]
        end = min(ends) + 1 if ends else len(text)
        text = text[:a] + block + ("\n" if end < len(text) else "") + text[end:]
    else:
        if "## learning" not in text:
            text = text.rstrip("\n") + "\n\n## learning\n\n"
        text = text.rstrip("\n") + "\n\n" + block
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
