"""PNG previews: what the model sees, one panel per channel plus the RGB composite."""

from __future__ import annotations

import io
import os
from typing import Sequence

import numpy as np

from dicomml._atomic import atomic_write_bytes
from dicomml.errors import ConfigError

__all__ = ["render_preview", "save_preview", "preview_size", "TITLE_HEIGHT", "MARGIN"]

#: Height in pixels of the title strip above each panel, and the gap around panels.
TITLE_HEIGHT = 16
MARGIN = 4


def preview_size(size: int, channels: int = 3) -> tuple[int, int]:
    """(width, height) in pixels of a preview of ``channels`` panels plus the composite."""
    n = channels + 1
    return n * size + (n + 1) * MARGIN, size + TITLE_HEIGHT + 2 * MARGIN


def render_preview(tensor: np.ndarray, titles: Sequence[str]):
    """A Pillow image: each channel of a [0, 1] (size, size, 3) tensor as grey, titled with
    its window, then the RGB composite.

    Parameters
    ----------
    tensor : numpy.ndarray
        ``float32`` (size, size, 3) with ``unit`` normalization (values in [0, 1]).
    titles : sequence of str
        One title per channel (e.g. ``Pipeline.channel_labels``).

    Returns
    -------
    PIL.Image.Image
        RGB, of :func:`preview_size` pixels.
    """
    from PIL import Image as PILImage
    from PIL import ImageDraw

    t = np.asarray(tensor, dtype=np.float32)
    if t.ndim != 3 or t.shape[0] != t.shape[1] or t.shape[2] != 3 or len(titles) != 3:
        raise ConfigError(f"a preview needs a (size, size, 3) tensor and 3 titles. "
                          f"Received: shape={t.shape}, titles={list(titles)!r}")
    size = t.shape[0]
    u8 = np.rint(np.clip(t, 0.0, 1.0) * 255.0).astype(np.uint8)
    width, height = preview_size(size)
    canvas = PILImage.new("RGB", (width, height), (32, 32, 32))
    draw = ImageDraw.Draw(canvas)
    panels = [np.repeat(u8[..., c:c + 1], 3, axis=2) for c in range(3)] + [u8]
    names = list(titles) + ["RGB composite"]
    for k, (panel, name) in enumerate(zip(panels, names)):
        x0 = MARGIN + k * (size + MARGIN)
        canvas.paste(PILImage.fromarray(np.ascontiguousarray(panel), "RGB"),
                     (x0, MARGIN + TITLE_HEIGHT))
        text = str(name)
        while text and draw.textlength(text) > size:
            text = text[:-1]
        draw.text((x0, MARGIN), text, fill=(255, 255, 255))
    return canvas


def save_preview(path: str | os.PathLike, tensor: np.ndarray, titles: Sequence[str]) -> None:
    """Write :func:`render_preview` as a PNG, atomically."""
    buf = io.BytesIO()
    render_preview(tensor, titles).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
