"""Shared pieces of the synthetic writers: base modules, file naming and writing."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian,
    JPEG2000Lossless, JPEGLSLossless, RLELossless,
)

from dicomml._atomic import atomic_write, atomic_write_bytes, atomic_write_text
from dicomml.errors import ConfigError

from .people import Patient, Study

__all__ = ["base_dataset", "write_dataset", "name_files", "set_pixels", "COMPRESSED",
           "UNCOMPRESSED", "MANUFACTURER", "write_labels_csv", "write_lesion_truth"]

MANUFACTURER = "DICOMML SYNTHETIC"
UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
#: Lossless transfer syntaxes the generators can encode (with the installed plugins).
COMPRESSED = (RLELossless, JPEG2000Lossless, JPEGLSLossless)


def check_transfer_syntax(ts) -> UID:
    ts = UID(str(ts))
    if ts not in UNCOMPRESSED + COMPRESSED:
        names = ", ".join(u.name for u in UNCOMPRESSED + COMPRESSED)
        raise ConfigError(f"the synthetic writers cannot encode transfer syntax {ts} "
                          f"({ts.name}); use one of: {names}. Received: transfer_syntax={ts!r}")
    return ts


def base_dataset(*, sop_class: str, sop_instance: str, modality: str, patient: Patient,
                 study: Study, series_uid: str, series_number: int, series_description: str,
                 instance_number: int, content_time: str | None = None,
                 frame_of_reference: str | None = None, body_part: str | None = None
                 ) -> Dataset:
    """SOP Common, Patient, General Study, General Series, General Equipment modules."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance
    ds.InstanceCreationDate = study.study_date
    ds.InstanceCreationTime = study.study_time
    patient.apply(ds)
    study.apply(ds)
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description
    ds.SeriesDate = study.study_date
    ds.SeriesTime = study.study_time
    ds.Manufacturer = MANUFACTURER
    ds.InstitutionName = "SYNTHETIC HOSPITAL"
    ds.StationName = "SYNTH01"
    ds.ManufacturerModelName = "dicomml.testing"
    ds.DeviceSerialNumber = "0001"
    ds.SoftwareVersions = "1"
    ds.InstanceNumber = instance_number
    ds.ContentDate = study.study_date
    ds.ContentTime = content_time or study.study_time
    if frame_of_reference is not None:
        ds.FrameOfReferenceUID = frame_of_reference
        ds.PositionReferenceIndicator = ""
    if body_part is not None:
        ds.BodyPartExamined = body_part
    return ds


def set_pixels(ds: Dataset, arr: np.ndarray, *, bits_stored: int, signed: bool) -> None:
    """Image Pixel module (PS3.3 C.7.6.3) for a monochrome 16-bit array."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = ds.get("PhotometricInterpretation", "MONOCHROME2")
    ds.Rows, ds.Columns = int(arr.shape[-2]), int(arr.shape[-1])
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    arr = np.ascontiguousarray(arr.astype("<i2" if signed else "<u2"))
    ds.PixelData = arr.tobytes()


def encode(ds: Dataset, ts: UID) -> None:
    """Set the file meta and encode ``ds`` into ``ts`` (in place; ``ds`` is our own)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian if ts in COMPRESSED else ts
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "DICOMML_SYN_1"
    ds.file_meta = meta
    if "PixelData" in ds:
        # Pixel Data is OW in explicit VR little endian.
        ds["PixelData"].VR = "OW" if ds.BitsAllocated > 8 else "OB"
    if ts in COMPRESSED:
        ds.compress(ts, generate_instance_uid=False)


def to_bytes(ds: Dataset, ts=ExplicitVRLittleEndian) -> bytes:
    """The DICOM file bytes of ``ds`` encoded with ``ts`` (Part 10 format)."""
    encode(ds, check_transfer_syntax(ts))
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def write_dataset(path: str | os.PathLike, ds: Dataset, ts=ExplicitVRLittleEndian) -> Path:
    """Encode ``ds`` with transfer syntax ``ts`` and write it atomically to ``path``."""
    data = to_bytes(ds, ts)
    path = Path(path)
    atomic_write_bytes(path, data)
    return path


def name_files(n: int, rng: np.random.Generator, *, shuffle: bool,
               pattern: str | None, uids: list[str]) -> list[str]:
    """File names of ``n`` instances (in instance order).

    ``pattern`` like ``"IM%04d"`` numbers the files from 1 (no extension); with ``shuffle``
    the numbers are permuted so that names do not follow the slice order. ``None`` names
    each file ``<SOPInstanceUID>.dcm``.
    """
    if pattern is None:
        return [f"{u}.dcm" for u in uids]
    numbers = np.arange(1, n + 1)
    if shuffle:
        numbers = rng.permutation(numbers)
    try:
        return [pattern % int(k) for k in numbers]
    except (TypeError, ValueError) as e:
        raise ConfigError(f"file_names pattern must contain one integer field such as "
                          f"'IM%04d'. Received: file_names={pattern!r}") from e


def draw_labels(n_patients: int, positive_fraction: float, seed):
    """The random generator of a learning task and which of its patients are positive.

    ``positive_fraction`` (in [0, 1], else ConfigError) of ``n_patients``, rounded, in a
    shuffled order; ``seed`` an int or a Generator (one int is drawn from it), so a task is
    reproducible from its seed. Returns ``(rng, is_positive)``.
    """
    from .people import as_rng

    if not 0.0 <= positive_fraction <= 1.0:
        raise ConfigError("positive_fraction must be in [0, 1]. "
                          f"Received: positive_fraction={positive_fraction}")
    if isinstance(seed, np.random.Generator):
        seed = int(seed.integers(2 ** 63))
    rng = as_rng(seed)
    n_pos = int(round(n_patients * positive_fraction))
    return rng, rng.permutation(np.r_[np.ones(n_pos, bool), np.zeros(n_patients - n_pos, bool)])


def write_labels_csv(path: str | os.PathLike, key: str, rows) -> Path:
    """``key,label`` rows (sorted) into the CSV ``path``, atomically."""
    import csv

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([key, "label"])
    w.writerows(sorted(rows))
    atomic_write_text(path, buf.getvalue())
    return Path(path)


def write_lesion_truth(out_dir: str | os.PathLike, slice_rows, masks: dict) -> None:
    """The ground truth of a learning task's lesions: ``slice_labels.csv``
    (``SOPInstanceUID,label``) and ``masks.npz`` (SOP Instance UID → bool lesion mask of
    each slice that cuts a lesion; read with :func:`dicomml.testing.read_task_masks`)."""
    out_dir = Path(out_dir)
    write_labels_csv(out_dir / "slice_labels.csv", "SOPInstanceUID", slice_rows)
    with atomic_write(out_dir / "masks.npz") as f:
        np.savez_compressed(f, **masks)
