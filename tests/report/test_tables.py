"""CSV / JSON result tables: atomic, strict JSON, no patient identifiers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dicomml.errors import ConfigError
from dicomml.report.tables import to_jsonable, write_csv, write_json


def test_write_csv_roundtrip(tmp_path):
    df = pd.DataFrame({"sop_instance_uid": ["1.2.3", "1.2.4"], "prob": [0.25, 0.5]})
    p = write_csv(tmp_path / "sub" / "t.csv", df)
    assert p.read_text() == "sop_instance_uid,prob\n1.2.3,0.25\n1.2.4,0.5\n"
    assert [f.name for f in p.parent.iterdir()] == ["t.csv"]  # no temporary file left


@pytest.mark.parametrize("column", ["PatientID", "patient_name", "Patient's Birth Date",
                                    "AccessionNumber", "patient_id"])
def test_identifier_columns_refused(tmp_path, column):
    with pytest.raises(ConfigError, match="patient identifier"):
        write_csv(tmp_path / "t.csv", [{"study": "1", column: "x"}])
    with pytest.raises(ConfigError, match="patient identifier"):
        write_json(tmp_path / "t.json", {"rows": [{column: "x"}]})
    assert not (tmp_path / "t.csv").exists() and not (tmp_path / "t.json").exists()


def test_json_strict_and_numpy(tmp_path):
    obj = {"a": np.float32(0.5), "b": float("nan"), "c": np.arange(3), "d": (np.int64(2), True),
           "e": np.bool_(False), "patient_key": "0123abcd"}
    assert to_jsonable(obj) == {"a": 0.5, "b": None, "c": [0, 1, 2], "d": [2, True],
                                "e": False, "patient_key": "0123abcd"}
    p = write_json(tmp_path / "m.json", obj)
    assert json.loads(p.read_text())["b"] is None
    assert "NaN" not in p.read_text()
