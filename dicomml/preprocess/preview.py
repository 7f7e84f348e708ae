"""Previews: what the model sees, one panel per channel plus the RGB composite.

A preview is titled with a heading (the CLI puts the file name, modality, frame and window
there; never a patient) and one title per panel. When the three channels are one window
replicated, a single panel is drawn instead of three identical ones and a composite. The
file is PNG or JPEG by its extension.
"""

from __future__ import annotations

import io
import os
from typing import Sequence

import numpy as np

from dicomml._atomic import atomic_write_bytes
from dicomml.errors import ConfigError

__all__ = ["render_preview", "save_preview", "preview_size", "panel_origin", "image_format",
           "TITLE_HEIGHT", "HEADER_HEIGHT", "MARGIN"]

#: Height in pixels of the title strip above each panel, of the heading strip above all
#: panels, and the gap around panels.
TITLE_HEIGHT = 18
HEADER_HEIGHT = 20
MARGIN = 4
_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


def preview_size(size: int, channels: int = 3, *, heading: int = 0) -> tuple[int, int]:
    """(width, height) in pixels of a preview of ``channels`` panels plus the composite.

    ``channels=1`` is the single panel of a replicated window (no composite); ``heading``
    is the number of heading lines.
    """
    n = channels + 1 if channels > 1 else 1
    return n * size + (n + 1) * MARGIN, heading * HEADER_HEIGHT + size + TITLE_HEIGHT + 2 * MARGIN


def panel_origin(k: int, size: int, *, heading: int = 0) -> tuple[int, int]:
    """(x, y) of the top-left pixel of panel ``k`` (0-based) in a preview with ``heading``
    heading lines."""
    return MARGIN + k * (size + MARGIN), heading * HEADER_HEIGHT + MARGIN + TITLE_HEIGHT


def _font(px: int):
    """DejaVu Sans (shipped with matplotlib) at ``px`` pixels; Pillow's default otherwise."""
    from PIL import ImageFont

    try:
        import matplotlib

        path = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf")
        return ImageFont.truetype(path, px)
    except (ImportError, OSError):  # pragma: no cover - no matplotlib font: Pillow's own
        return ImageFont.load_default()


def _lines(draw, heading: str, width: int, font) -> list[str]:
    """The heading's `` · ``-separated parts, greedily filled into lines of ``width``."""
    lines: list[str] = []
    for part in str(heading).split(" · "):
        trial = f"{lines[-1]} · {part}" if lines else part
        if lines and draw.textlength(trial, font=font) <= width:
            lines[-1] = trial
        else:
            lines.append(part)
    return [_fit(draw, ln, width, font) for ln in lines]


def _fit(draw, text: str, width: int, font) -> str:
    text = str(text)
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _replicated(t: np.ndarray, titles: Sequence[str]) -> bool:
    return len(set(map(str, titles))) == 1 and np.array_equal(t[..., 0], t[..., 1]) \
        and np.array_equal(t[..., 0], t[..., 2])


def render_preview(tensor: np.ndarray, titles: Sequence[str], heading: str | None = None):
    """A Pillow image of a [0, 1] (size, size, 3) tensor: each channel as grey, titled with
    its window, then the RGB composite (one panel when one window is replicated).

    Parameters
    ----------
    tensor : numpy.ndarray
        ``float32`` (size, size, 3) with ``unit`` normalization (values in [0, 1]).
    titles : sequence of str
        One title per channel (e.g. ``Pipeline.channel_labels``).
    heading : str, optional
        A line above the panels (file name, modality, frame; never a patient identifier).

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
    single = _replicated(u8, titles)
    width = preview_size(size, 1 if single else 3)[0]
    probe = ImageDraw.Draw(PILImage.new("RGB", (1, 1)))
    big, small = _font(13), _font(11)
    lines = _lines(probe, heading, width - 2 * MARGIN, big) if heading else []
    width, height = preview_size(size, 1 if single else 3, heading=len(lines))
    canvas = PILImage.new("RGB", (width, height), (32, 32, 32))
    draw = ImageDraw.Draw(canvas)
    if single:
        panels, names = [np.repeat(u8[..., :1], 3, axis=2)], [f"{titles[0]} (all channels)"]
    else:
        panels = [np.repeat(u8[..., c:c + 1], 3, axis=2) for c in range(3)] + [u8]
        names = list(titles) + ["RGB composite"]
    for i, line in enumerate(lines):
        draw.text((MARGIN, MARGIN + i * HEADER_HEIGHT), line, fill=(255, 255, 255), font=big)
    for k, (panel, name) in enumerate(zip(panels, names)):
        x0, y0 = panel_origin(k, size, heading=len(lines))
        canvas.paste(PILImage.fromarray(np.ascontiguousarray(panel), "RGB"), (x0, y0))
        draw.text((x0, y0 - TITLE_HEIGHT + 2), _fit(draw, name, size, small),
                  fill=(230, 230, 230), font=small)
    return canvas


def image_format(path: str | os.PathLike) -> str:
    """``"PNG"`` or ``"JPEG"`` from the file name; :class:`ConfigError` for anything else."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in _FORMATS:
        raise ConfigError(f"{path}: a preview is written as PNG (.png) or JPEG (.jpg, "
                          f".jpeg); name the output with one of these extensions")
    return _FORMATS[ext]


def save_preview(path: str | os.PathLike, tensor: np.ndarray, titles: Sequence[str],
                 heading: str | None = None) -> None:
    """Write :func:`render_preview` atomically, as PNG or JPEG by the extension of ``path``."""
    fmt = image_format(path)
    buf = io.BytesIO()
    im = render_preview(tensor, titles, heading)
    im.save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    atomic_write_bytes(path, buf.getvalue())
