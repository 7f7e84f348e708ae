"""Heatmap overlays as RGB images and PNG files (matplotlib colormaps, no TensorFlow)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from dicomml.errors import ConfigError

__all__ = ["to_display_gray", "heatmap_overlay", "save_png"]


def to_display_gray(image) -> np.ndarray:
    """A display image in [0, 1] from a 2-D image or a (rows, columns, channels) tensor.

    Multi-channel tensors are averaged over channels; the result is min-max scaled (a
    constant image gives zeros). The input is not modified.
    """
    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 3:
        a = a.mean(axis=-1)
    if a.ndim != 2:
        raise ConfigError("overlay images are 2-D or (rows, columns, channels). "
                          f"Received: image.shape={np.shape(image)}")
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def heatmap_overlay(image, heatmap, *, alpha: float = 0.4, cmap: str = "jet",
                    display_range: tuple[float, float] | None = None) -> np.ndarray:
    """Blend a [0, 1] heatmap (colormap ``cmap``) over a grayscale display of ``image``.

    The heat's opacity at each pixel is ``alpha * heat``, so cold regions show the image
    unchanged. The heatmap is resized (bilinear) to the image's size when they differ.
    ``display_range=(lo, hi)`` maps a 2-D ``image`` linearly from ``lo..hi`` to black..white
    (e.g. ``(0, 1)`` for an already windowed image) instead of its own min..max.

    Returns
    -------
    numpy.ndarray
        ``uint8`` (rows, columns, 3) RGB.
    """
    from matplotlib import colormaps

    if display_range is None:
        gray = to_display_gray(image)
    else:
        lo, hi = (float(v) for v in display_range)
        if not hi > lo:
            raise ConfigError(f"display_range needs low < high. Received: "
                              f"display_range={display_range!r}")
        gray = np.clip((np.asarray(image, np.float64) - lo) / (hi - lo), 0.0, 1.0)
    h = np.clip(np.asarray(heatmap, dtype=np.float64), 0.0, 1.0)
    if h.ndim != 2:
        raise ConfigError(f"heatmap must be 2-D. Received: heatmap.shape={np.shape(heatmap)}")
    if h.shape != gray.shape:
        from skimage.transform import resize

        h = resize(h, gray.shape, order=1, mode="edge", anti_aliasing=False)
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must be in [0, 1]. Received: alpha={alpha}")
    color = colormaps[cmap](h)[..., :3]
    w = (alpha * h)[..., None]
    rgb = (1.0 - w) * gray[..., None] + w * color
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def save_png(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """Write a ``uint8`` RGB (or gray) array as a PNG file, atomically."""
    from matplotlib import image as mpimg

    from dicomml._atomic import atomic_write_bytes

    buf = io.BytesIO()
    mpimg.imsave(buf, np.asarray(rgb), format="png")
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
