"""Label tables keyed by a DICOM identifier.

A labels CSV has one key column and one label column (plus optionally a ``split`` column).
The key is one of (0020,000D) Study Instance UID, (0020,000E) Series Instance UID,
(0008,0018) SOP Instance UID or (0010,0020) Patient ID, spelled as the DICOM keyword
(``StudyInstanceUID``) or in snake case (``study_instance_uid``).
"""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd

from dicomml.errors import ConfigError

__all__ = ["KEYS", "KEY_TAGS", "normalize_key", "detect_key", "read_labels", "infer_task",
           "class_names"]

#: canonical key (the Index's snake-case column) -> accepted spellings
KEYS: dict[str, tuple[str, ...]] = {
    "sop_instance_uid": ("SOPInstanceUID", "sop_instance_uid", "sop_uid", "instance_uid"),
    "series_instance_uid": ("SeriesInstanceUID", "series_instance_uid", "series_uid"),
    "study_instance_uid": ("StudyInstanceUID", "study_instance_uid", "study_uid"),
    "patient_id": ("PatientID", "patient_id"),
}
#: canonical key -> DICOM tag, for messages
KEY_TAGS = {"sop_instance_uid": "(0008,0018)", "series_instance_uid": "(0020,000E)",
            "study_instance_uid": "(0020,000D)", "patient_id": "(0010,0020)"}


def _fold(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


_FOLDED = {_fold(s): canon for canon, spellings in KEYS.items() for s in spellings}


def normalize_key(name: str) -> str:
    """Canonical snake-case key for any accepted spelling (``"StudyInstanceUID"`` →
    ``"study_instance_uid"``).

    Raises
    ------
    ConfigError
        When ``name`` is not a known key.
    """
    canon = _FOLDED.get(_fold(name))
    if canon is None:
        raise ConfigError(f"labels key must be one of {sorted(KEYS)} (DICOM keyword or snake "
                          f"case). Received: key={name!r}")
    return canon


def detect_key(columns) -> tuple[str, str]:
    """Find the key column among ``columns``.

    Returns ``(column as written, canonical key)``. The most specific identifier wins
    (SOP Instance > Series > Study > Patient) when several are present.
    """
    found = {}
    for col in columns:
        canon = _FOLDED.get(_fold(col))
        if canon is not None and canon not in found:
            found[canon] = col
    for canon in KEYS:  # ordered most specific first
        if canon in found:
            return found[canon], canon
    raise ConfigError(
        "cannot find the key column of the labels CSV: expected one of "
        f"{[s for v in KEYS.values() for s in v[:2]]}. Set data.key in the configuration. "
        f"Received: columns={list(columns)!r}")


def read_labels(path: str | os.PathLike, *, key: str | None = None,
                label_column: str = "label") -> tuple[pd.DataFrame, str]:
    """Read a labels CSV.

    Parameters
    ----------
    path : path
        The CSV (UTF-8, header row).
    key : str or None
        The key column (any accepted spelling); detected when None.
    label_column : str
        The column holding class names or numbers.

    Returns
    -------
    labels : pandas.DataFrame
        Columns ``key`` (the canonical key name, as ``str``), ``label`` and, when present,
        ``split``. Rows with an empty key or label are dropped only after being counted by
        the caller through :func:`dicomml.data.manifest.build_manifest`.
    key : str
        The canonical key (``"study_instance_uid"``...).
    """
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError as e:
        raise ConfigError(f"labels file not found: {path}. Check data.labels. "
                          f"Received: labels={os.fspath(path)!r}") from e
    if key is None:
        col, canon = detect_key(df.columns)
    else:
        canon = normalize_key(key)
        matches = [c for c in df.columns if _FOLDED.get(_fold(c)) == canon]
        if not matches:
            raise ConfigError(f"{path}: no column for key {canon} {KEY_TAGS[canon]}. "
                              f"Received: columns={list(df.columns)!r}")
        col = matches[0]
    if label_column not in df.columns:
        raise ConfigError(f"{path}: no label column {label_column!r}; set data.label_column. "
                          f"Received: columns={list(df.columns)!r}")
    out = pd.DataFrame({canon: df[col].astype(str).str.strip(),
                        "label": df[label_column].astype(str).str.strip()})
    split_cols = [c for c in df.columns if c.lower() == "split"]
    if split_cols:
        out["split"] = df[split_cols[0]].astype(str).str.strip().str.lower()
    dup = out[canon].duplicated(keep=False) & (out[canon] != "")
    if dup.any():
        conflicting = out[dup].groupby(canon)["label"].nunique()
        if (conflicting > 1).any():
            raise ConfigError(f"{path}: {int((conflicting > 1).sum())} keys carry conflicting "
                              f"labels (column {col}); keep one label per {canon}.")
        out = out.drop_duplicates(subset=[canon])
    return out.reset_index(drop=True), canon


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def infer_task(labels: pd.Series) -> str:
    """``"regression"`` when every label is a number and they are not all integers with at
    most a few (≤ 10) distinct values; otherwise ``"classification"``."""
    vals = [v for v in labels.astype(str) if v != ""]
    if vals and all(_is_number(v) for v in vals):
        f = np.array([float(v) for v in vals])
        if np.all(f == np.round(f)) and len(np.unique(f)) <= 10:
            return "classification"
        return "regression"
    return "classification"


def class_names(labels: pd.Series) -> list[str]:
    """Sorted class names (numerically when every name is a number)."""
    vals = sorted({v for v in labels.astype(str) if v != ""})
    if vals and all(_is_number(v) for v in vals):
        vals = sorted(vals, key=float)
    return vals
