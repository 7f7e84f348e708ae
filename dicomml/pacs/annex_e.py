"""The Basic Application Level Confidentiality Profile, driven by PS3.15 Table E.1-1.

Every attribute of the table (:mod:`dicomml.pacs.annex_e_table`) gets its action, at every
depth of nesting; the options change the action of their column:

============  ==========================================================================
action        what :func:`apply_profile` does
============  ==========================================================================
X             removed
Z             zero length (Patient ID: a keyed pseudonym, a dummy that Z allows)
D             a dummy value consistent with the VR (a sequence: its items are processed,
              as for every combined code below)
U             the UID replaced by its keyed remapping (the same everywhere, every run)
K             kept
X/Z, Z/D,     the least destructive choice that keeps every IOD valid without knowing
X/D, X/Z/D    the attribute's Type: D when the element has a value (a Type 1 attribute
              stays present and valid), else Z; X/Z gives Z
X/Z/U*        a sequence whose items are processed (their UIDs replaced)
============  ==========================================================================

Beyond the table's rows: private elements (odd groups), curves (50xx,xxxx) and the whole
overlay groups (60xx,xxxx: without (60xx,3000) Overlay Data the rest of the Overlay Plane
module would be invalid) are removed (E.3.x rows "(GGGG,EEEE) where GGGG is odd", Curve Data,
Overlay Data / Comments). Options (PS3.15 E.3): ``shift_dates`` (Retain Longitudinal Temporal
Information with Modified Dates: DA and DT values shifted back by one keyed number of days;
a value that is not a valid date falls back to the Basic action, so a malformed date never
stops a file); ``keep_dates`` (... Full Dates); ``retain_patient_characteristics``;
``clean_descriptors`` (Clean Descriptors Option: a descriptor is kept only when it holds none
of the patient's identifying values and no person-name-shaped token, else emptied).
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Callable

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomml.pacs.annex_e_table import TABLE

__all__ = ["ProfileOptions", "apply_profile", "basic_action", "dummy_value", "shift_date"]

#: Dummy values by VR (consistent with the VR, PS3.5 6.2).
_DUMMY = {"AE": "ANONYMIZED", "AS": "000Y", "CS": "ANONYMIZED", "DA": "19000101",
          "DS": "0", "DT": "19000101000000", "IS": "0", "LO": "ANONYMIZED",
          "LT": "ANONYMIZED", "PN": "ANONYMIZED", "SH": "ANONYMIZED", "ST": "ANONYMIZED",
          "TM": "000000", "UC": "ANONYMIZED", "UR": "http://anonymized", "UT": "ANONYMIZED",
          "FL": 0.0, "FD": 0.0, "SL": 0, "SS": 0, "UL": 0, "US": 0, "SV": 0, "UV": 0,
          "OB": b"\x00\x00", "OW": b"\x00\x00", "UN": b"\x00\x00", "OD": b"\x00" * 8,
          "OF": b"\x00" * 4, "OL": b"\x00" * 4, "OV": b"\x00" * 8, "AT": 0}
#: X/Z sequences that are Type 2 where they occur, so Z (an empty sequence), not X:
#: (0040,0555) Acquisition Context Sequence (PS3.3 C.7.6.14, C.8.x).
_TYPE2_SEQUENCES = frozenset({0x00400555})
_NAME_TOKEN = re.compile(r"\S+\^\S*")


@dataclass(frozen=True)
class ProfileOptions:
    """Which Annex E options apply (see the module docstring)."""

    shift_dates: bool = True
    retain_patient_characteristics: bool = False
    clean_descriptors: bool = False


def basic_action(tag: int) -> str | None:
    """The Basic Profile action of ``tag`` (None: not in Table E.1-1, kept)."""
    row = TABLE.get(tag)
    if row is not None:
        return row[1]
    group = tag >> 16
    if group & 1 or 0x5000 <= group <= 0x50FF:
        return "X"  # private attributes; curve data (50xx,xxxx)
    if 0x6000 <= group <= 0x60FF:
        return "X"  # overlay data / comments, and the rest of its overlay plane
    return None


def _option_action(tag: int, options: ProfileOptions) -> str | None:
    row = TABLE.get(tag)
    if row is None:
        return None
    opts = row[2]
    if options.retain_patient_characteristics and opts.get("rtnPatCharsOpt"):
        return opts["rtnPatCharsOpt"]
    if options.shift_dates and opts.get("rtnLongModifDatesOpt"):
        return "SHIFT"
    if not options.shift_dates and opts.get("rtnLongFullDatesOpt"):
        return opts["rtnLongFullDatesOpt"]
    if options.clean_descriptors and opts.get("cleanDescOpt"):
        return "CLEAN"
    return None


def dummy_value(vr: str):
    """A dummy value consistent with ``vr``."""
    return _DUMMY.get(vr, "ANONYMIZED")


def shift_date(value: str, vr: str, days: int) -> str | None:
    """``value`` (a DA ``YYYYMMDD`` or a DT ``YYYYMMDD...``) moved ``days`` back; None when it
    is not a valid date (the caller falls back to the Basic action)."""
    s = str(value).strip()
    if not re.fullmatch(r"\d{8}" if vr == "DA" else r"\d{8}[\d.+\-]*", s):
        return None
    try:
        day = datetime.date(int(s[:4]), int(s[4:6]), int(s[6:8]))
    except ValueError:
        return None
    moved = day - datetime.timedelta(days=days)
    if moved.year < 1:
        return None
    return f"{moved:%Y%m%d}" + s[8:]


def apply_profile(ds: Dataset, *, options: ProfileOptions, remap_uid: Callable[[str], str],
                  pseudonym: Callable[[str], str], date_offset: int,
                  secrets: set[str]) -> None:
    """Apply the profile to ``ds`` in place, items of sequences included."""
    long_secrets = [s.lower() for s in secrets if len(s) >= 3]
    for elem in list(ds):
        tag = int(elem.tag)
        action = _option_action(tag, options) or basic_action(tag)
        vr = elem.VR
        if action is None or action == "K" or action == "C":
            if vr == "SQ":
                _items(elem, ds, options, remap_uid, pseudonym, date_offset, secrets)
            continue
        if action == "SHIFT":
            if vr in ("DA", "DT") and elem.value not in (None, ""):
                moved = _shift_values(elem.value, vr, date_offset)
                if moved is not None:
                    elem.value = moved
                    continue
                action = basic_action(tag) or "Z"
            else:
                continue  # TM, offsets: kept with the dates they belong to
        if action == "CLEAN":
            if vr == "SQ":
                _items(elem, ds, options, remap_uid, pseudonym, date_offset, secrets)
            elif _identifying(elem.value, long_secrets):
                elem.value = dummy_value(vr) if basic_action(tag) in ("D", "X/D") else ""
            continue
        _basic(ds, elem, action, options, remap_uid, pseudonym, date_offset, secrets)


def _basic(ds, elem, action, options, remap_uid, pseudonym, date_offset, secrets) -> None:
    vr, empty = elem.VR, elem.value in (None, "", b"") or (elem.VR == "SQ" and not elem.value)
    if action == "X":
        del ds[elem.tag]
    elif action == "U" or (action == "X/Z/U*" and vr != "SQ"):
        if vr == "UI" and not empty:
            vals = elem.value if elem.VM > 1 else [elem.value]
            new = [remap_uid(str(v)) for v in vals]
            elem.value = new if elem.VM > 1 else new[0]
    elif vr == "SQ":
        if action == "X/Z" and int(elem.tag) not in _TYPE2_SEQUENCES:
            del ds[elem.tag]  # an empty Type 3 sequence is invalid: X
        elif action in ("Z", "X/Z"):
            elem.value = Sequence()
        else:  # D, X/D, Z/D, X/Z/D, X/Z/U*: kept, its items de-identified (a "dummy"
            # sequence that keeps the IOD valid where the sequence is required)
            _items(elem, ds, options, remap_uid, pseudonym, date_offset, secrets)
    elif empty and action == "X/D":  # no value: not a Type 1 attribute, so X
        del ds[elem.tag]
    elif action in ("Z", "X/Z") or (empty and action != "D"):
        elem.value = pseudonym(str(elem.value)) if (int(elem.tag) == 0x00100020
                                                    and not empty) else ""
    elif int(elem.tag) == 0x00100020:
        elem.value = pseudonym(str(elem.value))
    else:  # D, X/D, Z/D, X/Z/D with a value
        elem.value = dummy_value(vr)


def _items(elem, ds, options, remap_uid, pseudonym, date_offset, secrets) -> None:
    for item in elem.value or []:
        apply_profile(item, options=options, remap_uid=remap_uid, pseudonym=pseudonym,
                      date_offset=date_offset, secrets=secrets)


def _shift_values(value, vr: str, days: int):
    multi = not isinstance(value, (str, bytes)) and hasattr(value, "__iter__")
    vals = list(value) if multi else [value]
    moved = [shift_date(v, vr, days) for v in vals]
    if any(m is None for m in moved):
        return None
    return moved if multi else moved[0]


def _identifying(value, secrets_lower: list[str]) -> bool:
    text = str(value)
    low = text.lower()
    return bool(_NAME_TOKEN.search(text)) or any(s in low for s in secrets_lower)
