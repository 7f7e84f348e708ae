"""DICOM Structured Reports of a model's result for one study (highdicom, no TensorFlow).

The document is a Comprehensive 3D SR (PS3.3 A.35.13) whose content is a TID 1500
Measurement Report:

* observation context: the algorithm as the observer device (TID 1004,
  ``DeviceObserverIdentifyingAttributes``: a device UID derived from the algorithm name
  and version, its name, manufacturer and model name);
* TID 1600 image library with one entry per source instance;
* one TID 1501 measurement group (tracking identifier, finding type = the finding code,
  TID 4019 algorithm identification with name, version and parameters, the source images
  "Source of Measurement") holding
  - a qualitative evaluation: concept name = the finding (e.g. SCT 1386000 "Intracranial
    hemorrhage"), value SCT 52101004 "Present" or SCT 272519000 "Absent";
  - a numeric measurement DCM 122157 "Probability", UCUM unit "1" (no units), in [0, 1].

The SR copies the patient and study modules of its sources (same (0020,000D) Study
Instance UID), starts a new series, and lists every source instance in the
(0040,A375) Current Requested Procedure Evidence Sequence. See :mod:`dicomml.report.codes`
for the coding.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from pydicom.dataset import Dataset
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from dicomml.errors import ConfigError, MissingAttributeError
from dicomml.report import codes as C

__all__ = ["AlgorithmInfo", "SRContent", "build_sr", "write_sr", "read_sr"]

@dataclass(frozen=True)
class AlgorithmInfo:
    """TID 4019 Algorithm Identification.

    Attributes
    ----------
    name : str
        (DCM 111001) Algorithm Name, e.g. the model name ``"reference_cnn"``.
    version : str
        (DCM 111003) Algorithm Version, e.g. ``"dicomml 0.1.0 config 1a2b3c4d"``.
    parameters : tuple of str
        (DCM 111002) Algorithm Parameters, e.g. ``("threshold=0.42", "aggregation=max")``.
    manufacturer : str
        (DCM 122405) Algorithm Manufacturer and the SR's (0008,0070) Manufacturer.
    """

    name: str
    version: str
    parameters: tuple[str, ...] = ()
    manufacturer: str = "dicomml"

    @property
    def device_uid(self) -> str:
        """Device Observer UID (DCM 121012): a UID derived from name and version."""
        return generate_uid(entropy_srcs=["dicomml-algorithm", self.name, self.version])


@dataclass(frozen=True)
class SRContent:
    """What :func:`read_sr` finds in a dicomml SR."""

    finding: Code
    present: bool
    probability: float
    algorithm: AlgorithmInfo
    #: (SOP Class UID, SOP Instance UID) of every referenced source, as in the evidence.
    references: tuple[tuple[str, str], ...]
    #: (SOP Class UID, SOP Instance UID) of the source images of the measurement group.
    source_images: tuple[tuple[str, str], ...]
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    extra: dict = field(default_factory=dict)


def _prepared_sources(sources: Sequence[Dataset], where: str = "",
                      notes: list | None = None) -> list[Dataset]:
    """Clean views of the sources (:func:`dicomml.report.sources.source_views`), one study."""
    from dicomml.report.sources import source_views

    if not sources:
        raise ConfigError("an SR needs at least one source instance. Received: sources=[]")
    for i, ds in enumerate(sources):
        for kw, tag in (("StudyInstanceUID", "(0020,000D)"), ("SOPInstanceUID", "(0008,0018)"),
                        ("SOPClassUID", "(0008,0016)")):
            if not ds.get(kw):
                name = where or ds.get("SOPInstanceUID") or f"source #{i}"
                raise MissingAttributeError(
                    f"{name}: {kw} {tag} is missing; an SR can only reference "
                    "complete DICOM instances")
    study = sources[0].StudyInstanceUID
    for ds in sources:
        if ds.StudyInstanceUID != study:
            raise ConfigError(
                f"source {ds.SOPInstanceUID} belongs to another study ({ds.StudyInstanceUID} "
                f"!= {study}); build one SR per study")
    views, found = source_views(sources, where=where)
    if notes is not None:
        notes.extend(found)
    return views


def build_sr(sources: Sequence[Dataset], *, finding: str | Code, probability: float,
             present: bool, algorithm: AlgorithmInfo, finding_site: Code | None = None,
             series_instance_uid: str | None = None,
             sop_instance_uid: str | None = None, series_number: int = 9001,
             instance_number: int = 1, series_description: str = "dicomml AI result",
             content_datetime: _dt.datetime | None = None, where: str = "",
             notes: list | None = None, predecessors: Sequence[Dataset] | None = None):
    """Build the Comprehensive 3D SR of one study's result.

    Parameters
    ----------
    sources : sequence of pydicom.dataset.Dataset
        Every source instance the result was computed from (headers are enough; they are
        not modified). All must share one (0020,000D) Study Instance UID.
    finding : str or pydicom.sr.coding.Code
        The finding (the model's positive class), coded by
        :func:`dicomml.report.codes.finding_code`.
    probability : float
        The model's probability of the finding, in [0, 1].
    present : bool
        The decision at the operating threshold (SCT "Present" / "Absent").
    algorithm : AlgorithmInfo
    finding_site : pydicom.sr.coding.Code, optional
        TID 1501 (363698007, SCT, "Finding Site") of the measurement group, e.g. SCT
        39607008 "Lung" (``[report] finding_site``).
    series_instance_uid, sop_instance_uid : str, optional
        New UIDs are generated when omitted.
    series_number, instance_number : int
        (0020,0011) Series Number and (0020,0013) Instance Number of the SR.
    series_description : str
        (0008,103E) Series Description.
    content_datetime : datetime, optional
        (0008,0023) Content Date and (0008,0033) Content Time; now by default.
    where : str
        How error messages and notes name the study (a pseudonymous key, never a name).
    notes : list, optional
        Receives one line per source attribute that was malformed and left out of the SR
        (tolerate on read, validate on write: :mod:`dicomml.report.sources`).
    predecessors : sequence of pydicom.dataset.Dataset, optional
        Earlier versions of this result that this SR replaces (each with Study, Series
        and SOP Instance UID and SOP Class UID): (0040,A360) Predecessor Documents
        Sequence, PS3.3 C.17.2.3.

    Returns
    -------
    highdicom.sr.Comprehensive3DSR
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    p = float(probability)
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"probability must be in [0, 1]. Received: probability={probability}")
    srcs = _prepared_sources(sources, where, notes)
    fcode = C.finding_code(finding)
    when = content_datetime or _dt.datetime.now()

    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=algorithm.device_uid, name=algorithm.name[:64],
            manufacturer_name=algorithm.manufacturer[:64], model_name=algorithm.name[:64]))
    algo = hd.sr.AlgorithmIdentification(
        name=algorithm.name, version=algorithm.version,
        parameters=list(algorithm.parameters) or None, manufacturer=algorithm.manufacturer)
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=generate_uid(), identifier=f"{algorithm.name} result"[:64]),
        finding_type=fcode,
        algorithm_id=algo,
        finding_sites=[hd.sr.FindingSite(finding_site)] if finding_site is not None else None,
        measurements=[hd.sr.Measurement(name=C.PROBABILITY, value=p, unit=C.PROBABILITY_UNIT,
                                        algorithm_id=algo)],
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(
            name=fcode, value=C.PRESENT if present else C.ABSENT)],
        source_images=[hd.sr.SourceImageForMeasurementGroup(
            referenced_sop_class_uid=ds.SOPClassUID,
            referenced_sop_instance_uid=ds.SOPInstanceUID) for ds in srcs],
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=C.procedure_code(sources[0].get("Modality")),
        imaging_measurements=[group],
        referenced_images=srcs,
    )
    from dicomml import __version__

    return hd.sr.Comprehensive3DSR(
        evidence=srcs,
        content=report[0],
        series_instance_uid=series_instance_uid or generate_uid(),
        series_number=series_number,
        sop_instance_uid=sop_instance_uid or generate_uid(),
        instance_number=instance_number,
        manufacturer=algorithm.manufacturer,
        series_description=series_description[:64],
        manufacturer_model_name="dicomml",
        software_versions=f"dicomml {__version__}",
        coding_schemes=C.coding_scheme_items([fcode]),
        content_date=when.date(),
        content_time=when.time().replace(microsecond=0),
        series_date=when.date(),
        series_time=when.time().replace(microsecond=0),
        previous_versions=list(predecessors) if predecessors else None,
    )


