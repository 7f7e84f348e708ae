"""The model's input contract: which series a trained run may be applied to.

A run is trained on one kind of image (e.g. original axial head CT, MONOCHROME2, 0.4-0.5 mm
pixels, 512×512). :class:`InputContract` records that kind, learned from the training
instances of the Index (the manifest's rows) and overridable in the ``[contract]`` table of
the training TOML; the trainer saves it as ``RUN_DIR/contract.json``. ``predict`` and the
DICOM node apply :meth:`InputContract.check` to every series of their input and predict only
the eligible ones; every other series is listed with the rule it failed (like the series
selection rules of MONAI Deploy and the input metadata of a MONAI bundle).

Rules, in the order they are checked (the first one a series fails is its ``rule``):

================  ===========================================================================
rule              a series fails it when
================  ===========================================================================
``image``         an instance is not an image (SR, presentation state, ...: Index ``is_image``)
``modality``      (0008,0060) Modality is not one of ``modalities``
``sop_class``     (0008,0016) SOP Class UID is not one of ``sop_classes`` (Segmentation,
                  Secondary Capture, ... when the model was trained on CT Image Storage)
``photometric``   (0028,0004) Photometric Interpretation is not one of ``photometric``
                  (a colour or MONOCHROME1 image for a MONOCHROME2 model)
``body_part``     (0018,0015) Body Part Examined is given and not one of ``body_parts``
                  (not checked when ``body_parts`` is empty or the series has none)
``image_type``    (0008,0008) Image Type value 1 is not one of ``image_types``
                  (ORIGINAL / DERIVED), or any value is in ``excluded_image_types``
                  (LOCALIZER, SCOUT, SECONDARY, ... unless the training set had them)
``pixel_spacing`` (0028,0030) Pixel Spacing is outside ``pixel_spacing`` (mm)
``matrix``        (0028,0010) Rows or (0028,0011) Columns is outside ``rows`` / ``columns``
``value_range``   no window of the run covers the stored values' range after the modality
                  rescale (PS3.3 C.7.6.3.1.4 Bits Stored, C.11.1.1.2 Rescale Slope and
                  Intercept): every pixel would become the same constant
================  ===========================================================================

A series fails a rule when **any** of its instances does (the reason says how many). A
column the table does not have, or an empty value, is not checked: the Index reads only
top-level attributes, so e.g. an enhanced multi-frame image's spacing (in its functional
groups) is not checked here; per-image checks in ``predict`` still skip images the
preprocessing maps to a constant.

Learned ranges are widened by a margin (:data:`SPACING_MARGIN`, :data:`MATRIX_MARGIN`) so a
scanner's slightly different reconstruction is accepted; an override gives the exact range.

Examples
--------
>>> import pandas as pd
>>> train = pd.DataFrame({"modality": ["CT"], "sop_class_uid": ["1.2.840.10008.5.1.4.1.1.2"],
...                       "photometric_interpretation": ["MONOCHROME2"], "rows": [512],
...                       "columns": [512], "image_type": ["ORIGINAL\\\\PRIMARY\\\\AXIAL"]})
>>> c = InputContract.learn(train)
>>> c.modalities, c.rows
(('CT',), (256, 1024))
>>> new = train.assign(modality=["MR"], series_key=["s1"])
>>> d = c.check(new)[0]
>>> d.eligible, d.rule
(False, 'modality')
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from dicomml.errors import ConfigError, did_you_mean

__all__ = ["InputContract", "SeriesDecision", "RULES", "CONTRACT_FILE", "CONTRACT_VERSION",
           "SPACING_MARGIN", "MATRIX_MARGIN", "DEFAULT_EXCLUDED_IMAGE_TYPES",
           "window_ranges"]

#: The rules of :meth:`InputContract.check`, in the order they are applied.
RULES = ("image", "modality", "sop_class", "photometric", "body_part", "image_type",
         "pixel_spacing", "matrix", "value_range")
#: The file the trainer writes into the run folder.
CONTRACT_FILE = "contract.json"
CONTRACT_VERSION = 1
#: Learned pixel spacing range → ``[min / SPACING_MARGIN, max * SPACING_MARGIN]``.
SPACING_MARGIN = 1.5
#: Learned rows / columns range → ``[min / MATRIX_MARGIN, max * MATRIX_MARGIN]``.
MATRIX_MARGIN = 2.0
#: (0008,0008) Image Type values excluded unless the training set has them.
DEFAULT_EXCLUDED_IMAGE_TYPES = ("LOCALIZER", "SCOUT", "SECONDARY", "SCREEN SHOT",
                                "PROJECTION IMAGE", "VOLUME", "MPR", "MIP", "VR", "3D")



@dataclass(frozen=True)
class SeriesDecision:
    """Whether one series may be given to the model (:meth:`InputContract.check`).

    ``rule`` is "" for an eligible series, else the first rule of :data:`RULES` it failed;
    ``reason`` names the attribute, the series' value and what the contract expects.
    """

    series_key: str
    eligible: bool
    rule: str = ""
    reason: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    modality: str = ""
    n_instances: int = 0


def _tuple(v) -> tuple:
    if v is None:
        return ()
    if isinstance(v, str):
        return (v,)
    return tuple(v)


def _range(v, name: str):
    if v is None or (isinstance(v, (list, tuple)) and not v):
        return None
    try:
        lo, hi = (float(x) for x in v)
    except (TypeError, ValueError):
        raise ConfigError(f"[contract] {name} must be [low, high] or empty. "
                          f"Received: {name}={v!r}") from None
    if not lo <= hi:
        raise ConfigError(f"[contract] {name}: low {lo} is above high {hi}. "
                          f"Received: {name}={v!r}")
    return (lo, hi)


@dataclass(frozen=True)
class InputContract:
    """What a run was trained on; see the module docstring for the rules.

    An empty tuple or ``None`` means "not checked".

    Attributes
    ----------
    modalities : tuple of str
        (0008,0060) Modality values, upper case.
    sop_classes : tuple of str
        (0008,0016) SOP Class UIDs.
    photometric : tuple of str
        (0028,0004) Photometric Interpretation values.
    body_parts : tuple of str
        (0018,0015) Body Part Examined values, upper case.
    image_types : tuple of str
        Allowed value 1 of (0008,0008) Image Type ("ORIGINAL", "DERIVED").
    excluded_image_types : tuple of str
        Image Type values (any position) that make a series ineligible.
    pixel_spacing : (float, float) or None
        Allowed range of (0028,0030) Pixel Spacing values, mm.
    rows, columns : (int, int) or None
        Allowed ranges of (0028,0010) Rows and (0028,0011) Columns.
    windows : tuple of (float, float)
        The run's fixed windows as ``(low, high)`` in modality units; a series whose
        possible values miss them all fails ``value_range``.
    learned_from : int
        Number of training instances it was learned from (0: written by hand).
    overrides : tuple of str
        The attributes the ``[contract]`` table set.
    version : int
        :data:`CONTRACT_VERSION`.
    """

    modalities: tuple = ()
    sop_classes: tuple = ()
    photometric: tuple = ()
    body_parts: tuple = ()
    image_types: tuple = ()
    excluded_image_types: tuple = DEFAULT_EXCLUDED_IMAGE_TYPES
    pixel_spacing: Any = None
    rows: Any = None
    columns: Any = None
    windows: tuple = ()
    learned_from: int = 0
    overrides: tuple = ()
    version: int = CONTRACT_VERSION

    def __post_init__(self):
        set_ = object.__setattr__
        for name in ("modalities", "body_parts", "image_types", "excluded_image_types"):
            set_(self, name, tuple(str(v).strip().upper() for v in _tuple(getattr(self, name))))
        for name in ("sop_classes", "photometric"):
            set_(self, name, tuple(str(v).strip() for v in _tuple(getattr(self, name))))
        set_(self, "photometric", tuple(v.upper() for v in self.photometric))
        set_(self, "pixel_spacing", _range(self.pixel_spacing, "pixel_spacing"))
        for name in ("rows", "columns"):
            r = _range(getattr(self, name), name)
            set_(self, name, None if r is None else (int(r[0]), int(r[1])))
        set_(self, "windows", tuple(_range(w, "windows") for w in _tuple(self.windows)))
        set_(self, "overrides", tuple(str(v) for v in _tuple(self.overrides)))
        if int(self.version) > CONTRACT_VERSION:
            raise ConfigError(f"input contract version {self.version} is newer than this "
                              f"dicomml's ({CONTRACT_VERSION}); upgrade dicomml")

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def learn(cls, instances: pd.DataFrame, overrides: Mapping[str, Any] | None = None, *,
              preprocess=None) -> "InputContract":
        """The contract of a training set, then ``overrides`` (the ``[contract]`` table).

        Parameters
        ----------
        instances : pandas.DataFrame
            Index instance rows of the training examples (columns of
            :meth:`dicomml.io.Index.instances`; missing columns leave a rule unchecked).
        overrides : mapping, optional
            Attribute → value, e.g. ``{"body_parts": ["HEAD", "BRAIN"]}``; an unknown key
            is a :class:`~dicomml.errors.ConfigError` with a suggestion.
        preprocess : PreprocessConfig or mapping, optional
            The run's preprocessing; its fixed windows (presets, ``center/width``) become
            :attr:`windows`.
        """
        df = instances
        kw: dict[str, Any] = {"learned_from": int(len(df))}

        def values(col, upper=True):
            if col not in df:
                return ()
            s = df[col].dropna().astype(str).str.strip()
            s = s[s != ""]
            return tuple(sorted(set(s.str.upper() if upper else s)))

        kw["modalities"] = values("modality")
        kw["sop_classes"] = values("sop_class_uid", upper=False)
        kw["photometric"] = values("photometric_interpretation")
        kw["body_parts"] = values("body_part_examined")
        types = [_image_type(v) for v in df["image_type"]] if "image_type" in df else []
        types = [t for t in types if t]
        if types:
            kw["image_types"] = tuple(sorted({t[0] for t in types}))
            seen = {v for t in types for v in t}
            kw["excluded_image_types"] = tuple(v for v in DEFAULT_EXCLUDED_IMAGE_TYPES
                                               if v not in seen)
        sp = _spacings(df)
        if sp.size:
            kw["pixel_spacing"] = (round(float(sp.min()) / SPACING_MARGIN, 4),
                                   round(float(sp.max()) * SPACING_MARGIN, 4))
        for col in ("rows", "columns"):
            if col in df:
                v = pd.to_numeric(df[col], errors="coerce").dropna()
                if len(v):
                    kw[col] = (int(math.floor(v.min() / MATRIX_MARGIN)),
                               int(math.ceil(v.max() * MATRIX_MARGIN)))
        if preprocess is not None:
            kw["windows"] = window_ranges(preprocess)
        learned = cls(**kw)
        return learned.with_overrides(overrides) if overrides else learned

    @classmethod
    def learn_from_index(cls, db, sop_instance_uids, overrides: Mapping[str, Any] | None = None,
                         *, preprocess=None) -> "InputContract":
        """:meth:`learn` from the rows of an Index database whose SOP Instance UIDs are
        given (a manifest's ``sop_instance_uid`` column): the trainer's hook."""
        from dicomml.io import open_index

        with open_index(db=db) as index:
            inst = index.instances()
        uids = set(pd.Series(list(sop_instance_uids), dtype=object).astype(str))
        inst = inst[inst["sop_instance_uid"].astype(str).isin(uids)]
        return cls.learn(inst, overrides, preprocess=preprocess)

    def with_overrides(self, overrides: Mapping[str, Any]) -> "InputContract":
        """A copy with the ``[contract]`` table's values (see :meth:`learn`)."""
        known = [f.name for f in fields(self) if f.name not in ("learned_from", "overrides",
                                                                  "version")]
        for k in overrides:
            if k not in known:
                raise ConfigError(f"unknown setting {k!r} in [contract]; known: {known}."
                                  f"{did_you_mean(k, known)}")
        return replace(self, **dict(overrides),
                       overrides=tuple(sorted({*self.overrides, *overrides})))

    def to_dict(self) -> dict:
        """JSON-ready dict (ranges as lists); :meth:`from_dict` reads it back."""
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = [list(x) if isinstance(x, tuple) else x for x in v]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "InputContract":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"input contract: unknown keys {unknown}; known: "
                              f"{sorted(names)}")
        return cls(**dict(d))

    def write(self, run_dir) -> Path:
        """Write ``RUN_DIR/contract.json`` atomically."""
        from dicomml._atomic import atomic_write_text

        path = Path(run_dir) / CONTRACT_FILE
        atomic_write_text(os.fspath(path), json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def from_run_dir(cls, run_dir) -> "InputContract":
        """Read ``RUN_DIR/contract.json``.

        Raises
        ------
        ConfigError
            The file is missing or not a contract (the message says how to make one).
        """
        path = Path(run_dir) / CONTRACT_FILE
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path} is missing: the run was trained before input "
                              "contracts existed. Write one with InputContract.learn(...)"
                              ".write(RUN_DIR), or predict with --force") from None
        except (OSError, ValueError) as e:
            raise ConfigError(f"{path} cannot be read as JSON ({e}); write it again with "
                              "InputContract.learn(...).write(RUN_DIR)") from None
        if not isinstance(d, dict):
            raise ConfigError(f"{path} is not an input contract (a JSON object)")
        return cls.from_dict(d)

    # -- checking -------------------------------------------------------------------------
    def instance_failures(self, instances: pd.DataFrame) -> pd.DataFrame:
        """Per row: the first rule it fails (``rule``, "" if none) and the ``reason``."""
        df = instances.reset_index(drop=True)
        code, whys = self._rule_codes(df)
        rule = np.array(("", *RULES), dtype=object)[code + 1]
        reason = [whys[c](i) if c >= 0 else "" for i, c in enumerate(code)]
        return pd.DataFrame({"rule": rule, "reason": reason}, index=instances.index)

    def _rule_codes(self, df: pd.DataFrame) -> tuple[np.ndarray, dict]:
        """Per row the index in :data:`RULES` of the first rule failed (-1: none), and the
        reason function of each rule (called only for the rows a message needs)."""
        code = np.full(len(df), -1, dtype=np.int64)
        whys = {}
        for name, fails, why in self._checks(df):
            k = RULES.index(name)
            code[fails & (code < 0)] = k
            whys[k] = why
        return code, whys

    def check(self, series_df: pd.DataFrame) -> list[SeriesDecision]:
        """One :class:`SeriesDecision` per series of ``series_df``.

        ``series_df`` is best the Index's instances (:meth:`dicomml.io.Index.instances`):
        rows are grouped by ``series_key`` (else ``series_instance_uid``). A table with
        one row per series (:meth:`dicomml.io.Index.series`) also works, with fewer rules
        checked (it has no photometric, image type or spacing columns).
        """
        df = series_df.reset_index(drop=True)
        key = "series_key" if "series_key" in df else "series_instance_uid"
        if key not in df:
            raise ConfigError("InputContract.check needs a series_key or "
                              "series_instance_uid column. Received: columns="
                              f"{list(df.columns)}")
        code, whys = self._rule_codes(df)
        groups, keys = pd.factorize(df[key].astype(str), sort=False)
        big = len(RULES)
        first = pd.Series(np.where(code < 0, big, code)).groupby(groups).min().to_numpy()
        rows_of = pd.Series(np.arange(len(df))).groupby(groups).indices
        n_col = df["n_instances"].to_numpy() if "n_instances" in df else None
        cols = {c: df[c].to_numpy() if c in df else None
                for c in ("study_instance_uid", "series_instance_uid", "modality")}
        out = []
        for g, skey in enumerate(keys):
            idx = rows_of[g]
            i0 = idx[0]
            common = {c: _text(v[i0]) if v is not None else "" for c, v in cols.items()}
            common["n_instances"] = int(n_col[idx].sum()) if n_col is not None else len(idx)
            k = int(first[g])
            if k == big:
                out.append(SeriesDecision(str(skey), True, **common))
                continue
            hit = idx[code[idx] == k]
            why = whys[k](int(hit[0]))
            if len(idx) > 1:
                why += f" ({len(hit)} of {len(idx)} instances)"
            out.append(SeriesDecision(str(skey), False, RULES[k], why, **common))
        return out

    def _checks(self, df: pd.DataFrame):
        """(rule, boolean fails array, reason(i)) for each checkable rule."""
        n = len(df)

        def col(name):
            if name not in df:
                return None
            return df[name]

        def text(name, upper=True):
            c = col(name)
            if c is None:
                return None
            s = c.map(_text)
            return s.str.upper() if upper else s

        if "is_image" in df:
            v = df["is_image"].fillna(True).astype(bool).to_numpy()
            kind = text("object_kind", upper=False)
            yield "image", ~v, lambda i, kind=kind: (
                "not an image (object kind "
                f"{kind.iat[i] if kind is not None else 'unknown'!r}); the model reads images")
        for rule, name, allowed, attr, upper in (
                ("modality", "modality", self.modalities, "(0008,0060) Modality", True),
                ("sop_class", "sop_class_uid", self.sop_classes, "(0008,0016) SOP Class UID",
                 False),
                ("photometric", "photometric_interpretation", self.photometric,
                 "(0028,0004) Photometric Interpretation", True)):
            s = text(name, upper)
            if s is None or not allowed:
                continue
            fails = ((s != "") & ~s.isin(allowed)).to_numpy()
            yield rule, fails, (lambda i, s=s, attr=attr, allowed=allowed, rule=rule:
                                f"{attr} is {s.iat[i]!r}{_class_name(s.iat[i], rule)}; "
                                f"the model was trained on {_listing(allowed)}")
        s = text("body_part_examined")
        if s is not None and self.body_parts:
            fails = ((s != "") & ~s.isin(self.body_parts)).to_numpy()
            yield "body_part", fails, lambda i, s=s: (
                f"(0018,0015) Body Part Examined is {s.iat[i]!r}; the model was trained on "
                f"{_listing(self.body_parts)}")
        c = col("image_type")
        if c is not None:
            types = _per_unique(c, _image_type)
            excl = set(self.excluded_image_types)
            fails = _per_unique(c, lambda v: bool(t := _image_type(v)) and (
                (bool(self.image_types) and t[0] not in self.image_types)
                or bool(excl & set(t))), dtype=bool)
            yield "image_type", fails, lambda i, types=types, excl=excl: (
                f"(0008,0008) Image Type is '{chr(92).join(types[i])}'; the model takes "
                f"{_listing(self.image_types) if self.image_types else 'any'} images, "
                f"never {_listing(sorted(excl & set(types[i])) or self.excluded_image_types)}")
        if self.pixel_spacing is not None and "pixel_spacing" in df:
            lo, hi = self.pixel_spacing
            sp = _per_unique(df["pixel_spacing"], _floats)
            fails = _per_unique(df["pixel_spacing"], lambda v: bool(f := _floats(v)) and (
                min(f) < lo or max(f) > hi), dtype=bool)
            yield "pixel_spacing", fails, lambda i, sp=sp, lo=lo, hi=hi: (
                f"(0028,0030) Pixel Spacing is {_fmt(sp[i])} mm; the model was trained on "
                f"{lo:g}-{hi:g} mm")
        matrix = []
        for name, tag in (("rows", "(0028,0010) Rows"), ("columns", "(0028,0011) Columns")):
            rng = getattr(self, name)
            if rng is None or name not in df:
                continue
            v = pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float)
            matrix.append((np.isfinite(v) & ((v < rng[0]) | (v > rng[1])), v, tag, rng))
        if matrix:
            def matrix_why(i, matrix=matrix):
                for fails, v, tag, rng in matrix:
                    if fails[i]:
                        return (f"{tag} is {int(v[i])}; the model was trained on "
                                f"{rng[0]}-{rng[1]}")
                return ""

            yield "matrix", np.logical_or.reduce([m[0] for m in matrix]), matrix_why
        if self.windows and "bits_stored" in df:
            lo, hi = _value_range(df)
            ok = np.zeros(n, bool)
            for wlo, whi in self.windows:
                ok |= (hi >= wlo) & (lo <= whi)
            fails = np.isfinite(lo) & np.isfinite(hi) & ~ok
            wins = ", ".join(f"{a:g}..{b:g}" for a, b in self.windows)
            yield "value_range", fails, lambda i, lo=lo, hi=hi, wins=wins: (
                f"stored values can only be {lo[i]:g}..{hi[i]:g} after (0028,1052)/(0028,1053) "
                f"Rescale; the run's windows {wins} do not cover them: every pixel would "
                "become one constant")


