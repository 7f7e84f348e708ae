"""``[data]`` of a run configuration: where the images and labels are, and which images
become examples (:func:`dicomml.data.selection.select_examples`).

:class:`DataConfig` lives in :mod:`dicomml.data` because the example selection (used by the
trainer, evaluation and prediction) is typed on it; :mod:`dicomml.train.config` re-exports
it as one table of :class:`~dicomml.train.config.RunConfig`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Mapping

from dicomml.data.slices import SliceSelection
from dicomml.errors import ConfigError, did_you_mean
from dicomml.parallel import check_workers

__all__ = ["DataConfig", "check_keys"]


def check_keys(table: Mapping, cls, where: str, extra=()) -> None:
    """Refuse a key of the TOML table ``[where]`` that is not a field of dataclass ``cls``
    (with a "did you mean")."""
    known = {f.name for f in dataclasses.fields(cls)} | set(extra)
    for k in table:
        if k not in known:
            hint = did_you_mean(k, sorted(known))
            raise ConfigError(f"unknown setting {k!r} in [{where}]; known: {sorted(known)}."
                              f"{hint}")


@dataclass(frozen=True)
class DataConfig:
    """``[data]``: where the images and labels are and how examples are made.

    Attributes
    ----------
    folder : str
        The DICOM folder to scan ("" when ``index`` is an existing Index).
    index : str
        The Index database (SQLite); "" → the default location in the user's cache folder.
    labels : str
        The labels CSV.
    key : str
        The UID column the labels are keyed by (DICOM keyword or snake case); "" → detect.
    label_column : str
        The labels CSV column holding the label.
    task : {"", "classification", "regression"}
        "" → inferred from the labels.
    classes : list of str
        Class order (index i = softmax output i); empty → sorted label values.
    positive_class : str
        For binary tasks: the class whose probability is the score ("" → the second class).
    modality : str
        Keep only images of this (0008,0060) Modality ("" → all).
    cache : str
        Tensor cache folder; "" → decode on the fly in worker processes.
    workers : int or None
        CPUs the scan, caching and on-the-fly decoding may keep busy at once (the one
        meaning of workers: dicomml.parallel.resolve_workers): leave it out for every CPU,
        0 for this process only, N for N at once; -1 (earlier configurations) is read as
        every CPU.
    shuffle_labels : bool
        Control experiment: give the training and validation studies random labels,
        independent of the true ones (seeded); the test split keeps its labels.
    slices : SliceSelection
    """

    folder: str = ""
    index: str = ""
    labels: str = ""
    key: str = ""
    label_column: str = "label"
    task: str = ""
    classes: tuple = ()
    positive_class: str = ""
    modality: str = ""
    cache: str = ""
    workers: int | None = None
    shuffle_labels: bool = False
    slices: SliceSelection = field(default_factory=SliceSelection)

    def __post_init__(self):
        if isinstance(self.slices, Mapping):
            check_keys(self.slices, SliceSelection, "data.slices")
            object.__setattr__(self, "slices", SliceSelection(**self.slices))
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        object.__setattr__(self, "workers", check_workers(self.workers, what="data.workers"))
        if self.task not in ("", "classification", "regression"):
            raise ConfigError("data.task must be 'classification', 'regression' or ''. "
                              f"Received: task={self.task!r}")
