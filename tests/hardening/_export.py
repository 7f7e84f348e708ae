"""A fast generator of many small DICOM files (interruption, privacy tests and bench_load).

One template file is written with pydicom (CT Image Storage, 64×64 uint16 or smaller,
Explicit VR Little Endian); every further file is that template with its fixed-length UIDs
and Instance Number replaced byte for byte, so thousands of valid, distinct files are
written in a second. Broken files (truncated, not DICOM, empty) are mixed in on request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_UID_LEN = 40  # every placeholder UID has this many characters (even: no padding byte)
ROOT = "1.2.826.0.1.3680043.8.498."  # the pydicom UID root, as dicomml.testing uses


def _uid(kind: int, a: int, b: int = 0) -> str:
    s = f"{ROOT}{kind}.{a}.{b}."
    return s + "9" * (_UID_LEN - len(s))


@dataclass(frozen=True)
class Identity:
    """Distinctive patient identifiers written into every file (for the privacy test)."""

    name: str = "Zqxname^Wvyperson"
    patient_id: str = "PIDZQX4711"
    birth_date: str = "19230517"
    accession: str = "ACCZQX0815"

    def values(self) -> list[str]:
        return [self.name, self.name.replace("^", " "), self.patient_id, self.birth_date,
                self.accession]


def template(rows: int = 64, columns: int = 64, identity: Identity = Identity()) -> bytes:
    """The bytes of the template file (placeholder UIDs, Instance Number 000001)."""
    import io

    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    rng = np.random.default_rng(0)
    ds = Dataset()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = _uid(3, 0)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = ROOT + "1"
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = _uid(3, 0)
    ds.StudyInstanceUID = _uid(1, 0)
    ds.SeriesInstanceUID = _uid(2, 0)
    ds.FrameOfReferenceUID = _uid(4, 0)
    ds.PatientName = identity.name
    ds.PatientID = identity.patient_id
    ds.PatientBirthDate = identity.birth_date
    ds.AccessionNumber = identity.accession
    ds.Modality = "CT"
    ds.StudyDate = "20240101"
    ds.SeriesNumber = 1
    ds.InstanceNumber = "000001"
    ds.ImagePositionPatient = [0, 0, 0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.5, 0.5]
    ds.SliceThickness = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.PixelData = rng.integers(0, 4096, (rows, columns), dtype=np.uint16).tobytes()
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def instance_bytes(tpl: bytes, i: int, per_series: int = 100,
                   series_per_study: int = 2) -> bytes:
    """File ``i``: its own SOP Instance UID, the series ``i // per_series``, the study of that
    series, Instance Number and z position within the series."""
    s = i // per_series
    st = s // series_per_study
    k = i % per_series
    out = tpl.replace(_uid(3, 0).encode(), _uid(3, i).encode())
    out = out.replace(_uid(2, 0).encode(), _uid(2, s).encode())
    out = out.replace(_uid(1, 0).encode(), _uid(1, st).encode())
    out = out.replace(_uid(4, 0).encode(), _uid(4, st).encode())
    out = out.replace(b"000001", f"{k + 1:06d}".encode(), 1)
    return out


def write_export(folder, n: int, *, broken_every: int = 0, tpl: bytes | None = None,
                 per_dir: int = 500) -> dict:
    """Write ``n`` files under ``folder`` (``d0000/f000000.dcm``...); with ``broken_every``
    every k-th file is broken in turn: truncated, not DICOM, empty. Returns counts."""
    folder = Path(folder)
    tpl = template() if tpl is None else tpl
    counts = {"valid": 0, "truncated": 0, "not_dicom": 0, "empty": 0}
    kinds = ["truncated", "not_dicom", "empty"]
    for i in range(n):
        d = folder / f"d{i // per_dir:04d}"
        if i % per_dir == 0:
            d.mkdir(parents=True, exist_ok=True)
        data = instance_bytes(tpl, i)
        kind = "valid"
        if broken_every and i % broken_every == broken_every - 1:
            kind = kinds[(i // broken_every) % 3]
            data = {"truncated": data[:len(data) // 2], "not_dicom": b"GIF89a" + bytes(200),
                    "empty": b""}[kind]
        counts[kind] += 1
        with open(d / f"f{i:06d}.dcm", "wb") as f:
            f.write(data)
    return counts


def tree_snapshot(folder) -> dict[str, tuple[int, int]]:
    """``{relative path: (size, mtime_ns)}`` of every file (to prove nothing was written)."""
    out = {}
    for root, _dirs, files in os.walk(folder):
        for name in files:
            p = os.path.join(root, name)
            st = os.stat(p)
            out[os.path.relpath(p, folder)] = (st.st_size, st.st_mtime_ns)
    return out
