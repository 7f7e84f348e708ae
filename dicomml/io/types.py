"""The data types that :mod:`dicomml.io` hands to the rest of the pipeline.

Contract (see DESIGN.md, "Volume / Image"):

* ``pixels`` is ``float32`` in **modality units** (Hounsfield units for CT), i.e. after
  (0028,1052) Rescale Intercept / (0028,1053) Rescale Slope or the (0028,3000) Modality LUT
  Sequence, and **before** any VOI LUT / window and before MONOCHROME1 inversion.
* Axes are (frame/slice, row, column), plus a trailing RGB axis for colour.
* Geometry is in patient coordinates (LPS, millimetres).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from dicomml.errors import ConfigError, did_you_mean

__all__ = ["VOILUTFunction", "Window", "VOILUT", "Image", "Volume", "VolumeInfo",
           "SeriesIssue"]


class VOILUTFunction(str, enum.Enum):
    """(0028,1056) VOI LUT Function, PS3.3 C.11.2.1.3: how a window maps values.

    ``LINEAR`` (the default when the attribute is absent, C.11.2.1.2.1), ``LINEAR_EXACT``
    (C.11.2.1.3.2) and ``SIGMOID`` (C.11.2.1.3.1). A member is its DICOM string
    (``VOILUTFunction.LINEAR == "LINEAR"``, ``str()`` and f-strings give ``"LINEAR"``).
    """

    LINEAR = "LINEAR"
    LINEAR_EXACT = "LINEAR_EXACT"
    SIGMOID = "SIGMOID"

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__

    @classmethod
    def parse(cls, value: "str | VOILUTFunction | None") -> "VOILUTFunction":
        """A member from itself or its string (any case, surrounding blanks ignored);
        None or ``""`` is ``LINEAR`` (the attribute absent).

        Raises
        ------
        ConfigError
            Any other value; the message names (0028,1056) and the allowed values.

        Examples
        --------
        >>> VOILUTFunction.parse(" linear_exact ")
        <VOILUTFunction.LINEAR_EXACT: 'LINEAR_EXACT'>
        >>> VOILUTFunction.parse(None)
        <VOILUTFunction.LINEAR: 'LINEAR'>
        """
        if isinstance(value, cls):
            return value
        if value is None or (isinstance(value, str) and not value.strip()):
            return cls.LINEAR
        if isinstance(value, str):
            key = value.strip().upper()
            if key in cls._value2member_map_:
                return cls(key)
        allowed = [m.value for m in cls]
        raise ConfigError(f"unknown (0028,1056) VOI LUT Function {value!r}; expected one of "
                          f"{allowed} (PS3.3 C.11.2.1.3).{did_you_mean(str(value), allowed)} "
                          f"Received: function={value!r}")


@dataclass(frozen=True)
class Window:
    """One VOI window, PS3.3 C.11.2.1.2.

    Attributes
    ----------
    center, width : float
        (0028,1050) Window Center and (0028,1051) Window Width, in modality units.
    explanation : str or None
        (0028,1055) Window Center & Width Explanation, e.g. ``"BRAIN"``.
    function : VOILUTFunction
        (0028,1056) VOI LUT Function: ``LINEAR`` (default), ``LINEAR_EXACT`` or ``SIGMOID``;
        a string is accepted and converted (:meth:`VOILUTFunction.parse`: an unknown one is
        a :class:`~dicomml.errors.ConfigError` naming the tag and the allowed values).
    """

    center: float
    width: float
    explanation: str | None = None
    function: VOILUTFunction = VOILUTFunction.LINEAR

    def __post_init__(self):
        object.__setattr__(self, "function", VOILUTFunction.parse(self.function))


@dataclass(frozen=True, eq=False)
class VOILUT:
    """One item of the (0028,3010) VOI LUT Sequence, PS3.3 C.11.2.1.1.

    Attributes
    ----------
    first_mapped : int
        Second value of (0028,3002) LUT Descriptor: the first input value mapped.
    bits : int
        Third value of the LUT Descriptor: bits per LUT entry (output range ``0 .. 2**bits - 1``).
    data : numpy.ndarray
        (0028,3006) LUT Data, ``uint16``; its length is the number of entries.
    explanation : str or None
        (0028,3003) LUT Explanation.
    """

    first_mapped: int
    bits: int
    data: np.ndarray
    explanation: str | None = None


@dataclass(eq=False)
class Image:
    """One DICOM instance (single- or multi-frame) with its pixel values in modality units.

    Attributes
    ----------
    pixels : numpy.ndarray
        ``float32``, shape (frames, rows, columns), or (frames, rows, columns, 3) for colour
        (YBR is converted to RGB). Modality LUT / rescale applied; no window.
    path : str or None
        The source file.
    photometric_interpretation : str
        (0028,0004) as stored (``"MONOCHROME1"``, ``"MONOCHROME2"``, ``"RGB"``...), except that
        YBR_* becomes ``"RGB"`` once converted.
    padding_mask : numpy.ndarray or None
        ``bool`` of shape (frames, rows, columns), True where the stored value is
        (0028,0120) Pixel Padding Value or within (0028,0121) Pixel Padding Range Limit.
    windows : tuple of Window
        Every value of a multi-valued Window Center/Width, with explanations and the VOI LUT
        Function; empty when the file has none.
    voi_luts : tuple of VOILUT
        The VOI LUT Sequence items, if any.
    stored_values : bool
        True only from ``read_image(..., stored_values=True)`` when it kept the stored
        integers: ``pixels`` then has their integer dtype and the modality values are
        ``pixels.astype(float32) · rescale_slope + rescale_intercept``, exact in ``float32``
        (:func:`dicomml.io.modality_values`).
    """

    pixels: np.ndarray
    path: str | None = None
    photometric_interpretation: str = "MONOCHROME2"
    padding_mask: np.ndarray | None = None
    windows: tuple[Window, ...] = ()
    voi_luts: tuple[VOILUT, ...] = ()
    modality: str | None = None
    sop_class_uid: str | None = None
    sop_instance_uid: str | None = None
    series_instance_uid: str | None = None
    study_instance_uid: str | None = None
    #: (0028,0030) Pixel Spacing as (row spacing, column spacing) in mm, or None.
    pixel_spacing: tuple[float, float] | None = None
    #: (0020,0032) Image Position (Patient) per frame, shape (frames, 3), or None.
    positions: np.ndarray | None = None
    #: (0020,0037) Image Orientation (Patient) per frame, shape (frames, 6), or None.
    orientations: np.ndarray | None = None
    slice_thickness: float | None = None
    bits_stored: int | None = None
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    rescale_type: str | None = None
    transfer_syntax_uid: str | None = None
    instance_number: int | None = None
    stored_values: bool = False
    #: Free-form extra facts (e.g. per-frame functional group values).
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def is_color(self) -> bool:
        return self.pixels.ndim == 4


@dataclass(frozen=True)
class SeriesIssue:
    """A problem found while assembling a series: ``kind`` is one of
    ``"irregular_spacing"``, ``"missing_slices"``, ``"duplicate_position"``,
    ``"mixed_orientation"``, ``"mixed_size"``, ``"mixed_series"`` (another echo, part or
    Series Number, see :func:`dicomml.io.series.same_series`), ``"no_position"``, ``"unreadable"``,
    ``"mosaic"`` (a mosaic that cannot be cut), ``"incomplete_volume"`` (a 4-D series whose
    last volume lacks slices), ``"dimension_conflict"`` (enhanced multi-frame dimension
    indices that contradict the positions); ``detail`` says where."""

    kind: str
    detail: str


@dataclass(frozen=True)
class VolumeInfo:
    """Per-volume attributes of a 4-D series (one per volume, in acquisition order).

    Attributes
    ----------
    index : int
        0-based position of the volume in the series.
    temporal_position : int or None
        (0020,0100) Temporal Position Identifier, or (0020,9128) Temporal Position Index.
    b_value : float or None
        (0018,9087) Diffusion b-value (Siemens: CSA ``B_value``; GE: (0043,1039)).
    gradient : tuple of float or None
        (0018,9089) Diffusion Gradient Orientation (Siemens: CSA
        ``DiffusionGradientDirection``), in patient coordinates.
    echo_time : float or None
        (0018,0081) Echo Time / (0018,9082) Effective Echo Time, ms.
    echo_number : int or None
        (0018,0086) Echo Numbers.
    trigger_time : float or None
        (0018,1060) Trigger Time, ms.
    acquisition_time : str or None
        (0008,0032) Acquisition Time or the frame's (0018,9074) Frame Acquisition DateTime.
    acquisition_number : int or None
        (0020,0012) Acquisition Number.
    """

    index: int
    temporal_position: int | None = None
    b_value: float | None = None
    gradient: tuple[float, float, float] | None = None
    echo_time: float | None = None
    echo_number: int | None = None
    trigger_time: float | None = None
    acquisition_time: str | None = None
    acquisition_number: int | None = None


@dataclass(eq=False)
class Volume:
    """A series of slices ordered along the slice normal, in modality units.

    Attributes
    ----------
    pixels : numpy.ndarray
        ``float32``, shape (slices, rows, columns); for a series of several volumes (fMRI,
        diffusion, multi-phase) (volumes, slices, rows, columns), volumes in acquisition
        order, all on the same grid. A colour series (``photometric_interpretation``
        ``"RGB"``, e.g. a colour FA map) has a trailing axis of the three samples (R, G, B),
        the stored values as float32, not rescaled (as dcm2niix writes RGB volumes): (slices,
        rows, columns, 3) or (volumes, slices, rows, columns, 3); see :attr:`is_color`.
    spacing : tuple of float
        (slice, row, column) spacing in mm, in the same order as the axes of ``pixels``.
        The slice spacing is measured from the positions, not (0018,0050) Slice Thickness.
    origin : tuple of float
        Patient (LPS) position in mm of the centre of voxel ``pixels[0, 0, 0]``.
    direction : numpy.ndarray
        3×3 ``float64``; column ``i`` is the unit vector in patient space of image axis
        ``i`` in SimpleITK's (x, y, z) = (column, row, slice) order. This is exactly
        ``np.reshape(sitk_image.GetDirection(), (3, 3))``.
    sop_instance_uids : tuple of str
        One per slice, in the order of ``pixels`` (4-D: volume by volume; a mosaic or
        multi-frame instance appears once per slice it holds).
    volumes : tuple of VolumeInfo
        One per volume (4-D) or for the volume read; empty for a plain 3-D series.
    issues : tuple of SeriesIssue
        Irregular spacing, missing slices, duplicate positions... (empty when clean).
    """

    pixels: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray
    sop_instance_uids: tuple[str, ...] = ()
    windows: tuple[Window, ...] = ()
    voi_luts: tuple[VOILUT, ...] = ()
    photometric_interpretation: str = "MONOCHROME2"
    padding_mask: np.ndarray | None = None
    modality: str | None = None
    series_instance_uid: str | None = None
    study_instance_uid: str | None = None
    frame_of_reference_uid: str | None = None
    paths: tuple[str, ...] = ()
    #: For multi-frame sources: the frame index in the file of each slice.
    frames: tuple[int, ...] = ()
    issues: tuple[SeriesIssue, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    volumes: tuple[VolumeInfo, ...] = ()

    @property
    def is_color(self) -> bool:
        """True for an RGB series: ``pixels`` ends with an axis of 3 samples (R, G, B)."""
        return self.photometric_interpretation == "RGB" and self.pixels.ndim in (4, 5) \
            and self.pixels.shape[-1] == 3

    @property
    def n_volumes(self) -> int:
        """Number of volumes: ``pixels.shape[0]`` when 4-D, else 1."""
        return int(self.pixels.shape[0]) if self.pixels.ndim - self.is_color == 4 else 1

    def volume(self, k: int) -> "Volume":
        """Volume ``k`` (0-based) of a 4-D volume as a 3-D Volume (the pixels are a view).

        A 3-D volume is its own volume 0.
        """
        n = self.n_volumes
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not -n <= int(k) < n:
            raise ConfigError(f"volume index {k!r} is out of range; the volume holds {n} "
                              "volume(s) (0-based)")
        k = int(k) % n
        if self.pixels.ndim - self.is_color != 4:
            return self
        per = self.pixels.shape[1]

        def part(t):
            return tuple(t[k * per:(k + 1) * per]) if len(t) == n * per else tuple(t)

        return replace(self, pixels=self.pixels[k], sop_instance_uids=part(
            self.sop_instance_uids), paths=part(self.paths), frames=part(self.frames),
            padding_mask=None if self.padding_mask is None else self.padding_mask[k],
            volumes=self.volumes[k:k + 1], extra={**self.extra, "volume": k, "n_volumes": n})

    def to_sitk(self):
        """This volume as a ``SimpleITK.Image`` with the same pixels, spacing, origin and
        direction (:func:`dicomml.io.to_sitk`).

        SimpleITK orders axes (x, y, z) = (column, row, slice): the spacing is reversed, the
        direction is used as is (its columns are already in that order); a colour volume is a
        vector image of 3 components (R, G, B). A 4-D volume becomes
        one 4-D image (x, y, z, t), as ``sitk.GetImageFromArray`` makes it and as SimpleITK's
        ``JoinSeries`` would: spacing 1 and origin 0 along t, the 4×4 direction with the 3×3
        direction in its upper-left block. (A list of 3-D images:
        ``[v.volume(k).to_sitk() ...]``.)
        """
        import SimpleITK as sitk

        pixels = np.ascontiguousarray(self.pixels)
        img = sitk.GetImageFromArray(pixels, isVector=self.is_color)
        d = np.asarray(self.direction, float)
        spacing = tuple(float(v) for v in reversed(self.spacing))
        origin = tuple(float(v) for v in self.origin)
        if pixels.ndim - self.is_color == 4:
            d4 = np.eye(4)
            d4[:3, :3] = d
            d, spacing, origin = d4, spacing + (1.0,), origin + (0.0,)
        img.SetSpacing(spacing)
        img.SetOrigin(origin)
        img.SetDirection(tuple(float(v) for v in d.ravel()))
        return img

    @classmethod
    def from_sitk(cls, image, **fields) -> "Volume":
        """A Volume from a 3-D (or 4-D: x, y, z, t) scalar ``SimpleITK.Image`` (float32);
        ``fields`` set the other attributes (``modality=``, ``windows=``...)."""
        import SimpleITK as sitk

        dim = image.GetDimension()
        if dim not in (3, 4) or image.GetNumberOfComponentsPerPixel() != 1:
            raise ConfigError("from_sitk expects a 3-D or 4-D scalar image. Received: "
                              f"dimension={dim}, components="
                              f"{image.GetNumberOfComponentsPerPixel()}")
        arr = sitk.GetArrayFromImage(image).astype(np.float32, copy=False)
        d = np.reshape(np.asarray(image.GetDirection(), float), (dim, dim))[:3, :3]
        return cls(pixels=arr, spacing=tuple(float(v) for v in reversed(image.GetSpacing()[:3])),
                   origin=tuple(float(v) for v in image.GetOrigin()[:3]), direction=d,
                   **fields)
