"""The interface shared by the DICOMweb and DIMSE clients, and the resumable retrieval loop.

A retrieval writes one file per instance at ``OUT/<StudyInstanceUID>/<SeriesInstanceUID>/
<SOPInstanceUID>.dcm`` (names made safe by :func:`dicomml._atomic.safe_join`), each written
atomically, so a file that exists is complete. Before fetching, the client lists the study's
instances (QIDO-RS instance search or C-FIND at IMAGE level, PS3.4 C.6) and fetches only those
whose file is missing: an interrupted retrieval resumes where it stopped.
"""

from __future__ import annotations

import logging
import os
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pydicom
from pydicom.datadict import keyword_for_tag, tag_for_keyword

from dicomml._atomic import safe_join
from dicomml.errors import ConfigError, closest
from dicomml.pacs._retry import RetryPolicy, call_with_retry

__all__ = ["Pacs", "RetrieveResult", "StoreResult", "InstanceRef", "LEVELS", "RETURN_KEYS",
           "instance_path", "collect_files", "dataset_to_dict"]

log = logging.getLogger("dicomml.pacs")

#: Query/Retrieve levels (PS3.4 C.3), in the spelling our API accepts.
LEVELS = ("patient", "study", "series", "instance")

#: Return keys asked for at each level (PS3.4 C.6.1.1 / C.6.2.1, PS3.18 Table 6.7.1-2).
RETURN_KEYS = {
    "patient": ("PatientID", "PatientName", "PatientBirthDate", "PatientSex"),
    "study": ("StudyInstanceUID", "StudyDate", "StudyTime", "StudyDescription", "StudyID",
              "AccessionNumber", "PatientID", "PatientName", "ModalitiesInStudy",
              "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"),
    "series": ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber",
               "SeriesDescription", "NumberOfSeriesRelatedInstances"),
    "instance": ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID",
                 "InstanceNumber"),
}


def _normalize_level(level: str) -> str:
    lv = str(getattr(level, "value", level)).lower()
    if lv == "image":
        lv = "instance"
    if lv not in LEVELS:
        hint = closest(lv, LEVELS)
        raise ConfigError(f"unknown query level {level!r}; expected one of {', '.join(LEVELS)}"
                          + (f" (did you mean {hint[0]!r}?)" if hint else "")
                          + f". Received: level={level!r}")
    return lv


def normalize_filters(level: str, filters: dict) -> dict[str, str]:
    """Validate matching keys (DICOM keywords) and map ``Modality`` at study level.

    At study level the matching key for a modality is (0008,0061) Modalities in Study.
    ``None`` values are dropped; lists become multi-valued (``\\``-joined) UID lists.
    """
    out: dict[str, str] = {}
    for key, value in filters.items():
        if value is None:
            continue
        if tag_for_keyword(key) is None:
            raise ConfigError(f"unknown DICOM keyword {key!r} in a query. Received: {key}="
                              f"{value!r}")
        if key == "Modality" and level in ("patient", "study"):
            key = "ModalitiesInStudy"
        if isinstance(value, (list, tuple)):
            value = "\\".join(str(v) for v in value)
        out[key] = str(value)
    return out


def dataset_to_dict(ds: pydicom.Dataset) -> dict[str, str]:
    """Flatten a query response to ``{keyword: str}``; multiple values joined by ``\\``."""
    out: dict[str, str] = {}
    for elem in ds:
        if elem.VR == "SQ" or elem.tag.group in (0x0000, 0x0002) or elem.tag.is_private:
            continue
        kw = elem.keyword or keyword_for_tag(elem.tag)
        if not kw or kw in ("QueryRetrieveLevel", "SpecificCharacterSet", "RetrieveURL",
                            "RetrieveAETitle", "InstanceAvailability"):
            continue
        v = elem.value
        if v is None or v == "":
            out[kw] = ""
        elif isinstance(v, (list, pydicom.multival.MultiValue)):
            out[kw] = "\\".join(str(x) for x in v)
        else:
            out[kw] = str(v)
    return out


