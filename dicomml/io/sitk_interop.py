"""SimpleITK interop of :class:`~dicomml.io.types.Volume`: to / from ``SimpleITK.Image``, resampling.

Re-exported by :mod:`dicomml.io.volume` (and :mod:`dicomml.io`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from dicomml.errors import ConfigError, did_you_mean
from dicomml.io.types import Volume

__all__ = ["to_sitk", "from_sitk", "resample"]


def to_sitk(volume: Volume):
    """Return a ``SimpleITK.Image`` with the volume's pixels, spacing, origin and direction
    (see :meth:`dicomml.io.types.Volume.to_sitk`)."""
    return volume.to_sitk()


def from_sitk(image, **fields) -> Volume:
    """Build a Volume from a 3-D (or 4-D: x, y, z, t) scalar ``SimpleITK.Image`` (float32).

    Extra keyword arguments set other Volume fields (``modality=``, ``windows=``...); see
    :meth:`dicomml.io.types.Volume.from_sitk`.
    """
    return Volume.from_sitk(image, **fields)


_INTERPOLATORS = {"nearest": "sitkNearestNeighbor", "linear": "sitkLinear",
                  "bspline": "sitkBSpline", "lanczos": "sitkLanczosWindowedSinc",
                  "gaussian": "sitkGaussian"}


def resample(volume: Volume, spacing, interpolator: str = "linear",
             default_value: float | None = None) -> Volume:
    """Resample a volume onto a new grid spacing with SimpleITK (same origin and direction).

    Parameters
    ----------
    volume : Volume
    spacing : float or (slice, row, column) tuple of float
        New spacing in mm, in the order of ``Volume.spacing``.
    interpolator : {"linear", "nearest", "bspline", "lanczos", "gaussian"}
    default_value : float, optional
        Value outside the input (default: the volume's minimum).

    Returns
    -------
    Volume
        New pixels (float32) and spacing; the size covers the same physical extent.
        ``sop_instance_uids``, ``paths`` and ``frames`` are cleared (slices no longer match
        instances); the padding mask is resampled with nearest neighbour.
    """
    import SimpleITK as sitk

    if volume.pixels.ndim != 3:
        raise ConfigError(f"resample works on one 3-D volume; this one holds "
                          f"{volume.n_volumes} volumes: resample volume.volume(k). Received: "
                          f"pixels of shape {volume.pixels.shape}")
    key = str(interpolator).lower()
    if key not in _INTERPOLATORS:
        hint = did_you_mean(key, _INTERPOLATORS)
        raise ConfigError(f"unknown interpolator {interpolator!r}; expected one of "
                          f"{sorted(_INTERPOLATORS)}.{hint} Received: interpolator="
                          f"{interpolator!r}")
    new = (float(spacing),) * 3 if np.isscalar(spacing) else tuple(float(v) for v in spacing)
    if len(new) != 3 or min(new) <= 0:
        raise ConfigError(f"spacing must be positive: one value or (slice, row, column). "
                          f"Received: spacing={spacing!r}")
    img = to_sitk(volume)
    old_size = np.asarray(img.GetSize(), float)
    old_sp = np.asarray(img.GetSpacing(), float)
    new_sp = np.asarray(tuple(reversed(new)), float)
    size = [max(1, int(round(s))) for s in old_size * old_sp / new_sp]
    fill = float(volume.pixels.min()) if default_value is None else float(default_value)

    def run(image, interp, value):
        f = sitk.ResampleImageFilter()
        f.SetOutputSpacing(tuple(new_sp))
        f.SetSize(size)
        f.SetOutputOrigin(image.GetOrigin())
        f.SetOutputDirection(image.GetDirection())
        f.SetInterpolator(interp)
        f.SetDefaultPixelValue(value)
        f.SetOutputPixelType(image.GetPixelID())
        return f.Execute(image)

    out = run(img, getattr(sitk, _INTERPOLATORS[key]), fill)
    mask = None
    if volume.padding_mask is not None:
        m = sitk.GetImageFromArray(volume.padding_mask.astype(np.uint8))
        m.CopyInformation(img)
        mask = sitk.GetArrayFromImage(run(m, sitk.sitkNearestNeighbor, 1)).astype(bool)
    return replace(volume, pixels=sitk.GetArrayFromImage(out).astype(np.float32, copy=False),
                   spacing=new, sop_instance_uids=(), paths=(), frames=(), padding_mask=mask,
                   extra=dict(volume.extra))
