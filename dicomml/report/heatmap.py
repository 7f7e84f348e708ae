"""Grad-CAM heatmaps a viewer overlays, as DICOM objects on the source image's geometry.

The heatmap arrives already on the source's rows and columns
(:func:`dicomml.evaluate.heatmaps.to_source_grid`, the transpose of the run's resize).
Two objects are written per heatmap:

* a **Parametric Map** (PS3.3 A.75, highdicom ``ParametricMap``): float32 heat in [0, 1]
  on the source frame's geometry ((0028,9110) Pixel Measures, (0020,9116) Plane
  Orientation, (0020,9113) Plane Position from the source, in its Frame of Reference),
  a Real World Value Map (unit "1", no units), referencing the source instance (and frame):
  a viewer overlays it on the source like any other map. Written when the source has plane
  geometry (see :func:`dicomml.report.sources.geometry`);
* a **Secondary Capture** (PS3.3 A.8.1) for viewers without map support: the source frame
  at its own resolution as displayed with a window
  (:func:`dicomml.evaluate.heatmaps.display_frame`), the heat blended over it
  (:func:`dicomml.report.overlay.heatmap_overlay`), a colour bar (0 to 1) on the right and
  a burned-in "NOT FOR DIAGNOSTIC USE" label below, hence (0028,0301) Burned In Annotation
  YES and (0028,0030) Pixel Spacing of the source.

No TensorFlow here: the heatmap comes from :func:`dicomml.evaluate.grad_cam.gradcam`.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid


__all__ = ["heatmap_sc_pixels", "build_heatmap_sc", "build_heatmap_pm", "LABEL"]

LABEL = "NOT FOR DIAGNOSTIC USE"
_BAR = 12       # colour bar width (pixels)
_BANNER = 14    # label banner height (pixels)


def _text(canvas: np.ndarray, text: str, x: int, y: int) -> None:
    from PIL import Image as PILImage
    from PIL import ImageDraw

    im = PILImage.fromarray(canvas)
    ImageDraw.Draw(im).text((x, y), text, fill=(255, 255, 255))
    canvas[...] = np.asarray(im)


def _text_width(text: str) -> int:
    from PIL import ImageDraw, ImageFont
    from PIL import Image as PILImage

    draw = ImageDraw.Draw(PILImage.new("RGB", (1, 1)))
    box = draw.textbbox((0, 0), text, font=ImageFont.load_default())
    return int(box[2] - box[0]) + 4


def heatmap_sc_pixels(gray: np.ndarray, heat: np.ndarray, *, alpha: float = 0.4,
                      label: str = LABEL) -> np.ndarray:
    """The Secondary Capture picture: the overlay at source size, colour bar, label.

    ``gray`` and ``heat`` are (rows, columns) in [0, 1]. Returns ``uint8`` (rows + banner,
    max(columns + bar, label width), 3): the source pixels keep their positions (top-left).
    """
    from matplotlib import colormaps

    from dicomml.report.overlay import heatmap_overlay

    rows, cols = gray.shape
    over = heatmap_overlay(gray, heat, alpha=alpha, display_range=(0.0, 1.0))
    width = max(cols + _BAR + 2, _text_width(label))
    canvas = np.zeros((rows + _BANNER, width, 3), np.uint8)
    canvas[:rows, :cols] = over
    ramp = np.linspace(1.0, 0.0, rows)[:, None].repeat(_BAR, axis=1)
    canvas[:rows, cols + 2:cols + 2 + _BAR] = np.round(
        colormaps["jet"](ramp)[..., :3] * 255).astype(np.uint8)
    _text(canvas, label, 2, rows + 1)
    return canvas


def _view(source: Dataset, frame: int, where: str):
    from dicomml.report.sources import geometry, source_view

    view = source_view(source, frame=frame, where=where)
    return view.dataset, geometry(source, frame), list(view.notes)


def build_heatmap_sc(source: Dataset, gray: np.ndarray, heat_src: np.ndarray, *,
                     display: str = "", frame: int = 0, where: str = "",
                     forced: bool = False, **uids):
    """The Secondary Capture (module docstring) of a heatmap already on the source grid;
    ``uids``: ``series_instance_uid`` / ``sop_instance_uid`` (new ones by default).

    ``gray`` is the source frame displayed in [0, 1] (``display`` says how, e.g. "source
    window 40/80"), ``heat_src`` the heat in [0, 1], both (rows, columns).
    """
    from dicomml.report.sc import build_heatmap_sc as _sc

    ref, geo, _notes = _view(source, frame, where)
    how = display or "its display"
    label = LABEL + (" - FORCED" if forced else "")
    pixels = heatmap_sc_pixels(gray, heat_src, label=label)
    n_frames = int(source.get("NumberOfFrames", 1) or 1)
    for kw in ("ImageOrientationPatient", "PatientOrientation"):
        if kw not in ref and kw in geo:
            setattr(ref, kw, geo[kw])
    from dicomml.report.sc import patient_orientation

    orientation = patient_orientation(ref)
    # highdicom accepts one letter per direction; real files (and PS3.3 C.7.6.1.1.1) also
    # combine them, e.g. L\PF: build with the main letters, then write the real values
    ref.PatientOrientation = [v[:1] for v in orientation]
    sc = _sc(ref, pixels, frame_numbers=[frame + 1] if n_frames > 1 else None,
             derivation=(f"Grad-CAM heatmap (0..1, jet colour bar at the right) over the "
                         f"source frame {frame + 1} at its own resolution, {how}; "
                         f"{label.lower()}"), **uids)
    sc.PatientOrientation = list(orientation)
    sc.BurnedInAnnotation = "YES"
    if "PixelSpacing" in geo:
        sc.PixelSpacing = [f"{v:.6g}" for v in geo["PixelSpacing"]]
    return sc


def build_heatmap_pm(source: Dataset, heat_src: np.ndarray, *, frame: int = 0,
                     where: str = "", forced: bool = False,
                     series_instance_uid: str | None = None,
                     sop_instance_uid: str | None = None, instance_number: int = 1):
    """The Parametric Map (module docstring); None when the source has no plane geometry.
    New Series and SOP Instance UIDs unless given."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from dicomml import __version__

    ref, geo, _notes = _view(source, frame, where)
    if not all(k in geo for k in ("PixelSpacing", "ImageOrientationPatient",
                                  "ImagePositionPatient")) or "FrameOfReferenceUID" not in ref:
        return None
    thickness = geo.get("SliceThickness")
    measures = hd.PixelMeasuresSequence(pixel_spacing=geo["PixelSpacing"],
                                        slice_thickness=thickness if thickness else None)
    orientation = hd.PlaneOrientationSequence(coordinate_system="PATIENT",
                                              image_orientation=geo["ImageOrientationPatient"])
    position = hd.PlanePositionSequence(coordinate_system="PATIENT",
                                        image_position=geo["ImagePositionPatient"])
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="GRADCAM", lut_explanation="Grad-CAM class activation (0..1)",
        unit=codes.UCUM.NoUnits if hasattr(codes.UCUM, "NoUnits") else
        hd.sr.CodedConcept("1", "UCUM", "no units"),
        value_range=(0.0, 1.0), slope=1.0, intercept=0.0)
    src = Dataset()
    src.update(ref)
    n_frames = int(source.get("NumberOfFrames", 1) or 1)
    groups = ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence")
    if n_frames > 1 or any(g in source for g in groups):  # enhanced: keep its frame layout
        src.NumberOfFrames = n_frames
        for g in groups:
            if g in source:
                src[g] = source[g]
    else:
        src.NumberOfFrames = 1
        for k, v in geo.items():  # also when incomplete for the SR's image library
            setattr(src, k, v)
        if "SliceThickness" not in src:
            src.SliceThickness = None  # Type 2: unknown
    pm = hd.pm.ParametricMap(
        source_images=[src], pixel_array=np.asarray(heat_src, np.float32)[None],
        series_instance_uid=series_instance_uid or generate_uid(), series_number=9003,
        sop_instance_uid=sop_instance_uid or generate_uid(), instance_number=instance_number,
        manufacturer="dicomml",
        manufacturer_model_name="dicomml", software_versions=f"dicomml {__version__}",
        device_serial_number="none", contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=0.5, window_width=1.0)],
        pixel_measures=measures, plane_orientation=orientation, plane_positions=[position],
        content_label="GRADCAM",
        content_description=("Grad-CAM, not for diagnostic use"
                             + (", FORCED outside input contract" if forced else "")),
        series_description="dicomml Grad-CAM map")
    # (0020,0060) Laterality is Type 2C in the General Series module: copy or send empty.
    pm.Laterality = source.get("Laterality") or None
    ref_item = Dataset()
    ref_item.ReferencedSOPClassUID = source.SOPClassUID
    ref_item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    if int(source.get("NumberOfFrames", 1) or 1) > 1:
        ref_item.ReferencedFrameNumber = frame + 1
    pm.ReferencedImageSequence = [ref_item]
    return pm