@dataclass(frozen=True)
class InstanceRef:
    """One instance on the PACS: the UIDs a retrieval needs."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str = ""


def instance_path(out_dir: str | os.PathLike, ref: InstanceRef) -> Path:
    """Where an instance lands: ``OUT/<Study>/<Series>/<SOPInstance>.dcm`` (safe names)."""
    return safe_join(out_dir, ref.study_uid, ref.series_uid, f"{ref.sop_uid}.dcm")


@dataclass
class RetrieveResult:
    """What a retrieval did.

    Attributes
    ----------
    study_uid : str
    out_dir : Path
        The export folder (files are under ``out_dir/<study>/<series>/``).
    listed : int
        Instances the PACS listed for the study (or series).
    fetched : list of Path
        Files written by this call.
    present : int
        Instances that were already there and not fetched again.
    paths : list of Path
        Every instance file of the study (or series), fetched or present.
    """

    study_uid: str
    out_dir: Path
    listed: int = 0
    fetched: list[Path] = field(default_factory=list)
    present: int = 0
    paths: list[Path] = field(default_factory=list)


@dataclass
class StoreResult:
    """What a store did: SOP Instance UIDs accepted, and inputs skipped (not DICOM)."""

    stored: list[str] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


@dataclass(frozen=True)
class StoreItem:
    """A local file to store, with the header values negotiation needs."""

    path: Path
    sop_class_uid: str
    sop_uid: str
    transfer_syntax: str
    study_uid: str


def collect_files(paths: Iterable[str | os.PathLike]) -> Iterator[Path]:
    """Expand files and folders into file paths: folders are walked as the scan walks them
    (:func:`dicomml.io.files.walk_files`: sorted, symbolic links followed, each folder
    once); hidden files (``.name``) and unreadable entries are left out."""
    from dicomml.io.files import FileEntry, walk_files

    for p in paths:
        p = Path(p)
        if p.is_dir():
            for entry in walk_files(p):
                if isinstance(entry, FileEntry) and not os.path.basename(
                        entry.path).startswith("."):
                    yield Path(entry.path)
        else:
            yield p


def read_store_items(paths: Iterable[str | os.PathLike]
                     ) -> tuple[list[StoreItem], list[tuple[Path, str]]]:
    """Read the headers of the files to store; non-DICOM or incomplete files are skipped.

    Uses (0002,0010) Transfer Syntax UID, (0008,0016) SOP Class UID, (0008,0018) SOP
    Instance UID and (0020,000D) Study Instance UID.
    """
    items, skipped = [], []
    for p in collect_files(paths):
        if not p.exists():
            skipped.append((p, "no such file"))
            continue
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file is skipped, not fatal
            skipped.append((p, f"not DICOM ({type(e).__name__})"))
            continue
        meta = getattr(ds, "file_meta", None)
        ts = str(getattr(meta, "TransferSyntaxUID", "") or "")
        cls = str(ds.get("SOPClassUID", "") or "")
        sop = str(ds.get("SOPInstanceUID", "") or "")
        if not (ts and cls and sop):
            missing = [n for n, v in (("(0002,0010) Transfer Syntax UID", ts),
                                      ("(0008,0016) SOP Class UID", cls),
                                      ("(0008,0018) SOP Instance UID", sop)) if not v]
            skipped.append((p, "missing " + ", ".join(missing)))
            continue
        items.append(StoreItem(p, cls, sop, ts, str(ds.get("StudyInstanceUID", "") or "")))
    return items, skipped


class Pacs(ABC):
    """One interface over DICOMweb and DIMSE: echo, query, retrieve, store."""

    policy: RetryPolicy

    @property
    @abstractmethod
    def endpoint(self) -> str:
        """The PACS in words (URL, or AET@host:port), for messages."""

    @abstractmethod
    def echo(self) -> bool:
        """Check that the PACS answers (C-ECHO, or a QIDO-RS request); raise PacsError if not."""

    @abstractmethod
    def _query(self, level: str, filters: dict[str, str]) -> list[dict[str, str]]:
        """One query attempt; raises TransientError or PacsError."""

    @abstractmethod
    def _fetch(self, refs: list[InstanceRef], out_dir: Path,
               on_written: Callable[[InstanceRef, Path], None]) -> None:
        """Fetch ``refs`` into ``out_dir``; call ``on_written`` after each file is in place."""

    @abstractmethod
    def store(self, paths: Iterable[str | os.PathLike], progress: bool = False) -> StoreResult:
        """Send files (and folders, recursively) to the PACS."""

    def close(self) -> None:
        """Release network resources (HTTP connections); the client stays usable."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def query(self, level: str = "study", **filters) -> list[dict[str, str]]:
        """Find patients, studies, series or instances (QIDO-RS / C-FIND, PS3.4 C.6).

        Parameters
        ----------
        level : {"patient", "study", "series", "instance"}
        **filters
            Matching keys as DICOM keywords, e.g. ``PatientID=``, ``StudyInstanceUID=``,
            ``Modality=`` (matched against (0008,0061) Modalities in Study at study level),
            ``StudyDate="20200101-20201231"`` (range matching), ``AccessionNumber=``.

        Returns
        -------
        list of dict
            One ``{keyword: value}`` per match (multiple values joined with ``\\``).
        """
        lv = _normalize_level(level)
        flt = normalize_filters(lv, filters)
        return call_with_retry(lambda: self._query(lv, flt), self.policy,
                               f"{lv} query on {self.endpoint}")

    def list_instances(self, study_uid: str, series_uid: str | None = None) -> list[InstanceRef]:
        """The instances of a study (or one series) on the PACS, sorted by UIDs."""
        return call_with_retry(lambda: self._list_once(study_uid, series_uid), self.policy,
                               f"instance query on {self.endpoint}")

    def _list_once(self, study_uid: str, series_uid: str | None) -> list[InstanceRef]:
        flt = {"StudyInstanceUID": study_uid}
        if series_uid:
            flt["SeriesInstanceUID"] = series_uid
        rows = self._query("instance", normalize_filters("instance", flt))
        refs = {InstanceRef(r.get("StudyInstanceUID") or study_uid,
                            r.get("SeriesInstanceUID", ""), r["SOPInstanceUID"],
                            r.get("SOPClassUID", ""))
                for r in rows if r.get("SOPInstanceUID")}
        return sorted(refs, key=lambda r: (r.series_uid, r.sop_uid))

    def retrieve(self, study_uid: str, out_dir: str | os.PathLike, series_uid: str | None = None,
                 progress: bool = True,
                 callback: Callable[[Path], None] | None = None) -> RetrieveResult:
        """Copy a study (or one series) into a local export folder; resumable.

        Lists the instances first (instance-level query), skips those whose file already
        exists, fetches the rest (WADO-RS / C-GET) and writes each file atomically. A transient
        fault (connection refused or reset, HTTP 5xx/429, association abort) is retried with
        exponential back-off; each retry lists again and fetches only what is still missing.
        The retry policy's ``total`` bounds a stall: a fault after instances have arrived
        starts a fresh retry budget.

        Parameters
        ----------
        study_uid : str
            (0020,000D) Study Instance UID.
        out_dir : path
            Export folder; files go to ``out_dir/<study>/<series>/<sop>.dcm``.
        series_uid : str, optional
            (0020,000E) Series Instance UID: retrieve only this series.
        progress : bool
            Show a progress bar on stderr.
        callback : callable, optional
            Called with each file's path once it is written.

        Returns
        -------
        RetrieveResult

        Raises
        ------
        PacsError
            The PACS is unreachable or kept failing beyond the retry policy, or it did not
            send every listed instance. Files already written stay; run again to resume.
        """
        from tqdm import tqdm

        out_dir = Path(out_dir)
        result = RetrieveResult(study_uid=study_uid, out_dir=out_dir)
        fetched: dict[str, Path] = {}
        bar = tqdm(total=0, unit="inst", desc="retrieve", file=sys.stderr, disable=not progress,
                   leave=False)

        def on_written(ref: InstanceRef, path: Path) -> None:
            fetched[ref.sop_uid] = path
            bar.update(1)
            if callback is not None:
                callback(path)

        def attempt() -> list[InstanceRef]:
            refs = self._list_once(study_uid, series_uid)
            missing = [r for r in refs if not instance_path(out_dir, r).exists()]
            if not result.listed:
                result.listed = len(refs)
                result.present = len(refs) - len(missing)
                bar.reset(total=len(refs))
                bar.update(result.present)
            if missing:
                self._fetch(missing, out_dir, on_written)
            return refs

        from dicomml.pacs.errors import PacsError

        try:
            while True:
                done_before = len(fetched)
                try:
                    refs = call_with_retry(attempt, self.policy,
                                           f"retrieval of study {study_uid} from {self.endpoint}")
                    break
                except PacsError as e:
                    # The retry budget bounds a stall, not a long transfer: when instances
                    # arrived since the budget started, start a fresh one (this ends: each
                    # round fetches at least one of finitely many instances).
                    if not (e.transient and len(fetched) > done_before):
                        raise
                    log.warning("retrieval of study %s: %d instances arrived before the fault; "
                                "retrying with a fresh retry budget", study_uid,
                                len(fetched) - done_before)
        finally:
            bar.close()
            result.fetched = list(fetched.values())
        still = [r for r in refs if not instance_path(out_dir, r).exists()]
        if still:
            raise PacsError(f"{self.endpoint} did not send {len(still)} of {len(refs)} "
                            f"instances of study {study_uid} (first: SOP Instance UID "
                            f"{still[0].sop_uid}); run again to resume, or check the PACS log")
        result.paths = [instance_path(out_dir, r) for r in refs]
        log.info("retrieved study %s: %d listed, %d fetched, %d already present", study_uid,
                 result.listed, len(result.fetched), result.present)
        return result
