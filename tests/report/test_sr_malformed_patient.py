"""A malformed birth date or a single-component name never costs a study its SR (issue 14)."""

from __future__ import annotations

import warnings

import pydicom
import pytest

from dicomml.report.sr import AlgorithmInfo, build_sr
from tests.conftest import testdata


def test_sr_is_built_with_the_malformed_date_left_empty(tmp_path):
    ds = pydicom.dcmread(testdata("CT_small.dcm"), stop_before_pixels=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom: the invalid DA is planted on purpose
        ds.PatientName = "CQ500-CT-310"  # as in pydicom's 693_J2KI.dcm
        ds.PatientBirthDate = "1971-02-03"
    # A single-component name is valid on read: never a lost SR, and no warning quotes it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sr = build_sr([ds], finding="hemorrhage", probability=0.7, present=True,
                      algorithm=AlgorithmInfo(name="reference_cnn", version="1"))
    assert not [w for w in caught if "CQ500" in str(w.message)], caught
    # the same name: one family-name component (the view may write its delimiter, PS3.5 6.2)
    assert sr.PatientBirthDate in (None, "") and sr.PatientName.family_name == "CQ500-CT-310"
    assert sr.PatientName.given_name == ""
    assert sr.StudyInstanceUID == ds.StudyInstanceUID
    assert ds.PatientBirthDate == "1971-02-03"  # the source is not modified
