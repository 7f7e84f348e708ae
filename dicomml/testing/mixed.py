"""A mixed PACS export for testing a head-CT model's input contract.

:func:`write_mixed_export` writes, for four patients, the objects a real export mixes with
the head CT a model was trained on: a chest CT, an MR, a CR in MONOCHROME1, a colour
ultrasound, a Secondary Capture labelled CT, a Segmentation, a localizer, a 3-D rendering, an
SR, head CTs of another matrix or pixel size, and a series entirely above the head (every
pixel air, so the run's windows map it to a constant). Each series is listed in
:attr:`MixedExport.series` with the contract rule (:data:`dicomml.data.contract.RULES`) it
is expected to fail for a model trained on :func:`dicomml.testing.write_head_ct_task` data
of the same matrix, or ``""`` when it is eligible (``"constant"``: eligible by its headers,
but every image is skipped by predict).

Same seed, same bytes (highdicom's time stamps are replaced by the study's).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from ._common import MANUFACTURER, base_dataset, write_dataset
from .ct import DEFAULT_FOV, write_ct_series
from .nonimage import write_sr
from .other import write_mr_series, write_radiograph, write_secondary_capture
from .people import as_rng, make_patient, make_study, uid_from

__all__ = ["MixedExport", "MixedSeries", "write_mixed_export", "write_us_colour",
           "write_segmentation"]

US_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"


@dataclass(frozen=True)
class MixedSeries:
    """One series of the export: ``name``, the ``rule`` it fails ("" eligible), files."""

    name: str
    rule: str
    study_instance_uid: str
    series_instance_uid: str
    paths: tuple[Path, ...]


@dataclass
class MixedExport:
    """What :func:`write_mixed_export` wrote under ``root``."""

    root: Path
    series: list[MixedSeries] = field(default_factory=list)

    def by_name(self, name: str) -> MixedSeries:
        return next(s for s in self.series if s.name == name)

    @property
    def eligible_studies(self) -> set[str]:
        """Studies with at least one series that gets a prediction."""
        return {s.study_instance_uid for s in self.series if s.rule == ""}


def _rewrite(paths, **attrs) -> None:
    """Set attributes of our own freshly written files (never a source file)."""
    for p in paths:
        ds = pydicom.dcmread(p)
        for k, v in attrs.items():
            setattr(ds, k, v)
        write_dataset(p, ds, ds.file_meta.TransferSyntaxUID)


def _series(name, rule, paths) -> MixedSeries:
    ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
    return MixedSeries(name, rule, str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID),
                       tuple(Path(p) for p in paths))


def write_us_colour(out_path, *, seed=0, rows: int = 120, columns: int = 160, patient=None,
                    study=None, series_number: int = 7) -> Path:
    """An RGB ultrasound image (US Image Storage, PS3.3 A.6): a grey sector, a colour jet."""
    rng = as_rng(seed)
    patient = patient or make_patient(rng)
    study = study or make_study(rng)
    ds = base_dataset(sop_class=US_IMAGE_STORAGE, sop_instance=uid_from(rng, "us"),
                      modality="US", patient=patient, study=study,
                      series_uid=uid_from(rng, "us-series"), series_number=series_number,
                      series_description="SYN US DOPPLER", instance_number=1)
    yy, xx = np.mgrid[:rows, :columns]
    r = np.hypot(yy, xx - columns / 2)
    speckle = rng.gamma(2.0, 40.0, (rows, columns)) * (r < rows * 0.95)
    grey = np.clip(speckle, 0, 255)
    jet = np.exp(-(((xx - columns * 0.55) / 12) ** 2 + ((yy - rows * 0.5) / 9) ** 2))
    rgb = np.stack([grey * (1 - jet) + 255 * jet, grey * (1 - jet), grey * (1 - jet)], -1)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL", "0001"]
    ds.PatientOrientation = ""
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = np.clip(np.rint(rgb), 0, 255).astype(np.uint8).tobytes()
    return write_dataset(Path(out_path), ds)


def write_segmentation(out_path, source_paths, *, seed=0, series_number: int = 80) -> Path:
    """A binary Segmentation (PS3.3 A.51, highdicom) of the brain of CT ``source_paths``."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    rng = as_rng(seed)
    sources = [pydicom.dcmread(p) for p in source_paths]
    sources.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    hu = np.stack([d.pixel_array.astype(np.float32) * float(d.RescaleSlope)
                   + float(d.RescaleIntercept) for d in sources])
    mask = ((hu > 15) & (hu < 60)).astype(np.uint8)
    desc = hd.seg.SegmentDescription(
        segment_number=1, segment_label="brain", segmented_property_category=codes.SCT.Organ,
        segmented_property_type=codes.SCT.Brain,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=mask, segmentation_type="BINARY",
        segment_descriptions=[desc], series_instance_uid=uid_from(rng, "seg-series"),
        series_number=series_number, sop_instance_uid=uid_from(rng, "seg"),
        instance_number=1, manufacturer=MANUFACTURER, manufacturer_model_name="dicomml",
        software_versions="1", device_serial_number="0001", omit_empty_frames=False)
    ref = sources[0]
    for tag in ("ContentDate", "SeriesDate", "InstanceCreationDate"):
        if tag in seg:
            setattr(seg, tag, ref.StudyDate)
    for tag in ("ContentTime", "SeriesTime", "InstanceCreationTime"):
        if tag in seg:
            setattr(seg, tag, ref.StudyTime)
    ds = Dataset()
    ds.update(seg)
    return write_dataset(Path(out_path), ds)


