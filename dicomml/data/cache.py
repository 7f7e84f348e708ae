"""A resumable on-disk cache of preprocessed tensors.

Layout::

    CACHE_DIR/<config_hash>/shard-<id>.npy    (N, size, size, 3) uint8 or float16
    CACHE_DIR/<config_hash>/shard-<id>.json   the shard's index: keys, dtype, failures

Entries are keyed by (0008,0018) SOP Instance UID + frame number, inside a folder named by
the preprocessing configuration's hash (``PreprocessConfig.config_hash()``): a changed
configuration never reads stale tensors.

Storage dtype. ``uint8`` stores ``round(x * 255)`` and is used only when the pipeline's
output lies in [0, 1] (normalization ``"unit"``); the read-back error is at most 1/510.
Any other normalization (``"imagenet"``, ``"zscore"``) is stored as ``float16`` (relative
error ≤ 2⁻¹¹). Tensors are read back as ``float32``.

Resumability. A shard is complete when its ``.json`` index exists; the ``.npy`` is written
first, each file atomically (temporary file + rename). A run killed at any moment (even with
SIGKILL) leaves only complete shards and temporary files; the next :meth:`TensorCache.fill`
computes only the keys that no complete shard holds; the temporary files a killed run left
behind are removed by the next fill (one fill at a time holds the folder's ``.lock``).

Failures. A failure that is the file's own (it does not decode, its header is corrupt, its
decoder kills the worker when run alone) is recorded in its shard's index (path and reason)
and never retried unless asked. A failure that says nothing about the file (the cache
cannot be written: full disk, read-only folder; a worker function that failed as a whole;
``MemoryError``) is never recorded: the keys stay missing and the next fill computes them.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import logging
import os
import sys
import threading
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dicomml._atomic import atomic_write, atomic_write_text, ensure_writable_dir
from dicomml.errors import FATAL, ConfigError, OutputError, PreprocessError, is_own_failure

__all__ = ["TensorCache", "storage_dtype_for", "encode", "decode", "FillReport",
           "pipeline_hash", "preprocess_one", "make_executor", "tensor_shape", "empty_aligned",
           "ALIGN", "BufferPool"]

log = logging.getLogger(__name__)

SHAPE = (224, 224, 3)


#: Alignment of gathered batches: TensorFlow's (EIGEN_MAX_ALIGN_BYTES, 64 on x86-64 AVX-512).
ALIGN = 64


def empty_aligned(shape: tuple, dtype) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an :data:`ALIGN`-byte
    boundary."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    return _aligned_view(np.empty(nbytes + ALIGN, np.uint8), tuple(shape), dtype)


def _aligned_view(raw: np.ndarray, shape: tuple, dtype: np.dtype) -> np.ndarray:
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    start = -raw.ctypes.data % ALIGN
    return raw[start:start + nbytes].view(dtype).reshape(shape)


class BufferPool:
    """Aligned batch buffers (as :func:`empty_aligned` gives them), reused once nothing
    refers to them any more.

    A fresh buffer of a few MB costs the kernel a page fault and a zeroing per 4 KiB page,
    about as much CPU as copying the batch into it; a pipeline that hands its batches to
    TensorFlow without a copy cannot know when the consumer is done with one, so the pool
    asks Python: a buffer is free when no array (a view of it that TensorFlow still
    wraps, a batch the caller kept) holds a reference to it. Buffers still in use are never
    handed out again; when every pooled buffer is in use a new one is made (kept in the pool
    up to ``keep`` buffers). Thread-safe.
    """

    def __init__(self, keep: int = 16):
        self.keep = int(keep)
        self._bufs: list[np.ndarray] = []
        self._lock = threading.Lock()
        self._bufs.append(np.empty(0, np.uint8))
        self._free_refs = self._refs(0)  # the count of a buffer nothing else refers to
        self._bufs.clear()

    def _refs(self, i: int) -> int:
        return sys.getrefcount(self._bufs[i])

    def get(self, shape: tuple, dtype) -> np.ndarray:
        """An uninitialised aligned C-contiguous array of ``shape`` and ``dtype``."""
        dtype = np.dtype(dtype)
        need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize + ALIGN
        with self._lock:
            for i in range(len(self._bufs)):
                if self._bufs[i].nbytes >= need and self._refs(i) == self._free_refs:
                    return _aligned_view(self._bufs[i], shape, dtype)
            raw = np.empty(need, np.uint8)
            if len(self._bufs) < self.keep:
                self._bufs.append(raw)
            return _aligned_view(raw, shape, dtype)


def tensor_shape(pipeline) -> tuple[int, int, int]:
    """``(size, size, 3)``: the tensor shape of ``pipeline``'s ``config.size`` (the
    preprocessing ``[preprocess] size``); :data:`SHAPE` for an object without one."""
    size = getattr(getattr(pipeline, "config", pipeline), "size", None)
    return (int(size), int(size), 3) if size else SHAPE


def pipeline_hash(pipeline) -> str:
    """The preprocessing configuration hash of ``pipeline`` (its ``config.config_hash()``,
    or its own ``config_hash()``)."""
    cfg = getattr(pipeline, "config", None)
    if cfg is not None and hasattr(cfg, "config_hash"):
        return str(cfg.config_hash())
    if hasattr(pipeline, "config_hash"):
        return str(pipeline.config_hash())
    raise ConfigError("the pipeline has no config_hash(): pass a dicomml.preprocess.Pipeline. "
                      f"Received: pipeline={type(pipeline).__name__}")


def storage_dtype_for(pipeline) -> str:
    """``"uint8"`` when the pipeline's normalization is ``"unit"`` (output in [0, 1]),
    else ``"float16"``."""
    cfg = getattr(pipeline, "config", pipeline)
    d = cfg.to_dict() if hasattr(cfg, "to_dict") else {}
    norm = d.get("normalization", d.get("normalize", getattr(cfg, "normalization", None)))
    norm = getattr(norm, "value", norm)
    return "uint8" if str(norm).lower() == "unit" else "float16"


def encode(x: np.ndarray, dtype: str) -> np.ndarray:
    """float32 tensor(s) → storage dtype (``uint8``: ``round(clip(x, 0, 1) * 255)``)."""
    if dtype == "uint8":
        return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.asarray(x, dtype=np.float16)


def decode(a: np.ndarray) -> np.ndarray:
    """Storage dtype → float32 (``uint8`` is divided by 255)."""
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(255.0)
    return a.astype(np.float32)


def preprocess_one(pipeline, path: str, frame: int) -> np.ndarray:
    """Read frame ``frame`` of ``path`` and run ``pipeline`` on it → float32
    :func:`tensor_shape` ``(size, size, 3)``."""
    if hasattr(pipeline, "from_path"):
        x = pipeline.from_path(path, frame)
    else:
        from dicomml.io import read_image

        x = pipeline(read_image(path), index=int(frame))
    x = np.asarray(x, dtype=np.float32)
    if x.shape != tensor_shape(pipeline):
        raise PreprocessError(f"{path}: the pipeline's output has shape {x.shape}, expected "
                              f"{tensor_shape(pipeline)} (frame {frame}): the cache holds "
                              "the tensors of its own preprocessing configuration.")
    return x


def make_executor(kind: str = "processes", workers: int | None = None):
    """A :mod:`dicomml.parallel` executor of ``workers`` worker processes
    (:func:`dicomml.parallel.resolve_workers`: None or -1 every CPU); ``workers=0`` or kind
    "inprocess" runs here."""
    from dicomml.parallel import get_executor, resolve_workers

    n = resolve_workers(workers)
    if n == 0 or str(kind).lower() == "inprocess":
        return get_executor("inprocess")
    return get_executor(kind, n)


def _reason(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def _write_shard(folder: str, name: str, keys: list, arrays: list, failures: list,
                 dtype: str, shape=SHAPE) -> None:
    data = (np.stack(arrays).astype(dtype, copy=False) if arrays
            else np.zeros((0, *shape), dtype=dtype))
    with atomic_write(os.path.join(folder, name + ".npy")) as f:
        np.save(f, data, allow_pickle=False)
    index = {"version": 1, "dtype": dtype, "shape": list(data.shape),
             "keys": [[k[0], int(k[1])] for k in keys], "failed": failures}
    atomic_write_text(os.path.join(folder, name + ".json"), json.dumps(index))


def _fill_chunk(folder: str, pipeline, dtype: str, chunk: list) -> dict:
    """Worker: compute the tensors of ``chunk`` (items ``(shard, size, path, sop, frame)``).

    A chunk holding the whole shard writes it and returns counts; a partial chunk (one item
    re-run alone after a worker crash) returns its tensor for the parent to write.
    """
    keys, arrays, failures, transient = [], [], [], []
    for _shard, _size, path, sop, frame in chunk:
        try:
            arrays.append(encode(preprocess_one(pipeline, path, frame), dtype))
            keys.append((sop, int(frame)))
        except BaseException as e:  # noqa: BLE001 - every failure is recorded, never fatal
            if isinstance(e, FATAL):
                raise
            (failures if is_own_failure(e) else transient).append(
                {"sop_instance_uid": sop, "frame": int(frame), "path": path,
                 "reason": _reason(e)})
    shard, size = chunk[0][0], chunk[0][1]
    if len(chunk) == size:
        _write_shard(folder, shard, keys, arrays, failures, dtype, tensor_shape(pipeline))
        return {"written": shard, "ok": len(keys), "failed": failures, "transient": transient}
    return {"written": None, "keys": keys, "arrays": arrays, "failed": failures,
            "transient": transient}


def _records(items: list, reason: str) -> list[dict]:
    return [{"sop_instance_uid": it[3], "frame": int(it[4]), "path": it[2], "reason": reason}
            for it in items]


def clean_orphans(folder: str) -> int:
    """Remove the temporary shard files (``.shard-*.tmp``) that a killed fill left in
    ``folder``; call it only while holding the folder's lock. Returns how many."""
    n = 0
    for tmp in glob.glob(os.path.join(glob.escape(folder), ".shard-*.tmp")):
        try:
            os.unlink(tmp)
            n += 1
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("cannot remove the temporary file %s: %s", tmp, e)
    return n