def write_sr(sr: Dataset, path: str | os.PathLike) -> Path:
    """Write an SR (or any dataset) to ``path`` atomically, as a DICOM Part 10 file."""
    from io import BytesIO

    from dicomml._atomic import atomic_write_bytes

    buf = BytesIO()
    sr.save_as(buf, enforce_file_format=True)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def _concept_eq(item_code, code: Code) -> bool:
    return (item_code.value == code.value
            and item_code.scheme_designator == code.scheme_designator)


def read_sr(path: str | os.PathLike) -> SRContent:
    """Read back a dicomml SR: finding, decision, probability, algorithm and references.

    Raises
    ------
    dicomml.errors.InvalidDicomError
        When the file is not a TID 1500 report with one measurement group holding a
        qualitative evaluation and a probability.
    """
    import highdicom as hd

    from dicomml.errors import InvalidDicomError

    sr = hd.sr.srread(path)
    groups = sr.content.get_image_measurement_groups()
    if not groups:
        raise InvalidDicomError(f"{path}: no TID 1501 measurement group in the SR content")
    g = groups[0]
    evals = g.get_qualitative_evaluations()
    meas = [m for m in g.get_measurements() if _concept_eq(m.name, C.PROBABILITY)]
    if not evals or not meas:
        raise InvalidDicomError(f"{path}: the measurement group has no qualitative evaluation "
                                "or no DCM 122157 Probability measurement")
    ev = evals[0]
    finding = Code(ev.name.value, ev.name.scheme_designator, ev.name.meaning)
    present = _concept_eq(ev.value, C.PRESENT)
    values: dict[str, list[str]] = {}
    for item in g[0].ContentSequence:
        cn = item.ConceptNameCodeSequence[0]
        if cn.CodingSchemeDesignator == "DCM" and item.ValueType == "TEXT":
            values.setdefault(str(cn.CodeValue), []).append(str(item.TextValue))
    if "111001" not in values or "111003" not in values:
        raise InvalidDicomError(f"{path}: no TID 4019 Algorithm Identification (DCM 111001 "
                                "Algorithm Name, DCM 111003 Algorithm Version)")
    algorithm = AlgorithmInfo(name=values["111001"][0], version=values["111003"][0],
                              parameters=tuple(values.get("111002", ())),
                              manufacturer=values.get("122405", ["dicomml"])[0])
    refs = []
    for study in sr.get("CurrentRequestedProcedureEvidenceSequence", []):
        for series in study.ReferencedSeriesSequence:
            for inst in series.ReferencedSOPSequence:
                refs.append((str(inst.ReferencedSOPClassUID),
                             str(inst.ReferencedSOPInstanceUID)))
    sources = tuple((str(s.referenced_sop_class_uid), str(s.referenced_sop_instance_uid))
                    for s in g.source_images)
    return SRContent(finding=finding, present=present,
                     probability=float(meas[0].value), algorithm=algorithm,
                     references=tuple(refs), source_images=sources,
                     study_instance_uid=str(sr.StudyInstanceUID),
                     series_instance_uid=str(sr.SeriesInstanceUID),
                     sop_instance_uid=str(sr.SOPInstanceUID))
