"""``tf.data`` pipelines over the tensor cache and over on-the-fly decoding.

Both yield ``(x, y)`` batches — ``x`` float32 (N, size, size, 3) (``[preprocess] size``),
``y`` one-hot float32
(N, n_classes) for classification or float32 (N, 1) for regression — or ``x`` alone when no
targets are given.

* From the cache: the example order is shuffled (seeded, reshuffled each epoch), batched,
  then each batch of indices is gathered from memory-mapped shards by ``tf.numpy_function``
  in parallel (one copy per row, into a reused aligned buffer that TensorFlow wraps), and
  prefetched.
* On the fly: batches of examples are decoded and preprocessed in worker processes
  (:mod:`dicomml.parallel`), their tensors written into shared-memory segments
  (:data:`SHM_DIR`) rather than pickled back, and handed to
  ``tf.data.Dataset.from_generator`` in order. Examples that fail to decode are skipped
  (training) and recorded in ``failures``.
"""

from __future__ import annotations

import functools
import glob
import logging
import multiprocessing
import os
from typing import Iterator

import numpy as np
import pandas as pd

from dicomml.data.cache import (
    BufferPool,
    TensorCache,
    make_executor,
    preprocess_one,
    tensor_shape,
)
from dicomml.errors import FATAL, ConfigError
from dicomml.parallel import resolve_workers, retain_freed_memory
from dicomml.data.augmentation import augment_batches

__all__ = ["cache_dataset", "OnTheFly", "predict_tensors", "load_tensors", "encode_targets",
           "augment_for", "stored_to_float"]

log = logging.getLogger(__name__)


def augment_for(pipeline):
    """``(AugmentConfig, normalize)`` of ``pipeline``'s configuration, for
    :func:`dicomml.data.augmentation.augment_batches` (training batches only)."""
    cfg = pipeline.config
    return cfg.augment, cfg.normalize


def encode_targets(targets, task: str, n_classes: int) -> np.ndarray:
    """Class indices → one-hot float32 (N, n_classes); regression → float32 (N, 1)."""
    t = np.asarray(targets)
    if task == "regression":
        return t.astype(np.float32).reshape(-1, 1)
    return np.eye(n_classes, dtype=np.float32)[t.astype(np.int64)]


