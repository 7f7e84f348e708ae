"""Window presets and the spelling of a window choice.

A window choice ("window spec") is one of:

===========================  ===========================================================
``"brain"``, ``"lung"``...    a named preset (table below), case-insensitive
``"40/80"``, ``"-600/1500"``  explicit ``center/width`` in modality units
``(40, 80)``                  the same as a pair of numbers (a list in TOML)
``"file"`` / ``"file:1"``     a window stored in the file: (0028,1050)/(0028,1051) value
                              by index (0-based) ...
``"file:BRAIN"``              ... or by (0028,1055) Window Center & Width Explanation
``("file", 1)``               the same as a tuple
``"voilut"`` / ``"voilut:1"`` an item of the (0028,3010) VOI LUT Sequence (index or
                              (0028,3003) LUT Explanation)
``"p1-p99"``                  a window from the 1st to the 99th percentile of the plane,
                              computed **ignoring padding** (for MR and radiographs)
``"minmax"``                  the same as ``"p0-p100"``
``Window(...)``               a :class:`dicomml.io.Window`
===========================  ===========================================================

Presets (center/width in HU, VOI LUT Function LINEAR unless the config says otherwise).
Values follow Radiopaedia's "Windowing (CT)" article, the three-channel
brain/subdural/bone stack popularised by the RSNA 2019 Intracranial Hemorrhage Detection
challenge solutions, and the stroke window of Lev et al., Radiology 1999 (32/8 there):

=================  ======  ======  ===========================================================
preset             center  width   source / choice made
=================  ======  ======  ===========================================================
``brain``              40      80  Radiopaedia brain window W:80 L:40
``subdural``           80     200  RSNA ICH solutions' subdural channel (Radiopaedia's range
                                   is W:130–300 L:50–100; 75/215 is another common choice)
``stroke``             40      40  Radiopaedia stroke W:40 L:40 (chosen over the narrower
                                   32/8 of Lev et al., which saturates most of the brain)
``temporal_bone``     600    2800  Radiopaedia temporal bones W:2800 L:600
``bone``              400    1800  Radiopaedia bones W:1800 L:400 (the RSNA ICH solutions'
                                   600/2800 is ``temporal_bone``)
``lung``             -600    1500  Radiopaedia lungs W:1500 L:-600
``mediastinum``        50     350  Radiopaedia mediastinum W:350 L:50
``abdomen``            50     400  Radiopaedia soft tissues W:400 L:50
``soft_tissue``        50     400  alias of ``abdomen``
``liver``              60     150  liver W:150 L:60 (a common liver-lesion setting; 80/150
                                   is the other)
=================  ======  ======  ===========================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from dicomml.errors import ConfigError, InvalidDicomError, MissingAttributeError
from dicomml.io.types import VOILUT, Window
from dicomml.preprocess._options import VOILUTFunction, choose, did_you_mean
from dicomml.preprocess.window import apply_voi_lut, apply_window

__all__ = ["PRESETS", "ResolvedWindow", "normalize_window_spec", "resolve_window",
           "window_needs_values", "window_is_fixed"]

#: name -> (center, width) in HU; see the module docstring for sources.
PRESETS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (80.0, 200.0),
    "stroke": (40.0, 40.0),
    "temporal_bone": (600.0, 2800.0),
    "bone": (400.0, 1800.0),
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "abdomen": (50.0, 400.0),
    "soft_tissue": (50.0, 400.0),
    "liver": (60.0, 150.0),
}

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_EXPLICIT = re.compile(rf"^\s*({_NUMBER})\s*/\s*({_NUMBER})\s*$")
_PERCENTILE = re.compile(rf"^\s*p({_NUMBER})\s*-\s*p({_NUMBER})\s*$", re.IGNORECASE)
_FILE = re.compile(r"^\s*(file|voilut)\s*(?::\s*(.*))?$", re.IGNORECASE)
_SPELLINGS = ("file", "file:0", "file:NAME", "voilut", "p1-p99", "minmax", "40/80")


def _fmt(v: float) -> str:
    return f"{v:g}"


def _fmt_range(lo: float, hi: float) -> str:
    """``lo..hi`` with the decimals the span needs (3 significant digits of the span)."""
    span = abs(hi - lo)
    decimals = 0 if span == 0 else int(min(6, max(0, 2 - np.floor(np.log10(span)))))
    return f"{lo:.{decimals}f}..{hi:.{decimals}f}"


def normalize_window_spec(spec: Any) -> str | tuple[float, float]:
    """Return the canonical, TOML-friendly form of a window choice, validating its spelling.

    Presets become their lower-case name, ``("file", 1)`` becomes ``"file:1"``, a
    :class:`~dicomml.io.Window` or a number pair becomes ``(center, width)`` floats.
    The result is what :class:`~dicomml.preprocess.PreprocessConfig` stores.

    Raises
    ------
    ConfigError
        Unknown preset (with "did you mean") or an unreadable spelling.
    """
    if isinstance(spec, Window):
        return (float(spec.center), float(spec.width))
    if isinstance(spec, (tuple, list)):
        if len(spec) == 2 and isinstance(spec[0], str) and spec[0].lower() in ("file", "voilut"):
            return f"{spec[0].lower()}:{spec[1]}"
        if len(spec) == 2 and all(isinstance(v, (int, float, np.number)) and
                                  not isinstance(v, bool) for v in spec):
            return (float(spec[0]), float(spec[1]))
        raise ConfigError("a window given as a pair must be (center, width) numbers or "
                          f"('file', index_or_explanation). Received: window={spec!r}")
    if not isinstance(spec, str):
        raise ConfigError(f"a window is a preset name, 'C/W', 'file:N', 'p1-p99', 'minmax' or "
                          f"(center, width). Received: window={spec!r}")
    s = spec.strip()
    low = s.lower()
    if low in PRESETS:
        return low
    if low == "minmax" or _PERCENTILE.match(s) or _EXPLICIT.match(s):
        return low.replace(" ", "")
    m = _FILE.match(s)
    if m:
        kind, arg = m.group(1).lower(), (m.group(2) or "0").strip()
        return f"{kind}:{arg}"
    raise ConfigError(f"unknown window preset {spec!r}; presets are {sorted(PRESETS)}, other "
                      f"spellings {list(_SPELLINGS)}.{did_you_mean(s, sorted(PRESETS))} "
                      f"Received: window={spec!r}")


@dataclass(frozen=True)
class ResolvedWindow:
    """A window choice made concrete for one plane: a line/sigmoid window or a VOI LUT.

    Attributes
    ----------
    label : str
        Human-readable name used in previews, e.g. ``"brain 40/80"``.
    center, width : float or None
        The window (None for a VOI LUT).
    function : VOILUTFunction
        (0028,1056) VOI LUT Function of the window.
    lut : VOILUT or None
        The (0028,3010) item, when the choice is a VOI LUT.
    """

    label: str
    center: float | None = None
    width: float | None = None
    function: VOILUTFunction = VOILUTFunction.LINEAR
    lut: VOILUT | None = None

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Window ``values`` (modality units) to ``float32`` [0, 1]; see :func:`apply_window`."""
        if self.lut is not None:
            return apply_voi_lut(values, self.lut)
        return apply_window(values, self.center, self.width, self.function)

    def jittered(self, d_center: float, width_factor: float) -> "ResolvedWindow":
        """Return the window moved by ``d_center`` and scaled in width (augmentation only).

        VOI LUTs are returned unchanged. The width never drops below the standard's minimum.
        """
        if self.lut is not None:
            return self
        w = self.width * width_factor
        w = max(w, 1.0) if self.function is VOILUTFunction.LINEAR else max(w, 1e-3)
        return ResolvedWindow(self.label, self.center + d_center, w, self.function)


