"""``scan``: index a folder of DICOM files (headers only) into an SQLite Index.

The parent process walks the folder (:mod:`dicomml.io.files`, in path order), compares
every file's size and ``mtime_ns`` with the Index's ``files`` table (one merge of the walk
with ``files`` read page by page in path order), sends chunks of the new or changed paths
to workers, and is the only writer of the Index (:mod:`dicomml.io.index`): each chunk of
results is one transaction, so an interrupted scan keeps what it committed and the next
scan reads only the rest. Files that disappeared are removed from the Index. The list of
files to read lives in an SQLite temporary table (read back page by page), so the scan's
memory does not grow with the number of files; a first scan (an empty Index: every file is
new) keeps no list at all, it reads the files as the walk finds them (the workers start on
the first chunks while the folder is still walked), and builds the Index's secondary
indexes once, at the end. Workers read
headers only (:func:`dicomml.io.header.read_header`): pixel data is never decoded; the
element headers up to and over (7FE0,0010) are checked so that truncated copies are
reported.

Workers
-------
``workers=0`` or ``1`` reads in this process. With ``workers=N > 1``, when forking is
safe (Linux, no other thread, TensorFlow not loaded), N - 1 processes of
:mod:`dicomml.parallel` are forked from this one (``start_method="fork"``) and this
process reads chunks too whenever no result is waiting to be stored (``local=True``):
header parsing is pure Python, and a forked worker starts in milliseconds where a fresh
interpreter needs about half a second of imports. Otherwise N worker processes of
:mod:`dicomml.parallel` are used (started with ``preload=["dicomml.io.scanner"]`` once
the first files are walked, so that their start-up overlaps the rest of the walk), as is
any ``executor`` given (e.g. a Dask cluster). Small jobs (up to :data:`SMALL_JOB_CHUNKS`
chunks, 1,024 files) always run in this process, and no worker is started for them.
Either way a worker that dies (the OOM killer, a signal) costs no more than its chunk:
:mod:`dicomml.parallel` reads its files again one by one in fresh workers, and a file that
kills its worker again is recorded as skipped ("scan failed", with the exit status; read
again by the next scan). The scan goes on.
"""

from __future__ import annotations

import itertools
import logging
import operator
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

from dicomml.errors import ConfigError
from dicomml.io._scan_fast import ValueCache
from dicomml.io.index import ARRAY_COLUMNS, INSTANCE_COLUMNS, encode_array
from dicomml.io.files import walk_files
from dicomml.io.header import Skip, read_header

__all__ = ["scan", "ScanResult", "scan_chunk", "CHUNK_SIZE"]

#: Files per chunk sent to a worker.
CHUNK_SIZE = 256
#: A scan of at most this many chunks of files (1,024) reads them in this process: forking
#: a worker, its pages copied on write by both processes, the pipe and its end cost more
#: than the second CPU gives back (618 MR files of dcm_qa_nih: 46 ms in this process, 66 ms
#: with a forked worker from a process that had read series; 600 small CT files 29 against
#: 35 ms, 1,200 of them 57 against 54 ms).
SMALL_JOB_CHUNKS = 4


