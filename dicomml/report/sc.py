"""Grad-CAM key images as DICOM Secondary Capture (highdicom ``SCImage``, no TensorFlow).

The image is an RGB Secondary Capture (PS3.3 A.8.1) in the source's study, in a new series:
the patient and study modules are copied from the source (``SCImage.from_ref_dataset``),
(0008,0008) Image Type is DERIVED\\SECONDARY, (0028,0301) Burned In Annotation is NO (the
overlay is a colour map without text), (0008,2111) Derivation Description says what it
shows, and the (0008,2112) Source Image Sequence and (0008,1140) Referenced Image Sequence
point to the source instance (purpose of reference DCM 121322 "Source image for image
processing operation").

The picture is the model's view: the preprocessed input tensor (its channels averaged,
min-max scaled) with the heatmap over it, so no (0028,0030) Pixel Spacing is written.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicomml.errors import ConfigError, MissingAttributeError

__all__ = ["patient_orientation", "build_heatmap_sc"]

_AXES = (("L", "R"), ("P", "A"), ("H", "F"))


def _letters(v) -> str:
    v = np.asarray(v, dtype=np.float64)
    out = ""
    for i in np.argsort(-np.abs(v)):
        if abs(v[i]) > 0.1 and len(out) < 3:
            out += _AXES[i][0] if v[i] > 0 else _AXES[i][1]
    return out


def patient_orientation(ds: Dataset) -> tuple[str, str]:
    """(0020,0020) Patient Orientation of a source image.

    Its own Patient Orientation when present, else the letters of (0020,0037) Image
    Orientation (Patient) (row direction, column direction), e.g. ``("L", "P")`` for an
    axial slice.
    """
    po = ds.get("PatientOrientation")
    if po and len(po) == 2 and all(po):
        return str(po[0]), str(po[1])
    iop = ds.get("ImageOrientationPatient")
    if iop and len(iop) == 6:
        return _letters(iop[:3]), _letters(iop[3:])
    raise MissingAttributeError(
        f"source {ds.get('SOPInstanceUID', '?')}: neither Patient Orientation (0020,0020) nor "
        "Image Orientation (Patient) (0020,0037) is present; a Secondary Capture in the "
        "patient coordinate system needs one")


def build_heatmap_sc(source: Dataset, rgb: np.ndarray, *, series_instance_uid: str | None = None,
                     sop_instance_uid: str | None = None, series_number: int = 9002,
                     instance_number: int = 1,
                     series_description: str = "dicomml Grad-CAM",
                     derivation: str = "Grad-CAM heatmap over the model input",
                     frame_numbers: Sequence[int] | None = None):
    """Build the Secondary Capture of a heatmap overlay of ``source``.

    Parameters
    ----------
    source : pydicom.dataset.Dataset
        The source instance (header is enough; not modified).
    rgb : numpy.ndarray
        ``uint8`` (rows, columns, 3), e.g. from :func:`dicomml.report.overlay.heatmap_overlay`.
    frame_numbers : sequence of int, optional
        (0008,1160) Referenced Frame Number for a multi-frame source.

    Returns
    -------
    highdicom.sc.SCImage
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    a = np.asarray(rgb)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ConfigError("the Secondary Capture needs uint8 (rows, columns, 3) RGB pixels. "
                          f"Received: dtype={a.dtype}, shape={a.shape}")
    from dicomml import __version__

    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=np.ascontiguousarray(a),
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=series_instance_uid or generate_uid(),
        series_number=series_number,
        sop_instance_uid=sop_instance_uid or generate_uid(),
        instance_number=instance_number,
        manufacturer="dicomml",
        patient_orientation=patient_orientation(source),
        series_description=series_description[:64],
        manufacturer_model_name="dicomml",
        software_versions=f"dicomml {__version__}",
        transfer_syntax_uid=ExplicitVRLittleEndian,
    )
    # (0020,0060) Laterality is Type 2C in the General Series module: copy or send empty.
    sc.Laterality = source.get("Laterality") or None
    sc.BurnedInAnnotation = "NO"
    sc.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
    sc.DerivationDescription = derivation[:1024]
    ref = Dataset()
    ref.ReferencedSOPClassUID = source.SOPClassUID
    ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
    if frame_numbers:
        ref.ReferencedFrameNumber = [int(f) for f in frame_numbers]
    src = Dataset()
    src.ReferencedSOPClassUID = source.SOPClassUID
    src.ReferencedSOPInstanceUID = source.SOPInstanceUID
    if frame_numbers:
        src.ReferencedFrameNumber = [int(f) for f in frame_numbers]
    purpose = codes.DCM.SourceImageForImageProcessingOperation
    code = Dataset()
    code.CodeValue = purpose.value
    code.CodingSchemeDesignator = purpose.scheme_designator
    code.CodeMeaning = purpose.meaning
    src.PurposeOfReferenceCodeSequence = [code]
    sc.SourceImageSequence = [src]
    sc.ReferencedImageSequence = [ref]
    return sc