def _pick_file_window(arg: str, windows: Sequence[Window], voi_luts: Sequence[VOILUT],
                      kind: str, where: str):
    items = list(voi_luts) if kind == "voilut" else list(windows)
    tag = ("(0028,3010) VOI LUT Sequence" if kind == "voilut"
           else "(0028,1050) Window Center / (0028,1051) Window Width")
    if not items:
        raise MissingAttributeError(f"{where}: window {kind}:{arg} asked for but the file has no "
                                    f"{tag}; choose a preset or explicit 'C/W' instead.")
    if re.fullmatch(r"[-+]?\d+", arg):
        i = int(arg)
        if not -len(items) <= i < len(items):
            raise ConfigError(f"{where}: window {kind}:{arg} is out of range; the file has "
                              f"{len(items)} value(s) of {tag} (0-based index).")
        return items[i]
    names = [(it.explanation or "").strip() for it in items]
    for it, name in zip(items, names):
        if name.lower() == arg.lower():
            return it
    explain = "(0028,3003) LUT Explanation" if kind == "voilut" else \
        "(0028,1055) Window Center & Width Explanation"
    raise ConfigError(f"{where}: no {tag} value has {explain} {arg!r}; the file has "
                      f"{[n for n in names if n]}.{did_you_mean(arg, [n for n in names if n])}")


def _check_file_width(width: float, function: VOILUTFunction, name: str, where: str) -> None:
    """A file's own (0028,1051) Window Width that its (0028,1056) VOI LUT Function forbids
    is a defect of the file (:class:`InvalidDicomError`), not of the configuration."""
    w = float(width)
    if function is VOILUTFunction.LINEAR and not w >= 1:
        rule = ">= 1 for the LINEAR VOI LUT Function (PS3.3 C.11.2.1.2.1)"
    elif function is not VOILUTFunction.LINEAR and not w > 0:
        rule = f"> 0 for the {function.value} VOI LUT Function (PS3.3 C.11.2.1.3)"
    else:
        return
    raise InvalidDicomError(f"{where}: window {name}: the file's (0028,1051) Window Width is "
                            f"{_fmt(w)}, which must be {rule}; the file's window cannot be "
                            "used: choose a preset, an explicit 'C/W' window or a "
                            "percentile window instead.")


