"""Which Index rows become examples under a run's ``[data]``: the one example selection.

:func:`select_examples` is what the trainer (:func:`dicomml.train.prepare_manifest`),
evaluation on new labelled data (:func:`dicomml.evaluate.evaluate_run`) and prediction
(:func:`dicomml.evaluate.predict`) all call, so that an Index and a
:class:`~dicomml.data.config.DataConfig` give the same examples in all three. The rule, in
order:

1. **images only**: rows whose ``is_image`` is false (SR, PR, KO, a missing value) are left
   out (``not_selected``);
2. **modality**: with ``data.modality`` set, rows of another (0008,0060) Modality are left
   out too (``modality=False`` skips this step: the input contract decided already);
3. with ``labels``: the labels CSV is joined (``data.key``, ``data.label_column``) and
   only labelled instances go on (:func:`dicomml.data.manifest.build_manifest`, which also
   reports the labels that match no image and the images without a label);
4. **slices**: ``data.slices`` per series (:func:`dicomml.data.slices.select_slices`: each
   series ordered along its normal, frames expanded), ordered by study, then series.

Each example carries the pseudonymous ``patient_key`` of its (0010,0020) Patient ID
(:func:`dicomml.data.manifest.patient_key`; a missing Patient ID is the empty one), never
the Patient ID itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pandas as pd

from dicomml.data.config import DataConfig
from dicomml.data.labels import normalize_key, read_labels
from dicomml.data.manifest import Manifest, build_manifest, patient_key
from dicomml.data.slices import select_slices
from dicomml.errors import ConfigError

__all__ = ["ExampleSelection", "EXAMPLE_COLUMNS", "select_examples"]

#: The columns of :attr:`ExampleSelection.examples` without labels (with labels: the
#: manifest's :data:`~dicomml.data.manifest.MANIFEST_COLUMNS`).
EXAMPLE_COLUMNS = ("patient_key", "study_instance_uid", "series_instance_uid",
                   "sop_instance_uid", "frame", "path")
_UIDS = ("study_instance_uid", "series_instance_uid", "sop_instance_uid", "path")


@dataclass(frozen=True)
class ExampleSelection:
    """What :func:`select_examples` chose.

    Attributes
    ----------
    examples : pandas.DataFrame
        One row per example (image frame): :data:`EXAMPLE_COLUMNS`, and with labels the
        manifest's columns (``label``, ``target``, ``split``); ordered by study, series,
        then slice position.
    not_selected : pandas.DataFrame
        ``path`` of the instance rows left out by steps 1 and 2 (not an image, another
        modality).
    manifest : Manifest or None
        With labels: the :class:`~dicomml.data.manifest.Manifest` (``df`` is ``examples``),
        with the unmatched labels and the unlabelled images.
    """

    examples: pd.DataFrame
    not_selected: pd.DataFrame
    manifest: Manifest | None = None


def select_examples(instances: pd.DataFrame, data: DataConfig, *, modality: bool = True,
                    labels: str | os.PathLike | None = None) -> ExampleSelection:
    """The examples of ``instances`` under ``data`` (the rule of the module docs).

    Parameters
    ----------
    instances : pandas.DataFrame
        :meth:`dicomml.io.Index.instances` rows (not modified).
    data : DataConfig
        The run's ``[data]``: ``modality``, ``slices``, and with ``labels`` also ``key``,
        ``label_column``, ``task`` and ``classes``.
    modality : bool
        Apply ``data.modality`` (default). ``False`` keeps every modality.
    labels : path, optional
        A labels CSV to join (the training labels, or new labelled data to evaluate).

    Returns
    -------
    ExampleSelection

    Raises
    ------
    ConfigError
        ``data`` is not a DataConfig, the Index rows lack a column the selection needs, or
        the labels cannot be read or do not fit ``data`` (see
        :func:`~dicomml.data.manifest.build_manifest`).
    """
    if not isinstance(data, DataConfig):
        raise ConfigError("select_examples needs the run's [data] table as a "
                          "dicomml.data.config.DataConfig (e.g. RunConfig.data). "
                          f"Received: data={type(data).__name__}")
    missing = {*_UIDS, "patient_id"} - set(instances.columns)
    if missing:
        raise ConfigError(f"the Index rows lack columns {sorted(missing)}; rescan with "
                          "dicomml scan")
    keep = pd.Series(True, index=instances.index)
    if "is_image" in instances:
        keep &= instances["is_image"].fillna(False).astype(bool)
    want = data.modality.strip().upper() if modality else ""
    if want and "modality" in instances:
        keep &= instances["modality"].fillna("").astype(str).str.strip().str.upper() == want
    not_selected = instances.loc[~keep, ["path"]].reset_index(drop=True)
    inst = instances[keep].assign(
        patient_id=instances.loc[keep, "patient_id"].fillna("").astype(str),
        **{c: instances.loc[keep, c].astype(str) for c in _UIDS})
    if labels is not None:
        table, key = read_labels(labels, key=normalize_key(data.key) if data.key else None,
                                 label_column=data.label_column or "label")
        m = build_manifest(inst, table, key, task=data.task or None,
                           classes=list(data.classes) or None, selection=data.slices)
        return ExampleSelection(m.df, not_selected, m)
    ex = select_slices(inst, data.slices)
    ex = ex.sort_values(["study_instance_uid", "series_instance_uid"], kind="mergesort")
    out = pd.DataFrame({
        "patient_key": ex["patient_id"].map(patient_key).to_numpy(),
        **{c: ex[c].to_numpy() for c in EXAMPLE_COLUMNS[1:4]},
        "frame": ex["frame"].astype(int).to_numpy(),
        "path": ex["path"].to_numpy(),
    }, columns=list(EXAMPLE_COLUMNS))
    return ExampleSelection(out.reset_index(drop=True), not_selected)