@dataclass(frozen=True)
class ScanResult:
    """What one :func:`scan` did, and the Index's counts afterwards.

    Attributes
    ----------
    root, db_path : str
        The scanned folder and the Index file.
    files_seen : int
        Files found under ``root``.
    files_read : int
        Files whose header was read by this scan (new, changed, or to be retried).
    files_removed : int
        Files in the Index that disappeared from ``root`` and were removed.
    elapsed_s : float
        Wall time of the scan.
    summary : dict
        :meth:`dicomml.io.index.Index.summary` after the scan (no patient identifiers).
    skipped : tuple of (path, reason)
        Every file of the Index that is not usable, with the reason.
    conflicts : tuple of (path, duplicate_of)
        Conflicting duplicates: files indexed although an earlier path (``duplicate_of``,
        also indexed) holds the same SOP Instance UID with other content.
    """

    root: str
    db_path: str
    files_seen: int
    files_read: int
    files_removed: int
    elapsed_s: float
    summary: dict = field(repr=False)
    skipped: tuple = field(repr=False)
    conflicts: tuple = field(default=(), repr=False)

    @property
    def files_unchanged(self) -> int:
        """Files found unchanged since the previous scan (not read again)."""
        return self.files_seen - self.files_read

    @property
    def files_per_s(self) -> float:
        """Files read per second of wall time."""
        return self.files_read / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        """True when no file was skipped."""
        return not self.skipped

    def index(self):
        """Open the Index (:class:`dicomml.io.index.Index`)."""
        from dicomml.io.index import Index

        return Index(self.db_path)

    def format(self) -> str:
        """The text summary of the scan, as ``dicomml scan`` prints it (no patient identifiers)."""
        result = self
        s = result.summary
        images = f"{s['images']} image" + ("" if s["images"] == 1 else "s")
        lines = [
            f"Index: {result.db_path}",
            f"patients: {s['patients']}   studies: {s['studies']}   "
            f"image series: {s['series']}   instances: {s['instances']} "
            f"({images})",
        ]
        if s["series_by_modality"]:
            lines.append("series by modality: " + ", ".join(
                f"{m} {n}" for m, n in s["series_by_modality"].items()))
        if s["non_image_by_kind"]:
            lines.append("non-image objects: " + ", ".join(
                f"{k} {n}" for k, n in s["non_image_by_kind"].items()))
        if s["dicomdir_referenced"]:
            lines.append(f"DICOMDIR cross-check: {s['dicomdir_referenced']} referenced files, "
                         f"{s['dicomdir_missing']} not indexed")
        lines.append(f"files: {result.files_seen} found, {result.files_read} read, "
                     f"{result.files_unchanged} unchanged, {result.files_removed} removed; "
                     f"{result.elapsed_s:.2f} s, {result.files_per_s:.0f} files/s")
        notes = result.series_notes()
        if notes:
            lines.append(f"series to note: {len(notes)}")
            for key, note in notes[:20]:
                lines.append(f"    {key}: {note}")
            if len(notes) > 20:
                lines.append(f"    ... and {len(notes) - 20} more (see Index.series())")
        conflicts = getattr(result, "conflicts", ())
        if conflicts:
            lines.append(f"conflicting duplicates: {len(conflicts)} files indexed although an "
                         "earlier file holds their SOP Instance UID with other content")
            for path, first in conflicts[:20]:
                lines.append(f"    {path}: conflicts with {first}")
            if len(conflicts) > 20:
                lines.append(f"    ... and {len(conflicts) - 20} more (see --json)")
        if s["skipped_by_reason"]:
            lines.append(f"skipped: {s['skipped']} files")
            for reason, n in s["skipped_by_reason"].items():
                lines.append(f"  {n:6d}  {reason}")
            shown = result.skipped[:20]
            for path, reason in shown:
                lines.append(f"    {path}: {reason}")
            if len(result.skipped) > len(shown):
                lines.append(f"    ... and {len(result.skipped) - len(shown)} more "
                             "(see --json or Index.skipped())")
        return "\n".join(lines)

    def series_notes(self) -> list[tuple[str, str]]:
        """``(series_key, note)`` of the series that are mosaics, 4-D, multi-echo or hold
        conflicting duplicates (:func:`dicomml.io.index.series_note`)."""
        from dicomml.io.index import series_note

        with self.index() as idx:
            series = idx.series()
        notes = ((row["series_key"], series_note(row)) for _i, row in series.iterrows())
        return [(key, note) for key, note in notes if note]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the summary counts, scan figures, ``skipped`` as {path, reason} and
        ``conflicts`` as {path, duplicate_of}."""
        out = dict(self.summary)
        out.update({"root": self.root, "db": self.db_path, "files_seen": self.files_seen,
                    "files_read": self.files_read, "files_removed": self.files_removed,
                    "elapsed_s": round(self.elapsed_s, 3),
                    "files_per_s": round(self.files_per_s, 1),
                    "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
                    "conflicts": [{"path": p, "duplicate_of": d} for p, d in self.conflicts]})
        return out


def _dicomdir_refs(path: str) -> list[tuple[str, str | None]]:
    """Files referenced by a DICOMDIR ((0004,1500), (0004,1511)); empty when unreadable."""
    import pydicom

    folder = os.path.dirname(path)
    out = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True)
            for rec in ds.get("DirectoryRecordSequence", []):
                fid = rec.get("ReferencedFileID")
                if fid is None:
                    continue
                parts = [fid] if isinstance(fid, str) else list(fid)
                parts = [str(p).strip() for p in parts if str(p).strip() not in ("", ".", "..")]
                if not parts:
                    continue
                uid = rec.get("ReferencedSOPInstanceUIDInFile")
                out.append((os.path.join(folder, *parts), str(uid) if uid else None))
    except Exception:  # a broken DICOMDIR is only a missing cross-check
        return []
    return out


def scan_chunk(items: list[tuple[str, int, int]], fast: bool = True, *,
               cache_items: int = 4096) -> list[tuple]:
    """Read the headers of one chunk of ``(path, size, mtime_ns)``; runs in a worker.

    The values that repeat from file to file are normalized once per chunk (caches of at
    most ``cache_items`` entries, created here: no state is kept between chunks).

    Returns one tuple per item: ``("row", path, size, mtime_ns, values, dicomdir_refs,
    nulls)`` (``values`` as :func:`dicomml.io._scan_store.db_values` gives them, ``nulls``
    the bits ``1 << i`` of those that are None: the parent binds only the others) or
    ``("skip", path, size, mtime_ns, category, reason)``. Never raises for one bad file.
    """
    out = []
    log = logging.getLogger("pydicom")  # its per-file warnings would break the progress bar
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        _scan_items(items, fast, out, cache_items)
    finally:
        log.setLevel(level)
    return out


#: Positions in ``instances``' columns of the array columns and of ``is_image``.
_ARRAY_AT = tuple(i for i, col in enumerate(INSTANCE_COLUMNS) if col in ARRAY_COLUMNS)
_IS_IMAGE_AT = INSTANCE_COLUMNS.index("is_image")


def _db_values(row: dict, cache: dict) -> tuple:
    """:func:`dicomml.io._scan_store.db_values`, with the JSON of repeated arrays remembered.

    ``cache``: JSON text of the array columns by tuple identity, ``id(value) -> (value,
    text)``, for the files of one chunk: the struct reader returns the very same tuple for a
    repeated raw value (orientation, spacing, windows), and holding it keeps its id from
    being reused. Identity, not equality: (0.0,) == (-0.0,) but their JSON differs.
    Bounded: cleared when full.
    """
    values = list(map(row.get, INSTANCE_COLUMNS))  # absent columns: None
    for i in _ARRAY_AT:
        v = values[i]
        if v is None:
            continue
        hit = cache.get(id(v))
        if hit is not None and hit[0] is v:
            values[i] = hit[1]
        else:
            text = encode_array(v)
            if len(cache) >= 4096:
                cache.clear()
            cache[id(v)] = (v, text)
            values[i] = text
    v = values[_IS_IMAGE_AT]
    if v is not None:
        values[_IS_IMAGE_AT] = int(bool(v))
    return tuple(values)


def _nulls(values: tuple) -> int:
    """The bits ``1 << i`` of the values that are None (:meth:`Store.write
    <dicomml.io._scan_store.Store.write>` binds only the others: a bound None costs the
    parent more than the worker's few operations here)."""
    return sum(itertools.compress(_BITS, map(operator.is_, values, _NONES)))


_BITS = tuple(1 << i for i in range(len(INSTANCE_COLUMNS)))
_NONES = (None,) * len(INSTANCE_COLUMNS)


def _scan_items(items, fast, out, cache_items: int) -> None:
    values, arrays = ValueCache(cache_items), {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path, size, mtime_ns in items:
            try:
                row = read_header(path, size, mtime_ns, fast=fast, cache=values)
                refs = _dicomdir_refs(path) if row["object_kind"] == "dicomdir" else None
                db = _db_values(row, arrays)
                out.append(("row", path, size, mtime_ns, db, refs, _nulls(db)))
            except Skip as s:
                out.append(("skip", path, size, mtime_ns, s.category, s.reason))
            except Exception as e:  # a reader bug must not stop the batch
                out.append(("skip", path, size, mtime_ns, "invalid DICOM",
                            f"invalid DICOM (reader error {type(e).__name__})"))


def _scan_chunk_pydicom(items):
    return scan_chunk(items, fast=False)


def _failure_reason(result) -> str:
    """Why a chunk gave no rows: a dicomml.parallel failure's reason, or the error type."""
    reason = getattr(result, "reason", None)
    return str(reason) if reason else type(result).__name__


def _fork_is_safe() -> bool:
    import threading

    return (sys.platform.startswith("linux") and threading.active_count() == 1
            and "tensorflow" not in sys.modules)


def _small_job(n_items: int) -> bool:
    """Whether ``n_items`` files are read in this process alone (:data:`SMALL_JOB_CHUNKS`)."""
    return n_items <= SMALL_JOB_CHUNKS * CHUNK_SIZE


def _make_executor(workers: int, n_items: int):
    if workers <= 1 or _small_job(n_items):
        from dicomml.parallel import get_executor

        return get_executor("inprocess")
    return _start_executor(workers)


def _start_executor(workers: int):
    """Worker processes, started now (forked, or through :mod:`dicomml.parallel`).

    A first :func:`scan` calls this once the first files are walked and there are more
    than a small job's (:class:`_Walking`), so that the workers' start-up (about half a
    second of imports when they cannot be forked) overlaps the rest of the walk; a small
    folder is read in this process without starting any.
    """
    from dicomml.parallel import get_executor

    if _fork_is_safe():  # this process reads too: one process fewer to fork
        ex = get_executor(kind="processes", workers=workers - 1, start_method="fork",
                          local=True)
    else:
        ex = get_executor(kind="processes", workers=workers, preload=["dicomml.io.scanner"])
    ex.start()
    return ex


class _Walking:
    """The files of a first scan, read as the walk finds them
    (:meth:`dicomml.io._scan_store.Store.stream_walk`): the first ``ahead`` are walked at
    once, so that ``len()`` is exact for a small folder and, for a larger one, at least
    what makes :func:`chunk_size` give the chunks of the exact count; ``complete`` says
    whether the walk has ended (``len()`` exact)."""

    def __init__(self, stream, ahead: int):
        self._head = list(itertools.islice(stream, ahead))
        self._rest = stream
        self._n = len(self._head)
        self.complete = self._n < ahead

    def __len__(self) -> int:
        return self._n

    def __iter__(self):
        head, self._head = self._head, []
        yield from head
        for item in self._rest:
            self._n += 1
            yield item
        self.complete = True


class _Todo:
    """The files a scan reads: ``len()`` of them, iterated page by page from the Index's
    temporary table (:meth:`dicomml.io._scan_store.Store.todo`), never held in a list."""

    def __init__(self, store, n: int):
        self._store, self._n = store, n

    def __len__(self) -> int:
        return self._n

    def __iter__(self):
        return self._store.todo()


def chunk_size(n_items: int, workers: int, executor: Any = None) -> int:
    """Files per chunk: :data:`CHUNK_SIZE`, less for few files (about 4 chunks per worker
    so that none idles at the end), more on Dask (2,048 at most: each task then reads for
    about 0.1 s, so the scheduler's few milliseconds per task are small)."""
    most = _most(executor)
    if workers <= 1:
        return most
    return max(min(16, most), min(most, -(-n_items // (4 * workers))))


def _most(executor: Any) -> int:
    return 8 * CHUNK_SIZE if getattr(executor, "kind", None) == "dask" else CHUNK_SIZE


def _reading_workers(workers: int, executor: Any) -> int:
    """The ``workers`` that chunk sizes are computed for: an executor's own count (a
    cluster's threads), at least 2."""
    if executor is not None:
        return max(2, getattr(executor, "workers", None) or workers)
    return workers


def _chunks(items, workers: int, executor: Any = None):
    """Chunks of :func:`chunk_size` items of ``items`` (a sized iterable), made lazily."""
    size = chunk_size(len(items), workers, executor)
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def scan(root: str | os.PathLike, db: str | os.PathLike | None = None, *,
         workers: int | None = None, executor: Any = None, progress: bool = True,
         fast: bool = True, replace: bool = False) -> ScanResult:
    """Index the DICOM files under ``root`` (headers only) into an SQLite Index.

    Parameters
    ----------
    root : path
        A folder (nested folders, files with or without extension, DICOMDIR, symbolic links
        followed without loops) or a single file. Never written to.
    db : path, optional
        The Index file; default :func:`dicomml.io.index.default_db_path` (user cache).
    workers : int, optional
        How many CPUs read at once (:func:`dicomml.parallel.resolve_workers`: None or -1
        every CPU, the default): processes reading headers, this one included (see the
        module docs), so 0 or 1 reads in this process only.
    executor : object, optional
        A :mod:`dicomml.parallel` executor (e.g. a Dask one) to use instead; it is not
        closed.
    progress : bool
        Draw a tqdm progress bar on stderr.
    fast : bool
        Use the struct header reader with pydicom as fallback (default); ``False`` reads
        with pydicom only.
    replace : bool
        ``db`` may be the Index of another folder: its content is replaced by this scan
        (default: refused, see :func:`dicomml.io.index_check.check_index_target`).

    Returns
    -------
    ScanResult

    Raises
    ------
    ConfigError
        ``root`` does not exist; ``db`` is not a dicomml Index, or is the Index of another
        folder (without ``replace``).
    OutputError
        The Index cannot be written.
    """
    from dicomml.io._scan_store import Store
    from dicomml.io.index import Index, default_db_path
    from dicomml.io.index_check import check_index_target
    from dicomml.parallel import resolve_workers

    t0 = time.perf_counter()
    root = os.path.abspath(os.fspath(root))
    if not os.path.exists(root):
        raise ConfigError(f"{root} does not exist: pass a folder of DICOM files (or one "
                          "file). Received: root=" + repr(os.fspath(root)))
    db_path = os.path.abspath(os.fspath(db)) if db is not None else str(default_db_path(root))
    workers = resolve_workers(workers)
    check_index_target(db_path, root, replace=replace)
    store = Store(db_path, root)
    started = None  # worker processes started while the walk goes on
    try:
        exclude = frozenset(db_path + s for s in ("", "-wal", "-shm", "-journal"))
        walk = walk_files(root, exclude=exclude)
        unreadable: list = []
        if store.empty:  # a first scan: every file is new, read as the walk finds it
            ahead = 4 * max(1, _reading_workers(workers, executor)) * _most(executor)
            todo = _Walking(store.stream_walk(walk, unreadable), ahead)
            removed = 0
            if executor is None and workers > 1 and not (todo.complete
                                                         and _small_job(len(todo))):
                # more than a small job: the workers start while the rest of the folder is
                # walked (a re-scan starts them only when the walk found enough to read)
                started = _start_executor(workers)
        else:
            unreadable = store.record_walk(walk)
            todo = _Todo(store, store.plan()[1])
            removed = store.remove(store.gone())
        n_read = _read_all(store, todo, workers, executor if started is None else started,
                           progress, fast)
        n_seen = store.plan()[0]
        if unreadable:
            store.write([("skip", u.path, 0, 0, "unreadable", u.reason, "retry")
                         for u in unreadable])
        if started is not None:
            started.close()
            started = None
        store.ensure_indexes(scan_only=True)
        # duplicates are decided once every file is in, so that the result does not depend
        # on the order workers returned them; skipped copies of a changed SOP Instance UID
        # are read again to be decided with it
        again = store.duplicates_to_read()
        found = store.walked([o[0] for o in again]) if again else set()
        again = [o for o in again if o[0] in found]
        if again:
            n_read += _read_all(store, again, 0, None, False, fast)
            store.forget_candidates()  # what was read again may hold other UIDs now
        store.resolve_duplicates()
        store.update_series_keys()  # and the indexes of the queries, after the keys
        skipped = tuple(tuple(r) for r in store.current_skipped())
        conflicts = tuple(tuple(r) for r in store.conflicts())
    finally:
        if started is not None:
            started.close()
        store.end_walk()
        store.close()
    with Index(db_path) as idx:
        summary = idx.summary()
    return ScanResult(root=root, db_path=db_path, files_seen=n_seen, files_read=n_read,
                      files_removed=removed, elapsed_s=time.perf_counter() - t0,
                      summary=summary, skipped=skipped, conflicts=conflicts)


def _read_all(store, todo, workers, executor, progress, fast) -> int:
    if not todo:
        return 0
    fn = scan_chunk if fast else _scan_chunk_pydicom
    workers = _reading_workers(workers, executor)
    chunks = _chunks(todo, workers, executor)
    own = executor is None
    ex = _make_executor(workers, len(todo)) if own else executor
    bar = None
    if progress:
        from tqdm import tqdm

        known = getattr(todo, "complete", True)  # a walk still going has no total yet
        bar = tqdm(total=len(todo) if known else None, unit="file", desc="scan",
                   file=sys.stderr, dynamic_ncols=True)
    n = 0
    try:
        for outcome in ex.map_chunks(fn, chunks, progress=None):
            chunk, result = outcome
            if isinstance(result, list):
                store.write(result)
            else:  # the worker failed on this chunk: record it, read it again next time
                why = f"scan worker failed ({_failure_reason(result)}); scan again to retry"
                store.write([("skip", p, s, m, "scan failed", why, "retry")
                             for p, s, m in chunk])
            n += len(chunk)
            if bar is not None:
                if bar.total is None and getattr(todo, "complete", True):
                    bar.total = len(todo)
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
        if own:
            ex.close()
    return n
