"""Synthetic CT series (CT Image Storage, PS3.3 A.3) written with pydicom."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from scipy.ndimage import gaussian_filter

from dicomml.errors import ConfigError

from ._common import base_dataset, check_transfer_syntax, name_files, set_pixels, write_dataset
from .people import Patient, Study, as_rng, make_patient, make_study, uid_from
from .phantom import HU, BodyAnatomy, HeadAnatomy, plane_coordinates, random_anatomy, \
    render_labels

__all__ = ["write_ct_series", "render_plane", "SliceGeometry", "series_geometry",
           "ct_dataset", "r6", "CT_WINDOWS", "DEFAULT_FOV"]

#: Default (0028,1050)/(0028,1051)/(0028,1055) windows per body part: (center, width, name).
CT_WINDOWS = {
    "head": ((40.0, 80.0, "BRAIN"), (600.0, 2800.0, "BONE")),
    "abdomen": ((40.0, 400.0, "ABDOMEN"), (300.0, 1500.0, "BONE")),
    "chest": ((-600.0, 1500.0, "LUNG"), (40.0, 400.0, "MEDIASTINUM")),
}
#: Display field of view (mm) per body part.
DEFAULT_FOV = {"head": 240.0, "abdomen": 400.0, "chest": 400.0}
_BODY_PART = {"head": "HEAD", "abdomen": "ABDOMEN", "chest": "CHEST"}


@dataclass(frozen=True)
class SliceGeometry:
    """Image Plane module values of one slice (PS3.3 C.7.6.2)."""

    position: tuple[float, float, float]      # (0020,0032) Image Position (Patient)
    row_dir: tuple[float, float, float]       # (0020,0037) values 1-3
    col_dir: tuple[float, float, float]       # (0020,0037) values 4-6
    pixel_spacing: tuple[float, float]        # (0028,0030): row spacing, column spacing


def _rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = (np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az),
                              np.sin(az))
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def r6(v) -> tuple[float, ...]:
    # Decimal strings (DS) hold 16 characters: keep 6 decimals, which round-trips exactly.
    return tuple(float(round(float(x), 6)) + 0.0 for x in v)


def series_geometry(n_slices: int, rows: int, columns: int, *, spacing: float,
                    pixel_spacing: float, oblique: bool | float = False,
                    gantry_tilt: float = 0.0, z_center: float = 0.0) -> list[SliceGeometry]:
    """Slice geometries, first instance at the top (highest z), going towards the feet.

    ``oblique`` (True or an angle in degrees) rotates the planes; positions then step along
    the plane normal. ``gantry_tilt`` (degrees) tilts the planes about the x axis like a CT
    gantry: (0020,0037) columns are tilted but positions step along z only, so the stack is
    sheared (PS3.3 C.7.6.2.1.1 and (0018,1120) Gantry/Detector Tilt).
    """
    if oblique and gantry_tilt:
        raise ConfigError("choose either oblique or gantry_tilt, not both. "
                          f"Received: oblique={oblique!r}, gantry_tilt={gantry_tilt!r}")
    if oblique is True:
        rot = _rotation(np.radians(18.0), np.radians(-12.0), np.radians(9.0))
    elif oblique:
        rot = _rotation(np.radians(float(oblique)), np.radians(-0.6 * float(oblique)), 0.0)
    else:
        t = np.radians(gantry_tilt)
        rot = np.array([[1, 0, 0], [0, np.cos(t), np.sin(t)], [0, -np.sin(t), np.cos(t)]])
    row = rot[:, 0]
    col = rot[:, 1]
    normal = np.cross(row, col)
    half_w = (columns - 1) / 2 * pixel_spacing
    half_h = (rows - 1) / 2 * pixel_spacing
    row_r, col_r = r6(row), r6(col)
    out = []
    for k in range(n_slices):
        offset = z_center + ((n_slices - 1) / 2 - k) * spacing
        if gantry_tilt and not oblique:
            center = np.array([0.0, 0.0, offset])
        else:
            center = offset * normal
        origin = center - half_w * np.asarray(row_r) - half_h * np.asarray(col_r)
        out.append(SliceGeometry(r6(origin), row_r, col_r, (pixel_spacing, pixel_spacing)))
    return out


def render_plane(geom: SliceGeometry, rows: int, columns: int, anatomy, rng, *,
                 noise: float = 10.0, blur: float = 0.6, lut: np.ndarray = HU,
                 labels_out: list | None = None) -> np.ndarray:
    """``float32`` values (HU with the default ``lut``) of one plane through the phantom.

    Labels are mapped through ``lut``, smoothed with a Gaussian of ``blur`` pixels
    (partial volume), then Gaussian noise of standard deviation ``noise`` is added. With
    ``labels_out`` (a list), the plane's tissue labels are appended to it.
    """
    X, Y, Z = plane_coordinates(geom.position, geom.row_dir, geom.col_dir, rows, columns,
                                geom.pixel_spacing[0], geom.pixel_spacing[1])
    labels = render_labels(X, Y, Z, anatomy)
    if labels_out is not None:
        labels_out.append(labels)
    img = lut[labels]
    if blur > 0:
        img = gaussian_filter(img, blur, mode="nearest")
    if noise > 0:
        img = img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(noise)
    return img.astype(np.float32, copy=False)


def ct_dataset(*, patient, study, series_uid, sop_uid, series_number, description, body,
                instance_number, frame_uid, geom: SliceGeometry, thickness, spacing_between,
                tilt, image_type, fov, acq_number=1):
    ds = base_dataset(sop_class=CTImageStorage, sop_instance=sop_uid, modality="CT",
                      patient=patient, study=study, series_uid=series_uid,
                      series_number=series_number, series_description=description,
                      instance_number=instance_number, frame_of_reference=frame_uid,
                      body_part=_BODY_PART[body])
    ds.ImageType = list(image_type)
    ds.AcquisitionNumber = acq_number
    ds.AcquisitionDate = study.study_date
    ds.AcquisitionTime = study.study_time
    ds.PatientPosition = "HFS"
    ds.KVP = 120
    ds.XRayTubeCurrent = 200
    ds.ExposureTime = 1000
    ds.ConvolutionKernel = "STANDARD"
    ds.GantryDetectorTilt = float(tilt)
    ds.DataCollectionDiameter = 500.0
    ds.ReconstructionDiameter = float(fov)
    ds.ImagePositionPatient = list(geom.position)
    ds.ImageOrientationPatient = list(geom.row_dir) + list(geom.col_dir)
    ds.PixelSpacing = [float(round(v, 6)) for v in geom.pixel_spacing]
    ds.SliceThickness = float(round(thickness, 6))
    ds.SpacingBetweenSlices = float(round(spacing_between, 6))
    normal = np.cross(geom.row_dir, geom.col_dir)
    ds.SliceLocation = float(round(float(np.dot(geom.position, normal)), 6)) + 0.0
    ds.PhotometricInterpretation = "MONOCHROME2"
    return ds


def write_ct_series(
    out_dir: str | os.PathLike, *, seed: int | np.random.Generator = 0, n_slices: int = 20,
    rows: int = 512, columns: int = 512, spacing: float = 5.0,
    slice_thickness: float | None = None, pixel_spacing: float | None = None,
    oblique: bool | float = False, gantry_tilt: float = 0.0, missing_slice: int | None = None,
    duplicate_position: int | None = None, localizer: bool = False, padding: bool = False,
    signed: bool = False, transfer_syntax=ExplicitVRLittleEndian, body: str = "abdomen",
    patient: Patient | None = None, study: Study | None = None, series_number: int = 2,
    series_description: str | None = None, noise: float = 10.0,
    anatomy: BodyAnatomy | HeadAnatomy | None = None, shuffle_names: bool = True,
    file_names: str | None = "IM%04d", z_center: float = 0.0,
) -> list[Path]:
    """Write a synthetic CT series (CT Image Storage, PS3.3 A.3) into ``out_dir``.

    Pixel values: with ``signed=False`` (default) (0028,0103) Pixel Representation 0,
    (0028,0101) Bits Stored 12, stored = HU + 1024 clipped to 0..4095, (0028,1052) Rescale
    Intercept -1024, (0028,1053) Rescale Slope 1. With ``signed=True``: Pixel Representation
    1, Bits Stored 16, stored = HU clipped to -1024..3071, Rescale Intercept 0.

    Parameters
    ----------
    out_dir : path
        Folder to write into (created).
    seed : int or numpy.random.Generator
        Everything (anatomy, noise, UIDs, names, dates) derives from it: same seed, same bytes.
    n_slices, rows, columns : int
        Number of slices (before ``missing_slice``) and matrix size.
    spacing : float
        Distance between slice centres in mm (along the normal; along z for a gantry tilt).
    slice_thickness, pixel_spacing : float, optional
        (0018,0050) and (0028,0030); default ``spacing`` and field of view / ``columns``.
    oblique : bool or float
        Rotated (0020,0037) Image Orientation (Patient); positions follow the plane normal.
    gantry_tilt : float
        Gantry tilt in degrees: tilted columns, positions along z ((0018,1120) set).
    missing_slice : int, optional
        Index (0-based, in instance order) of a slice not written (a gap in the stack).
    duplicate_position : int, optional
        Index of a slice whose position is written twice: one extra instance (new noise,
        new SOP Instance UID, last Instance Number) at the same (0020,0032).
    localizer : bool
        Add a coronal instance with (0008,0008) ``ORIGINAL\\PRIMARY\\LOCALIZER`` to the
        same series.
    padding : bool
        Store (0028,0120) Pixel Padding Value outside a circular field of view (0 when
        unsigned, -2000 when signed). Unsigned body values are then clipped at stored 1.
    signed : bool
        Signed storage (see above).
    transfer_syntax : UID
        Explicit or Implicit VR Little Endian, RLE Lossless, JPEG 2000 Lossless, JPEG-LS
        Lossless.
    body : {"abdomen", "chest", "head"}
        Anatomy and default windows.
    patient, study : Patient, Study, optional
        Share them between series; default: generated from ``seed``.
    noise : float
        Standard deviation of the Gaussian noise in HU.
    anatomy : BodyAnatomy or HeadAnatomy, optional
        Phantom parameters; default drawn from ``seed``.
    shuffle_names, file_names :
        File names ``file_names % k`` (no extension) with ``k`` shuffled against the
        instance order; ``file_names=None`` names files ``<SOPInstanceUID>.dcm``.

    Returns
    -------
    list of pathlib.Path
        The files in instance order (the duplicate and the localizer last).
    """
    if body not in CT_WINDOWS:
        raise ConfigError(f"unknown body {body!r}; expected one of {tuple(CT_WINDOWS)}. "
                          f"Received: body={body!r}")
    if n_slices < 1 or rows < 8 or columns < 8:
        raise ConfigError(f"n_slices must be >= 1 and rows, columns >= 8. Received: "
                          f"n_slices={n_slices}, rows={rows}, columns={columns}")
    for name, v in (("missing_slice", missing_slice), ("duplicate_position", duplicate_position)):
        if v is not None and not 0 <= v < n_slices:
            raise ConfigError(f"{name} must be a slice index in 0..{n_slices - 1}. "
                              f"Received: {name}={v}")
    ts = check_transfer_syntax(transfer_syntax)
    rng = as_rng(seed)
    patient = patient or make_patient(rng)
    study = study or make_study(rng)
    anatomy = anatomy or random_anatomy(body, rng)
    series_uid = uid_from(rng, "ct-series")
    frame_uid = uid_from(rng, "ct-frame")
    fov = DEFAULT_FOV[body]
    ps = float(pixel_spacing) if pixel_spacing else fov / columns
    thickness = float(slice_thickness) if slice_thickness else float(spacing)
    geoms = series_geometry(n_slices, rows, columns, spacing=spacing, pixel_spacing=ps,
                            oblique=oblique, gantry_tilt=gantry_tilt, z_center=z_center)
    between = spacing * (np.cos(np.radians(gantry_tilt)) if gantry_tilt else 1.0)
    description = series_description or f"SYN CT {body.upper()}"
    windows = CT_WINDOWS[body]

    # Instances: (geometry, image_type, kind)
    plan: list[tuple[SliceGeometry, tuple[str, ...], int]] = []
    axial = ("ORIGINAL", "PRIMARY", "AXIAL")
    for k, g in enumerate(geoms):
        if k != missing_slice:
            plan.append((g, axial, k + 1))
    if duplicate_position is not None:
        plan.append((geoms[duplicate_position], axial, n_slices + 1))
    if localizer:
        lps = fov / columns
        extent = max(n_slices * spacing * 2.0, rows * lps)
        lrows = rows
        lspacing = extent / lrows
        origin = (-(columns - 1) / 2 * lps, 0.0, z_center + (lrows - 1) / 2 * lspacing)
        g = SliceGeometry(r6(origin), (1.0, 0.0, 0.0), (0.0, 0.0, -1.0),
                          (float(round(lspacing, 6)), float(round(lps, 6))))
        plan.append((g, ("ORIGINAL", "PRIMARY", "LOCALIZER"), n_slices + 2))
    uids = [uid_from(rng, "ct-instance", i) for i in range(len(plan))]
    names = name_files(len(plan), rng, shuffle=shuffle_names, pattern=file_names, uids=uids)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    cx, cy = (columns - 1) / 2, (rows - 1) / 2
    radius = min(rows, columns) / 2
    yy, xx = np.mgrid[:rows, :columns]
    outside = (xx - cx) ** 2 + (yy - cy) ** 2 > radius ** 2
    for (g, image_type, inumber), uid, name in zip(plan, uids, names):
        hu = render_plane(g, rows, columns, anatomy, rng, noise=noise)
        hu = np.rint(hu)
        if signed:
            stored = np.clip(hu, -1024, 3071).astype(np.int16)
            pad_value = -2000
        else:
            stored = np.clip(hu + 1024, 1 if padding else 0, 4095).astype(np.uint16)
            pad_value = 0
        ds = ct_dataset(patient=patient, study=study, series_uid=series_uid, sop_uid=uid,
                         series_number=series_number, description=description, body=body,
                         instance_number=inumber, frame_uid=frame_uid, geom=g,
                         thickness=thickness, spacing_between=between, tilt=gantry_tilt,
                         image_type=image_type, fov=fov)
        if padding:
            stored = stored.copy()
            stored[outside] = pad_value
            ds.add_new(0x00280120, "SS" if signed else "US", pad_value)
        ds.RescaleIntercept = 0 if signed else -1024
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        ds.WindowCenter = [w[0] for w in windows]
        ds.WindowWidth = [w[1] for w in windows]
        ds.WindowCenterWidthExplanation = [w[2] for w in windows]
        set_pixels(ds, stored, bits_stored=16 if signed else 12, signed=signed)
        paths.append(write_dataset(out_dir / name, ds, ts))
    return paths
