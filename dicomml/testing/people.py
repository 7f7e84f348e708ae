"""Deterministic synthetic patients, studies and UIDs.

Everything is derived from a seed or a ``numpy.random.Generator``, never from the clock or
the machine, so that the same seed writes byte-identical files.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, replace

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID

__all__ = ["Patient", "Study", "as_rng", "uid_from", "make_patient", "make_study"]

_FAMILY = ("DOE", "ROE", "SMITH", "GARCIA", "MUELLER", "ROSSI", "TANAKA", "NOVAK",
           "DUBOIS", "SILVA", "KOWALSKI", "JENSEN", "OKAFOR", "LARSEN", "PETROV", "COHEN")
_GIVEN_F = ("JANE", "ANNA", "MARIA", "SOFIA", "EMMA", "LEA", "NORA", "IDA")
_GIVEN_M = ("JOHN", "LUCA", "NOAH", "PAUL", "OMAR", "KENJI", "IVAN", "LARS")


def as_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A ``numpy.random.Generator``: ``seed`` itself if it is one, else a new seeded one."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(0 if seed is None else seed)


def uid_from(rng: np.random.Generator, *tags: object) -> str:
    """A 2.25 UID (PS3.5 B.2) derived from the generator's next 128 bits and ``tags``.

    The UUID (version 4 layout) is a hash of ``tags`` and 16 bytes drawn from ``rng``, so it
    is reproducible. (``pydicom.uid.generate_uid(prefix=None)`` ignores its entropy sources
    and is random, hence not used.)
    """
    h = hashlib.sha256("\x1f".join(["dicomml.testing", *map(str, tags)]).encode()
                       + rng.bytes(16)).digest()
    return UID(f"2.25.{uuid.UUID(bytes=h[:16], version=4).int}")


@dataclass(frozen=True)
class Patient:
    """Patient module (PS3.3 C.7.1.1) of a synthetic patient.

    Attributes
    ----------
    name : str
        (0010,0010) Patient's Name, ``FAMILY^GIVEN``.
    patient_id : str
        (0010,0020) Patient ID.
    birth_date : str
        (0010,0030) Patient's Birth Date, ``YYYYMMDD``.
    sex : str
        (0010,0040) Patient's Sex, ``"F"`` or ``"M"``.
    """

    name: str
    patient_id: str
    birth_date: str
    sex: str

    def apply(self, ds: Dataset) -> None:
        """Write the Patient module into ``ds``."""
        ds.PatientName = self.name
        ds.PatientID = self.patient_id
        ds.PatientBirthDate = self.birth_date
        ds.PatientSex = self.sex


@dataclass(frozen=True)
class Study:
    """General Study module (PS3.3 C.7.2.1) of a synthetic study.

    Attributes
    ----------
    study_instance_uid : str
        (0020,000D) Study Instance UID.
    study_date, study_time : str
        (0008,0020) Study Date ``YYYYMMDD`` and (0008,0030) Study Time ``HHMMSS``.
    accession_number : str
        (0008,0050) Accession Number.
    study_id : str
        (0020,0010) Study ID.
    description : str
        (0008,1030) Study Description.
    referring_physician : str
        (0008,0090) Referring Physician's Name.
    """

    study_instance_uid: str
    study_date: str
    study_time: str
    accession_number: str
    study_id: str
    description: str = "SYNTHETIC STUDY"
    referring_physician: str = "REFERRER^SYNTHETIC"

    def apply(self, ds: Dataset) -> None:
        """Write the General Study module into ``ds``."""
        ds.StudyInstanceUID = self.study_instance_uid
        ds.StudyDate = self.study_date
        ds.StudyTime = self.study_time
        ds.AccessionNumber = self.accession_number
        ds.StudyID = self.study_id
        ds.StudyDescription = self.description
        ds.ReferringPhysicianName = self.referring_physician

    def with_description(self, description: str) -> Study:
        return replace(self, description=description)


def make_patient(seed: int | np.random.Generator = 0) -> Patient:
    """A deterministic synthetic :class:`Patient` from ``seed``."""
    rng = as_rng(seed)
    sex = "F" if rng.random() < 0.5 else "M"
    given = rng.choice(_GIVEN_F if sex == "F" else _GIVEN_M)
    family = rng.choice(_FAMILY)
    year = int(rng.integers(1935, 2005))
    month = int(rng.integers(1, 13))
    day = int(rng.integers(1, 29))
    pid = "SYN" + "".join(str(int(d)) for d in rng.integers(0, 10, 7))
    return Patient(name=f"{family}^{given}", patient_id=pid,
                   birth_date=f"{year:04d}{month:02d}{day:02d}", sex=sex)


def make_study(seed: int | np.random.Generator = 0, description: str = "SYNTHETIC STUDY"
               ) -> Study:
    """A deterministic synthetic :class:`Study` from ``seed`` (dates in 2015-2024)."""
    rng = as_rng(seed)
    year = int(rng.integers(2015, 2025))
    month = int(rng.integers(1, 13))
    day = int(rng.integers(1, 29))
    hh, mm, ss = int(rng.integers(7, 20)), int(rng.integers(0, 60)), int(rng.integers(0, 60))
    acc = "A" + "".join(str(int(d)) for d in rng.integers(0, 10, 8))
    return Study(
        study_instance_uid=uid_from(rng, "study"),
        study_date=f"{year:04d}{month:02d}{day:02d}", study_time=f"{hh:02d}{mm:02d}{ss:02d}",
        accession_number=acc, study_id=str(int(rng.integers(1, 99999))),
        description=description,
    )
