"""A small but real run folder for the evaluate / predict / CLI tests.

Synthetic head CT studies (dicomml.testing.write_head_ct_task), scanned with dicomml.io,
joined to their labels with dicomml.data, split by patient, a tiny Keras CNN (224x224x3
input, like every dicomml model) saved as model.keras, the resolved config.toml, the
input contract (contract.json) and a history.csv — the run-folder contract of DESIGN.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

CLASSES = ["normal", "haemorrhage"]


def tiny_model(seed: int = 0):
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((224, 224, 3), name="image")
    x = keras.layers.Conv2D(4, 5, strides=4, activation="relu", name="conv1")(inp)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(2, activation="softmax", name="output")(x)
    return keras.Model(inp, out, name="tiny_cnn")


def make_run(root: Path, *, n_patients: int = 12, seed: int = 0, train: bool = True) -> Path:
    """Write data under ``root/data`` and a run folder ``root/run``; return the run folder."""
    from dicomml.data import build_manifest, read_labels
    from dicomml.io import scan
    from dicomml.preprocess import PreprocessConfig
    from dicomml.testing.task import write_head_ct_task
    from dicomml.train.config import RunConfig
    from dicomml.train.toml_io import write_toml

    data = root / "data"
    labels = write_head_ct_task(data, n_patients=n_patients, seed=seed, slices=(2, 3),
                                rows=64, columns=64)
    res = scan(data, root / "index.sqlite", progress=False, workers=0)
    with res.index() as idx:
        inst = idx.instances()
    lab, key = read_labels(labels)
    man = build_manifest(inst, lab, key, task="classification", classes=CLASSES).df
    # split by patient: alternate so that every split holds both classes when possible
    patients = sorted(man["patient_key"].unique())
    by_label = man.groupby("patient_key")["target"].first()
    order = sorted(patients, key=lambda p: (by_label[p], p))
    split = {p: ("test", "val", "test", "train")[i % 4] for i, p in enumerate(order)}
    man["split"] = man["patient_key"].map(split)
    run = root / "run"
    run.mkdir(parents=True)
    pre = PreprocessConfig().to_dict()
    cfg = RunConfig.from_dict({
        "data": {"folder": str(data), "labels": str(labels), "key": key,
                 "task": "classification", "classes": CLASSES,
                 "positive_class": "haemorrhage", "modality": "CT"},
        "preprocess": pre, "model": {"name": "tiny_cnn"}, "train": {"epochs": 2}})
    write_toml(run / "config.toml", cfg.to_dict())
    man.to_csv(run / "manifest.csv", index=False)
    from dicomml.data.contract import InputContract

    InputContract.learn(inst[inst["sop_instance_uid"].isin(man["sop_instance_uid"])],
                        preprocess=PreprocessConfig.from_dict(pre)).write(run)
    model = tiny_model(seed)
    if train:
        from dicomml.data import load_tensors
        from dicomml.preprocess import Pipeline

        tr = man[man["split"] == "train"]
        x = load_tensors(tr, Pipeline(PreprocessConfig.from_dict(pre)), workers=0)
        import keras

        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="categorical_crossentropy")
        model.fit(x, np.eye(2)[tr["target"].to_numpy()], epochs=2, verbose=0)
    model.save(run / "model.keras")
    pd.DataFrame({"epoch": [0, 1], "loss": [0.7, 0.6], "accuracy": [0.5, 0.6],
                  "val_loss": [0.72, 0.65], "val_accuracy": [0.5, 0.55]}).to_csv(
        run / "history.csv", index=False)
    return run


def reference_probabilities(run: Path, rows: pd.DataFrame) -> np.ndarray:
    """Positive-class probabilities computed independently: Pipeline.from_path + Keras."""
    import keras

    from dicomml.preprocess import Pipeline, PreprocessConfig
    from dicomml.train.toml_io import load_toml

    cfg = load_toml(run / "config.toml")
    pipe = Pipeline(PreprocessConfig.from_dict(cfg["preprocess"]))
    x = np.stack([pipe.from_path(p, int(f)) for p, f in zip(rows["path"], rows["frame"])])
    model = keras.saving.load_model(run / "model.keras", compile=False)
    return model.predict(x, verbose=0)[:, 1].astype(np.float64)


_SHARED: dict[str, Path] = {}


def shared_run(tmp_path_factory) -> Path:
    """One run folder per test session (built on first use); copy it before writing into it."""
    if "run" not in _SHARED:
        root = tmp_path_factory.mktemp("shared_run")
        _SHARED["run"] = make_run(root)
    return _SHARED["run"]


def copy_run(shared: Path, dest: Path) -> Path:
    """A private copy of the run folder (the data stays shared: it is only read)."""
    import shutil

    return Path(shutil.copytree(shared, dest))


def dicom_folder(shared: Path, dest: Path) -> Path:
    """A copy of the run's DICOM data without labels.csv (only DICOM files)."""
    import shutil

    data = shared.parent / "data"
    return Path(shutil.copytree(data, dest, ignore=shutil.ignore_patterns("*.csv")))


def source_instances(folder: Path) -> pd.DataFrame:
    """Every DICOM file under ``folder`` read with pydicom: path, UIDs, patient identifiers."""
    import pydicom

    rows = []
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file() and p.suffix != ".csv":
            ds = pydicom.dcmread(p, stop_before_pixels=True)
            rows.append({"path": str(p), "study_instance_uid": ds.StudyInstanceUID,
                         "sop_class_uid": ds.SOPClassUID,
                         "sop_instance_uid": ds.SOPInstanceUID,
                         "patient_id": str(ds.PatientID), "patient_name": str(ds.PatientName)})
    return pd.DataFrame(rows)
