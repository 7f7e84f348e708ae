"""Write the tutorial notebooks of ``notebooks/`` (without outputs).

Run from the repository root after editing a cell below::

    python notebooks/make_notebooks.py

The notebooks are committed without outputs; ``tests/test_notebooks.py`` runs each one top
to bottom on ``sample_dicom/`` and checks that the committed files have no outputs and
equal what this script writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = '''\
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from dicomml.demo import find_sample_data

%matplotlib inline
SAMPLE = find_sample_data()  # ./sample_dicom, else the repository's copy
WORK = Path(tempfile.mkdtemp(prefix="dicomml-notebook-"))  # every output goes here
print("sample export:", SAMPLE)
print("outputs:      ", WORK)'''


def explore():
    return [
        new_markdown_cell(
            "# 01 · Explore a DICOM export\n\n"
            "`sample_dicom/` is a small **synthetic** PACS export: patient/study/series "
            "folders with meaningless names, files without extensions, a `DICOMDIR`, "
            "several modalities and transfer syntaxes, and a few deliberately broken files. "
            "This notebook indexes it (headers only), looks at the index as tables and "
            "charts, and reads one series into a `Volume` with its geometry.\n\n"
            "Nothing is written into `sample_dicom/`: the index goes to a temporary folder."),
        new_code_cell(SETUP),
        new_markdown_cell(
            "## Scan: headers only, into an SQLite index\n\n"
            "`dicomml.scan` reads every file's header (never its pixels), records each "
            "instance, and lists every file it could not use with the reason. A second scan "
            "reads only new or changed files."),
        new_code_cell(
            'import dicomml\n\n'
            'result = dicomml.scan(SAMPLE, WORK / "index.sqlite", progress=False)\n'
            'summary = result.summary\n'
            'print(f"{result.files_seen} files, {summary[\'patients\']} patients, "\n'
            '      f"{summary[\'studies\']} studies, {summary[\'series\']} image series, "\n'
            '      f"{summary[\'instances\']} instances in {result.elapsed_s:.2f} s")\n'
            'pd.DataFrame(result.skipped, columns=["path", "reason"]).assign(\n'
            '    path=lambda d: d["path"].map(lambda p: str(Path(p).relative_to(SAMPLE))))'),
        new_markdown_cell(
            "## The index as a DataFrame\n\n"
            "One row per instance: UIDs, modality, size, geometry, transfer syntax, windows. "
            "Patient identifiers are in the index (it is the catalogue of the export) but we "
            "leave them out of what we display."),
        new_code_cell(
            'index = dicomml.open_index(db=result.db_path)\n'
            'instances = index.instances()\n'
            'shown = [c for c in instances.columns if not c.startswith("patient")]\n'
            'print(instances.shape)\n'
            'instances[shown].head()'),
        new_markdown_cell("Which transfer syntaxes and modalities does the export hold?"),
        new_code_cell(
            'from pydicom.uid import UID\n\n'
            'fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))\n'
            'instances["modality"].value_counts().plot.barh(ax=axes[0], title="instances by modality")\n'
            'ts = instances["transfer_syntax_uid"].dropna().map(lambda u: UID(u).name)\n'
            'ts.value_counts().plot.barh(ax=axes[1], title="instances by transfer syntax")\n'
            'for ax in axes:  # counts of 1 or 2 next to hundreds stay readable\n'
            '    ax.bar_label(ax.containers[0], padding=2)\n'
            '    ax.margins(x=0.15)\n'
            'fig.tight_layout()'),
        new_markdown_cell(
            "## A series table\n\n"
            "`Index.series()` has one row per series key (a series, or one stack of a "
            "series that mixes orientations or sizes)."),
        new_code_cell(
            'series = index.series()\n'
            'series[["modality", "series_description", "object_kind", "n_instances", "n_frames",\n'
            '        "rows", "columns"]].sort_values("n_instances", ascending=False).head(15)'),
        new_markdown_cell(
            "## A volume with its geometry\n\n"
            "`dicomml.read_series` orders the slices along the normal of (0020,0037) Image "
            "Orientation (Patient), decodes them, applies the modality LUT (Hounsfield units "
            "for CT) and returns a `Volume`: a float32 array (slice, row, column) with "
            "spacing, origin and direction in patient coordinates (LPS, mm). Here: the "
            "synthetic head CT of the sample export, acquired with a 12° gantry tilt."),
        new_code_cell(
            'head = series[series["series_description"] == "SYN CT HEAD"].iloc[0]\n'
            'volume = dicomml.read_series(head["series_key"], index=index)\n'
            'print("shape (slice, row, column):", volume.pixels.shape, volume.pixels.dtype)\n'
            'print("spacing (mm):", np.round(volume.spacing, 3))\n'
            'print("origin (mm): ", np.round(volume.origin, 2))\n'
            'print("direction:\\n", np.round(volume.direction, 3))\n'
            'print("HU range:", float(volume.pixels.min()), "to", float(volume.pixels.max()))\n'
            'print("issues:", [i.kind if hasattr(i, "kind") else str(i) for i in volume.issues])'),
        new_markdown_cell(
            "Axial slices in the brain window (centre 40 HU, width 80 HU), and a sagittal "
            "reformat drawn with the true aspect ratio (slice spacing / pixel spacing)."),
        new_code_cell(
            'from dicomml import apply_window\n\n'
            'n = volume.pixels.shape[0]\n'
            'picks = np.linspace(0, n - 1, 4).round().astype(int)\n'
            'fig, axes = plt.subplots(1, 5, figsize=(16, 3.6))\n'
            'for ax, k in zip(axes, picks):\n'
            '    ax.imshow(apply_window(volume.pixels[k], 40, 80), cmap="gray")\n'
            '    ax.set_title(f"slice {k}"); ax.axis("off")\n'
            'col = volume.pixels.shape[2] // 2\n'
            'sag = apply_window(volume.pixels[:, :, col], 40, 80)\n'
            'axes[4].imshow(sag, cmap="gray", origin="lower",\n'
            '               aspect=volume.spacing[0] / volume.spacing[1])\n'
            'axes[4].set_title("sagittal reformat"); axes[4].axis("off")\n'
            'fig.tight_layout()'),
        new_markdown_cell(
            "The same volume as a SimpleITK image: the geometry travels with it, so "
            "resampling and registration tools work in millimetres."),
        new_code_cell(
            'image = volume.to_sitk()\n'
            'print("size (x, y, z):", image.GetSize())\n'
            'print("spacing (x, y, z):", np.round(image.GetSpacing(), 3))\n'
            'print("origin:", np.round(image.GetOrigin(), 2))\n'
            'index.close()'),
    ]


def preprocessing():
    return [
        new_markdown_cell(
            "# 02 · From Hounsfield units to a 224×224×3 tensor\n\n"
            "A CT slice holds values from about −1000 HU (air) to +3000 HU (bone); a CNN "
            "wants three channels in [0, 1]. `dicomml.preprocess` does it in the DICOM order: "
            "modality values → window (PS3.3 C.11.2) → MONOCHROME1 inversion → resize/pad → "
            "channels → normalization. This notebook shows each choice side by side."),
        new_code_cell(SETUP),
        new_markdown_cell(
            "## A slice of the head-CT task\n\n"
            "`head_ct_task/` holds 56 synthetic head CTs; half carry a small 60–90 HU "
            "hyperdensity (a haemorrhage-like blob). We take the middle slice of a positive "
            "study."),
        new_code_cell(
            'import dicomml\n\n'
            'labels = pd.read_csv(SAMPLE / "head_ct_task" / "labels.csv")\n'
            'print(labels["label"].value_counts().to_dict())\n'
            'scan = dicomml.scan(SAMPLE / "head_ct_task", WORK / "task.sqlite", progress=False)\n'
            'with dicomml.open_index(db=scan.db_path) as index:\n'
            '    inst = index.instances()\n'
            'positive = labels.loc[labels["label"] == "haemorrhage", "StudyInstanceUID"].iloc[0]\n'
            'files = inst[inst["study_instance_uid"] == positive].sort_values("instance_number")\n'
            'image = dicomml.read_image(files["path"].iloc[len(files) // 2])\n'
            'hu = image.pixels[0]\n'
            'print(image.modality, hu.shape, hu.dtype, "HU from", hu.min(), "to", hu.max())\n'
            'print("windows stored in the file:", [(w.center, w.width, w.explanation) for w in image.windows])'),
        new_markdown_cell(
            "## Windows and presets\n\n"
            "A window maps `[centre − width/2, centre + width/2]` to [0, 1] (PS3.3 "
            "C.11.2.1.2). The presets follow common radiology practice; the narrow "
            "*blood* window (75/40) of `sample_dicom/train.toml` makes the blob stand out."),
        new_code_cell(
            'from dicomml.preprocess import PRESETS, resolve_window\n\n'
            'choices = {"brain": "brain", "subdural": "subdural", "bone": "bone", "blood": "75/40"}\n'
            'fig, axes = plt.subplots(1, 5, figsize=(17, 3.6))\n'
            'axes[0].imshow(hu, cmap="gray"); axes[0].set_title("raw HU (min-max)")\n'
            'for ax, (label, spec) in zip(axes[1:], choices.items()):\n'
            '    w = resolve_window(spec, values=hu, file_windows=image.windows)\n'
            '    ax.imshow(dicomml.apply_window(hu, w.center, w.width), cmap="gray", vmin=0, vmax=1)\n'
            '    ax.set_title(f"{label}: {w.center:g}/{w.width:g}")\n'
            'for ax in axes: ax.axis("off")\n'
            'fig.tight_layout()\n'
            'pd.DataFrame(PRESETS, index=["center", "width"]).T'),
        new_markdown_cell(
            "## Channel stacking\n\n"
            "The usual three-channel input stacks three windows (brain / subdural / bone, "
            "as in the RSNA intracranial-haemorrhage solutions). `Pipeline` does every step "
            "and returns float32 (224, 224, 3); `mode=\"replicate\"` repeats one window."),
        new_code_cell(
            'from dicomml import Pipeline, PreprocessConfig\n\n'
            'stack = Pipeline(PreprocessConfig(windows=("brain", "subdural", "bone")))\n'
            'blood = Pipeline(PreprocessConfig(mode="replicate", windows=((75.0, 40.0),)))\n'
            't3, tb = stack(image), blood(image)\n'
            'print(t3.shape, t3.dtype, float(t3.min()), float(t3.max()))\n'
            'fig, axes = plt.subplots(1, 5, figsize=(17, 3.6))\n'
            'for c, name in enumerate(stack.channel_labels(image)):\n'
            '    axes[c].imshow(t3[..., c], cmap="gray", vmin=0, vmax=1); axes[c].set_title(name)\n'
            'axes[3].imshow(t3); axes[3].set_title("composite (RGB)")\n'
            'axes[4].imshow(tb); axes[4].set_title("replicate 75/40")\n'
            'for ax in axes: ax.axis("off")\n'
            'fig.tight_layout()'),
        new_markdown_cell(
            "## Other modalities\n\n"
            "MR has no absolute units: a percentile window (`p1-p99`, ignoring padding) is "
            "the usual choice. The computed radiograph is MONOCHROME1 (white = low values) "
            "with a VOI LUT Sequence in the file; the pipeline applies the LUT and inverts, "
            "so bone is bright as in every other image."),
        new_code_cell(
            'export = dicomml.scan(SAMPLE, WORK / "export.sqlite", progress=False)\n'
            'with dicomml.open_index(db=export.db_path) as index:\n'
            '    inst = index.instances()\n'
            'def first(modality):\n'
            '    rows = inst[(inst["modality"] == modality) & inst["is_image"]]\n'
            '    return dicomml.read_image(rows.sort_values("path")["path"].iloc[len(rows) // 2])\n'
            'mr, cr = first("MR"), first("CR")\n'
            'mr_t = Pipeline(PreprocessConfig(mode="replicate", windows=("p1-p99",)))(mr)\n'
            'cr_t = Pipeline(PreprocessConfig(mode="replicate", windows=("voilut",)))(cr)\n'
            'fig, axes = plt.subplots(1, 4, figsize=(14, 3.6))\n'
            'axes[0].imshow(mr.pixels[0], cmap="gray"); axes[0].set_title("MR, raw")\n'
            'axes[1].imshow(mr_t); axes[1].set_title("MR, p1-p99")\n'
            'axes[2].imshow(cr.pixels[0], cmap="gray"); axes[2].set_title(f"CR, raw ({cr.photometric_interpretation})")\n'
            'axes[3].imshow(cr_t); axes[3].set_title("CR, VOI LUT + inverted")\n'
            'for ax in axes: ax.axis("off")\n'
            'fig.tight_layout()'),
        new_markdown_cell(
            "## A preview PNG\n\n"
            "`dicomml preview FILE -o out.png` (or `save_preview`) writes what the model "
            "sees: each channel with its window, and the composite. Handy in a bug report."),
        new_code_cell(
            'from IPython.display import Image as Show\n'
            'from dicomml.preprocess.preview import save_preview\n\n'
            'png = WORK / "preview.png"\n'
            'save_preview(png, t3, stack.channel_labels(image))\n'
            'Show(filename=str(png))'),
    ]


def train_evaluate():
    return [
        new_markdown_cell(
            "# 03 · Train, evaluate, report\n\n"
            "The reference CNN on the head-CT task, with the configuration of "
            "`sample_dicom/train.toml` but only a few epochs so that it is quick: scan → "
            "labels joined by Study Instance UID → split **by patient** → tensor cache → "
            "Keras fit → metrics with patient-level bootstrap intervals → one DICOM "
            "Structured Report per test study.\n\n"
            "Everything is written into a temporary folder."),
        new_code_cell(SETUP),
        new_markdown_cell(
            "## The configuration\n\n"
            "A frozen, typed configuration loaded from TOML; we keep it and change only the "
            "epochs, the cache folder and TensorBoard logs. The resolved configuration is "
            "saved into the run folder."),
        new_code_cell(
            'from dicomml.train import Trainer, load_config\n\n'
            'config = load_config(SAMPLE / "train.toml").replace(\n'
            '    data={"cache": str(WORK / "cache"), "index": str(WORK / "task.sqlite")},\n'
            '    train={"epochs": 3, "tensorboard": False, "verbose": 0},\n'
            ')\n'
            'print(config.data.labels)\n'
            'print("windows:", config.preprocess["windows"], "mode:", config.preprocess["mode"])\n'
            'print("split:", config.split)\n'
            'print("model:", config.model.name, "| epochs:", config.train.epochs)'),
        new_markdown_cell("## Train (a minute or two on a laptop CPU)"),
        new_code_cell(
            'run_dir = WORK / "run"\n'
            'result = Trainer(config).fit(run_dir, progress=False)\n'
            'manifest = result.manifest\n'
            'print(manifest.groupby("split")[["patient_key", "study_instance_uid"]].nunique())\n'
            'result.history'),
        new_markdown_cell(
            "Training curves from `history.csv`. With three epochs the model has only "
            "begun to learn; `dicomml demo` trains the full configuration."),
        new_code_cell(
            '%matplotlib inline\n'
            '# (again: the trainer selected a file-only backend for its own PNGs)\n'
            'from dicomml.evaluate.plots import read_history\n\n'
            'history = read_history(run_dir / "history.csv")  # epochs numbered from 1\n'
            'fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))\n'
            'history.plot(x="epoch", y=["loss", "val_loss"], ax=axes[0], marker="o", title="loss")\n'
            'acc = [c for c in ("accuracy", "val_accuracy") if c in history]\n'
            'history.plot(x="epoch", y=acc, ax=axes[1], marker="o", title="accuracy")\n'
            'fig.tight_layout()'),
        new_markdown_cell(
            "## Evaluate the held-out patients\n\n"
            "Metrics per image and per study (the max or the mean of its slices' "
            "probabilities), each with a 95 % interval from a bootstrap that resamples "
            "**patients**; the threshold is chosen on the validation split. With "
            "`reports=True` it also writes one SR per test study and a Grad-CAM image per "
            "positive study."),
        new_code_cell(
            'from dicomml import evaluate_run\n'
            'from dicomml.evaluate.evaluation import headline\n\n'
            'metrics = evaluate_run(run_dir, n_resamples=200, reports=True, progress=False)\n'
            'print(headline(metrics))'),
        new_code_cell(
            'fig, axes = plt.subplots(1, 2, figsize=(11, 5))\n'
            'for ax, name in zip(axes, ["roc_study_max.png", "confusion_study_max.png"]):\n'
            '    ax.imshow(plt.imread(run_dir / "plots" / name)); ax.axis("off")\n'
            'fig.tight_layout()'),
        new_markdown_cell(
            "## The Structured Report, read back\n\n"
            "Each SR is a TID 1500 Measurement Report in the study of its source images: the "
            "algorithm (TID 4019), the finding as a coded qualitative evaluation, its "
            "probability, and references to every slice used. `dsrdump` (dcmtk) renders it "
            "as text when installed (`-Ph`: without the document header, which names the "
            "patient); otherwise we walk the content tree with highdicom/pydicom."),
        new_code_cell(
            'import shutil\n'
            'import subprocess\n\n'
            'import pydicom\n\n'
            'sr_path = sorted((run_dir / "reports").glob("SR_*.dcm"))[0]\n'
            'if shutil.which("dsrdump"):\n'
            '    text = subprocess.run(["dsrdump", "-Ph", str(sr_path)], capture_output=True,\n'
            '                          text=True, check=True).stdout\n'
            '    print("\\n".join(text.splitlines()[:40]))\n'
            'else:\n'
            '    def walk(items, depth=0):\n'
            '        for item in items:\n'
            '            name = item.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in item else ""\n'
            '            value = (item.get("TextValue") or item.get("UID")\n'
            '                     or (item.ConceptCodeSequence[0].CodeMeaning if "ConceptCodeSequence" in item else "")\n'
            '                     or (item.MeasuredValueSequence[0].NumericValue if "MeasuredValueSequence" in item else ""))\n'
            '            print("  " * depth + f"{item.ValueType} {name}: {value}")\n'
            '            walk(item.get("ContentSequence", []), depth + 1)\n'
            '    walk(pydicom.dcmread(sr_path).ContentSequence)'),
        new_markdown_cell(
            "A Grad-CAM Secondary Capture of a positive study (if the model called any "
            "study positive): where the model looked."),
        new_code_cell(
            'scs = sorted((run_dir / "reports").glob("GRADCAM_*.dcm"))\n'
            'print(len(scs), "Grad-CAM images")\n'
            'if scs:\n'
            '    sc = pydicom.dcmread(scs[0])\n'
            '    plt.figure(figsize=(4, 4)); plt.imshow(sc.pixel_array); plt.axis("off")\n'
            '    plt.title(sc.get("SeriesDescription", "Grad-CAM"))'),
    ]


NOTEBOOKS = {
    "01_explore.ipynb": explore,
    "02_preprocessing.ipynb": preprocessing,
    "03_train_evaluate.ipynb": train_evaluate,
}


def build(name: str) -> nbformat.NotebookNode:
    """The notebook ``name`` (no outputs, no execution counts)."""
    nb = new_notebook(cells=NOTEBOOKS[name]())
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):  # stable ids: regenerating changes nothing
        cell["id"] = f"{Path(name).stem[:2]}-{i:02d}"
    return nb


def text(name: str) -> str:
    return nbformat.writes(build(name)) + "\n"


def main(argv=None) -> int:
    out = Path(argv[0]) if argv else HERE
    for name in NOTEBOOKS:
        (out / name).write_text(text(name), encoding="utf-8")
        print("wrote", out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
