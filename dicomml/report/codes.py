"""Coded concepts used in dicomml's DICOM outputs (PS3.16 coding).

Findings are coded in SNOMED CT (scheme designator ``SCT``) where a concept exists; the
table :data:`KNOWN_FINDINGS` maps common class names to the concepts verified in pydicom's
``pydicom.sr.codedict.codes``. Any other class name is coded in the project's private coding
scheme ``99DICOMML`` (PS3.3 C.12.1.1.2 "private coding scheme designators begin with 99"),
which every object that uses it declares in the (0008,0110) Coding Scheme Identification
Sequence (see :func:`coding_scheme_items`).

The probability is a numeric measurement named DCM 122157 "Probability" with the UCUM unit
``1`` "no units" (a dimensionless ratio in [0, 1], UCUM's unity).
"""

from __future__ import annotations

import re

from pydicom.sr.coding import Code
from pydicom.sr.codedict import codes

__all__ = ["PRIVATE_SCHEME", "KNOWN_FINDINGS", "finding_code", "procedure_code",
           "coding_scheme_items", "PROBABILITY", "PROBABILITY_UNIT", "PRESENT", "ABSENT"]

PRIVATE_SCHEME = "99DICOMML"

#: SCT 52101004 "Present" / SCT 272519000 "Absent": the value of the qualitative evaluation.
PRESENT = codes.SCT.Present
ABSENT = codes.SCT.Absent
#: DCM 122157 "Probability".
PROBABILITY = codes.DCM.Probability
#: UCUM "1" "no units".
PROBABILITY_UNIT = codes.UCUM.NoUnits

_ICH = codes.SCT.IntracranialHemorrhage  # SCT 1386000
#: Normalized class name -> SNOMED CT concept.
KNOWN_FINDINGS: dict[str, Code] = {
    "intracranial_hemorrhage": _ICH,
    "intracranial_haemorrhage": _ICH,
    "ich": _ICH,
    "hemorrhage": _ICH,
    "haemorrhage": _ICH,
    "bleed": _ICH,
}


def _normalize(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(name).strip().lower()).strip("_")


def finding_code(name: str | Code) -> Code:
    """The coded concept of a finding (class) name.

    A :class:`pydicom.sr.coding.Code` is returned unchanged; a known name
    (``"ich"``, ``"intracranial hemorrhage"``...) gives its SNOMED CT concept; any other
    name gives ``(NAME, 99DICOMML, "name")`` with the code value upper-cased and limited to
    the characters DICOM allows in a code value.

    >>> finding_code("ICH").value
    '1386000'
    >>> finding_code("pneumothorax").scheme_designator
    '99DICOMML'
    """
    if isinstance(name, Code):
        return name
    key = _normalize(name)
    if key in KNOWN_FINDINGS:
        return KNOWN_FINDINGS[key]
    value = (key.upper() or "FINDING")[:64]
    return Code(value=value, scheme_designator=PRIVATE_SCHEME, meaning=str(name)[:64] or value)


def procedure_code(modality: str | None) -> Code:
    """CID 100 procedure reported: LOINC for CT and MR, else SCT 363679005 Imaging procedure."""
    m = (modality or "").upper()
    if m == "CT":
        return codes.LN.CTUnspecifiedBodyRegion
    if m == "MR":
        return codes.LN.MRIUnspecifiedBodyRegion
    return codes.SCT.ImagingProcedure


def coding_scheme_items(used: list[Code]):
    """(0008,0110) Coding Scheme Identification items for the private scheme, if used."""
    from highdicom.coding_schemes import CodingSchemeIdentificationItem

    if not any(c.scheme_designator == PRIVATE_SCHEME for c in used):
        return None
    return [CodingSchemeIdentificationItem(
        designator=PRIVATE_SCHEME,
        name="dicomml finding codes",
        responsible_organization="dicomml project",
    )]
