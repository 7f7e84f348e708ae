"""The Manifest: the index joined with the labels, one row per example (image frame).

Labels that match no image and images that carry no label are reported (counts and CSV
files in the run folder), never silently dropped.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dicomml._atomic import atomic_write_text
from dicomml.data.labels import KEY_TAGS, class_names, infer_task
from dicomml.data.slices import SliceSelection, select_slices
from dicomml.data.split import SplitConfig, split_by_patient
from dicomml.errors import ConfigError

__all__ = ["Manifest", "build_manifest", "patient_key", "MANIFEST_COLUMNS", "read_manifest"]

#: The columns of ``manifest.csv`` (run-folder contract).
MANIFEST_COLUMNS = ["patient_key", "study_instance_uid", "series_instance_uid",
                    "sop_instance_uid", "frame", "path", "label", "target", "split"]


def patient_key(patient_id) -> str:
    """Pseudonym of a (0010,0020) Patient ID: the first 16 hex digits of
    ``sha256("dicomml-patient:" + PatientID)``. The Patient ID itself never leaves memory."""
    pid = "" if patient_id is None or (isinstance(patient_id, float) and np.isnan(patient_id)) \
        else str(patient_id)
    return hashlib.sha256(("dicomml-patient:" + pid).encode("utf-8")).hexdigest()[:16]


@dataclass
class Manifest:
    """The examples of a task and what was left out.

    Attributes
    ----------
    df : pandas.DataFrame
        :data:`MANIFEST_COLUMNS` (``split`` empty until :meth:`with_split`), in a stable
        order: by study, series, then slice position.
    key : str
        The canonical key the labels are keyed by.
    task : {"classification", "regression"}
    classes : list of str
        Ordered class names (index i is softmax output i); empty for regression.
    unmatched_labels : pandas.DataFrame
        Label rows whose key matches no image (key column and label only).
    unlabeled : pandas.DataFrame
        Image instances without a label (UIDs and path; no patient identifiers).
    """

    df: pd.DataFrame
    key: str
    task: str
    classes: list[str]
    unmatched_labels: pd.DataFrame = field(default_factory=pd.DataFrame)
    unlabeled: pd.DataFrame = field(default_factory=pd.DataFrame)

    def __len__(self) -> int:
        return len(self.df)

    @property
    def n_classes(self) -> int:
        return len(self.classes) if self.task == "classification" else 1

    def with_split(self, config: SplitConfig) -> "Manifest":
        """A copy whose ``split`` column is filled by :func:`split_by_patient`."""
        df = self.df.copy()
        if config.method == "column" and "split" in df and (df["split"] == "").any():
            raise ConfigError("split.method = 'column' but some labels have no split value")
        df["split"] = split_by_patient(df, config, task=self.task).values
        return Manifest(df, self.key, self.task, self.classes, self.unmatched_labels,
                        self.unlabeled)

    def split(self, name: str) -> pd.DataFrame:
        return self.df[self.df["split"] == name]

    def summary(self) -> dict:
        """Counts for logs and progress output (no identifiers)."""
        out = {"examples": int(len(self.df)),
               "patients": int(self.df["patient_key"].nunique()),
               "studies": int(self.df["study_instance_uid"].nunique()),
               "unmatched_labels": int(len(self.unmatched_labels)),
               "unlabeled_images": int(len(self.unlabeled))}
        if "split" in self.df and (self.df["split"] != "").all():
            out["splits"] = {k: int(v) for k, v in self.df["split"].value_counts().items()}
        return out

    def write(self, run_dir: str | os.PathLike) -> dict:
        """Write ``manifest.csv``, ``unmatched_labels.csv`` and ``unlabeled_images.csv``."""
        run_dir = os.fspath(run_dir)
        atomic_write_text(os.path.join(run_dir, "manifest.csv"),
                          self.df[MANIFEST_COLUMNS].to_csv(index=False))
        atomic_write_text(os.path.join(run_dir, "unmatched_labels.csv"),
                          self.unmatched_labels.to_csv(index=False))
        atomic_write_text(os.path.join(run_dir, "unlabeled_images.csv"),
                          self.unlabeled.to_csv(index=False))
        return self.summary()


def _targets(labels: pd.Series, task: str, classes: list[str]) -> np.ndarray:
    if task == "regression":
        try:
            return labels.astype(float).to_numpy()
        except ValueError as e:
            raise ConfigError(f"regression needs numeric labels: {e}") from e
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise ConfigError(f"labels {unknown[:5]!r} are not among data.classes {classes!r}")
    return labels.map(index).to_numpy().astype(np.int64)


def build_manifest(instances: pd.DataFrame, labels: pd.DataFrame, key: str, *,
                   task: str | None = None, classes: list[str] | None = None,
                   selection: SliceSelection = SliceSelection()) -> Manifest:
    """Join the index's instances with the labels and expand them into examples.

    Parameters
    ----------
    instances : pandas.DataFrame
        ``Index.instances()``: at least ``path``, ``sop_instance_uid``,
        ``series_instance_uid``, ``study_instance_uid``, ``patient_id``; optionally
        ``is_image``, ``number_of_frames``, ``image_position``, ``image_orientation``,
        ``instance_number``. Rows with ``is_image`` false (SR, PR, KO...) are ignored.
    labels : pandas.DataFrame
        From :func:`dicomml.data.labels.read_labels`: column ``key``, ``label`` and
        optionally ``split``.
    key : str
        Canonical key: ``"study_instance_uid"``, ``"series_instance_uid"``,
        ``"sop_instance_uid"`` or ``"patient_id"``.
    task : {"classification", "regression"} or None
        Inferred from the labels when None (:func:`dicomml.data.labels.infer_task`).
    classes : list of str or None
        Class order (index i = softmax output i); sorted label values when None.
    selection : SliceSelection
        Slices kept per series.
    """
    if key not in KEY_TAGS:
        raise ConfigError(f"key must be one of {sorted(KEY_TAGS)}. Received: key={key!r}")
    needed = {"path", "sop_instance_uid", "series_instance_uid", "study_instance_uid",
              "patient_id"}
    missing = needed - set(instances.columns)
    if missing:
        raise ConfigError(f"the index lacks columns {sorted(missing)}; rescan with dicomml scan")
    inst = instances
    if "is_image" in inst:
        inst = inst[inst["is_image"].astype(bool)]
    inst = inst.copy()
    for c in needed:
        inst[c] = inst[c].astype(str)
    labels = labels[(labels[key] != "") & (labels["label"] != "")]
    keys_present = set(inst[key])
    matched = labels[key].isin(keys_present)
    unmatched = labels.loc[~matched, [key, "label"]].reset_index(drop=True)
    if key == "patient_id":  # never write a Patient ID: report its pseudonym
        unmatched = pd.DataFrame({"patient_key": unmatched[key].map(patient_key),
                                  "label": unmatched["label"]})
    labels = labels[matched]
    labelled = inst[key].isin(set(labels[key]))
    unlabeled = inst.loc[~labelled, ["study_instance_uid", "series_instance_uid",
                                     "sop_instance_uid", "path"]].reset_index(drop=True)
    joined = inst[labelled].merge(labels, on=key, how="left", validate="many_to_one")
    if task is None:
        task = infer_task(labels["label"])
    task = str(task).lower()
    if task not in ("classification", "regression"):
        raise ConfigError(f"task must be 'classification' or 'regression'. Received: {task!r}")
    if task == "classification":
        classes = [str(c) for c in classes] if classes else class_names(labels["label"])
    else:
        classes = []
    ex = select_slices(joined, selection)
    ex = ex.sort_values(["study_instance_uid", "series_instance_uid"], kind="mergesort")
    df = pd.DataFrame({
        "patient_key": ex["patient_id"].map(patient_key).to_numpy(),
        "study_instance_uid": ex["study_instance_uid"].to_numpy(),
        "series_instance_uid": ex["series_instance_uid"].to_numpy(),
        "sop_instance_uid": ex["sop_instance_uid"].to_numpy(),
        "frame": ex["frame"].astype(int).to_numpy(),
        "path": ex["path"].to_numpy(),
        "label": ex["label"].astype(str).to_numpy(),
    })
    df["target"] = _targets(df["label"], task, classes) if len(df) else []
    df["split"] = ex["split"].to_numpy() if "split" in ex else ""
    return Manifest(df.reset_index(drop=True), key, task, classes, unmatched, unlabeled)


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read a ``manifest.csv`` with UIDs as strings and ``frame`` as int."""
    df = pd.read_csv(path, dtype={"patient_key": str, "study_instance_uid": str,
                                  "series_instance_uid": str, "sop_instance_uid": str,
                                  "path": str, "label": str, "split": str},
                     keep_default_na=False)
    df["frame"] = df["frame"].astype(int)
    return df