class _FolderLock:
    """An advisory ``flock`` on ``folder/.lock``; ``held`` is False when another fill holds it
    (then nothing is cleaned, the fill still runs: shards are written atomically)."""

    def __init__(self, folder: str):
        self.held = False
        self._fd = None
        try:
            import fcntl

            self._fd = os.open(os.path.join(folder, ".lock"), os.O_RDWR | os.O_CREAT, 0o666)
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.held = True
        except (ImportError, OSError):
            pass

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock
            self._fd = None


@dataclass
class FillReport:
    """What :meth:`TensorCache.fill` did."""

    requested: int
    already_cached: int
    computed: int
    failed: pd.DataFrame
    shards_written: int
    #: Examples not computed for a reason that is not theirs (see the module docstring);
    #: not recorded, the next fill retries them. Same columns as ``failed``.
    not_cached: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["sop_instance_uid", "frame", "path", "reason"]))


class TensorCache:
    """Preprocessed tensors of one preprocessing configuration.

    Parameters
    ----------
    root : path
        The cache folder (shared by configurations).
    config_hash : str
        The configuration's hash; tensors live in ``root/<config_hash>/``.
    dtype : {"uint8", "float16"}
        Storage dtype for new shards (see the module docstring).
    shard_size : int
        Examples per shard.
    """

    def __init__(self, root, config_hash: str, dtype: str = "uint8", shard_size: int = 128,
                 shape: tuple = SHAPE):
        if dtype not in ("uint8", "float16"):
            raise ConfigError(f"cache dtype must be 'uint8' or 'float16'. Received: {dtype!r}")
        self.root = os.fspath(root)
        self.config_hash = str(config_hash)
        self.folder = os.path.join(self.root, self.config_hash)
        self.dtype = dtype
        self.shard_size = int(shard_size)
        #: the tensor shape (size, size, 3) of new shards and of empty reads
        self.shape = tuple(int(v) for v in shape)
        self._index = None
        self._mmaps: dict[str, np.ndarray] = {}
        self._views: dict[str, np.ndarray] = {}

    @classmethod
    def for_pipeline(cls, root, pipeline, shard_size: int = 128) -> "TensorCache":
        """The cache of ``pipeline``'s configuration with the dtype its normalization needs."""
        return cls(root, pipeline_hash(pipeline), storage_dtype_for(pipeline), shard_size,
                   tensor_shape(pipeline))

    # -- index --------------------------------------------------------------------------
    def _load_index(self) -> tuple[dict, dict]:
        entries: dict = {}
        failed: dict = {}
        for jpath in sorted(glob.glob(os.path.join(self.folder, "shard-*.json"))):
            name = os.path.basename(jpath)[:-5]
            try:
                with open(jpath, encoding="utf-8") as f:
                    idx = json.load(f)
            except (OSError, ValueError) as e:
                log.warning("ignoring unreadable cache index %s: %s", jpath, e)
                continue
            if not os.path.exists(os.path.join(self.folder, name + ".npy")):
                continue
            for row, (sop, frame) in enumerate(idx["keys"]):
                entries[(sop, int(frame))] = (name, row)
            for fl in idx.get("failed", []):
                failed[(fl["sop_instance_uid"], int(fl["frame"]))] = fl
        return entries, failed

    @property
    def index(self) -> tuple[dict, dict]:
        """``(entries, failed)``: key → (shard, row) and key → failure record."""
        if self._index is None:
            self._index = self._load_index()
        return self._index

    def refresh(self) -> None:
        """Forget the in-memory index and memory maps (after another process filled it)."""
        self._index = None
        self._mmaps = {}
        self._views = {}

    def __contains__(self, key) -> bool:
        return (key[0], int(key[1])) in self.index[0]

    def __len__(self) -> int:
        return len(self.index[0])

    # -- fill -----------------------------------------------------------------------------
    @staticmethod
    def _keys(examples: pd.DataFrame) -> pd.DataFrame:
        ex = examples[["path", "sop_instance_uid", "frame"]].copy()
        ex["frame"] = ex["frame"].astype(int)
        ex["sop_instance_uid"] = ex["sop_instance_uid"].astype(str)
        return ex.drop_duplicates(subset=["sop_instance_uid", "frame"]).sort_values(
            ["sop_instance_uid", "frame"], kind="mergesort")

    def fill(self, examples: pd.DataFrame, pipeline, *, workers: int | None = None,
             executor: str = "processes", progress=True, retry_failed: bool = False
             ) -> FillReport:
        """Compute and store every example of ``examples`` that is not cached yet.

        Parameters
        ----------
        examples : pandas.DataFrame
            Columns ``path``, ``sop_instance_uid``, ``frame`` (a manifest).
        pipeline : dicomml.preprocess.Pipeline
            Picklable; sent to the worker processes.
        workers : int or None
            Worker processes (:func:`dicomml.parallel.resolve_workers`: None or -1 every
            CPU, 0 in this process).
        executor : {"processes", "inprocess", "dask"} or a ``dicomml.parallel`` executor
        progress : bool or tqdm-like
            A tqdm bar on stderr counted in examples.
        retry_failed : bool
            Recompute examples that failed before (default: keep the recorded failure).

        Raises
        ------
        OutputError
            The cache folder cannot be created or written (read-only, full disk), checked
            before anything is computed; or shards could not be written during the run
            (what was written is kept, the rest is computed by the next fill).
        """
        if pipeline_hash(pipeline) != self.config_hash:
            raise ConfigError("this cache belongs to another preprocessing configuration "
                              f"({self.config_hash}); use TensorCache.for_pipeline()")
        ensure_writable_dir(self.folder, "tensor cache", " (--cache DIR or data.cache)")
        lock = _FolderLock(self.folder)
        try:
            if lock.held and clean_orphans(self.folder):
                log.info("removed temporary files of an interrupted fill in %s", self.folder)
            return self._fill(examples, pipeline, workers, executor, progress, retry_failed)
        finally:
            lock.release()

    def _fill(self, examples, pipeline, workers, executor, progress, retry_failed):
        self.refresh()
        entries, failed = self.index
        keys = self._keys(examples)
        done = set(entries) if retry_failed else set(entries) | set(failed)
        todo = keys[[(s, f) not in done for s, f in zip(keys["sop_instance_uid"],
                                                        keys["frame"])]]
        chunks = []
        rows = list(todo.itertuples(index=False))
        for i in range(0, len(rows), self.shard_size):
            part = rows[i:i + self.shard_size]
            ident = hashlib.sha1("\n".join(f"{r.sop_instance_uid}/{r.frame}" for r in part)
                                 .encode()).hexdigest()[:16]
            name = f"shard-{ident}"
            chunks.append([(name, len(part), r.path, r.sop_instance_uid, int(r.frame))
                           for r in part])
        written, transient = 0, []
        if chunks:
            fn = functools.partial(_fill_chunk, self.folder, pipeline, self.dtype)
            written, transient = self._run(fn, chunks, workers, executor, progress)
        self.refresh()
        entries, failed = self.index
        wanted = set(zip(keys["sop_instance_uid"], keys["frame"]))
        fails = [failed[k] for k in failed if k in wanted]
        columns = ["sop_instance_uid", "frame", "path", "reason"]
        unwritable = [t for t in transient if "OutputError" in t["reason"]
                      or "No space left" in t["reason"]]
        if unwritable:
            raise OutputError(
                f"{len(unwritable)} of {len(todo)} examples could not be stored in "
                f"{self.folder} ({unwritable[0]['reason']}); {written} shards were written "
                "and are kept. Free space (or make the folder writable) and run again: only "
                "the missing examples are computed.")
        return FillReport(requested=len(keys), already_cached=len(keys) - len(todo),
                          computed=len(todo), shards_written=written,
                          failed=pd.DataFrame(fails, columns=columns),
                          not_cached=pd.DataFrame(transient, columns=columns))

    def _run(self, fn, chunks, workers, executor, progress):
        ex = make_executor(executor, workers) if isinstance(executor, str) else executor
        own = isinstance(executor, str)
        from dicomml.parallel import WorkerCrashed

        partial: dict[int, list] = {}
        written, transient = 0, []
        try:
            for out in ex.map_chunks(fn, chunks, progress=progress, desc="cache"):
                res = out.result
                items = out.chunk
                if out.ok:
                    transient.extend(res["transient"])
                if out.ok and res["written"]:
                    written += 1
                    continue
                if not out.ok and not (out.isolated and isinstance(res, WorkerCrashed)):
                    # fn failed as a whole (e.g. the shard could not be written): nothing
                    # is known about the files; they stay uncached and are retried.
                    transient.extend(_records(items, str(res)))
                    if not out.isolated:
                        continue
                    got = ([], [], [])
                elif out.ok:  # an item re-run alone after its chunk crashed
                    got = (res["keys"], res["arrays"], res["failed"])
                else:  # it killed its worker again, alone: its own failure
                    got = ([], [], _records(items, res.reason))
                acc = partial.setdefault(out.index, [[], [], [], 0])
                acc[0].extend(got[0])
                acc[1].extend(got[1])
                acc[2].extend(got[2])
                acc[3] += len(items)
                if acc[3] == items[0][1]:
                    order = np.argsort([f"{k[0]}/{k[1]}" for k in acc[0]], kind="stable")
                    _write_shard(self.folder, items[0][0], [acc[0][i] for i in order],
                                 [acc[1][i] for i in order], acc[2], self.dtype, self.shape)
                    written += 1
                    del partial[out.index]
        finally:
            if own:
                ex.close()
        return written, transient

    # -- read -----------------------------------------------------------------------------
    def _mmap(self, shard: str) -> np.ndarray:
        a = self._mmaps.get(shard)
        if a is None:
            a = np.load(os.path.join(self.folder, shard + ".npy"), mmap_mode="r")
            self._mmaps[shard] = a
        return a

    def _rows(self, shard: str) -> np.ndarray:
        """The memory-mapped shard as a plain ndarray view (indexing a ``numpy.memmap`` runs
        its Python ``__getitem__`` per row)."""
        a = self._views.get(shard)
        if a is None:
            a = self._views[shard] = self._mmap(shard).view(np.ndarray)
        return a

    def open_shards(self, names: list[str]) -> np.dtype:
        """Open the memory maps of ``names`` now (before threads gather from them); the
        stored dtype (of the first shard, else the cache's)."""
        for n in names:
            self._rows(n)
        return self._rows(names[0]).dtype if names else np.dtype(self.dtype)

    def locate(self, examples: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Shard number and row of each example (``-1`` when not cached) and shard names."""
        entries = self.index[0]
        names: list[str] = []
        number: dict[str, int] = {}
        shard_no = np.full(len(examples), -1, dtype=np.int64)
        rows = np.full(len(examples), -1, dtype=np.int64)
        for i, (sop, frame) in enumerate(zip(examples["sop_instance_uid"].astype(str),
                                             examples["frame"].astype(int))):
            hit = entries.get((sop, int(frame)))
            if hit is None:
                continue
            if hit[0] not in number:
                number[hit[0]] = len(names)
                names.append(hit[0])
            shard_no[i] = number[hit[0]]
            rows[i] = hit[1]
        return shard_no, rows, names

    def gather_raw(self, shard_no: np.ndarray, rows: np.ndarray, names: list[str], *,
                   pool: BufferPool | None = None) -> np.ndarray:
        """Stored tensors (storage dtype, not decoded) for the given shard numbers and rows.

        Each row is copied once, from its memory-mapped shard straight into the batch, which
        is aligned to :data:`ALIGN` bytes so that TensorFlow takes it without another copy
        (``tf.numpy_function`` wraps an aligned array, and copies any other); with ``pool``
        the batch is one of its reused buffers.
        """
        return self._gather(shard_no, rows, names, pool, decoded=False)

    def gather(self, shard_no: np.ndarray, rows: np.ndarray, names: list[str], *,
               pool: BufferPool | None = None) -> np.ndarray:
        """float32 tensors (N, size, size, 3) for the given shard numbers and rows: the
        values of :func:`decode`, decoded row by row into the batch (aligned, from ``pool``
        when given)."""
        return self._gather(shard_no, rows, names, pool, decoded=True)

    def _gather(self, shard_no, rows, names, pool, decoded: bool) -> np.ndarray:
        maps = [self._rows(n) for n in names]
        first = maps[int(shard_no[0])] if len(rows) else None
        dtype = first.dtype if first is not None else np.dtype(self.dtype)
        shape = (len(rows), *(first.shape[1:] if first is not None else self.shape))
        out_dtype = np.float32 if decoded else dtype
        out = pool.get(shape, out_dtype) if pool is not None else empty_aligned(shape,
                                                                                out_dtype)
        scale = np.float32(255.0) if decoded and dtype == np.uint8 else None
        for k, (s, r) in enumerate(zip(shard_no.tolist(), rows.tolist())):
            o = out[k]
            o[...] = maps[s][r]  # the row, cast to float32 when decoding (exact)
            if scale is not None:  # then / 255 in place: the bits of decode()
                np.divide(o, scale, out=o)
        return out

    def get(self, examples: pd.DataFrame) -> np.ndarray:
        """float32 tensors of ``examples`` (every one must be cached)."""
        shard_no, rows, names = self.locate(examples)
        if (shard_no < 0).any():
            raise ConfigError(f"{int((shard_no < 0).sum())} examples are not in the cache "
                              f"{self.folder}; run dicomml preprocess (or TensorCache.fill)")
        return self.gather(shard_no, rows, names)
