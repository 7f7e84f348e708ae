"""Read TOML with :mod:`tomllib`; write the small subset dicomml configs use.

The writer handles str, bool, int, float, lists of those (and lists of lists), and
nested tables; ``None`` values are left out (TOML has no null).
"""

from __future__ import annotations

import math
import os
import tomllib
from typing import Any, Mapping

from dicomml._atomic import atomic_write_text
from dicomml.errors import ConfigError

__all__ = ["load_toml", "dumps_toml", "write_toml"]


def load_toml(path: str | os.PathLike) -> dict:
    """Parse a TOML file; errors name the file and the line."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError as e:
        raise ConfigError(f"configuration file not found: {path}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from e


def _key(k: str) -> str:
    k = str(k)
    if k and all(c.isalnum() or c in "_-" for c in k):
        return k
    return '"' + k.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        s = v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        s = s.replace("\t", "\\t").replace("\r", "\\r")
        return f'"{s}"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v if x is not None) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()
                               if x is not None) + "}"
    if hasattr(v, "item"):  # numpy scalar
        return _value(v.item())
    raise ConfigError(f"cannot write {type(v).__name__} to TOML. Received: {v!r}")


def dumps_toml(data: Mapping[str, Any], _prefix: str = "") -> str:
    """Serialize nested mappings to TOML text (tables after the plain keys)."""
    lines, tables = [], []
    for k, v in data.items():
        if v is None:
            continue
        if isinstance(v, Mapping):
            tables.append((k, v))
        else:
            lines.append(f"{_key(k)} = {_value(v)}")
    out = "\n".join(lines)
    for k, v in tables:
        name = f"{_prefix}.{_key(k)}" if _prefix else _key(k)
        body = dumps_toml(v, name)
        out += ("\n\n" if out else "") + f"[{name}]" + ("\n" + body if body else "")
    return out.strip("\n") + "\n" if not _prefix else out.strip("\n")


def write_toml(path: str | os.PathLike, data: Mapping[str, Any]) -> None:
    """Write ``data`` atomically as TOML."""
    atomic_write_text(path, dumps_toml(data))
