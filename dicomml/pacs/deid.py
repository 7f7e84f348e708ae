"""De-identification for anything that leaves a site (PS3.15 Annex E).

The Basic Application Level Confidentiality Profile (PS3.15 E.2), attribute by attribute from
Table E.1-1 (:mod:`dicomml.pacs.annex_e`, which lists the actions), with its options:

* every UID of the table (action U) is remapped **consistently within a project key**: the
  same input UID gives the same output UID for every file and every run with that key (so
  references inside SRs, Referenced SOP Sequences and Frame of Reference stay consistent),
  while SOP Class and Transfer Syntax UIDs are kept; (0010,0020) Patient ID becomes a keyed
  pseudonym (:func:`remap_id`), so the studies of one patient stay together;
* dates are shifted back by one key-dependent number of days (``shift_dates=True``, option
  "Retain Longitudinal Temporal Information with Modified Dates", CID 7050 code 113107), or
  kept (``shift_dates=False``, "... Full Dates", 113106); a value that is not a valid date
  gets the Basic action, so a malformed date (a birth date "1971-02-03") never stops a file;
* Type 1 attributes whose action allows a dummy (X/D, X/Z/D, Z/D) keep a dummy value, so the
  output stays a valid instance of its IOD; (0008,0060) Modality is never touched;
* ``retain_patient_characteristics=True`` keeps sex, age, size, weight... (113108);
  ``clean_descriptors=True`` keeps descriptions (Study / Series Description, Protocol Name,
  ...) that hold no identifying value (Clean Descriptors Option, 113105), else removes them;
* (0012,0062) Patient Identity Removed = YES, (0012,0063) De-identification Method and
  (0012,0064) De-identification Method Code Sequence are set, (0028,0303) Longitudinal
  Temporal Information Modified says whether dates moved;
* a final scan blanks any remaining free-text element that still holds an original patient
  name, ID, birth date or accession number.

Pixel data is copied unchanged. Images that declare (0028,0301) Burned In Annotation = YES are
flagged (a logged warning and a column of the manifest): their pixels may show identifiers,
which this profile does not remove (PS3.15 E.3.1 Clean Pixel Data Option).
"""

from __future__ import annotations

import csv
import functools
import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomml._atomic import atomic_write_bytes, atomic_write_text, safe_join
from dicomml.errors import FATAL, ConfigError
from dicomml.pacs.annex_e import ProfileOptions, apply_profile
from dicomml.pacs.annex_e_table import TABLE
from dicomml.pacs.base import collect_files

__all__ = ["deidentify", "deidentify_dataset", "deidentify_table", "remap_uid", "remap_id",
           "DeidResult", "REMOVE"]

log = logging.getLogger("dicomml.pacs")


def _keyword(tag: int) -> str | None:
    from pydicom.datadict import keyword_for_tag

    return keyword_for_tag(tag) or None


#: Keywords of the attributes the Basic Profile removes (action X of PS3.15 Table E.1-1).
REMOVE = tuple(k for k in (_keyword(t) for t, row in TABLE.items() if row[1] == "X") if k)
#: Free-text VRs checked by the final scan for surviving identifiers.
_TEXT_VRS = {"LO", "LT", "PN", "SH", "ST", "UT", "UC"}
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _randomizer(key: str):
    if not key or not isinstance(key, str):
        raise ConfigError("de-identification needs a non-empty project key (a secret string "
                          "kept at the site) for consistent UID remapping. Received: key="
                          f"{'<empty>' if not key else type(key).__name__}")
    return _keyed(key)


@functools.lru_cache(maxsize=8)
def _keyed(key: str):
    from dicognito.randomizer import Randomizer

    return Randomizer(key)


def remap_uid(uid: str, key: str) -> str:
    """The UID that :func:`deidentify` gives ``uid`` under project ``key`` (dicognito's scheme:
    ``2.`` + 10**39 + a keyed MD5 of the UID, so at most 42 characters, PS3.5 9.1)."""
    return "2." + str(10**39 + _randomizer(key).to_int(str(uid)))


