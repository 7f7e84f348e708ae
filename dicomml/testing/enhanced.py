"""Synthetic Enhanced CT (multi-frame, functional groups), PS3.3 A.38."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import EnhancedCTImageStorage, ExplicitVRLittleEndian

from ._common import base_dataset, check_transfer_syntax, set_pixels, write_dataset
from .ct import CT_WINDOWS, DEFAULT_FOV, render_plane, series_geometry
from .people import Patient, Study, as_rng, make_patient, make_study, uid_from
from .phantom import random_anatomy

__all__ = ["write_enhanced_ct"]


def _item(**kw) -> Dataset:
    ds = Dataset()
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


def write_enhanced_ct(
    out_path: str | os.PathLike, *, seed: int | np.random.Generator = 0, n_frames: int = 12,
    rows: int = 256, columns: int = 256, spacing: float = 5.0, body: str = "abdomen",
    oblique: bool | float = False, shared: bool = True, patient: Patient | None = None,
    study: Study | None = None, series_number: int = 5, noise: float = 10.0,
    transfer_syntax=ExplicitVRLittleEndian,
) -> Path:
    """Write one Enhanced CT Image Storage instance (PS3.3 A.38) with ``n_frames`` frames.

    Functional groups (PS3.3 C.7.6.16): every frame of the (5200,9230) Per-frame Functional
    Groups Sequence has a Frame Content (0020,9111), Plane Position (Patient) (0020,9113) and
    CT Image Frame Type (0018,9329) item. Plane Orientation (0020,9116), Pixel Measures
    (0028,9110), Pixel Value Transformation (0028,9145) and Frame VOI LUT (0028,9132) are in
    the (5200,9229) Shared Functional Groups Sequence when ``shared`` is True, else repeated
    in every per-frame item. Stored values: ``uint16``, 12 bits, HU + 1024 (Rescale
    Intercept -1024 in Pixel Value Transformation). Frames go from the head to the feet.
    """
    ts = check_transfer_syntax(transfer_syntax)
    rng = as_rng(seed)
    patient = patient or make_patient(rng)
    study = study or make_study(rng)
    anatomy = random_anatomy(body, rng)
    fov = DEFAULT_FOV[body]
    ps = fov / columns
    geoms = series_geometry(n_frames, rows, columns, spacing=spacing, pixel_spacing=ps,
                            oblique=oblique)
    frames = []
    for g in geoms:
        hu = np.rint(render_plane(g, rows, columns, anatomy, rng, noise=noise))
        frames.append(np.clip(hu + 1024, 0, 4095).astype(np.uint16))
    pixels = np.stack(frames)
    ds = base_dataset(sop_class=EnhancedCTImageStorage, sop_instance=uid_from(rng, "ect"),
                      modality="CT", patient=patient, study=study,
                      series_uid=uid_from(rng, "ect-series"), series_number=series_number,
                      series_description=f"SYN ENHANCED CT {body.upper()}", instance_number=1,
                      frame_of_reference=uid_from(rng, "ect-frame"),
                      body_part=body.upper())
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.AcquisitionNumber = 1
    ds.AcquisitionDateTime = study.study_date + study.study_time
    ds.AcquisitionDuration = 1.0
    ds.ContentQualification = "PRODUCT"
    ds.PatientPosition = "HFS"
    ds.ImageComments = "synthetic"
    ds.PresentationLUTShape = "IDENTITY"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.NumberOfFrames = n_frames
    ds.PixelPresentation = "MONOCHROME"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.AcquisitionContextSequence = []
    dim_uid = uid_from(rng, "ect-dimension")
    ds.DimensionOrganizationSequence = [_item(DimensionOrganizationUID=dim_uid)]
    ds.DimensionOrganizationType = "3D"
    ds.DimensionIndexSequence = [
        _item(DimensionOrganizationUID=dim_uid, DimensionIndexPointer=0x00209056,
              FunctionalGroupPointer=0x00209111, DimensionDescriptionLabel="Stack ID"),
        _item(DimensionOrganizationUID=dim_uid, DimensionIndexPointer=0x00209057,
              FunctionalGroupPointer=0x00209111,
              DimensionDescriptionLabel="In-Stack Position Number"),
    ]
    windows = CT_WINDOWS[body]

    def common_groups() -> dict:
        return {
            "PlaneOrientationSequence": [_item(
                ImageOrientationPatient=list(geoms[0].row_dir) + list(geoms[0].col_dir))],
            "PixelMeasuresSequence": [_item(PixelSpacing=list(geoms[0].pixel_spacing),
                                            SliceThickness=float(spacing),
                                            SpacingBetweenSlices=float(spacing))],
            "PixelValueTransformationSequence": [_item(RescaleIntercept=-1024,
                                                       RescaleSlope=1, RescaleType="HU")],
            "FrameVOILUTSequence": [_item(
                WindowCenter=[w[0] for w in windows], WindowWidth=[w[1] for w in windows],
                WindowCenterWidthExplanation=[w[2] for w in windows])],
        }

    shared_item = Dataset()
    code = _item(CodeValue="818981001" if body == "abdomen" else "51185008",
                 CodingSchemeDesignator="SCT", CodeMeaning=body.capitalize())
    fov = DEFAULT_FOV[body]
    acquisition = {
        "CTAcquisitionTypeSequence": [_item(AcquisitionType="SPIRAL", ConstantVolumeFlag="NO",
                                            FluoroscopyFlag="NO")],
        "CTAcquisitionDetailsSequence": [_item(
            DataCollectionDiameter=500.0, RevolutionTime=0.5, TableHeight=150.0,
            GantryDetectorTilt=0.0, SingleCollimationWidth=0.625, TotalCollimationWidth=40.0,
            RotationDirection="CW")],
        "CTTableDynamicsSequence": [_item(TableSpeed=40.0, TableFeedPerRotation=20.0,
                                          SpiralPitchFactor=0.5)],
        "CTGeometrySequence": [_item(DistanceSourceToDetector=1000.0,
                                     DistanceSourceToDataCollectionCenter=550.0)],
        "CTReconstructionSequence": [_item(
            ReconstructionAlgorithm="FILTER_BACK_PROJ", ConvolutionKernel="STANDARD",
            ConvolutionKernelGroup="SOFT_TISSUE", ReconstructionDiameter=fov,
            ReconstructionPixelSpacing=list(geoms[0].pixel_spacing), ImageFilter="NONE",
            ReconstructionAngle=360.0)],
        "CTExposureSequence": [_item(ExposureTimeInms=500.0, XRayTubeCurrentInmA=200.0,
                                     ExposureInmAs=100.0, ExposureModulationType="NONE",
                                     )],
        "CTXRayDetailsSequence": [_item(KVP=120.0, FocalSpots=[1.0], FilterType="WEDGE",
                                        FilterMaterial="ALUMINUM")],
        "FrameAnatomySequence": [_item(FrameLaterality="U", AnatomicRegionSequence=[code])],
        "IrradiationEventIdentificationSequence": [_item(
            IrradiationEventUID=uid_from(rng, "ect-event"))],
    }
    for k, v in acquisition.items():
        setattr(shared_item, k, v)
    if shared:
        for k, v in common_groups().items():
            setattr(shared_item, k, v)
    ds.SharedFunctionalGroupsSequence = [shared_item]
    per_frame = []
    for k, g in enumerate(geoms):
        item = Dataset()
        item.FrameContentSequence = [_item(
            StackID="1", InStackPositionNumber=k + 1, DimensionIndexValues=[1, k + 1],
            FrameAcquisitionDateTime=study.study_date + study.study_time,
            FrameReferenceDateTime=study.study_date + study.study_time,
            FrameAcquisitionDuration=100.0)]
        item.PlanePositionSequence = [_item(ImagePositionPatient=list(g.position))]
        item.CTPositionSequence = [_item(
            TablePosition=float(g.position[2]),
            ReconstructionTargetCenterPatient=[0.0, 0.0, float(g.position[2])],
            DataCollectionCenterPatient=[0.0, 0.0, float(g.position[2])])]
        item.CTImageFrameTypeSequence = [_item(
            FrameType=["ORIGINAL", "PRIMARY", "VOLUME", "NONE"], PixelPresentation="MONOCHROME",
            VolumetricProperties="VOLUME", VolumeBasedCalculationTechnique="NONE")]
        if not shared:
            for key, v in common_groups().items():
                setattr(item, key, v)
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    set_pixels(ds, pixels, bits_stored=12, signed=False)
    return write_dataset(Path(out_path), ds, ts)
