"""Patient-level splits: a patient's examples always land in one split."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from dicomml.errors import ConfigError

__all__ = ["SplitConfig", "split_by_patient", "allocate", "SPLITS"]

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitConfig:
    """How to split.

    Attributes
    ----------
    method : {"random", "column"}
        ``"random"``: seeded, stratified by label, by patient; ``"column"``: take the
        ``split`` column of the labels CSV (values train/val/test).
    train, val, test : float
        Fractions of patients (normalized to sum to 1).
    seed : int
    stratify : bool
        Stratify by the patient's label (its most frequent label; regression: quartile).
    """

    method: str = "random"
    train: float = 0.7
    val: float = 0.15
    test: float = 0.15
    seed: int = 0
    stratify: bool = True

    def __post_init__(self):
        m = str(self.method).lower()
        if m not in ("random", "column"):
            raise ConfigError(f"split.method must be 'random' or 'column'. "
                              f"Received: method={self.method!r}")
        object.__setattr__(self, "method", m)
        fr = np.array([self.train, self.val, self.test], dtype=float)
        if np.any(fr < 0) or fr.sum() <= 0:
            raise ConfigError("split fractions must be >= 0 and not all 0. Received: "
                              f"train={self.train}, val={self.val}, test={self.test}")

    @property
    def fractions(self) -> np.ndarray:
        fr = np.array([self.train, self.val, self.test], dtype=float)
        return fr / fr.sum()

    def to_dict(self) -> dict:
        return asdict(self)


def allocate(n: int, fractions: np.ndarray) -> np.ndarray:
    """Counts per split for ``n`` items: cumulative rounding, so counts sum to ``n``."""
    bounds = np.round(np.cumsum(fractions) * n).astype(int)
    bounds[-1] = n
    return np.diff(np.concatenate([[0], bounds]))


def split_by_patient(examples: pd.DataFrame, config: SplitConfig = SplitConfig(), *,
                     group: str = "patient_key", stratify_by: str = "label",
                     task: str = "classification") -> pd.Series:
    """Assign ``"train"``/``"val"``/``"test"`` to each row so that no group (patient) is in
    two splits.

    Random method: patients are grouped into strata by their most frequent label
    (regression: the quartile of their mean target); within each stratum the patients are
    permuted with ``numpy.random.default_rng(seed)`` and cut by cumulative rounding of the
    fractions. Strata are visited in sorted order, so the same seed gives the same split.

    Returns
    -------
    pandas.Series
        Indexed like ``examples``.
    """
    if config.method == "column":
        if "split" not in examples:
            raise ConfigError("split.method = 'column' needs a 'split' column in the labels CSV")
        s = examples["split"].astype(str).str.lower().replace({"validation": "val",
                                                               "valid": "val"})
        bad = sorted(set(s) - set(SPLITS))
        if bad:
            raise ConfigError(f"split column values must be {SPLITS}. Received: {bad[:5]!r}")
        per_patient = s.groupby(examples[group]).nunique()
        if (per_patient > 1).any():
            raise ConfigError(f"the split column puts {int((per_patient > 1).sum())} patients in "
                              "more than one split; a patient must stay in one split")
        return s
    patients = examples.groupby(group, sort=True)
    if config.stratify and stratify_by in examples:
        if task == "regression":
            mean = patients["target"].mean()
            n_bins = int(min(4, max(1, len(mean) // 4)))
            strata = (pd.qcut(mean.rank(method="first"), n_bins, labels=False)
                      if n_bins > 1 else pd.Series(0, index=mean.index))
        else:
            strata = patients[stratify_by].agg(
                lambda v: v.astype(str).value_counts().sort_index().idxmax())
    else:
        strata = pd.Series(0, index=patients.size().index)
    rng = np.random.default_rng(config.seed)
    # Each patient gets a quantile q in [0, 1) within its stratum (random order, random
    # phase); sorting every patient by q and cutting once keeps the global counts exact and
    # every stratum close to the fractions, even for strata of a few patients.
    keys, qs = [], []
    for stratum in sorted(strata.unique(), key=str):
        members = np.array(sorted(strata.index[strata == stratum]), dtype=object)
        members = members[rng.permutation(len(members))]
        phase = rng.random()
        keys.extend(members)
        qs.extend((np.arange(len(members)) + phase) / len(members))
    order = np.argsort(np.asarray(qs), kind="stable")
    counts = allocate(len(keys), config.fractions)
    names = np.repeat(np.array(SPLITS, dtype=object), counts)
    assign = {keys[i]: names[r] for r, i in enumerate(order)}
    return examples[group].map(assign).rename("split")