def remap_id(value: str, key: str) -> str:
    """The 12-character ID that :func:`deidentify` gives a (0010,0020) Patient ID or
    (0008,0050) Accession Number ``value`` under ``key``."""
    idx = _randomizer(key).get_ints_from_ranges(str(value), *([len(_ALPHABET)] * 12))
    return "".join(_ALPHABET[i] for i in idx)


@dataclass
class DeidResult:
    """What :func:`deidentify` wrote.

    Attributes
    ----------
    written : list of Path
        De-identified files, ``out_dir/<Study>/<Series>/<SOPInstance>.dcm`` (new UIDs).
    skipped : list of (Path, str)
        Inputs that are not DICOM, with the reason.
    burned_in : list of Path
        Outputs whose (0028,0301) Burned In Annotation is YES: review their pixels.
    manifest : Path or None
        ``deid_manifest.csv``: one row per output (file, new UIDs, burned-in flag).
    duplicates : list of (Path, Path)
        ``(input, first input)``: inputs with the (0008,0018) SOP Instance UID of an earlier
        input (the same output file); left out, never written over the first. Also in
        ``skipped``.
    """

    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    burned_in: list[Path] = field(default_factory=list)
    manifest: Path | None = None
    duplicates: list[tuple[Path, Path]] = field(default_factory=list)


def date_offset(key: str) -> int:
    """Days every date is moved back under ``key`` (62 to 730, the same for every file)."""
    return 62 + _randomizer(key).get_ints_from_ranges("dicomml-date-offset", 669)[0]


def _identifiers(ds: Dataset) -> set[str]:
    """Original identifying values to hunt for after de-identification."""
    found: set[str] = set()
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber",
               "OtherPatientIDs", "PatientBirthName", "PatientMotherBirthName"):
        v = ds.get(kw)
        if v in (None, ""):
            continue
        vals = v if isinstance(v, (list, pydicom.multival.MultiValue)) else [v]
        for x in vals:
            s = str(x).strip()
            if s:
                found.add(s)
                if kw.endswith("Name"):
                    found.update(p.strip() for p in s.replace("=", "^").split("^")
                                 if len(p.strip()) >= 3)
    return found


def _scrub(ds: Dataset, secrets: set[str]) -> int:
    """Blank free-text elements equal to, or (for secrets of 4+ characters) containing, a
    secret. Coded values (CS: Modality...), UIDs, dates and numbers are never touched."""
    long = [s for s in secrets if len(s) >= 4]
    hits = 0
    for elem in list(ds):
        if elem.VR == "SQ":
            for item in elem.value or []:
                hits += _scrub(item, secrets)
        elif elem.VR in _TEXT_VRS and elem.value not in (None, ""):
            vals = elem.value if isinstance(elem.value, (list, pydicom.multival.MultiValue)) \
                else [elem.value]
            texts = [str(v) for v in vals]
            if any(t.strip() in secrets or any(s in t for s in long) for t in texts):
                elem.value = ""
                hits += 1
    return hits


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


def deidentify_dataset(ds: Dataset, *, key: str, shift_dates: bool = True,
                       retain_patient_characteristics: bool = False,
                       clean_descriptors: bool = False) -> tuple[Dataset, bool]:
    """De-identify one dataset; return ``(new_dataset, burned_in)``. The input is not modified.

    See the module docstring for the actions (PS3.15 Annex E, Table E.1-1).
    """
    import copy

    _randomizer(key)  # validates the key
    out = copy.deepcopy(ds)
    secrets = _identifiers(out)
    burned = str(out.get("BurnedInAnnotation", "")).strip().upper() == "YES"
    options = ProfileOptions(shift_dates=shift_dates,
                             retain_patient_characteristics=retain_patient_characteristics,
                             clean_descriptors=clean_descriptors)
    apply_profile(out, options=options, remap_uid=lambda u: remap_uid(u, key),
                  pseudonym=lambda v: remap_id(v, key), date_offset=date_offset(key),
                  secrets=secrets)
    _scrub(out, secrets)
    out.PatientIdentityRemoved = "YES"
    codes = [_code("113100", "Basic Application Confidentiality Profile")]
    if shift_dates:
        codes.append(_code("113107", "Retain Longitudinal Temporal Information Modified Dates "
                                     "Option"))
        out.LongitudinalTemporalInformationModified = "MODIFIED"
    else:
        codes.append(_code("113106", "Retain Longitudinal Temporal Information Full Dates "
                                     "Option"))
        out.LongitudinalTemporalInformationModified = "UNMODIFIED"
    if retain_patient_characteristics:
        codes.append(_code("113108", "Retain Patient Characteristics Option"))
    if clean_descriptors:
        codes.append(_code("113105", "Clean Descriptors Option"))
    out.DeidentificationMethod = ["DICOMML Basic Profile (PS3.15 Table E.1-1)"]
    out.DeidentificationMethodCodeSequence = Sequence(codes)
    old_meta = getattr(ds, "file_meta", None) or pydicom.dataset.FileMetaDataset()
    meta = pydicom.dataset.FileMetaDataset()
    for kw in ("MediaStorageSOPClassUID", "TransferSyntaxUID"):
        if kw in old_meta:
            setattr(meta, kw, old_meta[kw].value)
    if "SOPInstanceUID" in out:
        meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
    out.file_meta = meta
    return out, burned