def window_needs_values(spec: Any) -> bool:
    """Whether :func:`resolve_window` computes the window ``spec`` from the plane's values
    (percentile and min-max windows) rather than from the choice or the file alone."""
    canon = normalize_window_spec(spec)
    return isinstance(canon, str) and (canon == "minmax" or bool(_PERCENTILE.match(canon)))


def window_is_fixed(spec: Any) -> bool:
    """Whether :func:`resolve_window` makes the window ``spec`` from the choice and the VOI
    LUT Function alone (presets, ``"C/W"``, number pairs), the same for every plane and file,
    so that it can be resolved once (file windows, VOI LUTs, percentiles and min-max
    cannot)."""
    canon = normalize_window_spec(spec)
    return isinstance(canon, tuple) or canon in PRESETS or bool(_EXPLICIT.match(canon))


def resolve_window(spec: Any, *, values: np.ndarray | None = None,
                   padding_mask: np.ndarray | None = None,
                   file_windows: Sequence[Window] = (), voi_luts: Sequence[VOILUT] = (),
                   function: str | VOILUTFunction = "LINEAR",
                   where: str = "image") -> ResolvedWindow:
    """Make a window choice concrete for one plane.

    Parameters
    ----------
    spec
        A window choice (see the module docstring).
    values : numpy.ndarray, optional
        The plane in modality units; needed for percentile / min-max windows.
    padding_mask : numpy.ndarray of bool, optional
        True at (0028,0120) Pixel Padding Value pixels, which percentiles ignore.
    file_windows, voi_luts
        The file's windows and VOI LUT items (``Image.windows``, ``Image.voi_luts``).
    function
        VOI LUT Function for presets and explicit windows; file windows keep their own
        (0028,1056). Percentile windows are LINEAR_EXACT so that the percentiles map exactly
        to 0 and 1.
    where : str
        The file (or SOP Instance UID) named in error messages.

    Raises
    ------
    ConfigError
        A choice that cannot be read, or a file window/LUT index out of range.
    MissingAttributeError
        ``file:``/``voilut:`` asked of a file without windows or VOI LUT items.
    InvalidDicomError
        The file's own (0028,1051) Window Width is forbidden by its (0028,1056) VOI LUT
        Function (e.g. 0 for LINEAR); the message names the tag.
    """
    fn = choose(function, VOILUTFunction, "VOI LUT Function (0028,1056)")
    canon = normalize_window_spec(spec)
    if isinstance(canon, tuple):
        c, w = canon
        return ResolvedWindow(f"{_fmt(c)}/{_fmt(w)}", c, w, fn)
    if canon in PRESETS:
        c, w = PRESETS[canon]
        return ResolvedWindow(f"{canon} {_fmt(c)}/{_fmt(w)}", c, w, fn)
    m = _EXPLICIT.match(canon)
    if m:
        c, w = float(m.group(1)), float(m.group(2))
        return ResolvedWindow(f"{_fmt(c)}/{_fmt(w)}", c, w, fn)
    if canon.startswith(("file:", "voilut:")):
        kind, arg = canon.split(":", 1)
        item = _pick_file_window(arg, file_windows, voi_luts, kind, where)
        name = f"{kind}:{arg}"
        if kind == "voilut":
            return ResolvedWindow(f"{name} VOI LUT", lut=item)
        f = choose(item.function or "LINEAR", VOILUTFunction, "VOI LUT Function (0028,1056)")
        _check_file_width(item.width, f, name, where)
        return ResolvedWindow(f"{name} {_fmt(item.center)}/{_fmt(item.width)}",
                              float(item.center), float(item.width), f)
    # percentile / minmax
    if canon == "minmax":
        lo_q, hi_q = 0.0, 100.0
    else:
        m = _PERCENTILE.match(canon)
        lo_q, hi_q = float(m.group(1)), float(m.group(2))
    if not 0.0 <= lo_q < hi_q <= 100.0:
        raise ConfigError(f"percentile window needs 0 <= low < high <= 100. Received: "
                          f"window={spec!r}")
    if values is None:
        raise ConfigError(f"window {spec!r} is computed from the pixels; pass the plane.")
    v = np.asarray(values)
    if padding_mask is not None:
        v = v[~np.asarray(padding_mask, dtype=bool)]
    v = v[np.isfinite(v)]
    if v.size == 0:
        lo = hi = 0.0
    else:
        lo, hi = (float(q) for q in np.percentile(v, [lo_q, hi_q]))
    width = hi - lo
    if width <= 0:  # a flat image: everything at the level maps to 0.5
        width = 1e-3
    return ResolvedWindow(f"{canon} {_fmt_range(lo, hi)}", (lo + hi) / 2.0, width,
                          VOILUTFunction.LINEAR_EXACT)
