"""Decode untrusted files in worker processes, so that a crashing codec costs one file.

Some pixel decoders are C libraries that end the whole process on a corrupt stream: GDCM,
for example, calls ``abort()`` (SIGABRT) on a JPEG Baseline (1.2.840.10008.1.2.4.50) file
with a few mutated bytes, and there is no exception to catch. :func:`read_images` decodes in
:mod:`dicomml.parallel` worker processes: a worker that dies is detected by the executor,
the items of its chunk are run once more alone, and the file that kills its worker again is
returned with a :class:`~dicomml.errors.DecoderCrashedError` ("decoder crashed (transfer
syntax ...)") while every other file is read normally. :func:`read_image_isolated` is the
same for one file (``read_image(path, isolate=True)``).

The worker functions of this module import only :mod:`dicomml.io` (never TensorFlow).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence

from dicomml.errors import FATAL, DecoderCrashedError, DicommlError, InvalidDicomError

__all__ = ["read_images", "read_image_isolated", "crash_error", "read_chunk", "stored_chunk"]

#: Files per chunk sent to a worker by :func:`read_images`.
CHUNK_SIZE = 8


# ----------------------------------------------------------------------------- workers
def _guarded(path: str, fn):
    """``fn()``, or the error as a value: a dicomml error, an OSError (missing or unreadable
    file), an IndexError (frame out of range) as they are; anything else (a bug) wrapped in
    :class:`InvalidDicomError` naming the file, so one file never stops a batch."""
    try:
        return fn()
    except (DicommlError, OSError, IndexError) as e:
        return e
    except BaseException as e:  # noqa: BLE001 - returned as a typed error, never fatal
        if isinstance(e, FATAL):
            raise
        from dicomml.io._read_dataset import describe_error

        return InvalidDicomError(
            f"{path}: unexpected error while reading ({describe_error(e)}); the file is "
            "probably corrupt. Please report it to the dicomml developers.")


def read_chunk(items: list) -> list:
    """Worker function: ``[(path, options), ...]`` -> ``[(path, Image | error), ...]``."""
    from dicomml.io.in_process import read_in_process

    return [(path, _guarded(path, lambda p=path, o=opts: read_in_process(p, **o)))
            for path, opts in items]


def stored_chunk(items: list) -> list:
    """Worker function for :func:`dicomml.io.read_series`: ``[(path, decoders), ...]`` ->
    ``[(stored, photometric) | error, ...]`` (see :func:`dicomml.io.pixels.decode_stored`)."""
    from dicomml.io._read_dataset import load_dataset, quiet_pydicom
    from dicomml.io.pixels import decode_stored

    def one(path, decoders):
        with quiet_pydicom():
            ds, _ = load_dataset(path)
            return decode_stored(ds, path, decoders=decoders)

    return [_guarded(path, lambda p=path, d=dec: one(p, d)) for path, dec in items]


# ----------------------------------------------------------------------------- errors
def transfer_syntax_of(path: str) -> str:
    """``"'JPEG Baseline (Process 1)' (1.2.840.10008.1.2.4.50)"`` for ``path``'s (0002,0010),
    read from the header only (no pixel data is decoded); ``"unknown"`` if unreadable."""
    import warnings

    from dicomml.io.codecs import transfer_syntax_name

    try:
        import pydicom

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        ts = str(ds.file_meta.TransferSyntaxUID)
    except Exception:  # noqa: BLE001 - only used to word an error message
        return "unknown"
    return f"'{transfer_syntax_name(ts)}' ({ts})"


def crash_error(path: str, crashed) -> DecoderCrashedError:
    """The :class:`DecoderCrashedError` for ``path`` from a :class:`WorkerCrashed` record."""
    return DecoderCrashedError(
        f"{path}: decoder crashed (transfer syntax {transfer_syntax_of(path)}): "
        f"{crashed.reason} while decoding (7FE0,0010) Pixel Data. The compressed stream is "
        "probably corrupt; the file was left out. Re-export it, or convert it with another "
        "tool (gdcmconv --raw, dcmdjpeg) and check the result.")


# ----------------------------------------------------------------------------- API
def read_images(paths: Iterable[str | os.PathLike], *, isolate: bool = True, executor=None,
                workers: int | None = None, chunk_size: int = CHUNK_SIZE,
                item_timeout: float | None = None, progress=None, frames=None,
                modality_lut: bool | None = None, decoders: Sequence[str] | None = None,
                stored_values: bool = False) -> Iterator[tuple[str, object]]:
    """Read many files; yield ``(path, Image)`` or ``(path, error)`` for every one of them.

    Parameters
    ----------
    paths : iterable of path
        Files to read (consumed lazily: memory stays flat for any number).
    isolate : bool
        True (default): decode in worker processes (see the module docs); a file whose
        decoder kills its worker gives a :class:`~dicomml.errors.DecoderCrashedError`.
        False: read in this process, one file after the other.
    executor : dicomml.parallel.Executor, optional
        Where to run (e.g. a Dask cluster); default a local process pool of ``workers``
        processes, closed at the end. An "inprocess" executor gives no isolation.
    workers : int, optional
        Worker processes of the default pool (:func:`dicomml.parallel.resolve_workers`:
        None or -1 every CPU, the default); 0 reads in this process, as ``isolate=False``
        (no worker, no crash isolation).
    chunk_size : int
        Files per task.
    item_timeout : float, optional
        Seconds per file before a stuck decoder is killed (then reported like a crash).
    progress : bool or tqdm, optional
        A progress bar on stderr, counted in files.
    frames, modality_lut, decoders, stored_values
        As in :func:`dicomml.io.read_image`.

    Yields
    ------
    (str, Image or Exception)
        In completion order. The error is a :class:`~dicomml.errors.DicommlError` naming
        the file (or an ``OSError`` for a file that cannot be opened). No file is
        decoded more than twice (once in its chunk, once alone after a crash of that chunk).
    """
    from dicomml.parallel import resolve_workers

    options = {"frames": frames, "modality_lut": modality_lut, "decoders": decoders,
               "stored_values": stored_values}
    items = ((os.fspath(p), options) for p in paths)
    workers = resolve_workers(workers)
    if not isolate or (workers == 0 and executor is None):
        for item in items:
            yield read_chunk([item])[0]
        return
    from dicomml.parallel import WorkerCrashed, chunked, get_executor

    own = executor is None
    if own:
        executor = get_executor("processes", workers=workers, item_timeout=item_timeout,
                                preload=["dicomml.io.isolated", "dicomml.io.pixels"])
    try:
        for chunk, result in executor.map_chunks(read_chunk, chunked(items, chunk_size),
                                                 progress=progress):
            if isinstance(result, WorkerCrashed):
                path = chunk[0][0]
                yield path, crash_error(path, result)
            elif isinstance(result, list):
                yield from result
            else:  # ChunkFailed: the worker function itself failed (a bug); one error per file
                for path, _ in chunk:
                    yield path, InvalidDicomError(f"{path}: reading failed in the worker "
                                                  f"process ({result}).")
    finally:
        if own:
            executor.close()


def read_image_isolated(path: str | os.PathLike, *, frames=None,
                        modality_lut: bool | None = None,
                        decoders: Sequence[str] | None = None, timeout: float | None = None,
                        executor=None, stored_values: bool = False):
    """``read_image(path)`` decoded in a child process (``read_image(path, isolate=True)``).

    Raises the error :func:`dicomml.io.read_image` would raise, or
    :class:`~dicomml.errors.DecoderCrashedError` when the decoder killed the child process
    (or ran past ``timeout`` seconds).
    """
    from dicomml.parallel import get_executor

    own = executor is None
    if own:
        executor = get_executor("processes", workers=1, item_timeout=timeout)
    try:
        (_, result), = read_images([path], executor=executor, chunk_size=1, frames=frames,
                                   modality_lut=modality_lut, decoders=decoders,
                                   stored_values=stored_values)
    finally:
        if own:
            executor.close()
    if isinstance(result, BaseException):
        raise result
    return result