def write_mixed_export(out_dir: str | os.PathLike, *, seed: int = 0, rows: int = 64,
                       n_slices: int = 3) -> MixedExport:
    """Write the mixed export (module docstring) into ``out_dir``; return its listing.

    ``rows`` is the head CTs' matrix (their pixel spacing: 240 mm / ``rows``, as in
    :func:`~dicomml.testing.write_head_ct_task`): give the matrix of the run's training data.
    """
    rng = as_rng(seed)
    root = Path(out_dir)
    out = MixedExport(root)
    ps = DEFAULT_FOV["head"] / rows
    a, b, c, d = (make_patient(rng) for _ in range(4))
    head1, head2, chest, mr = (make_study(rng, desc) for desc in (
        "CT HEAD WO CONTRAST", "CT HEAD FOLLOW-UP", "CT CHEST", "MR BRAIN"))

    def ct(name, rule, patient, study, number, **kw):
        kw = {"n_slices": n_slices, "rows": rows, "columns": rows, "pixel_spacing": ps,
              "body": "head", "spacing": 5.0, **kw}
        paths = write_ct_series(root / name, seed=rng, patient=patient, study=study,
                                series_number=number, **kw)
        return paths

    head = ct("head_ct", "", a, head1, 2)
    out.series.append(_series("head_ct", "", head))
    loc = ct("localizer", "image_type", a, head1, 1, n_slices=1)
    _rewrite(loc, ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])
    out.series.append(_series("localizer", "image_type", loc))
    vr = ct("rendering_3d", "image_type", a, head1, 50, n_slices=1)
    _rewrite(vr, ImageType=["DERIVED", "SECONDARY", "VOLUME"])
    out.series.append(_series("rendering_3d", "image_type", vr))
    mono1 = ct("ct_monochrome1", "photometric", a, head1, 51, n_slices=1)
    _rewrite(mono1, PhotometricInterpretation="MONOCHROME1")
    out.series.append(_series("ct_monochrome1", "photometric", mono1))
    shifted = ct("ct_out_of_window", "value_range", a, head1, 52, n_slices=1)
    _rewrite(shifted, RescaleIntercept=3000)
    out.series.append(_series("ct_out_of_window", "value_range", shifted))
    sc = write_secondary_capture(root / "sc" / "SC0001", seed=rng, rows=rows, columns=rows,
                                 patient=a, study=head1)
    _rewrite([sc], Modality="CT", BodyPartExamined="HEAD")
    out.series.append(_series("secondary_capture", "sop_class", [sc]))
    seg = write_segmentation(root / "seg" / "SEG0001", head, seed=rng)
    out.series.append(_series("segmentation", "modality", [seg]))
    refs = [pydicom.dcmread(p, stop_before_pixels=True) for p in head]
    sr = write_sr(root / "sr" / "SR0001", refs, seed=rng, finding="normal")
    out.series.append(_series("structured_report", "image", [sr]))

    big = ct("head_ct_256", "matrix", d, head2, 2, rows=256, columns=256,
             pixel_spacing=ps, n_slices=1)
    out.series.append(_series("head_ct_256", "matrix", big))
    fine = ct("head_ct_fine", "pixel_spacing", d, head2, 3, pixel_spacing=ps / 8, n_slices=1)
    out.series.append(_series("head_ct_fine", "pixel_spacing", fine))
    air = ct("above_head", "constant", d, head2, 4, z_center=400.0, n_slices=2)
    out.series.append(_series("above_head", "constant", air))

    ch = write_ct_series(root / "chest_ct", seed=rng, n_slices=2, rows=rows, columns=rows,
                         pixel_spacing=ps, body="chest", patient=b, study=chest,
                         series_number=2)
    out.series.append(_series("chest_ct", "body_part", ch))
    cr = write_radiograph(root / "cr" / "CR0001", seed=rng, rows=rows * 2, columns=rows * 2,
                          monochrome1=True, patient=b, study=chest, series_number=3)
    out.series.append(_series("cr_monochrome1", "modality", [cr]))

    m = write_mr_series(root / "mr", seed=rng, n_slices=2, rows=rows, columns=rows,
                        patient=c, study=mr, series_number=2)
    out.series.append(_series("mr", "modality", m))
    us = write_us_colour(root / "us" / "US0001", seed=rng, patient=c, study=mr)
    out.series.append(_series("us_colour", "modality", [us]))
    return out
