"""Training augmentation: seeded, reproducible, never applied at prediction time.

Where each part acts in the fixed order of operations::

    stored → modality → VOI LUT / window (*window centre/width jitter*) → MONOCHROME1
    inversion → padding floor → resize → channels (*flip, rotation, scale, translation,
    intensity jitter*) → normalize

All random numbers of one call are drawn up front by :func:`draw` from one
:class:`numpy.random.Generator`, so the same generator state gives the same tensor.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import scipy.ndimage as ndi

from dicomml.errors import ConfigError

__all__ = ["AugmentConfig", "AugmentParams", "draw", "apply_geometry", "apply_intensity",
           "is_identity", "DRAWS"]


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random training augmentation (all 0 disables a part).

    Attributes
    ----------
    flip_lr, flip_ud : float
        Probability of a left–right / up–down flip. Default 0.5 / 0.0 (anatomy is rarely
        upside down).
    rotate_deg : float
        Rotation uniformly in ±``rotate_deg`` degrees about the centre. Default 10.
    scale : float
        Zoom factor uniformly in 1 ± ``scale``. Default 0.1.
    translate : float
        Shift uniformly in ±``translate`` × size along each axis. Default 0.05.
    intensity : float
        Contrast factor in 1 ± ``intensity`` about 0.5 and brightness offset in
        ±``intensity``, on [0, 1] values, clipped back to [0, 1]. Default 0.05.
    window_center : float
        Window centre shift uniformly in ±``window_center`` × width. Default 0.05.
    window_width : float
        Window width factor uniformly in 1 ± ``window_width``. Default 0.1.
    seed : int
        Offset of the training draws (:func:`augment_batches`, added to ``[train] seed``)
        and the seed of ``Pipeline(training=True)``'s own generator. Default 0.
    """

    flip_lr: float = 0.5
    flip_ud: float = 0.0
    rotate_deg: float = 10.0
    scale: float = 0.1
    translate: float = 0.05
    intensity: float = 0.05
    window_center: float = 0.05
    window_width: float = 0.1
    seed: int = 0

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"augmentation setting {f.name} must be a number. "
                                  f"Received: {f.name}={v!r}")
            if f.name != "seed" and v < 0:
                raise ConfigError(f"augmentation setting {f.name} must be >= 0. "
                                  f"Received: {f.name}={v!r}")
        for name in ("flip_lr", "flip_ud"):
            if getattr(self, name) > 1:
                raise ConfigError(f"{name} is a probability in [0, 1]. "
                                  f"Received: {name}={getattr(self, name)!r}")
        if self.scale >= 1 or self.window_width >= 1:
            raise ConfigError("scale and window_width must be < 1 (factors 1 ± value). "
                              f"Received: scale={self.scale!r}, window_width={self.window_width!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (int(v) if k == "seed" else float(v)) for k, v in d.items()}


@dataclass(frozen=True)
class AugmentParams:
    """One draw of augmentation parameters (the identity when built with no arguments)."""

    flip_lr: bool = False
    flip_ud: bool = False
    angle_deg: float = 0.0
    zoom: float = 1.0
    shift_rows: float = 0.0
    shift_cols: float = 0.0
    contrast: float = 1.0
    brightness: float = 0.0
    center_shift: float = 0.0   # fraction of the window width
    width_factor: float = 1.0


def draw(cfg: AugmentConfig, rng: np.random.Generator) -> AugmentParams:
    """Draw one set of parameters; the number and order of draws never depend on values."""
    u = rng.uniform(-1.0, 1.0, size=8)
    p = rng.uniform(0.0, 1.0, size=2)
    return AugmentParams(
        flip_lr=bool(p[0] < cfg.flip_lr),
        flip_ud=bool(p[1] < cfg.flip_ud),
        angle_deg=float(u[0] * cfg.rotate_deg),
        zoom=float(1.0 + u[1] * cfg.scale),
        shift_rows=float(u[2] * cfg.translate),
        shift_cols=float(u[3] * cfg.translate),
        contrast=float(1.0 + u[4] * cfg.intensity),
        brightness=float(u[5] * cfg.intensity),
        center_shift=float(u[6] * cfg.window_center),
        width_factor=float(1.0 + u[7] * cfg.window_width),
    )


def apply_geometry(tensor: np.ndarray, params: AugmentParams) -> np.ndarray:
    """Flip, rotate, zoom and shift a (size, size, channels) ``float32`` [0, 1] tensor.

    Linear interpolation; pixels that come from outside the image take 0 (the floor).
    Returns a new ``float32`` array in [0, 1]; the input is not modified.
    """
    x = np.asarray(tensor, dtype=np.float32)
    if params.flip_lr:
        x = x[:, ::-1]
    if params.flip_ud:
        x = x[::-1]
    rows, cols = x.shape[:2]
    if params.angle_deg == 0 and params.zoom == 1 and params.shift_rows == 0 \
            and params.shift_cols == 0:
        return np.ascontiguousarray(x)
    t = math.radians(params.angle_deg)
    # output (r, c) -> input = M @ (out - centre - shift) + centre
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]]) / params.zoom
    centre = np.array([(rows - 1) / 2.0, (cols - 1) / 2.0])
    shift = np.array([params.shift_rows * rows, params.shift_cols * cols])
    offset = centre - rot @ (centre + shift)
    out = np.empty_like(x)
    for ch in range(x.shape[2]):
        ndi.affine_transform(x[..., ch], rot, offset=offset, order=1, mode="constant",
                             cval=0.0, output=out[..., ch])
    np.clip(out, 0.0, 1.0, out=out)
    return out


def apply_intensity(tensor: np.ndarray, params: AugmentParams) -> np.ndarray:
    """``clip((y - 0.5)·contrast + 0.5 + brightness, 0, 1)``; ``float32`` [0, 1] in and out."""
    x = np.asarray(tensor, dtype=np.float32)
    if params.contrast == 1 and params.brightness == 0:
        return x.copy()
    out = (x - np.float32(0.5)) * np.float32(params.contrast) + np.float32(0.5 + params.brightness)
    return np.clip(out, 0.0, 1.0, out=out)


# ---------------------------------------------------------------------------------------
# The training path: the same augmentation on batches of tensors, inside tf.data.
#
# Training reads preprocessed tensors (from the cache or decoded on the fly), so the
# augmentation acts on windowed [0, 1] values, per image, with TensorFlow ops. The window
# centre / width jitter is therefore applied *after* windowing: for a linear window,
# changing (c, w) to (c + s·w, f·w) maps every unsaturated value y to
# ``(y - 0.5 - s) / f + 0.5`` exactly; only values the original window clipped (y = 0 or 1)
# lose what they were and stay clipped. The alternative - caching modality values at
# reduced precision and windowing at training time - would give up the uint8 cache (4x
# more bytes per read), tie tf.data to every window kind (VOI LUT, sigmoid, percentiles,
# the file's own windows) and, with jitter of ±5 % centre / ±10 % width, change only
# pixels that lie within 10 % of a window edge outside it.

#: Columns of the per-image uniform draws of :func:`augment_images` (their order is fixed).
DRAWS = ("flip_lr", "flip_ud", "angle", "zoom", "shift_rows", "shift_cols", "contrast",
          "brightness", "center_shift", "width_factor")


def is_identity(cfg: AugmentConfig) -> bool:
    """Whether ``cfg`` changes nothing (every range 0)."""
    return all(getattr(cfg, f.name) == 0 for f in fields(cfg) if f.name != "seed")