def deidentify(in_paths: Iterable[str | os.PathLike], out_dir: str | os.PathLike, *, key: str,
               shift_dates: bool = True, retain_patient_characteristics: bool = False,
               clean_descriptors: bool = False, overwrite: bool = False,
               dry_run: bool = False) -> DeidResult:
    """De-identify DICOM files (folders recursively, symbolic links followed as by the scan)
    into ``out_dir``; sources are untouched.

    Parameters
    ----------
    in_paths : iterable of path
        Files or folders.
    out_dir : path
        Where to write ``<Study>/<Series>/<SOPInstance>.dcm`` (new UIDs) and
        ``deid_manifest.csv``.
    key : str
        Project key: the same key maps the same UID (and Patient ID) to the same new value
        across files and runs; keep it secret at the site.
    shift_dates : bool
        Shift every DA/DT by one key-dependent offset (62 to 730 days back); False keeps
        dates (PS3.15 E.3.6).
    retain_patient_characteristics : bool
        Keep (0010,0040) sex, (0010,1010) age, (0010,1020) size, (0010,1030) weight...
    clean_descriptors : bool
        Keep descriptions that hold no identifying value (Clean Descriptors Option).
    overwrite : bool
        Replace output files that already exist (from an earlier run). Without it such an
        input is skipped and reported. Two inputs of one SOP Instance UID are never written
        over each other: the second is reported as a duplicate.
    dry_run : bool
        Do everything but write.

    Returns
    -------
    DeidResult
    """
    _randomizer(key)
    from dicomml.io.guards import DEFER_SIZE

    out_dir = Path(out_dir)
    result = DeidResult()
    rows = []
    first_of: dict[Path, Path] = {}
    for path in collect_files(in_paths):
        try:
            ds = pydicom.dcmread(path, defer_size=DEFER_SIZE)
        except Exception as e:  # noqa: BLE001 - one bad file never stops the batch
            result.skipped.append((path, f"not DICOM ({type(e).__name__})"))
            log.warning("skipped a file that is not DICOM (%s)", type(e).__name__)
            continue
        missing = [kw for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
                   if not ds.get(kw)]
        if missing:
            result.skipped.append((path, "missing " + ", ".join(missing)))
            continue
        try:
            new, burned = deidentify_dataset(
                ds, key=key, shift_dates=shift_dates,
                retain_patient_characteristics=retain_patient_characteristics,
                clean_descriptors=clean_descriptors)
        except BaseException as e:  # noqa: BLE001 - one bad file never stops the batch
            if isinstance(e, FATAL):
                raise
            # Only the exception type: its message may quote an identifying value.
            result.skipped.append((path, f"de-identification failed ({type(e).__name__}); "
                                         "the file has a malformed value"))
            log.warning("skipped a file whose de-identification failed (%s)",
                        type(e).__name__)
            continue
        dest = safe_join(out_dir, new.StudyInstanceUID, new.SeriesInstanceUID,
                         f"{new.SOPInstanceUID}.dcm")
        if dest in first_of:
            result.duplicates.append((path, first_of[dest]))
            result.skipped.append((path, f"duplicate of {first_of[dest]}: the same (0008,0018) "
                                         "SOP Instance UID; not written over it"))
            continue
        first_of[dest] = path
        if dest.exists() and not overwrite:
            result.skipped.append((path, f"{dest} exists (from an earlier run); pass "
                                         "--overwrite to replace it"))
            continue
        if burned:
            log.warning("SOP Instance UID %s declares (0028,0301) Burned In Annotation = YES: "
                        "its pixels may show identifiers; review or exclude it",
                        new.SOPInstanceUID)
            result.burned_in.append(dest)
        if not dry_run:
            buf = io.BytesIO()
            pydicom.dcmwrite(buf, new, enforce_file_format=True)
            atomic_write_bytes(dest, buf.getvalue())
        result.written.append(dest)
        rows.append({"file": dest.relative_to(out_dir).as_posix(),
                     "StudyInstanceUID": new.StudyInstanceUID,
                     "SeriesInstanceUID": new.SeriesInstanceUID,
                     "SOPInstanceUID": new.SOPInstanceUID,
                     "SOPClassUID": str(new.get("SOPClassUID", "")),
                     "Modality": str(new.get("Modality", "")),
                     "BurnedInAnnotation": "YES" if burned else
                     str(new.get("BurnedInAnnotation", "")).strip().upper()})
    if not dry_run:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=["file", "StudyInstanceUID", "SeriesInstanceUID",
                                            "SOPInstanceUID", "SOPClassUID", "Modality",
                                            "BurnedInAnnotation"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        result.manifest = out_dir / "deid_manifest.csv"
        atomic_write_text(result.manifest, buf.getvalue())
    return result


#: Manifest columns that identify patients and are dropped from de-identified tables.
DROP_COLUMNS = ("PatientName", "patient_name", "PatientBirthDate", "patient_birth_date",
                "birth_date", "OtherPatientIDs", "path", "source_path", "filename")
ID_COLUMNS = ("PatientID", "patient_id", "AccessionNumber", "accession_number")


def deidentify_table(table, out_path: str | os.PathLike | None = None, *, key: str,
                     uid_columns: Iterable[str] | None = None,
                     id_columns: Iterable[str] | None = None,
                     drop_columns: Iterable[str] = DROP_COLUMNS):
    """Remap the UIDs and IDs of a manifest/CSV with the mapping :func:`deidentify` uses.

    Parameters
    ----------
    table : path or pandas.DataFrame
        A CSV file or a DataFrame (not modified).
    out_path : path, optional
        Write the result there (CSV, atomically).
    key : str
        The project key given to :func:`deidentify`.
    uid_columns : iterable of str, optional
        Columns holding UIDs; default: every column whose name ends with ``UID`` or ``_uid``
        (case-insensitive).
    id_columns : iterable of str, optional
        Columns holding Patient IDs or Accession Numbers; default :data:`ID_COLUMNS` present.
    drop_columns : iterable of str
        Columns removed (names, birth dates, source paths that may contain names).

    Returns
    -------
    pandas.DataFrame
    """
    import pandas as pd

    _randomizer(key)
    df = (pd.read_csv(table, dtype=str, keep_default_na=False)
          if not isinstance(table, pd.DataFrame) else table.copy())
    if uid_columns is None:
        uid_columns = [c for c in df.columns
                       if str(c).lower().endswith("_uid") or str(c).endswith("UID")]
    if id_columns is None:
        id_columns = [c for c in df.columns if c in ID_COLUMNS]
    for col in list(uid_columns) + list(id_columns):
        if col not in df.columns:
            raise ConfigError(f"column {col!r} is not in the table; columns are "
                              f"{list(df.columns)}. Received: {col!r}")
    for col in uid_columns:
        df[col] = df[col].map(lambda v: remap_uid(v, key) if isinstance(v, str) and v else v)
    for col in id_columns:
        df[col] = df[col].map(lambda v: remap_id(v, key) if isinstance(v, str) and v else v)
    df = df.drop(columns=[c for c in drop_columns if c in df.columns])
    if out_path is not None:
        atomic_write_text(out_path, df.to_csv(index=False, lineterminator="\n"))
    return df
