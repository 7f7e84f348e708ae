"""Synthetic MR series, CR/DX radiographs and RGB secondary captures."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filewriter import dcmwrite
from pydicom.uid import (
    ComputedRadiographyImageStorage, DigitalXRayImageStorageForPresentation,
    PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, JPEGBaseline8Bit, MRImageStorage,
    SecondaryCaptureImageStorage,
)
from scipy.ndimage import gaussian_filter, zoom

from dicomml.errors import ConfigError

from dicomml._atomic import atomic_write_bytes

from ._common import base_dataset, check_transfer_syntax, name_files, set_pixels, write_dataset
from .ct import DEFAULT_FOV, render_plane, series_geometry
from .people import Patient, Study, as_rng, make_patient, make_study, uid_from
from .phantom import HU, T1, T2, Tissue, plane_coordinates, random_anatomy, render_labels

__all__ = ["write_mr_series", "write_radiograph", "write_secondary_capture"]

_BODY_PART = {"head": "HEAD", "abdomen": "ABDOMEN", "chest": "CHEST"}


def write_mr_series(
    out_dir: str | os.PathLike, *, seed: int | np.random.Generator = 0, n_slices: int = 16,
    rows: int = 256, columns: int = 256, spacing: float = 5.0, weighting: str = "T1",
    body: str = "head", oblique: bool | float = False, patient: Patient | None = None,
    study: Study | None = None, series_number: int = 3, series_description: str | None = None,
    noise: float = 20.0, transfer_syntax=ExplicitVRLittleEndian, shuffle_names: bool = True,
    file_names: str | None = "IM%04d",
) -> list[Path]:
    """Write a synthetic MR series (MR Image Storage, PS3.3 A.4) into ``out_dir``.

    (0028,0004) MONOCHROME2, ``uint16`` with (0028,0101) Bits Stored 12, no rescale: the
    stored value is the signal. ``weighting`` ``"T1"`` (fat bright, CSF dark, white matter
    brighter than grey) or ``"T2"`` (CSF bright). The magnitude of complex Gaussian noise of
    standard deviation ``noise`` is added (Rician, as in magnitude MR images). Other
    parameters as :func:`dicomml.testing.write_ct_series`. Returns the files in instance
    order.
    """
    if weighting not in ("T1", "T2"):
        raise ConfigError(f"weighting must be 'T1' or 'T2'. Received: weighting={weighting!r}")
    ts = check_transfer_syntax(transfer_syntax)
    rng = as_rng(seed)
    patient = patient or make_patient(rng)
    study = study or make_study(rng)
    anatomy = random_anatomy(body, rng)
    series_uid = uid_from(rng, "mr-series")
    frame_uid = uid_from(rng, "mr-frame")
    fov = DEFAULT_FOV[body]
    ps = fov / columns
    geoms = series_geometry(n_slices, rows, columns, spacing=spacing, pixel_spacing=ps,
                            oblique=oblique)
    uids = [uid_from(rng, "mr-instance", i) for i in range(n_slices)]
    names = name_files(n_slices, rng, shuffle=shuffle_names, pattern=file_names, uids=uids)
    lut = T1 if weighting == "T1" else T2
    tr, te = (500.0, 12.0) if weighting == "T1" else (4000.0, 100.0)
    out_dir = Path(out_dir)
    paths = []
    for k, (g, uid, name) in enumerate(zip(geoms, uids, names)):
        sig = render_plane(g, rows, columns, anatomy, rng, noise=0.0, blur=0.8, lut=lut)
        re = sig + rng.standard_normal(sig.shape, dtype=np.float32) * np.float32(noise)
        im = rng.standard_normal(sig.shape, dtype=np.float32) * np.float32(noise)
        stored = np.clip(np.rint(np.hypot(re, im)), 0, 4095).astype(np.uint16)
        ds = base_dataset(sop_class=MRImageStorage, sop_instance=uid, modality="MR",
                          patient=patient, study=study, series_uid=series_uid,
                          series_number=series_number,
                          series_description=series_description or f"SYN MR {weighting}",
                          instance_number=k + 1, frame_of_reference=frame_uid,
                          body_part=_BODY_PART[body])
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.RepetitionTime = tr
        ds.EchoTime = te
        ds.EchoTrainLength = 1
        ds.MagneticFieldStrength = 1.5
        ds.ImagedNucleus = "1H"
        ds.AcquisitionNumber = 1
        ds.PatientPosition = "HFS"
        ds.SliceThickness = float(spacing)
        ds.SpacingBetweenSlices = float(spacing)
        ds.ImagePositionPatient = list(g.position)
        ds.ImageOrientationPatient = list(g.row_dir) + list(g.col_dir)
        ds.PixelSpacing = list(g.pixel_spacing)
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.WindowCenter = 600.0 if weighting == "T1" else 900.0
        ds.WindowWidth = 1200.0 if weighting == "T1" else 1800.0
        set_pixels(ds, stored, bits_stored=12, signed=False)
        paths.append(write_dataset(out_dir / name, ds, ts))
    return paths


def chest_projection(rows: int, columns: int, rng: np.random.Generator, *,
                     spacing: float, n_depth: int = 64, work: int = 256) -> np.ndarray:
    """A PA chest-like projection: line integrals of attenuation through the chest phantom.

    Returns ``float64`` line integrals (dimensionless, ~0 in air), shape (rows, columns).
    Computed on a ``work``-pixel grid and interpolated to the requested size.
    """
    anatomy = random_anatomy("chest", rng)
    wr = max(16, min(rows, work))
    wc = max(16, min(columns, work))
    sr, sc = spacing * rows / wr, spacing * columns / wc
    origin = (-(wc - 1) / 2 * sc, 0.0, 20.0 + (wr - 1) / 2 * sr)
    mu = 0.02 * (1.0 + HU / 1000.0)               # 1/mm, water = 0.02
    mu[Tissue.AIR] = 0.0
    mu[Tissue.TABLE] = 0.0           # an erect PA chest: no table in the beam
    depth = np.linspace(-160.0, 160.0, n_depth)
    dy = depth[1] - depth[0]
    total = np.zeros((wr, wc), np.float64)
    for y in depth:
        X, _, Z = plane_coordinates((origin[0], y, origin[2]), (1.0, 0.0, 0.0),
                                    (0.0, 0.0, -1.0), wr, wc, sr, sc)
        Y = np.full((wr, wc), y, np.float32)
        total += mu[render_labels(X, Y, np.broadcast_to(Z, (wr, wc)), anatomy)] * dy
    total = gaussian_filter(total, 1.0)
    if (wr, wc) != (rows, columns):
        total = zoom(total, (rows / wr, columns / wc), order=1)
    return total


def write_radiograph(
    out_path: str | os.PathLike, *, seed: int | np.random.Generator = 0,
    modality: str = "CR", rows: int = 1024, columns: int = 1024, spacing: float = 0.4,
    monochrome1: bool = False, voi_lut: bool = False, patient: Patient | None = None,
    study: Study | None = None, series_number: int = 1, noise: float = 12.0,
    transfer_syntax=ExplicitVRLittleEndian,
) -> Path:
    """Write a chest radiograph: CR Image Storage (PS3.3 A.2) or DX For Presentation (A.26).

    ``uint16`` with (0028,0101) Bits Stored 12. With MONOCHROME2 bone and soft tissue are
    bright; with ``monochrome1=True`` the stored values are inverted (4095 - v) and
    (0028,0004) is MONOCHROME1, so that the displayed image is the same. (0028,1050)/(0028,1051)
    windows are always present (in stored-value units, as there is no rescale); with
    ``voi_lut=True`` a (0028,3010) VOI LUT Sequence item (a sigmoid LUT of 4096 entries,
    first mapped 0, 16-bit output) is added as well.
    """
    if modality not in ("CR", "DX"):
        raise ConfigError(f"modality must be 'CR' or 'DX'. Received: modality={modality!r}")
    ts = check_transfer_syntax(transfer_syntax)
    rng = as_rng(seed)
    patient = patient or make_patient(rng)
    study = study or make_study(rng)
    line = chest_projection(rows, columns, rng, spacing=spacing)
    value = 250.0 + 3400.0 * (1.0 - np.exp(-line / 3.5))
    value = value + rng.standard_normal(value.shape) * noise
    stored = np.clip(np.rint(value), 0, 4095).astype(np.uint16)
    center, width = 2300.0, 3000.0
    if monochrome1:
        stored = (4095 - stored).astype(np.uint16)
        center = 4095 - center
    sop_class = (ComputedRadiographyImageStorage if modality == "CR"
                 else DigitalXRayImageStorageForPresentation)
    ds = base_dataset(sop_class=sop_class, sop_instance=uid_from(rng, "rad-instance"),
                      modality=modality, patient=patient, study=study,
                      series_uid=uid_from(rng, "rad-series"), series_number=series_number,
                      series_description=f"SYN {modality} CHEST PA", instance_number=1,
                      body_part="CHEST")
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.ViewPosition = "PA"
    ds.PatientOrientation = ["L", "F"]
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.KVP = 120
    ds.ExposureTime = 10
    ds.XRayTubeCurrent = 200
    ds.AcquisitionDate = study.study_date
    ds.AcquisitionTime = study.study_time
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    if modality == "DX":
        ds.ImageType = ["ORIGINAL", "PRIMARY", ""]
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.ImageLaterality = "U"
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = 1
        ds.RescaleIntercept = 0
        ds.RescaleSlope = 1
        ds.RescaleType = "US"
        ds.PresentationLUTShape = "INVERSE" if monochrome1 else "IDENTITY"
        ds.LossyImageCompression = "00"
        ds.BurnedInAnnotation = "NO"
        ds.DetectorType = "SCINTILLATOR"
        ds.PixelSpacing = [spacing, spacing]
        ds.AcquisitionContextSequence = []
        ds.PositionerType = "NONE"
        item = Dataset()
        item.CodeValue = "51185008"
        item.CodingSchemeDesignator = "SCT"
        item.CodeMeaning = "Chest"
        ds.AnatomicRegionSequence = [item]
        ds.DetectorElementSpacing = [spacing, spacing]
    ds.WindowCenter = center
    ds.WindowWidth = width
    ds.WindowCenterWidthExplanation = "DEFAULT"
    if voi_lut:
        x = np.arange(4096, dtype=np.float64)
        y = 65535.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
        item = Dataset()
        item.add_new(0x00283002, "US", [4096, 0, 16])
        item.LUTExplanation = "SIGMOID"
        item.add_new(0x00283006, "OW", np.rint(y).astype("<u2").tobytes())
        ds.VOILUTSequence = [item]
    set_pixels(ds, stored, bits_stored=12, signed=False)
    return write_dataset(Path(out_path), ds, ts)


def write_secondary_capture(
    out_path: str | os.PathLike, *, seed: int | np.random.Generator = 0, rows: int = 256,
    columns: int = 256, patient: Patient | None = None, study: Study | None = None,
    series_number: int = 90, jpeg: bool = False,
) -> Path:
    """Write an RGB Secondary Capture (PS3.3 A.8.1): a CT slice with a colour overlay.

    ``jpeg=False``: RGB, 8 bits, (0028,0006) Planar Configuration 0, Explicit VR Little
    Endian. ``jpeg=True``: JPEG Baseline (encoded with Pillow, 4:2:2 chroma subsampling),
    (0028,0004) YBR_FULL_422.
    """
    rng = as_rng(seed)
    patient = patient or make_patient(rng)
    study = study or make_study(rng)
    anatomy = random_anatomy("abdomen", rng)
    g = series_geometry(1, rows, columns, spacing=5.0, pixel_spacing=400.0 / columns)[0]
    hu = render_plane(g, rows, columns, anatomy, rng, noise=8.0)
    grey = np.clip((hu - (40 - 200)) / 400.0, 0, 1)
    yy, xx = np.mgrid[:rows, :columns]
    heat = np.exp(-(((xx - 0.35 * columns) / (0.12 * columns)) ** 2
                    + ((yy - 0.45 * rows) / (0.1 * rows)) ** 2))
    rgb = np.stack([grey * (1 - 0.6 * heat) + 0.6 * heat,
                    grey * (1 - 0.6 * heat) + 0.3 * heat,
                    grey * (1 - 0.6 * heat)], axis=-1)
    rgb = np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)
    ds = base_dataset(sop_class=SecondaryCaptureImageStorage, sop_instance=uid_from(rng, "sc"),
                      modality="OT", patient=patient, study=study,
                      series_uid=uid_from(rng, "sc-series"), series_number=series_number,
                      series_description="SYN SC OVERLAY", instance_number=1)
    ds.ConversionType = "WSD"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.PatientOrientation = ""
    ds.SamplesPerPixel = 3
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PlanarConfiguration = 0
    ds.BurnedInAnnotation = "NO"
    ds.Laterality = ""
    if not jpeg:
        ds.PhotometricInterpretation = "RGB"
        ds.PixelData = rgb.tobytes()
        return write_dataset(Path(out_path), ds, ExplicitVRLittleEndian)
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(rgb, "RGB").save(buf, format="JPEG", quality=95, subsampling=1,
                                        optimize=False)
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = f"{rgb.nbytes / len(buf.getvalue()):.2f}"[:16]
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = JPEGBaseline8Bit
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "DICOMML_SYN_1"
    ds.file_meta = meta
    out = io.BytesIO()
    dcmwrite(out, ds, enforce_file_format=True)
    atomic_write_bytes(out_path, out.getvalue())
    return Path(out_path)
