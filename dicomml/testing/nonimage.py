"""Synthetic non-image objects: a Comprehensive 3D SR and a Key Object Selection document."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from pydicom.dataset import Dataset

from dicomml.errors import ConfigError

from ._common import MANUFACTURER, write_dataset
from .people import as_rng, uid_from

__all__ = ["write_sr", "write_key_object_selection"]


def _fix_times(ds: Dataset, ref: Dataset) -> None:
    # highdicom stamps the current time; replace it so that the same seed gives the same bytes.
    date = ref.get("StudyDate", "20200101")
    time = ref.get("StudyTime", "120000")
    for tag in ("ContentDate", "InstanceCreationDate", "SeriesDate"):
        if tag in ds:
            setattr(ds, tag, date)
    for tag in ("ContentTime", "InstanceCreationTime", "SeriesTime"):
        if tag in ds:
            setattr(ds, tag, time)
    for item in ds.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = date + time


def _check_refs(referenced: Sequence[Dataset], what: str) -> None:
    if not referenced:
        raise ConfigError(f"{what} needs at least one referenced image dataset. "
                          "Received: referenced_datasets=[]")
    studies = {r.StudyInstanceUID for r in referenced}
    if len(studies) != 1:
        raise ConfigError(f"{what}: all referenced datasets must belong to one study "
                          f"(0020,000D); got {len(studies)} studies.")


def write_sr(out_path: str | os.PathLike, referenced_datasets: Sequence[Dataset], *,
             seed: int | np.random.Generator = 0, finding: str = "normal",
             series_number: int = 100) -> Path:
    """Write a Comprehensive 3D SR (TID 1500 Measurement Report) referencing images.

    The SR (PS3.3 A.35.13) belongs to the study and patient of ``referenced_datasets``
    (datasets read with pydicom, pixel data not needed), in a new series. Its content is a
    TID 1500 Measurement Report whose image library lists every referenced instance, with
    one measurement group holding a qualitative evaluation "Finding" = ``finding`` (free
    text coded in a local scheme). Every referenced instance is listed in (0040,A375)
    Current Requested Procedure Evidence Sequence.
    """
    import highdicom as hd                      # imported here: heavy, only SR needs it
    from pydicom.sr.codedict import codes

    _check_refs(referenced_datasets, "write_sr")
    rng = as_rng(seed)
    ref = referenced_datasets[0]
    observation = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=uid_from(rng, "sr-device"), manufacturer_name=MANUFACTURER)))
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uid_from(rng, "sr-tracking"),
                                                     identifier="synthetic finding"),
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(
            name=codes.DCM.Finding,
            value=hd.sr.CodedConcept(value=finding.upper()[:16], scheme_designator="99DICOMML",
                                     meaning=finding))],
    )
    report = hd.sr.MeasurementReport(
        observation_context=observation, procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
        imaging_measurements=[group], referenced_images=list(referenced_datasets))
    sr = hd.sr.Comprehensive3DSR(
        evidence=list(referenced_datasets), content=report[0],
        series_instance_uid=uid_from(rng, "sr-series"), series_number=series_number,
        sop_instance_uid=uid_from(rng, "sr-instance"), instance_number=1,
        manufacturer=MANUFACTURER, is_complete=True, is_final=True)
    _fix_times(sr, ref)
    ds = Dataset()
    ds.update(sr)
    return write_dataset(Path(out_path), ds)


def write_key_object_selection(out_path: str | os.PathLike,
                               referenced_datasets: Sequence[Dataset], *,
                               seed: int | np.random.Generator = 0,
                               series_number: int = 101) -> Path:
    """Write a Key Object Selection Document (PS3.3 A.59) flagging ``referenced_datasets``.

    Document title (113000, DCM, "Of Interest"); same study and patient as the references.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    _check_refs(referenced_datasets, "write_key_object_selection")
    rng = as_rng(seed)
    content = hd.ko.KeyObjectSelection(document_title=codes.DCM.OfInterest,
                                       referenced_objects=list(referenced_datasets),
                                       description="synthetic key images")
    ko = hd.ko.KeyObjectSelectionDocument(
        evidence=list(referenced_datasets), content=content,
        series_instance_uid=uid_from(rng, "ko-series"), series_number=series_number,
        sop_instance_uid=uid_from(rng, "ko-instance"), instance_number=1,
        manufacturer=MANUFACTURER)
    _fix_times(ko, referenced_datasets[0])
    ds = Dataset()
    ds.update(ko)
    return write_dataset(Path(out_path), ds)
