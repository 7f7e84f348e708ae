"""From study- or series-level labels to slice-level examples.

Slices of a series are ordered by their position along the slice normal: the projection
of (0020,0032) Image Position (Patient) on the cross product of the two direction cosines of
(0020,0037) Image Orientation (Patient) (PS3.3 C.7.6.2.1.1), falling back to (0020,0013)
Instance Number and then to the file path. Frames of a multi-frame instance follow their
frame order.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from dicomml.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["SliceSelection", "parse_vector", "order_slices", "expand_frames", "select_slices"]

MODES = ("all", "central", "every")


@dataclass(frozen=True)
class SliceSelection:
    """Which slices of each series become examples.

    Attributes
    ----------
    mode : {"all", "central", "every"}
        ``"all"`` slices; the ``n`` ``"central"`` slices (by position along the normal);
        ``"every"`` k-th slice starting at the first (``k`` = ``every``).
    n : int
        Number of central slices (mode "central").
    every : int
        Step (mode "every").
    """

    mode: str = "all"
    n: int = 8
    every: int = 1

    def __post_init__(self):
        mode = str(self.mode).lower()
        if mode not in MODES:
            raise ConfigError(f"slice selection mode must be one of {MODES}. "
                              f"Received: mode={self.mode!r}")
        object.__setattr__(self, "mode", mode)
        if int(self.n) < 1 or int(self.every) < 1:
            raise ConfigError("slice selection n and every must be >= 1. "
                              f"Received: n={self.n!r}, every={self.every!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def indices(self, count: int) -> np.ndarray:
        """Indices (into a list of ``count`` ordered slices) that this selection keeps.

        >>> SliceSelection("central", n=3).indices(10).tolist()
        [3, 4, 5]
        >>> SliceSelection("every", every=4).indices(10).tolist()
        [0, 4, 8]
        """
        if self.mode == "all" or count == 0:
            return np.arange(count)
        if self.mode == "every":
            return np.arange(0, count, int(self.every))
        n = min(int(self.n), count)
        start = (count - n) // 2
        return np.arange(start, start + n)


def parse_vector(value, length: int) -> np.ndarray | None:
    """A multi-valued DICOM number as ``float64`` array of ``length``, or None.

    Accepts sequences, ``"a\\\\b\\\\c"`` (DICOM backslash), JSON lists and ``None``/NaN.
    """
    if value is None:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, (bytes, str)):
        s = value.decode() if isinstance(value, bytes) else value
        s = s.strip()
        if not s:
            return None
        if s.startswith("["):
            try:
                vals = json.loads(s)
            except ValueError:
                return None
        else:
            vals = [p for p in s.replace(",", "\\").replace(" ", "\\").split("\\") if p]
    else:
        vals = list(value)
    try:
        arr = np.asarray([float(v) for v in vals], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if arr.shape != (length,) or not np.all(np.isfinite(arr)):
        return None
    return arr


def _normal_position(pos, ori) -> float:
    p = parse_vector(pos, 3)
    if p is None:
        return np.nan
    o = parse_vector(ori, 6)
    normal = np.cross(o[:3], o[3:]) if o is not None else np.array([0.0, 0.0, 1.0])
    return float(np.dot(p, normal))


def order_slices(instances: pd.DataFrame) -> pd.DataFrame:
    """Return ``instances`` (one series) sorted along the slice normal; adds ``_order_pos``.

    Rows without a usable position sort after those with one, by instance number, then path.
    The input is not modified.
    """
    df = instances.copy()
    pos = df["image_position"] if "image_position" in df else pd.Series([None] * len(df),
                                                                           index=df.index)
    ori = df["image_orientation"] if "image_orientation" in df else pd.Series([None] * len(df),
                                                                               index=df.index)
    df["_order_pos"] = [_normal_position(p, o) for p, o in zip(pos, ori)]
    inst = (pd.to_numeric(df["instance_number"], errors="coerce") if "instance_number" in df
            else pd.Series(np.nan, index=df.index))
    df["_order_inst"] = inst
    df = df.sort_values(["_order_pos", "_order_inst", "path"], na_position="last",
                        kind="mergesort")
    return df.drop(columns=["_order_inst"])


def expand_frames(instances: pd.DataFrame) -> pd.DataFrame:
    """One row per frame: repeats each instance ``number_of_frames`` times with ``frame``
    = 0, 1, ... (a missing or zero (0028,0008) Number of Frames counts as 1).

    A Number of Frames that the file's real size cannot hold (a corrupt or hostile header,
    see :func:`dicomml.io.guards.declared_frames_fit`) counts as 1 too: that one example
    then fails to read with the error naming the attribute, instead of billions of rows."""
    from dicomml.io.guards import declared_frames_fit

    nf = (pd.to_numeric(instances["number_of_frames"], errors="coerce")
          if "number_of_frames" in instances else pd.Series(1, index=instances.index))
    nf = nf.fillna(1).clip(lower=1)
    fits = declared_frames_fit(instances)
    if not fits.all():
        log.warning("%d file(s) declare more frames in (0028,0008) Number of Frames than "
                    "their size can hold; one example each (which will fail to read)",
                    int((~fits).sum()))
        nf = nf.where(fits, 1)
    nf = nf.astype(int)
    rep = instances.loc[instances.index.repeat(nf.values)].copy()
    rep["frame"] = np.concatenate([np.arange(n) for n in nf.values]) if len(nf) else []
    rep["frame"] = rep["frame"].astype(int)
    return rep.reset_index(drop=True)


def select_slices(instances: pd.DataFrame, selection: SliceSelection) -> pd.DataFrame:
    """Order every series of ``instances`` along its normal, expand frames, keep the
    selected slices. Returns a new DataFrame with a ``frame`` column, grouped by series in
    the order of first appearance, slices in anatomical order."""
    parts = []
    for _, series in instances.groupby("series_instance_uid", sort=True):
        ordered = expand_frames(order_slices(series))
        parts.append(ordered.iloc[selection.indices(len(ordered))])
    if not parts:
        out = instances.iloc[:0].copy()
        out["frame"] = pd.Series(dtype=int)
        return out
    return pd.concat(parts, ignore_index=True)