def window_ranges(preprocess) -> tuple:
    """``(low, high)`` in modality units of each fixed window of a preprocessing config.

    Presets and ``center/width`` windows only (PS3.3 C.11.2.1.2: a LINEAR window covers
    ``center - width/2 .. center + width/2``); file, VOI LUT and percentile windows depend
    on the image and give no range (then the ``value_range`` rule is not checked).
    """
    from dicomml.preprocess.presets import PRESETS, normalize_window_spec

    cfg = preprocess.to_dict() if hasattr(preprocess, "to_dict") else dict(preprocess)
    if str(cfg.get("mode", "windows")).lower() == "rgb":
        return ()
    out = []
    for spec in cfg.get("windows", ()):
        s = normalize_window_spec(spec)
        if isinstance(s, str) and s in PRESETS:
            c, w = PRESETS[s]
        elif isinstance(s, tuple):
            c, w = s
        else:
            try:  # the canonical "center/width" spelling
                c, w = (float(v) for v in s.split("/"))
            except ValueError:
                return ()
        out.append((float(c) - float(w) / 2, float(c) + float(w) / 2))
    return tuple(out)


# -- helpers --------------------------------------------------------------------------------
def _per_unique(column: pd.Series, fn, dtype=object) -> np.ndarray:
    """``fn`` of every value, computed once per distinct value (an export has few)."""
    values = column.to_numpy(dtype=object)
    try:
        codes, uniques = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=False)
    except TypeError:  # unhashable values (lists): one call per row
        return np.array([fn(v) for v in values], dtype=dtype)
    mapped = np.empty(len(uniques), dtype=dtype)
    for j, u in enumerate(uniques):  # element by element: tuples stay tuples
        mapped[j] = fn(u)
    return mapped[codes]


