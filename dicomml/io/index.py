"""The Index: one SQLite file with one row per DICOM instance, read as pandas DataFrames.

Tables (schema version :data:`SCHEMA_VERSION`)
----------------------------------------------
``instances``
    One row per indexed file: the columns of :data:`dicomml.io.header.ROW_COLUMNS` plus
    ``series_key`` (see :mod:`dicomml.io.series`). ``path`` is absolute; ``mtime`` is in
    seconds; ``is_image`` is 0/1. Multi-valued numbers -- ``image_position`` (0020,0032),
    ``image_orientation`` (0020,0037), ``pixel_spacing`` (0028,0030), ``window_center``
    (0028,1050), ``window_width`` (0028,1051) -- are **JSON arrays in TEXT columns**
    (``"[-125.0, -125.0, 30.5]"``); :func:`decode_array` decodes one and
    :meth:`Index.instances` decodes them to tuples of float. Multi-valued text such as
    ``image_type`` (0008,0008) keeps DICOM's backslash (``"ORIGINAL\\PRIMARY\\AXIAL"``).
    ``patient_id`` (0010,0020) is stored for patient-level splits; dicomml never prints it.
    The series split reads ``echo_number`` (0018,0086), ``echo_time`` (0018,0081),
    ``image_type`` and ``complex_image_component`` (0008,9208); ``diffusion_bvalue``
    (0018,9087, else Siemens (0019,100C)), ``temporal_position`` (0020,0100),
    ``acquisition_number`` (0020,0012), ``stack_id`` (0020,9056) and ``in_stack_position``
    (0020,9057) are kept for the readers (for enhanced objects from the functional groups
    when constant over the frames), with ``mosaic_images`` (Siemens NumberOfImagesInMosaic,
    0 when not a mosaic) and ``frames_per_position`` (enhanced objects). A *conflicting
    duplicate* (another file holds its SOP Instance UID with other content) has
    ``duplicate_of`` = that file's path; ``conflict`` is 1 on every file of such a set.
``skipped``
    Files that are not usable: path, size, mtime, ``category`` (grouping) and ``reason``
    (plus, for duplicate copies, the ``sop_instance_uid`` they share with an indexed file).
``files``
    The scan state: path, size, ``mtime_ns`` and status ("instance", "skipped", "dup");
    a re-scan reads only files whose size or mtime changed, files whose reading failed,
    and duplicate copies whose SOP Instance UID must be decided again.
``dicomdir_refs``
    Files that a DICOMDIR references ((0004,1500) Referenced File ID, (0004,1511)
    Referenced SOP Instance UID in File): used as a cross-check only.
``series_summary``
    One row per series key, as :meth:`Index.series` returns it (:func:`series_sql`): kept
    by every scan for the Series Instance UIDs it touched, so that reading the series table
    of a million instances does not group them again. An Index written before it has none
    until its next scan; :meth:`Index.series` then groups the instances itself. Its column
    :data:`SAME_COLUMN` says which columns of :data:`KEY_VALUE_COLUMNS` hold one value in
    every instance of the key: :meth:`Index.instances` reads those once per key.
``meta``
    key/value: schema version, scanned root, time of the last scan.

Secondary indexes on ``instances`` answer the selections of :meth:`Index.instances`,
:meth:`Index.series` and :meth:`Index.studies` (modality, SOP class, study date) and the
counts of :meth:`Index.summary`; a first scan builds them once, after its last file.

The database runs in WAL mode, so a notebook can read it while a scan writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sqlite3
import urllib.parse
from pathlib import Path
from typing import Any

from dicomml.errors import ConfigError, did_you_mean
from dicomml.io.header import DERIVED_COLUMNS, FIELDS, ROW_COLUMNS

__all__ = [
    "Index",
    "connect_read_only",
    "open_index",
    "series_note",
    "default_db_path",
    "decode_array",
    "encode_array",
    "select_where",
    "series_sql",
    "ARRAY_COLUMNS",
    "SCHEMA_VERSION",
    "INSTANCE_COLUMNS",
    "SERIES_COLUMNS",
]

#: Version 2 added the columns of the series split (echo, image part, diffusion, temporal
#: position, stack, mosaic, frames per position) and duplicate conflicts; an Index of
#: another version is rebuilt by the next scan (every file is read again).
SCHEMA_VERSION = 2

#: Columns holding JSON arrays of numbers.
ARRAY_COLUMNS = tuple(name for name, _tag, kind in FIELDS if kind == "floats")

#: Integer columns (pandas nullable ``Int64`` in :meth:`Index.instances`).
INT_COLUMNS = ("size", *(name for name, _tag, kind in FIELDS if kind == "int"),
               *DERIVED_COLUMNS)

#: Columns of the ``instances`` table, in order.
INSTANCE_COLUMNS = (*ROW_COLUMNS, "series_key", "duplicate_of", "conflict")

#: Columns of ``instances`` that :meth:`Index.instances` reads once per series key when
#: every instance of the key holds the same value (study, series, equipment and pixel
#: format attributes: most of them in most series); the others are read row by row.
KEY_VALUE_COLUMNS = tuple(c for c in INSTANCE_COLUMNS if c not in (
    "path", "size", "mtime", "sop_instance_uid", "instance_number", "image_position",
    "series_key"))

#: The column of ``series_summary`` whose bit ``j`` (an INTEGER per key) is set when column
#: ``KEY_VALUE_COLUMNS[j]`` is the same in every instance of the key: NULL in all, or one
#: value in all (SQLite compares them with the column's type: a TEXT never equals a
#: number). Named after the columns it describes, so that bits written for other columns
#: are never read with this meaning: a scan rebuilds such a table, and until then
#: :meth:`Index.instances` reads every value.
SAME_COLUMN = "same_" + hashlib.sha1(",".join(KEY_VALUE_COLUMNS).encode()).hexdigest()[:8]
assert len(KEY_VALUE_COLUMNS) < 63, "one bit per column in a signed 64-bit integer"

#: A ``meta`` row saying that the rows went in with provisional series keys (a first scan
#: in progress, or interrupted; :mod:`dicomml.io._scan_store`).
PROVISIONAL = "provisional_series_keys"

#: Columns of :meth:`Index.series` (and of the ``series_summary`` table), in order.
SERIES_COLUMNS = ("series_key", "study_instance_uid", "series_instance_uid", "modality",
                  "object_kind", "is_image", "n_instances", "n_frames", "rows", "columns",
                  "series_number", "series_description", "body_part_examined", "study_date",
                  "sop_class_uid", "frame_of_reference_uid", "image_type", "echo_number",
                  "echo_time", "n_echoes", "n_volumes", "mosaic", "mosaic_images",
                  "n_conflicts")

_SQL_TYPES = {"ui": "TEXT", "text": "TEXT", "ds": "REAL", "fd": "REAL", "floats": "TEXT",
              "int": "INTEGER"}


def _instances_ddl() -> str:
    cols = ["path TEXT PRIMARY KEY", "size INTEGER", "mtime REAL", "transfer_syntax_uid TEXT"]
    cols += [f"{name} {_SQL_TYPES[kind]}" for name, _tag, kind in FIELDS]
    cols += ["object_kind TEXT", "is_image INTEGER"]
    cols += [f"{name} INTEGER" for name in DERIVED_COLUMNS]
    cols += ["series_key TEXT", "duplicate_of TEXT", "conflict INTEGER"]
    return "CREATE TABLE IF NOT EXISTS instances (" + ", ".join(cols) + ")"


SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)",
    "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, "
    "mtime_ns INTEGER, status TEXT)",
    _instances_ddl(),
    "CREATE INDEX IF NOT EXISTS instances_sop ON instances(sop_instance_uid)",
    "CREATE INDEX IF NOT EXISTS instances_series ON instances(series_instance_uid)",
    "CREATE INDEX IF NOT EXISTS instances_key ON instances(series_key)",
    # the selections of Index.instances / series / studies (modality, SOP class, date)
    # and the counts of Index.summary, each read from an index instead of the whole table
    "CREATE INDEX IF NOT EXISTS instances_modality ON instances(modality, is_image, "
    "series_key)",
    "CREATE INDEX IF NOT EXISTS instances_image ON instances(is_image, series_key)",
    "CREATE INDEX IF NOT EXISTS instances_patient ON instances(patient_id)",
    "CREATE INDEX IF NOT EXISTS instances_study ON instances(study_instance_uid)",
    "CREATE INDEX IF NOT EXISTS instances_conflict ON instances(conflict, path) "
    "WHERE conflict IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS instances_duplicate ON instances(path, duplicate_of) "
    "WHERE duplicate_of IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS instances_sop_class ON instances(sop_class_uid, series_key)",
    "CREATE INDEX IF NOT EXISTS instances_study_date ON instances(study_date, series_key)",
    "CREATE TABLE IF NOT EXISTS skipped (path TEXT PRIMARY KEY, size INTEGER, mtime REAL, "
    "category TEXT, reason TEXT, sop_instance_uid TEXT)",
    "CREATE TABLE IF NOT EXISTS dicomdir_refs (dicomdir TEXT, path TEXT, "
    "sop_instance_uid TEXT)",
    "CREATE INDEX IF NOT EXISTS dicomdir_refs_dir ON dicomdir_refs(dicomdir)",
]


def encode_array(values) -> str | None:
    """Encode a tuple of numbers as the JSON text stored in the Index (None stays None).

    >>> encode_array((-125, 0.1, 30.5))
    '[-125.0, 0.1, 30.5]'
    """
    if values is None:
        return None
    floats = [float(v) for v in values]
    if all(map(math.isfinite, floats)):  # json.dumps's text, without its encoder's set-up
        return "[" + ", ".join(map(float.__repr__, floats)) + "]"
    return json.dumps(floats)


def decode_array(text: str | None) -> tuple[float, ...] | None:
    """Decode a JSON array column of the Index (e.g. ``image_position``) to a tuple of float.

    >>> decode_array("[-125.0, -125.0, 30.5]")
    (-125.0, -125.0, 30.5)
    >>> decode_array(None) is None
    True
    """
    if text is None:
        return None
    return tuple(float(v) for v in json.loads(text))


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dicomml"


def default_db_path(root: str | os.PathLike) -> Path:
    """The default Index file of a scanned folder, in the user's cache folder.

    ``$XDG_CACHE_HOME/dicomml/index-<hash>.sqlite`` (``~/.cache`` when the variable is not
    set), where ``<hash>`` is the first 16 hex digits of the SHA-256 of the absolute
    ``root``. It is never inside the source folder (unless that folder holds the cache).
    """
    absolute = os.path.abspath(os.fspath(root))
    digest = hashlib.sha256(absolute.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return _cache_dir() / f"index-{digest}.sqlite"


def _values(name: str, value) -> list[str]:
    values = [value] if isinstance(value, str) else (
        list(value) if isinstance(value, (list, tuple, set, frozenset)) else [])
    if not values or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{name} must be a string or a list of strings. "
                          f"Received: {name}={value!r}")
    return values


def _select_columns(columns, known: tuple[str, ...], table: str) -> str:
    """The SQL column list of ``columns`` (one name or a list of names of ``known``, the
    columns of ``table``, in the order given); ``"*"`` for ``None`` (every column).

    Raises
    ------
    ConfigError
        A name that is not a column (with the closest one), a repeated name, or no name.
    """
    if columns is None:
        return "*"
    names = _values("columns", columns)
    for name in names:
        if name not in known:
            raise ConfigError(f"{name!r} is not a column of {table}."
                              + did_you_mean(name, known)
                              + f" Known: {', '.join(known)}. Received: columns={columns!r}")
    if len(set(names)) != len(names):
        raise ConfigError(f"columns names a column twice. Received: columns={columns!r}")
    return ", ".join(f'"{name}"' for name in names)


def select_where(modality=None, sop_class_uid=None, study_date=None) -> tuple[str, list]:
    """The SQL condition on ``instances`` (and its parameters) of the selections of
    :meth:`Index.instances`, :meth:`Index.series` and :meth:`Index.studies`; ``"1"`` for
    none. Each uses an index of the ``instances`` table.

    Parameters
    ----------
    modality, sop_class_uid : str or list of str, optional
        (0008,0060) Modality, (0008,0016) SOP Class UID: one value or any of several.
    study_date : str or (str or None, str or None), optional
        (0008,0020) Study Date as DICOM DA text ``"YYYYMMDD"``: one date, or an inclusive
        range whose open end is ``None``.
    """
    conds, params = [], []
    for col, value in (("modality", modality), ("sop_class_uid", sop_class_uid)):
        if value is not None:
            values = _values(col, value)
            conds.append(f"{col} IN ({', '.join('?' * len(values))})")
            params += values
    if study_date is not None:
        bounds = ((study_date, study_date) if isinstance(study_date, str)
                  else tuple(study_date) if isinstance(study_date, (tuple, list)) else ())
        ok = len(bounds) == 2 and all(b is None or (isinstance(b, str) and len(b) == 8 and
                                                    b.isdigit()) for b in bounds)
        for bound, op in zip(bounds if ok else (), (">=", "<=")):
            if bound is not None:
                conds.append(f"study_date {op} ?")
                params.append(bound)
        if not ok:
            raise ConfigError("study_date must be a DICOM date 'YYYYMMDD' or a (first, last) "
                              "pair of them (None for an open end). "
                              f"Received: study_date={study_date!r}")
    return (" AND ".join(conds) or "1"), params


def connect_read_only(db_path: str | os.PathLike) -> sqlite3.Connection:
    """An SQLite connection that can only read ``db_path`` (a ``mode=ro`` URI; the path is
    percent-quoted, so folder names holding ``?``, ``#`` or ``%`` open the right file)."""
    path = urllib.parse.quote(os.path.abspath(os.fspath(db_path)))
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def has_same_column(con: sqlite3.Connection) -> bool:
    """Whether the Index on ``con`` has ``series_summary`` as this version writes it, with
    :data:`SAME_COLUMN` (an Index written before it has none, or one without that column:
    its next scan rebuilds it)."""
    return any(row[1] == SAME_COLUMN for row in
               con.execute("PRAGMA table_info(series_summary)"))


@contextlib.contextmanager
def _read_transaction(con: sqlite3.Connection):
    """The queries inside see one state of the Index: a read transaction on ``con``, unless
    one is open already (then it is the caller's)."""
    own = not con.in_transaction
    if own:
        con.execute("BEGIN")
    try:
        yield con
    finally:
        if own:
            con.execute("COMMIT")


#: The order of :meth:`Index.instances`.
INSTANCE_ORDER = "ORDER BY series_key, instance_number, path"
#: The order of the files of one series key (:meth:`Index.series_files`; ``i`` is
#: ``instances``).
_KEY_FILES_ORDER = "ORDER BY i.instance_number IS NULL, i.instance_number, i.path"


def varying_sql(keys: str = "1") -> str:
    """A SELECT of ``(series_key, bits)`` for the instances of the keys satisfying the SQL
    condition ``keys`` (on ``instances``) that differ from the key's first instance (lowest
    rowid) in a column of :data:`KEY_VALUE_COLUMNS`: bit ``j`` set where column ``j``
    differs (``IS NOT``: NULL differs from any value, a TEXT from any number). Every other
    bit of a key is the same in all its instances: :data:`SAME_COLUMN` is :data:`SAME_ALL`
    without the bits of any of its rows (:func:`same_bits`). One expression per row, no
    aggregate: a third of the time of MIN / MAX / COUNT per column and key. The rows of a
    key are found through ``instances_key``, which every scan builds before its end
    (without it SQLite would scan the table once per key: ``INDEXED BY`` makes that an
    error instead)."""
    bits = " | ".join(f'((i."{c}" IS NOT o."{c}") << {j})'
                      for j, c in enumerate(KEY_VALUE_COLUMNS))
    return (f"SELECT series_key, bits FROM (SELECT i.series_key, {bits} AS bits FROM "
            "(SELECT series_key AS k, MIN(rowid) AS r FROM instances "
            f"WHERE series_key IS NOT NULL AND {keys} GROUP BY series_key) AS f "
            "JOIN instances AS o ON o.rowid = f.r "
            "JOIN instances AS i INDEXED BY instances_key ON i.series_key = f.k) "
            "WHERE bits != 0")


#: :data:`SAME_COLUMN` of a key whose instances hold one value in every column.
SAME_ALL = (1 << len(KEY_VALUE_COLUMNS)) - 1


def same_bits(varying) -> dict[str, int]:
    """:data:`SAME_COLUMN` of each key that has rows in ``varying`` (the rows of
    :func:`varying_sql`); a key without any is :data:`SAME_ALL`."""
    out: dict[str, int] = {}
    for key, bits in varying:
        out[key] = out.get(key, SAME_ALL) & ~bits
    return out


def series_sql(keys: str = "1", uids: str = "1") -> str:
    """The SELECT of :meth:`Index.series` (no ORDER BY): one row per series key of the
    instances whose ``series_key`` satisfies the SQL condition ``keys`` and whose
    ``series_instance_uid`` satisfies ``uids`` (both refer to ``instances`` columns; each
    appears in the text once per use, so its parameters are given once per use). The scan
    keeps its result in the ``series_summary`` table, with :data:`SAME_COLUMN`
    (:func:`varying_sql`)."""
    return (
        "WITH echoes AS (SELECT series_instance_uid AS uid, COUNT(DISTINCT "
        "quote(echo_number) || '|' || quote(ROUND(echo_time, 2))) AS n FROM instances "
        f"WHERE object_kind = 'image' AND {uids} GROUP BY series_instance_uid), "
        "vols AS (SELECT series_key AS k, MAX(n) AS n FROM (SELECT series_key, "
        "SUM(COALESCE(frames_per_position, 1)) AS n FROM instances "
        "WHERE object_kind = 'image' AND (image_position IS NOT NULL OR "
        f"frames_per_position IS NOT NULL) AND {keys} GROUP BY series_key, "
        "image_position) GROUP BY series_key) "
        "SELECT series_key, MIN(study_instance_uid) AS study_instance_uid, "
        "MIN(series_instance_uid) AS series_instance_uid, MIN(modality) AS modality, "
        "MIN(object_kind) AS object_kind, MAX(is_image) AS is_image, "
        "COUNT(*) AS n_instances, SUM(COALESCE(number_of_frames, 1)) AS n_frames, "
        "MIN(rows) AS rows, MIN(columns) AS columns, MIN(series_number) AS series_number, "
        "MIN(series_description) AS series_description, "
        "MIN(body_part_examined) AS body_part_examined, MIN(study_date) AS study_date, "
        "MIN(sop_class_uid) AS sop_class_uid, "
        "MIN(frame_of_reference_uid) AS frame_of_reference_uid, "
        "MIN(image_type) AS image_type, MIN(echo_number) AS echo_number, "
        "MIN(echo_time) AS echo_time, "
        "CASE WHEN MAX(is_image) THEN COALESCE(MIN(echoes.n), 1) ELSE 0 END AS n_echoes, "
        "CASE WHEN MAX(is_image) THEN COALESCE(MIN(vols.n), 1) ELSE 0 END AS n_volumes, "
        "MAX(COALESCE(mosaic_images, 0) > 0 OR '\\' || image_type || '\\' LIKE "
        "'%\\MOSAIC\\%') AS mosaic, MAX(COALESCE(mosaic_images, 0)) AS mosaic_images, "
        "SUM(COALESCE(conflict, 0)) AS n_conflicts "
        "FROM instances LEFT JOIN echoes ON echoes.uid = series_instance_uid "
        f"LEFT JOIN vols ON vols.k = series_key WHERE {keys} GROUP BY series_key")


def _decode_texts(texts) -> list:
    """:func:`decode_array` of every text of one column; each distinct text is decoded once
    (orientation, spacing and windows repeat from file to file), and the distinct texts
    are parsed by one ``json.loads`` of their JSON list (one call instead of one per text:
    positions differ in every file); where that list does not parse into one array per
    text, text by text."""
    memo: dict = dict.fromkeys(texts)
    memo.pop(None, None)
    distinct = list(memo)
    try:
        parsed = json.loads("[" + ",".join(distinct) + "]") if distinct else []
        ok = len(parsed) == len(distinct) and all(type(v) is list for v in parsed)
    except (TypeError, ValueError):  # not a text, or not JSON: decode_array says which
        ok = False
    if ok:
        for t, v in zip(distinct, parsed):
            memo[t] = tuple(float(x) for x in v)
    else:
        for t in distinct:
            memo[t] = decode_array(t)
    memo[None] = None
    return [memo[t] for t in texts]


_BOOL_COLUMNS = ("is_image", "conflict")


def _matrix(rows: list, width: int):
    """``rows`` (tuples from SQLite) as an object array (len(rows), width)."""
    import numpy as np

    matrix = np.empty((len(rows), width), dtype=object)
    if rows:
        matrix[:] = rows  # one transposable block instead of a tuple per row
    return matrix


def _column(name: str, values, empty: bool):
    """One column of :meth:`Index.instances` (decoded) from its values (an object array
    as SQLite gives them): JSON arrays to tuples of float (each distinct text once), the
    integer columns as nullable ``Int64``, ``is_image`` / ``conflict`` as bool (NULL is
    False), every other column as pandas infers it from its values (what
    ``pd.read_sql_query`` gives); ``empty``: no row."""
    import numpy as np
    import pandas as pd

    if name in ARRAY_COLUMNS:
        return pd.Series(_decode_texts(values), dtype=object)
    if name in INT_COLUMNS:
        missing = values == None  # noqa: E711 - elementwise, NULL of SQLite
        if missing.any():
            values = values.copy()
            values[missing] = 0
        return pd.Series(pd.arrays.IntegerArray(values.astype(np.int64), missing))
    if name in _BOOL_COLUMNS:
        return pd.Series(values.astype(bool), dtype=bool)
    return pd.Series(values.tolist(), dtype=object if empty else None)


def _decoded_frame(cur):
    """The rows of ``cur`` (a query on ``instances``) as :meth:`Index.instances` returns
    them decoded, built column by column (:func:`_column`). The same frame as
    ``pd.read_sql_query`` followed by those conversions column by column, without its
    intermediate object matrix."""
    import pandas as pd

    names = [d[0] for d in cur.description]
    rows = cur.fetchall()
    matrix = _matrix(rows, len(names))
    return pd.DataFrame({name: _column(name, matrix[:, j], not rows)
                         for j, name in enumerate(names)}, columns=names)


def _keyed_frame(con: sqlite3.Connection, names: list[str], where: str, params: tuple):
    """The decoded frame of :meth:`Index.instances` (columns ``names``, rows of ``where``)
    with the columns of :data:`KEY_VALUE_COLUMNS` that are the same in every instance of
    each selected key (:data:`SAME_COLUMN`) read once per key, from one instance of it,
    instead of once per row: SQLite's module makes a Python object per value it returns,
    which is most of the cost of a wide frame. The same frame as :func:`_decoded_frame`
    (a value the same in all instances of a key is the same in any of them).

    None where that cannot be known: a scan is writing the keys (:data:`PROVISIONAL`), or
    a selected row has no key or one without a ``series_summary`` row (written since the
    last finished scan); and where it would read about as many values as every row holds
    (keys of one or two instances: radiographs); the caller then reads every value. The
    queries run in one read transaction, so they see one state of the Index."""
    import pandas as pd

    keyed = [n for n in names if n in KEY_VALUE_COLUMNS]
    if not keyed:
        return None
    with _read_transaction(con):
        if con.execute("SELECT 1 FROM meta WHERE key = ?", (PROVISIONAL,)).fetchone():
            return None
        keys = con.execute(
            f"SELECT k.series_key, k.r, k.n, s.{SAME_COLUMN} FROM (SELECT series_key, "
            f"MIN(rowid) AS r, COUNT(*) AS n FROM instances WHERE {where} "
            "GROUP BY series_key) AS k "
            "LEFT JOIN series_summary AS s ON s.series_key = k.series_key", params).fetchall()
        if not keys or any(k[0] is None or k[3] is None for k in keys):
            return None
        same = -1
        for k in keys:
            same &= k[3]
        const = [n for n in keyed if same >> KEY_VALUE_COLUMNS.index(n) & 1]
        per_row = [n for n in names if n not in const]
        n_rows = sum(k[2] for k in keys)
        if len(keys) * (3 + len(const)) + n_rows * (1 + len(per_row)) \
                > 0.7 * n_rows * len(names):  # values read: by key against row by row
            return None
        values = {r[0]: r[1:] for r in con.execute(
            "SELECT rowid" + "".join(f', "{n}"' for n in const) + " FROM instances "
            "WHERE rowid IN (SELECT value FROM json_each(?))",
            (json.dumps([k[1] for k in keys]),))}
        rows = con.execute("SELECT series_key" + "".join(f', "{n}"' for n in per_row)
                           + f" FROM instances WHERE {where} {INSTANCE_ORDER}",
                           params).fetchall()
    matrix = _matrix(rows, 1 + len(per_row))
    codes = pd.Index([k[0] for k in keys]).get_indexer(matrix[:, 0])
    if not rows or (codes < 0).any():
        return None
    by_key = _matrix([values[k[1]] for k in keys], len(const))
    data = {}
    for name in names:
        if name in const:  # the key's column, one row per row of the frame
            col = _column(name, by_key[:, const.index(name)], False)
            data[name] = col.take(codes).reset_index(drop=True)
        else:
            data[name] = _column(name, matrix[:, 1 + per_row.index(name)], False)
    return pd.DataFrame(data, columns=names)


class Index:
    """Read access to a scanned Index (see the module docstring for the tables).

    Parameters
    ----------
    db_path : path
        The SQLite file written by :func:`dicomml.io.scan`.

    Examples
    --------
    >>> with Index(db) as idx:                                  # doctest: +SKIP
    ...     ct = idx.series().query("modality == 'CT' and is_image")
    ...     paths = idx.series_files(ct.series_key.iloc[0])
    """

    def __init__(self, db_path: str | os.PathLike):
        self.db_path = Path(db_path)
        if not self.db_path.is_file():
            raise ConfigError(f"no Index at {self.db_path}: run 'dicomml scan FOLDER --db "
                              f"{self.db_path}' first, or pass the right --db.")
        try:
            self._con = connect_read_only(self.db_path)
            version = self._con.execute(
                "SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError as e:
            raise ConfigError(f"{self.db_path} is not a dicomml Index ({e}); scan again "
                              "with a new --db file.") from e
        if version is None or int(version[0]) != SCHEMA_VERSION:
            self._con.close()
            raise ConfigError(f"{self.db_path} has Index schema {version and version[0]}, "
                              f"expected {SCHEMA_VERSION}: scan the folder again.")

    # -- context manager ---------------------------------------------------------------
    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the database connection."""
        self._con.close()

    def __repr__(self) -> str:
        return f"Index({str(self.db_path)!r})"

    def _frame(self, sql: str, params: tuple = ()):
        import pandas as pd

        return pd.read_sql_query(sql, self._con, params=params)

    def _has_series_summary(self) -> bool:
        """Whether the scan's ``series_summary`` table exists (not in an Index written
        before it: then the instances are grouped at each call)."""
        return self._con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                 "name = 'series_summary'").fetchone() is not None

    # -- tables ------------------------------------------------------------------------
    def meta(self) -> dict[str, str]:
        """The ``meta`` table as a dict (schema version, root, last scan time)."""
        return dict(self._con.execute("SELECT key, value FROM meta").fetchall())

    def instances(self, *, decode: bool = True, modality=None, sop_class_uid=None,
                  study_date=None, columns=None):
        """The instances as a DataFrame (columns :data:`INSTANCE_COLUMNS`), ordered by
        series key, instance number and path; ``decode`` turns JSON arrays into tuples.

        ``modality``, ``sop_class_uid`` and ``study_date`` select (see
        :func:`select_where`); default all instances. ``columns`` (a name or a list of
        names of :data:`INSTANCE_COLUMNS`) reads only those, in that order: the frame
        equals the same columns of the full one (values, dtypes, row order, even when the
        ordering columns are not among them), and costs about in proportion to the
        columns it reads (SQLite makes one Python object per value).

        A column that holds one value in every instance of each selected series key
        (study, series, equipment, pixel format: :data:`KEY_VALUE_COLUMNS`, as the last
        scan found them, :data:`SAME_COLUMN`) is read once per key and repeated: the same
        frame as reading it row by row, in about a third of the time for 100,000 MR
        instances in 49 columns. Rows that a scan is still writing are read row by row.

        Examples
        --------
        >>> idx.instances(modality="MR", columns=["path", "series_key"])  # doctest: +SKIP
        """
        where, params = select_where(modality, sop_class_uid, study_date)
        cols = _select_columns(columns, INSTANCE_COLUMNS, "the instances table")
        sql = f"SELECT {cols} FROM instances WHERE {where} {INSTANCE_ORDER}"
        if not decode:
            return self._frame(sql, tuple(params))
        if has_same_column(self._con):
            names = list(INSTANCE_COLUMNS) if columns is None else _values("columns", columns)
            df = _keyed_frame(self._con, names, where, tuple(params))
            if df is not None:
                return df
        return _decoded_frame(self._con.execute(sql, tuple(params)))

    def series(self, *, modality=None, sop_class_uid=None, study_date=None, columns=None):
        """One row per series key (columns :data:`SERIES_COLUMNS`): modality, study and
        series UIDs, counts, size, kind...

        ``modality``, ``sop_class_uid`` and ``study_date`` keep the series keys holding
        such an instance (see :func:`select_where`); default all. ``columns`` (a name or
        a list of names of :data:`SERIES_COLUMNS`) reads only those, in that order, as
        the full frame has them.

        Besides the header values of the key's first instances (``MIN``), the columns
        describe the structure the series split and the readers need:

        ``image_type``, ``echo_number``, ``echo_time``
            Of the key (one echo and one complex part per key, :mod:`dicomml.io.series`).
        ``n_echoes``
            Echoes (distinct Echo Numbers / Echo Times) among the images of the key's
            Series Instance UID: more than 1 for each key of a multi-echo acquisition.
        ``n_volumes``
            Volumes of a 4-D series: the most instances at one (0020,0032) position (a
            Siemens mosaic file is one volume), for enhanced multi-frame objects the sum of
            their frames per position; 1 for a 3-D series.
        ``mosaic`` / ``mosaic_images``
            Siemens mosaic ((0008,0008) holds MOSAIC) / NumberOfImagesInMosaic (0 when the
            CSA header gives none).
        ``n_conflicts``
            Instances whose SOP Instance UID another file holds with other content
            (conflicting duplicates, see :mod:`dicomml.io._scan_store`).
        """
        where, params = select_where(modality, sop_class_uid, study_date)
        keys = uids = "1"
        if where != "1":
            keys = f"series_key IN (SELECT series_key FROM instances WHERE {where})"
            uids = ("series_instance_uid IN (SELECT series_instance_uid FROM instances "
                    f"WHERE {where})")
            params = params * 3
        cols = _select_columns(SERIES_COLUMNS if columns is None else columns,
                               SERIES_COLUMNS, "the series table")
        order = " ORDER BY study_instance_uid, series_number, series_key"
        if self._has_series_summary():  # kept up to date by every scan
            df = self._frame(f"SELECT {cols} FROM series_summary WHERE {keys}" + order,
                             tuple(params[:len(params) // 3]))
        else:  # an Index written before the table existed
            df = self._frame(f"SELECT {cols} FROM ({series_sql(keys, uids)})" + order,
                             tuple(params))
        for col in ("is_image", "mosaic"):
            if col in df:
                df[col] = df[col].fillna(0).astype(bool)
        for col in ("echo_number", "n_echoes", "n_volumes", "mosaic_images", "n_conflicts"):
            if col in df:
                df[col] = df[col].astype("Int64")
        return df

    def studies(self, *, modality=None, sop_class_uid=None, study_date=None):
        """One row per study: date, number of series (keys) and instances, modalities.

        ``modality``, ``sop_class_uid`` and ``study_date`` keep the studies holding such
        an instance (see :func:`select_where`); default all.
        """
        where, params = select_where(modality, sop_class_uid, study_date)
        studies = "1" if where == "1" else (
            f"study_instance_uid IN (SELECT study_instance_uid FROM instances WHERE {where})")
        return self._frame(
            "SELECT study_instance_uid, MIN(study_date) AS study_date, "
            "COUNT(DISTINCT series_key) AS n_series, COUNT(*) AS n_instances, "
            "GROUP_CONCAT(DISTINCT modality) AS modalities "
            f"FROM instances WHERE {studies} GROUP BY study_instance_uid "
            "ORDER BY study_date, study_instance_uid", tuple(params))

    def skipped(self):
        """The files that were not indexed: path, size, mtime, category, reason."""
        return self._frame("SELECT path, size, mtime, category, reason FROM skipped "
                           "ORDER BY path")

    def series_files(self, series_key: str) -> list[str]:
        """Paths of one series key, ordered by (0020,0013) Instance Number then path.

        Raises
        ------
        ConfigError
            No instance has this series key.
        """
        rows = self._con.execute("SELECT path FROM instances i WHERE series_key = ? "
                                 + _KEY_FILES_ORDER, (series_key,)).fetchall()
        if not rows:
            raise self._unknown_key(series_key)
        return [r[0] for r in rows]

    def _unknown_key(self, series_key: str) -> ConfigError:
        return ConfigError(f"no series with key {series_key!r} in {self.db_path}; list "
                           "them with Index.series() or 'dicomml scan'.")

    def series_group(self, series_key: str) -> tuple[list[str], bool]:
        """:meth:`series_files`, and whether those files are, as they are now, one group of
        the same-series rule (:func:`dicomml.io.series.group_instances`): True when no scan
        is writing the keys (:data:`PROVISIONAL`) and every file has the size and
        modification time (ns) that the scan read, so the values the rule compared are the
        file's; then :func:`dicomml.io.read_series` need not group them again.

        Raises
        ------
        ConfigError
            No instance has this series key.
        """
        with _read_transaction(self._con) as con:  # one state of the Index for both
            rows = con.execute(
                "SELECT i.path, f.size, f.mtime_ns FROM instances i LEFT JOIN files f "
                "ON f.path = i.path WHERE i.series_key = ? " + _KEY_FILES_ORDER,
                (series_key,)).fetchall()
            writing = con.execute("SELECT 1 FROM meta WHERE key = ?",
                                  (PROVISIONAL,)).fetchone() is not None
        if not rows:
            raise self._unknown_key(series_key)
        grouped = not writing
        for path, size, mtime_ns in rows:
            if not grouped:
                break
            try:
                st = os.stat(path)
            except OSError:
                grouped = False
            else:
                grouped = st.st_size == size and st.st_mtime_ns == mtime_ns
        return [r[0] for r in rows], grouped

    def instance(self, path: str) -> dict[str, Any] | None:
        """The row of one file (arrays decoded), or None when it is not indexed."""
        cur = self._con.execute("SELECT * FROM instances WHERE path = ?",
                                (os.path.abspath(path),))
        row = cur.fetchone()
        if row is None:
            return None
        out = dict(zip([d[0] for d in cur.description], row))
        for col in ARRAY_COLUMNS:
            out[col] = decode_array(out[col])
        out["is_image"] = bool(out["is_image"])
        return out

    def summary(self) -> dict[str, Any]:
        """Counts for reports, **without any patient identifier**.

        Keys: ``patients``, ``studies``, ``series`` (image series keys), ``instances`` (all
        indexed objects), ``images``, ``series_by_modality``, ``non_image_by_kind``,
        ``skipped`` (number of files), ``skipped_by_reason`` (by category),
        ``dicomdir_referenced`` and ``dicomdir_missing`` (referenced files not indexed),
        ``conflicting_duplicates`` (indexed files whose SOP Instance UID another file holds
        with other content, the first file included).
        """
        q = self._con.execute
        # one statement per count, each answered from an index (see SCHEMA)
        (patients,) = q("SELECT COUNT(DISTINCT patient_id) FROM instances").fetchone()
        (studies,) = q("SELECT COUNT(DISTINCT study_instance_uid) FROM instances").fetchone()
        (instances,) = q("SELECT COUNT(*) FROM instances").fetchone()
        (conflicts,) = q("SELECT COALESCE(SUM(conflict), 0) FROM instances "
                         "WHERE conflict IS NOT NULL").fetchone()
        if self._has_series_summary():  # one row per series key (image keys hold images only)
            (images,) = q("SELECT COUNT(*) FROM instances WHERE is_image = 1").fetchone()
            (series,) = q("SELECT COUNT(*) FROM series_summary WHERE is_image").fetchone()
            per_modality = q("SELECT modality, COUNT(*) FROM series_summary WHERE is_image "
                             "GROUP BY modality").fetchall()
        else:
            images, series = q("SELECT COUNT(*), COUNT(DISTINCT series_key) FROM instances "
                               "WHERE is_image = 1").fetchone()
            per_modality = q("SELECT modality, COUNT(DISTINCT series_key) FROM instances "
                             "WHERE is_image = 1 GROUP BY modality").fetchall()
        by_modality: dict[str, int] = {}
        for modality, n in per_modality:
            key = "?" if modality is None else modality
            by_modality[key] = by_modality.get(key, 0) + n
        by_modality = dict(sorted(by_modality.items()))
        by_kind = dict(q("SELECT object_kind, COUNT(*) FROM instances WHERE is_image = 0 "
                         "GROUP BY 1 ORDER BY 1").fetchall())
        skipped = q("SELECT COUNT(*) FROM skipped").fetchone()[0]
        by_reason = dict(q("SELECT category, COUNT(*) FROM skipped GROUP BY 1 "
                           "ORDER BY 2 DESC, 1").fetchall())
        referenced, missing = q(
            "SELECT COUNT(*), COALESCE(SUM(i.path IS NULL), 0) FROM dicomdir_refs r "
            "LEFT JOIN instances i ON i.path = r.path").fetchone()
        return {"patients": patients, "studies": studies, "series": series,
                "conflicting_duplicates": conflicts,
                "instances": instances, "images": images,
                "series_by_modality": by_modality, "non_image_by_kind": by_kind,
                "skipped": skipped, "skipped_by_reason": by_reason,
                "dicomdir_referenced": referenced, "dicomdir_missing": missing}


def series_note(row) -> str:
    """What one :meth:`Index.series` row says about its structure ("" for a 3-D series).

    For example ``"Siemens mosaic of 36 images; 4-D: 6 volumes; echo 1 of 2
    (multi-echo); 2 conflicting duplicates"``. Used by the scan summary and ``dicomml
    show``; reads the columns defensively (an Index row of another branch may lack them).
    """
    get = row.get if hasattr(row, "get") else (lambda k, d=None: getattr(row, k, d))

    def num(key):
        v = get(key)
        try:
            return 0 if v is None or v != v else int(v)
        except (TypeError, ValueError):  # pandas NA
            return 0

    parts = []
    if get("mosaic") is True or num("mosaic_images") > 0:
        n = num("mosaic_images")
        parts.append(f"Siemens mosaic of {n} images" if n else
                     "Siemens mosaic (no NumberOfImagesInMosaic in the CSA header)")
    if num("n_volumes") > 1:
        parts.append(f"4-D: {num('n_volumes')} volumes")
    if num("n_echoes") > 1:
        echo = num("echo_number")
        te = get("echo_time")
        which = f"echo {echo}" if echo else (f"TE {te:g} ms" if isinstance(te, float) and
                                             te == te else "one echo")
        parts.append(f"{which} of {num('n_echoes')} (multi-echo)")
    if num("n_conflicts"):
        parts.append(f"{num('n_conflicts')} conflicting duplicate(s): same SOP Instance UID, "
                     "other content")
    return "; ".join(parts)


def open_index(path: str | os.PathLike | None = None, *, db: str | os.PathLike | None = None
               ) -> Index:
    """Open an Index by its database file, or by the scanned folder (default location).

    Parameters
    ----------
    path : path, optional
        The ``.sqlite`` file, or a scanned folder whose Index is at
        :func:`default_db_path`.
    db : path, optional
        The database file explicitly (wins over ``path``).
    """
    if db is not None:
        return Index(db)
    if path is None:
        raise ConfigError("open_index needs the scanned folder or the database file. "
                          "Received: path=None, db=None")
    if os.path.isdir(path):
        return Index(default_db_path(path))
    return Index(path)