def cache_dataset(cache: TensorCache, examples: pd.DataFrame, *, targets=None,
                  task: str = "classification", n_classes: int = 2, batch_size: int = 32,
                  shuffle: bool = False, seed: int = 0, drop_remainder: bool = False,
                  prefetch: bool = True, augment=None, normalize: str = "unit",
                  repeat: bool = False, skip_batches: int = 0, weights=None,
                  output: str = "float32"):
    """A ``tf.data.Dataset`` of batches read from ``cache``.

    ``output="float32"`` (default) gives ``x`` as float32, what :meth:`TensorCache.get`
    returns. ``output="stored"`` gives the stored bytes (uint8, or float16 for a float16
    cache), 4× (2×) less to move to an accelerator; convert them there, on the device, with
    :func:`stored_to_float` (e.g. as the first operation of the model or of the training
    step): the values are then the same. With ``augment`` the output is always float32.
    Each row is copied once, from its memory-mapped shard into the batch (float32: decoded
    on the way, uint8 / 255 as :func:`dicomml.data.cache.decode`), an aligned buffer that
    TensorFlow wraps without another copy and that is reused once no tensor refers to it
    (:class:`~dicomml.data.cache.BufferPool`); batches are prefetched (``prefetch``).

    ``augment`` (a :class:`~dicomml.preprocess.augment.AugmentConfig`, for training) applies
    the seeded geometric and intensity augmentation per image, on the cached tensors
    (``normalize``: the pipeline's normalization; see :func:`augment_for`). ``weights``
    (per example, with ``targets``) makes the batches ``(x, y, sample_weight)``.

    ``repeat=True`` gives an endless dataset, epoch after epoch (for ``fit`` with
    ``steps_per_epoch``). With ``shuffle`` the order of epoch ``e`` is then the stateless
    permutation ``tf.random.experimental.stateless_shuffle(range(n), seed=(seed, e))``: it
    depends on nothing but ``seed`` and ``e``, not on how many iterators were created nor on
    the graph rewrites of ``tf.distribute`` (a stateful ``shuffle`` reshuffles per iterator,
    and Keras creates different numbers of them with and without a distribution strategy).

    ``skip_batches`` starts the dataset that many batches in (cheaply: before any tensor is
    read), with the augmentation draws of those batch numbers: a training run resumed at
    epoch ``k`` of ``s`` steps passes ``skip_batches=k * s`` and sees what the uninterrupted
    run saw from then on.

    Examples that are not cached (failed to decode) are left out with a warning; use
    ``cache.locate`` to see which.
    """
    import tensorflow as tf

    if output not in ("float32", "stored"):
        raise ConfigError("cache_dataset: output must be 'float32' or 'stored'. "
                          f"Received: output={output!r}")
    shard_no, rows, names = cache.locate(examples)
    keep = shard_no >= 0
    if not keep.all():
        log.warning("%d of %d examples are not in the cache (failed to decode?); left out",
                    int((~keep).sum()), len(keep))
    shard_no, rows = shard_no[keep], rows[keep]
    raw = cache.open_shards(names)  # every memory map opened before threads use them
    y = w = None
    if targets is not None:
        y = encode_targets(np.asarray(targets)[keep], task, n_classes)
        if weights is not None:
            w = np.asarray(weights, np.float32)[keep]

    # numpy copies each row once, from its shard into an aligned batch buffer that
    # TensorFlow wraps without a copy; the buffers are reused once nothing refers to them
    # (BufferPool): no page faults on fresh memory. float32 batches are decoded row by row
    # into the buffer (uint8 / 255: exactly what TensorCache.get returns); "stored" ones
    # keep the stored bytes.
    keep_stored = output == "stored" and augment is None
    tf_x = tf.as_dtype(raw) if keep_stored else tf.float32
    pool = BufferPool()
    read = cache.gather_raw if keep_stored else cache.gather

    def gather(idx):
        x = read(shard_no[idx], rows[idx], names, pool=pool)
        if w is not None:
            return x, y[idx], w[idx]
        return (x, y[idx]) if y is not None else x

    n = len(rows)
    if repeat and shuffle:
        seed_t = tf.constant(int(seed), tf.int64)

        def epoch(e):
            perm = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64),
                                                            seed=tf.stack([seed_t, e]))
            return tf.data.Dataset.from_tensor_slices(perm).batch(
                int(batch_size), drop_remainder=drop_remainder)

        ds = tf.data.Dataset.counter(dtype=tf.int64).flat_map(epoch)
    else:
        ds = tf.data.Dataset.from_tensor_slices(np.arange(n, dtype=np.int64))
        if shuffle:
            ds = ds.shuffle(max(1, n), seed=int(seed), reshuffle_each_iteration=True)
        ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)
        if repeat:
            ds = ds.repeat()
    if skip_batches:
        ds = ds.skip(int(skip_batches))
    ydim = None if y is None else y.shape[1]

    def tf_gather(idx):
        if ydim is None:
            x = tf.numpy_function(gather, [idx], tf_x, stateful=False)
            x.set_shape((None, *cache.shape))
            return x
        if w is not None:
            x, yy, ww = tf.numpy_function(gather, [idx], (tf_x, tf.float32, tf.float32),
                                          stateful=False)
            ww.set_shape((None,))
        else:
            x, yy = tf.numpy_function(gather, [idx], (tf_x, tf.float32), stateful=False)
        x.set_shape((None, *cache.shape))
        yy.set_shape((None, ydim))
        return (x, yy, ww) if w is not None else (x, yy)

    ds = ds.map(tf_gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = augment_batches(ds, augment, seed, start=skip_batches, normalize=normalize)
    return ds.prefetch(tf.data.AUTOTUNE) if prefetch else ds


def stored_to_float(x):
    """Stored tensors (uint8 or float16, as ``cache_dataset(output="stored")`` gives them)
    → float32, exactly as :func:`dicomml.data.cache.decode` (uint8 / 255). A TensorFlow
    op: run it where the batch is (on the accelerator, inside the model or the step)."""
    import tensorflow as tf

    x = tf.convert_to_tensor(x)
    if x.dtype == tf.uint8:
        return tf.cast(x, tf.float32) / tf.constant(255.0, tf.float32)
    return tf.cast(x, tf.float32)


#: Where the tensors computed by local worker processes come back: a RAM-backed folder
#: holding one file per batch in flight (a *segment*), mapped by the parent and the workers
#: and reused batch after batch, so a tensor is written once by its worker and copied once
#: by the parent into the batch (instead of pickled, piped and unpickled, 600 KB each), and
#: the segments' pages are faulted in once.
SHM_DIR = "/dev/shm"

_SEGMENTS: dict[str, np.ndarray] = {}  # a worker's mappings, by segment file name


def _segment(name: str, n: int | None, shape: tuple) -> np.ndarray:
    """The float32 (n, *shape) array over segment ``name`` of :data:`SHM_DIR`: ``n`` given,
    the parent creates the file; None, a worker maps the existing one (n from its size)."""
    import mmap

    fd = os.open(os.path.join(SHM_DIR, name),
                 os.O_RDWR | (os.O_CREAT | os.O_EXCL if n is not None else 0), 0o600)
    try:
        if n is not None:  # reserve the pages now: a full /dev/shm fails here (ENOSPC),
            # not later as a SIGBUS in the worker writing to the mapping
            os.posix_fallocate(fd, 0, n * int(np.prod(shape)) * 4)
        mm = mmap.mmap(fd, 0)
    finally:
        os.close(fd)
    return np.frombuffer(mm, np.float32).reshape(-1, *shape)


def _compute_batch(pipeline, chunk: list) -> tuple[list, object, list]:
    """Worker: ``chunk`` of ``(position, path, frame)``, or of ``(position, path, frame,
    segment, slot)`` → (positions, tensors, failures).

    ``tensors``: the float32 array of the positions; with segments, the slots written
    instead (each tensor went straight into ``slot`` of ``segment``, see :data:`SHM_DIR`).
    """
    shape = tensor_shape(pipeline)
    pos, arrays, failures = [], [], []
    if multiprocessing.parent_process() is not None:  # a worker: no page faults per item
        retain_freed_memory()
    for it in chunk:
        p, path, frame = it[:3]
        try:
            x = preprocess_one(pipeline, path, frame)
        except BaseException as e:  # noqa: BLE001 - recorded, never fatal (a Rust panic too)
            if isinstance(e, FATAL):
                raise
            failures.append({"position": p, "path": path, "frame": int(frame),
                             "reason": f"{type(e).__name__}: {e}"})
            continue
        if len(it) == 5:
            seg = _SEGMENTS.get(it[3])
            if seg is None:
                if len(_SEGMENTS) >= 64:  # segments of OnTheFly objects gone: unmap them
                    _SEGMENTS.clear()
                seg = _SEGMENTS[it[3]] = _segment(it[3], None, shape)
            seg[it[4]] = x
            arrays.append(it[4])
        else:
            arrays.append(x)
        pos.append(p)
    if chunk and len(chunk[0]) == 5:
        return pos, arrays, failures
    x = np.stack(arrays) if arrays else np.zeros((0, *shape), np.float32)
    return pos, x, failures


def _shm_prefix() -> str | None:
    """A segment file name prefix, unique to this process and object, in :data:`SHM_DIR`;
    None where there is no such folder to write (then the tensors travel pickled)."""
    if not (os.path.isdir(SHM_DIR) and os.access(SHM_DIR, os.W_OK)):
        return None
    import uuid

    return f"dicomml-otf-{os.getpid()}-{uuid.uuid4().hex[:12]}-"


class OnTheFly:
    """Decode + preprocess in worker processes, batch by batch, in a given order.

    Parameters
    ----------
    examples : pandas.DataFrame
        ``path`` and ``frame`` columns.
    pipeline : dicomml.preprocess.Pipeline
    workers : int or None
        Worker processes (:func:`dicomml.parallel.resolve_workers`: None or -1 every CPU;
        0: in this process).
    executor : str
        ``"processes"`` (default), ``"inprocess"`` or ``"dask"``.

    With ``"processes"`` the tensors come back through segment files in :data:`SHM_DIR`
    (one per batch in flight, reused; where that folder is missing they travel pickled),
    and each worker keeps its freed memory for the next item
    (:func:`dicomml.parallel.retain_freed_memory`). Use as a context manager (or call
    :meth:`close`) to stop the workers and remove the segment files; a process killed
    before that leaves them (``dicomml-otf-<pid>-*``, one batch each) in :data:`SHM_DIR`.
    """

    def __init__(self, examples: pd.DataFrame, pipeline, *, workers: int | None = None,
                 executor: str = "processes"):
        self.paths = examples["path"].astype(str).to_numpy()
        self.frames = examples["frame"].astype(int).to_numpy()
        self.pipeline = pipeline
        self.shape = tensor_shape(pipeline)
        self.workers = resolve_workers(workers)
        self.kind = "inprocess" if self.workers == 0 else executor
        self._ex = None
        #: batches come back through files in SHM_DIR from local worker processes
        self._shm = _shm_prefix() if self.kind == "processes" else None
        self._use_shm = self._shm is not None  # until a segment cannot be made
        self._segs: dict[str, np.ndarray] = {}  # segment name -> its array here
        self._free: list[str] = []  # segments no chunk holds
        self._pool = BufferPool()
        #: failure records (position, path, frame, reason) seen so far
        self.failures: list[dict] = []

    def _executor(self):
        if self._ex is None:
            self._ex = make_executor(self.kind, self.workers)
        return self._ex

    def batches(self, order=None, batch_size: int = 32) -> Iterator[tuple[np.ndarray,
                                                                         np.ndarray]]:
        """Yield ``(positions, x)`` batches in ``order`` (default: the examples' order);
        failed examples are missing from their batch."""
        order = np.arange(len(self.paths)) if order is None else np.asarray(order)
        chunks = [[(int(p), self.paths[p], int(self.frames[p])) for p in order[i:i + batch_size]]
                  for i in range(0, len(order), batch_size)]
        fn = functools.partial(_compute_batch, self.pipeline)
        held: dict[int, str] = {}  # chunk index -> its segment, until the batch is built

        def tasks():  # pulled by the executor as workers come free: a segment per chunk
            for i, c in enumerate(chunks):
                if self._shm is not None and self._use_shm:
                    try:
                        held[i] = self._segment_for(batch_size)
                    except OSError as e:  # e.g. /dev/shm full: the tensors travel pickled
                        self._use_shm = False
                        log.warning("cannot create a batch segment in %s (%s); the "
                                    "workers send their tensors through pipes instead "
                                    "(slower). Free space there, or ignore this.",
                                    SHM_DIR, e)
                    else:
                        yield [(*it, held[i], k) for k, it in enumerate(c)]
                        continue
                yield c

        acc: dict[int, list] = {}  # chunk index -> [positions, arrays or slots, items seen]
        run = self._executor().map_chunks(fn, tasks())
        try:
            yield from self._assemble(run, chunks, acc, held)
        finally:
            run.close()  # stops the chunks in flight: no worker writes a segment any more
            self._free.extend(held.values())

    def _assemble(self, run, chunks, acc, held):
        nxt = 0
        for out in run:
            if out.ok:
                pos, x, fails = out.result
            else:  # the worker crashed on this item, or fn raised: the item(s) failed
                pos, x = [], []
                fails = [{"position": it[0], "path": it[1], "frame": it[2],
                          "reason": str(getattr(out.result, "reason", out.result))}
                         for it in out.chunk]
            self.failures.extend(fails)
            a = acc.setdefault(out.index, [[], [], 0])
            a[0].extend(pos)
            a[1].append(x)
            a[2] += len(out.chunk)
            while nxt in acc and acc[nxt][2] == len(chunks[nxt]):
                p, xs, _ = acc.pop(nxt)
                seg = held.pop(nxt, None)
                if p:
                    rank = {it[0]: k for k, it in enumerate(chunks[nxt])}
                    idx = np.argsort([rank[q] for q in p], kind="stable")
                    # one copy, into a buffer TensorFlow wraps without copying it again
                    x = self._pool.get((len(p), *self.shape), np.float32)
                    if seg is not None:  # the tensors are in the segment's slots
                        np.take(self._segs[seg], np.concatenate(xs).astype(np.intp)[idx],
                                axis=0, out=x)
                    else:
                        xs = [v for v in xs if len(v)]
                        np.take(xs[0] if len(xs) == 1 else np.concatenate(xs), idx, axis=0,
                                out=x)
                if seg is not None:  # copied out: free for the next chunk
                    self._free.append(seg)
                if p:
                    yield np.asarray(p)[idx], x
                nxt += 1

    def _segment_for(self, n: int) -> str:
        """A free segment of at least ``n`` slots, made when there is none."""
        for k, name in enumerate(self._free):
            if len(self._segs[name]) >= n:
                return self._free.pop(k)
        name = f"{self._shm}{len(self._segs)}"
        try:
            self._segs[name] = _segment(name, n, self.shape)
        except OSError:
            try:
                os.unlink(os.path.join(SHM_DIR, name))  # created, then not sized
            except OSError:
                pass
            raise
        return name

    def dataset(self, *, targets=None, task="classification", n_classes=2, batch_size=32,
                shuffle=False, seed=0, augment=None, repeat: bool = False,
                skip_batches: int = 0, weights=None):
        """A ``tf.data.Dataset`` over :meth:`batches`.

        Without ``repeat``: one pass, reshuffled at each new iteration when ``shuffle`` (a
        seeded generator advanced per pass). With ``repeat``: endless, epoch ``e`` in the
        order ``numpy.random.default_rng((seed, e)).permutation(n)`` when ``shuffle``, so
        that it depends on nothing but ``seed`` and ``e``; ``skip_batches`` then starts that
        many batches in (whole epochs skipped for free, the rest decoded and dropped), with
        the augmentation draws of those batch numbers (``augment``: an
        :class:`~dicomml.preprocess.augment.AugmentConfig`, see
        :func:`dicomml.data.augmentation.augment_batches`).
        """
        import tensorflow as tf

        y = None if targets is None else encode_targets(targets, task, n_classes)
        w = None if weights is None or y is None else np.asarray(weights, np.float32)
        rng = np.random.default_rng(seed)
        n = len(self.paths)
        n_batches = max(1, -(-n // int(batch_size)))

        def gen(e=None):
            if not shuffle:
                order = np.arange(n)
            elif e is None:
                order = rng.permutation(n)
            else:
                order = np.random.default_rng((int(seed), int(e))).permutation(n)
            for pos, x in self.batches(order, batch_size):
                if w is not None:
                    yield x, y[pos], w[pos]
                else:
                    yield (x, y[pos]) if y is not None else x

        xs = tf.TensorSpec((None, *self.shape), tf.float32)
        sig = xs if y is None else (xs, tf.TensorSpec((None, y.shape[1]), tf.float32))
        if w is not None:
            sig = (*sig, tf.TensorSpec((None,), tf.float32))
        skip = int(skip_batches) if repeat else 0
        if repeat:
            first, rest = divmod(skip, n_batches)
            ds = tf.data.Dataset.counter(start=first, dtype=tf.int64).flat_map(
                lambda e: tf.data.Dataset.from_generator(gen, output_signature=sig,
                                                         args=(e,)))
            if rest:
                ds = ds.skip(rest)
        else:
            ds = tf.data.Dataset.from_generator(gen, output_signature=sig)
        norm = getattr(getattr(self.pipeline, "config", None), "normalize", "unit")
        return augment_batches(ds, augment, seed, start=skip, normalize=norm).prefetch(2)

    def close(self) -> None:
        """Stop the workers; remove the segment files."""
        if self._ex is not None:
            self._ex.close()
            self._ex = None
        if self._shm is not None:
            for left in glob.glob(os.path.join(SHM_DIR, glob.escape(self._shm) + "*")):
                try:
                    os.unlink(left)
                except FileNotFoundError:
                    pass
            self._segs.clear()
            self._free.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def predict_tensors(manifest_df: pd.DataFrame, pipeline, *, batch_size: int = 32,
                    workers: int | None = None, cache_dir=None) -> Iterator[np.ndarray]:
    """float32 (N, size, size, 3) batches of ``manifest_df``'s examples, in manifest order.

    With ``cache_dir``, missing tensors are added to the cache first and read from it;
    otherwise they are computed on the fly in worker processes. An example that cannot be
    decoded comes back as a tensor of NaN (its prediction is then NaN), with a warning.
    """
    n = len(manifest_df)
    shape = tensor_shape(pipeline)
    if cache_dir is not None:
        cache = TensorCache.for_pipeline(cache_dir, pipeline)
        cache.fill(manifest_df, pipeline, workers=workers, progress=False)
        shard_no, rows, names = cache.locate(manifest_df)
        for i in range(0, n, batch_size):
            s, r = shard_no[i:i + batch_size], rows[i:i + batch_size]
            out = np.full((len(s), *shape), np.nan, np.float32)
            ok = s >= 0
            if ok.any():
                out[ok] = cache.gather(s[ok], r[ok], names)
            yield out
        return
    with OnTheFly(manifest_df, pipeline, workers=workers) as otf:
        expected = 0
        for pos, x in otf.batches(np.arange(n), batch_size):
            b = pos[0] // batch_size if len(pos) else None
            start = b * batch_size
            while expected < start:  # whole batches that failed entirely
                yield np.full((min(batch_size, n - expected), *shape), np.nan, np.float32)
                expected += batch_size
            buf = np.full((min(batch_size, n - start), *shape), np.nan, np.float32)
            buf[pos - start] = x
            yield buf
            expected = start + batch_size
        while expected < n:
            yield np.full((min(batch_size, n - expected), *shape), np.nan, np.float32)
            expected += batch_size
        if otf.failures:
            first = min(otf.failures, key=lambda f: f["position"])
            log.warning("%d examples could not be decoded; their tensors are NaN (the first, "
                        "%s frame %d: %s)", len(otf.failures), first["path"], first["frame"],
                        first["reason"])


def load_tensors(manifest_df: pd.DataFrame, pipeline, **kwargs) -> np.ndarray:
    """All of :func:`predict_tensors` in one float32 array (for small sets)."""
    parts = list(predict_tensors(manifest_df, pipeline, **kwargs))
    return (np.concatenate(parts) if parts
            else np.zeros((0, *tensor_shape(pipeline)), np.float32))
