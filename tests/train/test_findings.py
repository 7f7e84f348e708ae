"""[report] finding_code / finding_site: parsed from pydicom's PS3.16 codes, clear errors,
written into the SR's measurement group."""

from __future__ import annotations

import pydicom
import pytest

from dicomml.errors import ConfigError
from dicomml.train.config import RunConfig
from dicomml.train.findings import parse_code, run_finding

BASE = {"data": {"folder": "/d", "labels": "/d/l.csv", "classes": ["normal", "nodule"],
                 "positive_class": "nodule"}}


def test_codes_by_value_or_keyword():
    a, b = parse_code("SCT:27925004"), parse_code("sct:Nodule")
    assert a == b and (a.value, a.scheme_designator, a.meaning) == ("27925004", "SCT", "Nodule")
    assert parse_code("SCT:Lung").value == "39607008"


@pytest.mark.parametrize("text, match", [("27925004", "SCHEME:CODE"), ("XYZ:1", "scheme"),
                                         ("SCT:Nodul", "Did you mean 'Nodule'")])
def test_unknown_codes_are_config_errors_at_load(text, match):
    with pytest.raises(ConfigError, match=match):
        RunConfig.from_dict({**BASE, "report": {"finding_code": text}})


def test_the_sr_carries_the_configured_finding_and_site():
    from dicomml.report.sr import AlgorithmInfo, build_sr
    from dicomml.testing import write_ct_series

    cfg = RunConfig.from_dict({**BASE, "report": {"finding_code": "SCT:27925004",
                                                  "finding_site": "SCT:39607008"}})
    finding, site = run_finding(cfg, "nodule")
    assert run_finding(cfg, "normal") == ("normal", None)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        src = [pydicom.dcmread(p, stop_before_pixels=True)
               for p in write_ct_series(d, seed=0, n_slices=2, rows=32, columns=32)]
        sr = build_sr(src, finding=finding, probability=0.9, present=True,
                      algorithm=AlgorithmInfo(name="m", version="1"), finding_site=site)
    items = []

    def walk(seq):
        for it in seq:
            items.append(it)
            walk(it.get("ContentSequence", []))

    walk(sr.ContentSequence)
    names = {(it.ConceptNameCodeSequence[0].CodeValue,
              (it.get("ConceptCodeSequence") or [None])[0].CodeValue
              if it.get("ConceptCodeSequence") else None) for it in items}
    assert ("363698007", "39607008") in names     # Finding Site = Lung
    assert ("121071", "27925004") in names or any(v == "27925004" for _, v in names)