def _text(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return ""
    return str(v).strip()


def _image_type(v) -> tuple[str, ...]:
    s = _text(v)
    return tuple(p.strip().upper() for p in s.split("\\")) if s else ()


def _floats(v) -> tuple[float, ...]:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return ()
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            return ()
    try:
        return tuple(float(x) for x in v if x is not None and math.isfinite(float(x)))
    except (TypeError, ValueError):
        return ()


def _spacings(df: pd.DataFrame) -> np.ndarray:
    if "pixel_spacing" not in df:
        return np.zeros(0)
    vals = [x for v in df["pixel_spacing"] for x in _floats(v) if x > 0]
    return np.asarray(vals, dtype=float)


def _value_range(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Smallest / largest modality value each row's stored values can give (NaN: unknown)."""
    bits = pd.to_numeric(df["bits_stored"], errors="coerce").to_numpy(dtype=float)
    signed = (pd.to_numeric(df.get("pixel_representation", pd.Series(0, index=df.index)),
                            errors="coerce").fillna(0).to_numpy() == 1)
    slope = pd.to_numeric(df.get("rescale_slope", pd.Series(np.nan, index=df.index)),
                          errors="coerce").fillna(1.0).to_numpy(dtype=float)
    icpt = pd.to_numeric(df.get("rescale_intercept", pd.Series(np.nan, index=df.index)),
                         errors="coerce").fillna(0.0).to_numpy(dtype=float)
    with np.errstate(invalid="ignore", over="ignore"):
        smin = np.where(signed, -(2.0 ** (bits - 1)), 0.0)
        smax = np.where(signed, 2.0 ** (bits - 1) - 1, 2.0 ** bits - 1)
        a, b = smin * slope + icpt, smax * slope + icpt
    return np.minimum(a, b), np.maximum(a, b)


def _fmt(v) -> str:
    return "\\".join(f"{float(x):g}" for x in v) if hasattr(v, "__iter__") else f"{v:g}"


def _listing(values) -> str:
    values = list(values)
    return ", ".join(repr(v) if isinstance(v, str) else str(v) for v in values) or "nothing"


def _class_name(uid: str, rule: str) -> str:
    if rule != "sop_class" or not uid:
        return ""
    from pydicom.uid import UID

    name = UID(uid).name
    return f" ({name})" if name and name != uid else ""
