"""Result tables as CSV and JSON, written atomically, without patient identifiers.

The writers refuse columns (or JSON keys) that name patient identifiers — (0010,0010)
Patient's Name, (0010,0020) Patient ID, (0010,0030) Patient's Birth Date, (0008,0050)
Accession Number — so a result table can be shared. The pseudonymous ``patient_key`` of a
run manifest is allowed.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from dicomml._atomic import atomic_write_text
from dicomml.errors import ConfigError

__all__ = ["FORBIDDEN_COLUMNS", "check_no_identifiers", "write_csv", "write_json", "to_jsonable"]

#: Normalized names (lower case, no separators) that must never be written.
FORBIDDEN_COLUMNS = frozenset({
    "patientname", "patientsname", "patientid", "patientbirthdate", "patientsbirthdate",
    "birthdate", "accessionnumber", "otherpatientids", "otherpatientnames",
})


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def check_no_identifiers(names, where: str) -> None:
    """Raise :class:`~dicomml.errors.ConfigError` if a name is a patient identifier."""
    bad = sorted({str(n) for n in names if _norm(n) in FORBIDDEN_COLUMNS})
    if bad:
        raise ConfigError(f"{where}: refusing to write patient identifier column(s) {bad}; "
                          "use the pseudonymous patient_key instead")


def write_csv(path: str | os.PathLike, table: pd.DataFrame | list[Mapping[str, Any]]) -> Path:
    """Write a table as UTF-8 CSV (no index), atomically."""
    df = table if isinstance(table, pd.DataFrame) else pd.DataFrame(list(table))
    check_no_identifiers(df.columns, str(path))
    atomic_write_text(path, df.to_csv(index=False, lineterminator="\n"))
    return Path(path)


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, paths and tuples to JSON types; NaN/inf become None."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def _keys(obj: Any):
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            yield k
            yield from _keys(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _keys(v)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (strict: no NaN), atomically."""
    data = to_jsonable(obj)
    check_no_identifiers(_keys(data), str(path))
    atomic_write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")
    return Path(path)
