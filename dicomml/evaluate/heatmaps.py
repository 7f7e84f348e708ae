"""Grad-CAM heatmaps on the source image's geometry (no TensorFlow in this module).

The model sees a 224×224 tensor; a viewer shows the source image. :func:`to_source_grid`
maps a heatmap from the tensor back to the source's rows and columns by the transpose of
the run's resize (:func:`dicomml.preprocess.resize.axis_matrices`), each source pixel
getting the weighted mean of the tensor pixels it contributed to (0 where it was cropped
away). :func:`display_frame` shows the source frame as a viewer would (its own window).
:func:`heatmap_objects` then builds the DICOM objects of :mod:`dicomml.report.heatmap`: a
Parametric Map and a Secondary Capture.
"""

from __future__ import annotations

import numpy as np

from dicomml.errors import ConfigError

__all__ = ["to_source_grid", "display_frame", "heatmap_objects"]


def to_source_grid(heat: np.ndarray, shape: tuple[int, int], preprocess,
                   pixel_spacing=None) -> np.ndarray:
    """Map a (size, size) tensor heatmap onto the source plane's (rows, columns).

    With the run's resize matrices ``R`` (size × rows) and ``C`` (size × columns), the
    tensor is ``R @ X @ C.T``; the source heat is ``(R.T @ H @ C) / (r ⊗ c)`` with ``r``,
    ``c`` the column sums of ``R`` and ``C`` (a weighted mean; 0 where a source pixel was
    not used). Output ``float32`` in [0, 1].
    """
    from dicomml.preprocess.resize import axis_matrices

    h = np.asarray(heat, dtype=np.float64)
    size = int(preprocess.size)
    if h.shape != (size, size):
        raise ConfigError(f"the heatmap must be the model input's {size}×{size}. "
                          f"Received: heat.shape={h.shape}")
    R, C = axis_matrices((int(shape[0]), int(shape[1])), size, preprocess.resize,
                         preprocess.fov_mm, pixel_spacing)
    R, C = np.asarray(R, np.float64), np.asarray(C, np.float64)
    num = R.T @ h @ C
    den = np.outer(R.sum(axis=0), C.sum(axis=0))
    out = np.divide(num, den, out=np.zeros_like(num), where=den > 1e-12)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def display_frame(image, preprocess=None) -> tuple[np.ndarray, str]:
    """Frame 0 of an :class:`~dicomml.io.Image` in [0, 1] as a viewer shows it, and how.

    The source's first (0028,1050)/(0028,1051) window (PS3.3 C.11.2.1.2), else the run's
    first fixed window, else the frame's min..max; MONOCHROME1 inverted (C.7.6.3.1.2).
    """
    from dicomml.data.contract import window_ranges
    from dicomml.io.pixels import modality_values
    from dicomml.preprocess.window import apply_window

    v = np.asarray(modality_values(image)[0], dtype=np.float32)  # also stored_values Images
    if v.ndim != 2:
        raise ConfigError(f"{image.path}: a colour image has no grayscale display for a "
                          "heatmap overlay")
    if image.windows:
        w = image.windows[0]
        out, how = apply_window(v, w.center, w.width, w.function), \
            f"source window {w.center:g}/{w.width:g}"
    else:
        ranges = window_ranges(preprocess) if preprocess is not None else ()
        if ranges:
            lo, hi = ranges[0]
            out, how = apply_window(v, (lo + hi) / 2, hi - lo), f"run window {lo:g}..{hi:g}"
        else:
            lo, hi = float(v.min()), float(v.max())
            out = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
            how = "value range"
    if str(image.photometric_interpretation).upper() == "MONOCHROME1":
        out = 1.0 - out
    return np.clip(out, 0.0, 1.0), how


def heatmap_objects(source, image, heat: np.ndarray, preprocess, *,
                    frame: int = 0, where: str = "", forced: bool = False,
                    errors: list | None = None, uids: dict | None = None) -> list:
    """``[("pm", ParametricMap), ("sc", SecondaryCapture)]`` of a tensor heatmap.

    ``image`` is the :class:`~dicomml.io.Image` of the source frame (``read_image(path,
    frames=[frame])``), ``heat`` the (size, size) Grad-CAM of its tensor. The two objects
    are built independently: with ``errors`` (a list), one that cannot be built is left
    out and ``(kind, exception)`` appended; without, the exception is raised. ``uids``
    may map ``"PM"`` and ``"SC"`` to their ``series_instance_uid`` / ``sop_instance_uid``.
    """
    uids = uids or {}
    spacing = image.pixel_spacing
    heat_src = to_source_grid(heat, image.pixels.shape[1:3], preprocess, spacing)
    out = []
    from dicomml.report.heatmap import build_heatmap_pm, build_heatmap_sc

    def sc():
        gray, how = display_frame(image, preprocess)
        return build_heatmap_sc(source, gray, heat_src, display=how, frame=frame,
                                where=where, forced=forced, **uids.get("SC", {}))

    for kind, build in (("pm", lambda: build_heatmap_pm(source, heat_src, frame=frame,
                                                         where=where, forced=forced,
                                                         **uids.get("PM", {}))),
                        ("sc", sc)):
        try:
            obj = build()
        except Exception as e:  # noqa: BLE001 - reported by the caller, the other goes on
            if errors is None:
                raise
            errors.append((kind, e))
            continue
        if obj is not None:
            out.append((kind, obj))
        elif errors is not None:  # said, not silently left out
            errors.append((kind, ValueError(
                "the source has no plane geometry ((0028,0030), (0020,0037), (0020,0032) "
                "and (0020,0052) Frame of Reference UID, also not in its functional "
                "groups); the Secondary Capture shows the heatmap")))
    return out
