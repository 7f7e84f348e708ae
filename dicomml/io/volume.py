"""Assemble a series of slices into a :class:`~dicomml.io.types.Volume`; SimpleITK interop.

How :func:`read_series` builds the volume
-----------------------------------------
1. Every file is read once (bytes, then header parse); files that are not DICOM or carry no
   (7FE0,0010) Pixel Data (SR, presentation states, DICOMDIR...) are ignored and listed in
   ``volume.extra["ignored"]``.
2. The instances are grouped by (0020,000E) Series Instance UID. Several series and no
   ``series_uid=``: :class:`~dicomml.errors.SeriesError` listing them.
3. The instances are split with the Index's one same-series rule
   (:func:`dicomml.io.series.group_instances`: study, Series Number, size, pixel spacing,
   orientation, echo, magnitude/phase): the largest group is read, the others are left out
   with a ``mixed_size`` / ``mixed_orientation`` / ``mixed_series`` issue (e.g. a LOCALIZER
   in the series, the second echo of a field map): read those by their series key. The
   files of a ``(series_key, Index)`` are not split again while they are unchanged since
   the scan that keyed them by this rule from the same values
   (:meth:`dicomml.io.index.Index.series_group`: size and modification time, no scan
   writing keys).
4. Every frame is a slice (an Enhanced multi-frame file gives one slice per frame, with the
   per-frame (0020,9113) Plane Position); a Siemens mosaic ((0008,0008) Image Type
   ``MOSAIC``) gives one slice per tile, with the geometry of its CSA header
   (:mod:`dicomml.io.mosaic`). Frames of another orientation than the majority are left out
   (``mixed_orientation``).
5. Slices are sorted by their (0020,0032) position projected on the slice normal
   (row cosine × column cosine) — never by Instance Number or file name. When every
   position holds several slices the series is 4-D (:mod:`dicomml.io.multivolume`): the
   k-th slice of each position in acquisition order (Dimension Index Values, Temporal
   Position, Instance Number, frame — all numeric) is volume k; ``pixels`` gets a leading
   volume axis and ``volumes`` one :class:`~dicomml.io.types.VolumeInfo` each; slices
   beyond the last complete volume are left out (``incomplete_volume``). Otherwise
   duplicate positions keep the slice with the lowest (0020,0013) Instance Number (then
   file, then frame number) and report ``duplicate_position``; gaps that are a multiple of
   the spacing report ``missing_slices``, other deviations ``irregular_spacing``. Slices
   with no position: ``no_position`` (when no slice has one, they are stacked by
   (0020,0013) Instance Number — the only order left — with unit spacing and an identity
   direction). Enhanced objects whose In-Stack Position Numbers or dimension indices
   contradict the positions: ``dimension_conflict`` (the positions win).
6. ``spacing[0]`` is the median distance between successive positions (not (0018,0050) Slice
   Thickness); ``origin`` is the position of the first slice; ``direction`` has the columns
   (row cosine, column cosine, normal).

Steps 3–5 are in :mod:`dicomml.io.stacking`. SimpleITK interop (:func:`to_sitk`,
:func:`from_sitk`, :func:`resample`) lives in :mod:`dicomml.io.sitk_interop` and is
re-exported here.

Gantry tilt: the positions then advance along a line that is not the normal. As SimpleITK's
``ImageSeriesReader`` (ITK/GDCM) does, the third direction column stays the slice normal and
the slice spacing is the distance between successive positions, so ``to_sitk()`` equals what
SimpleITK reads. The stacking direction (unit vector from first to last position) and the
tilt angle are kept in ``extra["slice_direction"]`` and ``extra["tilt_degrees"]``; resample
with them if the sheared geometry matters.

Unreadable slices (truncated, corrupt, undecodable, a malformed Modality LUT, VOI LUT or
multi-valued Rescale Slope): ``strict=True`` raises (:class:`~dicomml.errors.InvalidDicomError`
for a corrupt value); lenient mode (default) leaves the slice out and records an
``unreadable`` issue naming the file. A mosaic whose CSA header is missing or unreadable is
read as one image with a ``mosaic`` issue. With ``strict=True`` every issue raises
(:class:`~dicomml.errors.SeriesError` unless said otherwise).
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dicomml.errors import (
    ConfigError,
    DecodeError,
    DicommlError,
    NoPixelDataError,
    NotDicomError,
    SeriesError,
)
from dicomml.io._read_dataset import load_dataset, quiet_pydicom, shown_cs, shown_uid
from dicomml.io.direct_read import PixelRef, load_head
from dicomml.io.pixels import (
    corrupt_value_error,
    decode_stored,
    frame_geometry,
    n_frames,
    padding_mask,
    rescale_into,
    to_modality,
    transfer_syntax,
    voi_luts_of,
    windows_of,
)
from dicomml.io.sitk_interop import from_sitk, resample, to_sitk
from dicomml.io.stacking import (
    Slice,
    int_or,
    majority,
    one_series,
    order_slices,
    philips_scale,
    short_list,
    slices_of,
)
from dicomml.io.types import SeriesIssue, Volume

__all__ = ["read_series", "select_volume", "to_sitk", "from_sitk", "resample"]


# ----------------------------------------------------------------------------- inputs
def _key_files(index, key) -> tuple[list[str], bool]:
    """The files of a series key and whether the Index vouches that they are one group of
    the same-series rule as the files are now (:meth:`dicomml.io.index.Index.series_group`;
    an object with only ``series_files`` vouches for nothing)."""
    group = getattr(index, "series_group", None)
    if group is None:
        return [str(p) for p in index.series_files(key)], False
    paths, grouped = group(key)
    return [str(p) for p in paths], grouped


def _resolve_paths(x, index) -> tuple[list[str], bool]:
    """Return (paths, grouped): ``grouped`` when the paths are the files of one Index series
    key, unchanged since the scan that grouped them (:func:`_key_files`)."""
    # A DataFrame or Series exists only once pandas is imported: a folder or a list of
    # files never pays for importing it (half a second of CPU, on the first call).
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(x, pd.DataFrame):
        if "path" not in x.columns:
            raise ConfigError("read_series: the DataFrame has no 'path' column; pass rows of "
                              f"the index. Received: columns={list(x.columns)}")
        return [str(p) for p in x["path"]], False
    if pd is not None and isinstance(x, pd.Series):
        if "path" in x.index:
            return [str(x["path"])], False
        if "series_key" in x.index and index is not None:
            return _key_files(index, x["series_key"])
        raise ConfigError("read_series: the row has neither a 'path' nor (with index=) a "
                          f"'series_key'. Received: fields={list(x.index)}")
    if isinstance(x, tuple) and len(x) == 2 and hasattr(x[1], "series_files"):
        return _key_files(x[1], x[0])
    if isinstance(x, (str, os.PathLike)):
        p = Path(x)
        if p.is_dir():
            files = sorted(str(f) for f in p.rglob("*") if f.is_file()
                           and not f.name.startswith(".") and f.name.upper() != "DICOMDIR")
            return files, False
        if p.is_file():
            return [str(p)], False
        if index is not None:
            return _key_files(index, str(x))
        raise ConfigError(f"read_series: {x} is neither a folder nor a file (pass index= to "
                          "read a series key). Received: source=" + repr(str(x)))
    try:
        return [os.fspath(p) for p in x], False
    except TypeError:
        raise ConfigError("read_series: expected a folder, a list of files, a (series_key, "
                          f"Index) pair or index rows. Received: {type(x).__name__}") from None


def _load(path: str):
    """Return (dataset, None), (dataset, PixelRef) when only the header was read
    (:mod:`dicomml.io.direct_read`), (None, ("ignored", why)) or
    (None, ("unreadable", error))."""
    head = load_head(path)
    if head is not None:
        return head
    try:
        ds, _ = load_dataset(path, frame_groups=True)
    except (NotDicomError, OSError) as e:
        return None, ("ignored", str(e))
    except DicommlError as e:
        return None, ("unreadable", e)
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        return None, ("ignored", f"{path}: no (7FE0,0010) Pixel Data "
                                 f"(SOP Class {shown_uid(ds.get('SOPClassUID'))})")
    return ds, None


def _map(fn, items, workers, *, blocks: bool = False):
    """``[fn(i) for i in items]`` on ``workers`` threads. ``blocks``: each thread takes one
    contiguous run of the items (for the pixel pass: each thread writes one run of
    neighbouring slices of the output, so that the threads fault in different parts of
    the fresh volume; handing out slices one by one interleaved them and was slower)."""
    if workers and workers > 1 and len(items) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            if not blocks:
                return list(pool.map(fn, items))
            n = min(workers, len(items))
            cuts = [len(items) * k // n for k in range(n + 1)]
            runs = pool.map(lambda ab: [fn(i) for i in items[ab[0]:ab[1]]],
                            zip(cuts[:-1], cuts[1:]))
            return [r for run in runs for r in run]
    return [fn(i) for i in items]


# ----------------------------------------------------------------------------- main
def read_series(x, *, strict: bool = False, workers: int | None = None,
                series_uid: str | None = None, index=None,
                modality_lut: bool | None = None, isolate: bool = False, executor=None,
                decoders=None, volume: int | None = None,
                philips_precise: bool = False) -> Volume:
    """Read one series into a Volume ordered along the slice normal (see the module docs).

    Parameters
    ----------
    x : folder, file, list of files, (series_key, Index), or index rows
        A folder (searched recursively), a list of paths, a ``(series_key, index)`` pair, a
        series key string with ``index=``, or a pandas DataFrame / row of the index with a
        ``path`` column (or ``series_key`` plus ``index=``).
    strict : bool
        Raise :class:`~dicomml.errors.SeriesError` on any issue (and re-raise the error of an
        unreadable slice) instead of recording it in ``Volume.issues``.
    workers : int, optional
        Threads that read, decode and convert files (file I/O, codecs and numpy release the
        GIL), :func:`dicomml.parallel.resolve_workers`'s convention: 0 or 1 reads
        sequentially in this thread; None or -1 (the default) is every CPU where it helps:
        ``min(4, CPUs)`` threads to decode compressed (encapsulated) pixel data and to
        write the modality values into the volume (each thread one run of neighbouring
        slices: the fresh volume's page faults and the conversion then run side by side),
        one thread for parsing the headers (pure Python: it holds the GIL; threads there
        measured slower, see ``bench/README.md``, section *read*). The result does not
        depend on it.
    series_uid : str, optional
        Choose one (0020,000E) Series Instance UID when the input holds several.
    index : dicomml.io.Index, optional
        Resolves a series key.
    modality_lut : bool or None
        As in :func:`~dicomml.io.read_image`.
    isolate : bool
        Decode compressed (encapsulated) pixel data in worker processes
        (:mod:`dicomml.io.isolated`): a slice whose C decoder aborts or crashes its process
        is left out with an ``unreadable`` issue "decoder crashed (transfer syntax ...)"
        (``strict=True``: :class:`~dicomml.errors.DecoderCrashedError`) and this process
        survives. Native pixel data is read here (no C codec is involved). Default False.
    executor : dicomml.parallel.Executor, optional
        With ``isolate=True``: where to decode; default a local pool of ``workers``
        processes, closed at the end.
    decoders : sequence of str, optional
        pydicom decoding plugins in order (see :func:`~dicomml.io.read_image`).
    volume : int, optional
        Read only volume ``volume`` (0-based, in acquisition order) of a 4-D series: a 3-D
        Volume with ``extra["volume"]`` and ``extra["n_volumes"]``. Default: all volumes.
    philips_precise : bool
        Philips MR: return dcm2niix's "precise float" values, display value / (Rescale
        Slope × private Scale Slope (2005,xx0E)) (:mod:`dicomml.io.philips`), instead of the
        display values (default). ``extra["philips_scale_slope"]`` holds the Scale Slope.

    Returns
    -------
    Volume
        float32 (slices, rows, columns) in modality units, with geometry and UIDs; for a
        series of several volumes (volumes, slices, rows, columns) with ``volumes``. A
        colour (RGB) series has a trailing axis of 3 samples (``Volume.is_color``).

    Raises
    ------
    SeriesError
        No image in the input, several series, colour and grayscale images mixed, or
        (strict) any issue.
    """
    from dicomml.parallel import check_workers, resolve_workers

    paths, grouped = _resolve_paths(x, index)
    native_workers = workers = check_workers(workers)
    if workers is None:  # the default: threads where they help (see above)
        workers, native_workers = min(4, resolve_workers(None)), 1
    with quiet_pydicom():
        return _read_series(paths, strict=strict, workers=workers, series_uid=series_uid,
                            modality_lut=modality_lut, isolate=isolate, executor=executor,
                            decoders=decoders, native_workers=native_workers, volume=volume,
                            philips_precise=philips_precise, grouped=grouped)


def _decode_isolated(datasets, files, decoders, workers, executor) -> dict:
    """Stored values of the encapsulated files, decoded in worker processes:
    ``{i: (stored, photometric) | error}`` (a crash gives a DecoderCrashedError)."""
    from dicomml.io.isolated import crash_error
    from dicomml.io.uids import is_encapsulated
    from dicomml.parallel import WorkerCrashed, chunked, get_executor

    todo = [i for i, ds in enumerate(datasets) if is_encapsulated(transfer_syntax(ds))]
    if not todo:
        return {}
    own = executor is None
    if own:
        executor = get_executor("processes", workers=max(1, min(workers or 1, len(todo))))
    out: dict = {}
    items = [(i, (files[i], decoders)) for i in todo]
    try:
        size = max(1, min(8, len(items) // max(1, executor.workers)))
        for chunk, result in executor.map_chunks(_stored_of_items, chunked(items, size)):
            if isinstance(result, WorkerCrashed):
                out[chunk[0][0]] = crash_error(files[chunk[0][0]], result)
            elif isinstance(result, list):
                out.update(zip((i for i, _ in chunk), result))
            else:
                for i, _ in chunk:
                    out[i] = DecodeError(f"{files[i]}: decoding failed in the worker process "
                                         f"({result}).")
    finally:
        if own:
            executor.close()
    return out


def _stored_of_items(chunk: list) -> list:
    """Worker function: ``[(i, (path, decoders)), ...]`` -> stored values or errors."""
    from dicomml.io.isolated import stored_chunk

    return stored_chunk([item for _, item in chunk])


def _read_series(paths, *, strict, workers, series_uid, modality_lut, isolate=False,
                 executor=None, decoders=None, native_workers=None, volume=None,
                 philips_precise=False, grouped=False) -> Volume:
    if native_workers is None:
        native_workers = workers
    issues: list[SeriesIssue] = []
    ignored: list[str] = []

    def fail_or_record(kind: str, detail: str, exc: Exception | None = None):
        if strict:
            if exc is not None:
                raise exc
            raise SeriesError(f"{kind}: {detail} (strict=True; pass strict=False to read "
                              "the series anyway and get the problem in Volume.issues)")
        issues.append(SeriesIssue(kind, detail))

    loaded = _map(_load, paths, native_workers)
    datasets: list = []
    files: list[str] = []
    refs: dict[int, PixelRef] = {}  # files whose pixels are read straight into the volume
    for path, (ds, why) in zip(paths, loaded):
        if isinstance(why, PixelRef):
            refs[len(datasets)], why = why, None
        if ds is None:
            if why[0] == "ignored":
                ignored.append(why[1])
            else:
                fail_or_record("unreadable", f"{why[1]} — the slice is left out", why[1])
            continue
        datasets.append(ds)
        files.append(path)
    if not datasets:
        unreadable = [i.detail for i in issues]
        raise SeriesError(f"no image instances among the {len(paths)} file(s) given "
                          f"({len(ignored)} ignored: not DICOM or no (7FE0,0010) Pixel Data"
                          f"{': ' + short_list(ignored, 3) if ignored else ''}"
                          f"{'; unreadable: ' + short_list(unreadable, 3) if unreadable else ''}).")

    # -- one series
    by_series: dict[str, list[int]] = {}
    for i, ds in enumerate(datasets):
        by_series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(i)
    if series_uid is not None:
        if str(series_uid) not in by_series:
            raise SeriesError(f"series {series_uid} not found; the input holds: "
                              + _describe_series(by_series, datasets))
        chosen = by_series[str(series_uid)]
    elif len(by_series) > 1:
        raise SeriesError(f"the input holds {len(by_series)} series: "
                          + _describe_series(by_series, datasets)
                          + ". Pass series_uid= to choose one.")
    else:
        chosen = next(iter(by_series.values()))
    datasets = [datasets[i] for i in chosen]
    files = [files[i] for i in chosen]
    refs = {k: refs[i] for k, i in enumerate(chosen) if i in refs}

    # -- decode stored values (threads: file I/O and codecs release the GIL)
    done = _decode_isolated(datasets, files, decoders, workers, executor) if isolate else {}

    def decode(i):
        if i in done:
            return done[i]
        if i in refs:  # read in _assemble, straight into the volume
            return refs[i], str(datasets[i].PhotometricInterpretation).strip()
        try:
            return decode_stored(datasets[i], files[i], decoders=decoders)
        except (DicommlError, IndexError) as e:
            return e
        except Exception as e:  # noqa: BLE001 - a corrupt value can break any step
            return corrupt_value_error(files[i], e)

    from dicomml.io.uids import is_encapsulated

    compressed = workers > native_workers and any(
        i not in done and is_encapsulated(transfer_syntax(ds))
        for i, ds in enumerate(datasets))
    decoded = _map(decode, list(range(len(datasets))),
                   workers if compressed else native_workers)
    keep_files = []
    for i, d in enumerate(decoded):
        if isinstance(d, NoPixelDataError):
            ignored.append(str(d))
        elif isinstance(d, Exception):
            fail_or_record("unreadable", f"{d} — the slice is left out", d)
        else:
            keep_files.append(i)
    _one_colour_kind(keep_files, decoded, files)
    if not keep_files:
        raise SeriesError("no slice of the series could be read: "
                          + "; ".join(i.detail for i in issues))
    # after decoding, so that an undecodable file is reported as such whatever its series;
    # not again for the files of one Index series key that the scan grouped by the same
    # rule from these very files (unchanged since: Index.series_group)
    if not grouped:
        keep_files = one_series(keep_files, datasets, files, fail_or_record)

    # -- slices (a mosaic gives one slice per tile, a multi-frame object one per frame)
    stored_of: dict[int, np.ndarray] = {}
    slices: list[Slice] = []
    mosaics = 0
    for i in keep_files:
        try:
            built = slices_of(i, datasets[i], files[i], decoded[i][0],
                              n_frames(datasets[i]), philips_precise, fail_or_record)
        except DicommlError as e:
            fail_or_record("unreadable", f"{e} — the slice is left out", e)
            continue
        except Exception as e:  # noqa: BLE001 - a corrupt value can break any step
            err = corrupt_value_error(files[i], e)
            fail_or_record("unreadable", f"{err} — the slice is left out", err)
            continue
        stored_of[i], file_slices, datasets[i], is_tiled = built
        mosaics += is_tiled
        slices.extend(file_slices)
    if not slices:
        raise SeriesError("no slice of the series could be read: "
                          + "; ".join(i.detail for i in issues))
    slices = majority(slices, lambda s: s.size, "mixed_size",
                       lambda s: f"{s.size[0]}×{s.size[1]}", fail_or_record, datasets)
    with_pos = [s for s in slices if s.position is not None and s.orientation is not None]
    if len(with_pos) < len(slices):
        missing = [s.label for s in slices if s.position is None or s.orientation is None]
        if with_pos:
            fail_or_record("no_position", f"{len(missing)} slice(s) without (0020,0032) Image "
                           f"Position / (0020,0037) Orientation (Patient) left out: "
                           f"{short_list(missing)}")
            slices = with_pos
        else:
            fail_or_record("no_position", "no slice has (0020,0032) Image Position / "
                           "(0020,0037) Image Orientation (Patient); stacked by (0020,0013) "
                           "Instance Number with unit spacing and identity direction")
    extra: dict = {"ignored": ignored}
    if mosaics:
        extra["mosaic"] = True
    scale = philips_scale(datasets[slices[0].file], files[slices[0].file])
    if scale is not None:
        extra["philips_scale_slope"] = scale
        extra["philips_precise"] = bool(philips_precise)
    ctx = _Context(datasets=datasets, files=files, stored_of=stored_of, extra=extra,
                   issues=issues, fail_or_record=fail_or_record, modality_lut=modality_lut,
                   volume=volume, tiled=bool(mosaics), pixel_workers=workers)
    return _assemble(slices, ctx)


#: Voxels from which the pixel pass of ``read_series`` runs on threads (the default): below,
#: starting them costs more than they save. Measured on 2 cores, whole reads, one thread
#: against two: 39 × 72 × 72 (an XA30 diffusion volume) 1.6–2.3 against 3.1–3.2 ms;
#: 32 × 512² (8.4 M voxels) 14.5 against 15–16 ms; 64 × 512² (16.8 M) 29 against 24–27 ms;
#: 200 × 512² (52 M) 90 against 72–88 ms.
PIXEL_THREADS_FROM = 12 << 20


@dataclass
class _Context:
    """What assembling the slices needs besides the slices (see :func:`_assemble`)."""

    datasets: list
    files: list[str]
    stored_of: dict
    extra: dict
    issues: list
    fail_or_record: object
    modality_lut: bool | None
    volume: int | None
    tiled: bool
    #: Threads of the pixel pass (each one run of neighbouring slices, see :func:`_map`),
    #: for a volume of at least :data:`PIXEL_THREADS_FROM` voxels.
    pixel_workers: int = 1


def _assemble(slices: list[Slice], ctx: _Context) -> Volume:
    """Order the slices (3-D or 4-D), convert them to modality values and build the Volume.

    A slice whose conversion fails (a malformed Modality LUT...) is reported and left out,
    and the rest is assembled again, so that the geometry never includes it.
    """
    datasets, files, stored_of, extra = ctx.datasets, ctx.files, ctx.stored_of, ctx.extra
    fail_or_record, modality_lut, volume = ctx.fail_or_record, ctx.modality_lut, ctx.volume
    n_issues = len(ctx.issues)
    extra = dict(extra)
    # Numeric tie-break (Instance Number, file, frame): the lower Instance Number is kept
    # for a duplicate position, and frame 20 comes before frame 100.
    number = {i: int_or(datasets[i].get("InstanceNumber")) for i in {s.file for s in slices}}
    slices.sort(key=lambda s: (number[s.file], s.file, s.frame))
    layers, infos, geometry = order_slices(slices, datasets, files, extra, fail_or_record)
    if volume is not None:
        if isinstance(volume, bool) or not isinstance(volume, (int, np.integer)) \
                or not -len(layers) <= int(volume) < len(layers):
            raise ConfigError(f"read_series: volume={volume!r} is out of range; the series "
                              f"holds {len(layers)} volume(s) (0-based)")
        k = int(volume) % len(layers)
        extra["n_volumes"] = len(layers)
        extra["volume"] = k
        layers, infos = [layers[k]], infos[k:k + 1] if infos else ()
    flat = [s for layer in layers for s in layer]

    # -- pixels
    ds0 = datasets[flat[0].file]
    rows, cols = flat[0].size
    samples = stored_of[flat[0].file].shape[3:]  # (3,) for colour
    vol = np.empty((len(flat), rows, cols) + samples, dtype=np.float32)
    has_pad = not samples and any("PixelPaddingValue" in datasets[s.file] for s in flat)
    mask = np.zeros(vol.shape, dtype=bool) if has_pad else None

    def fill(k: int):
        s = flat[k]
        ds = datasets[s.file]
        src = stored_of[s.file]
        if not isinstance(src, PixelRef) and _colour_into(vol, k, src[s.frame]):
            return None
        try:
            stored = src.read() if isinstance(src, PixelRef) else src[s.frame]
            use_lut = bool(ds.get("ModalityLUTSequence"))
            if modality_lut is not False and s.slope is not None and not use_lut:
                rescale_into(stored, s.slope, s.intercept, vol[k], where=files[s.file])
            else:
                resc = None if s.slope is None else (np.array([s.slope]),
                                                     np.array([s.intercept]), None)
                to_modality(stored[None], ds, resc, modality_lut=modality_lut,
                            path=files[s.file], out=vol[k:k + 1])
            if mask is not None:
                m = padding_mask(stored[None], ds)
                if m is not None:
                    mask[k] = m[0]
        except DicommlError as e:
            return e
        except Exception as e:  # noqa: BLE001 - a malformed Modality LUT breaks pydicom
            return corrupt_value_error(files[s.file], e)
        return None

    threads = ctx.pixel_workers if vol.size >= PIXEL_THREADS_FROM else 1
    failed = {flat[k].file: e for k, e in enumerate(_map(fill, list(range(len(flat))),
                                                         threads, blocks=True))
              if e is not None}
    if failed:
        del ctx.issues[n_issues:]  # the ordering is done again without the failed files
        for i, e in failed.items():
            fail_or_record("unreadable", f"{e} — the slice is left out", e)
        keep = [s for s in slices if s.file not in failed]
        if not keep:
            raise SeriesError("no slice of the series could be read: "
                              + "; ".join(i.detail for i in ctx.issues))
        return _assemble(keep, ctx)
    ps = frame_geometry(ds0, [flat[0].frame])[2] or (1.0, 1.0)
    try:
        windows, luts = windows_of(ds0, flat[0].frame), voi_luts_of(ds0, flat[0].frame)
    except Exception as e:  # noqa: BLE001 - a malformed VOI LUT / window of the first slice
        err = corrupt_value_error(files[flat[0].file], e)
        fail_or_record("unreadable", f"{err} — the volume has no default window / VOI LUT",
                       err)
        windows, luts = (), ()
    multi = ctx.tiled or any(n_frames(datasets[s.file]) > 1 for s in flat)
    if len(layers) > 1:
        vol = vol.reshape((len(layers), len(layers[0])) + vol.shape[1:])
        if mask is not None:
            mask = mask.reshape(vol.shape)
    slice_spacing, origin, direction = geometry
    return Volume(
        pixels=vol,
        spacing=(float(slice_spacing), float(ps[0]), float(ps[1])),
        origin=origin,
        direction=direction,
        sop_instance_uids=tuple(str(datasets[s.file].get("SOPInstanceUID", "")) for s in flat),
        windows=windows,
        voi_luts=luts,
        photometric_interpretation="RGB" if samples else str(
            ds0.PhotometricInterpretation).strip(),
        padding_mask=mask,
        modality=_str_or(ds0.get("Modality")),
        series_instance_uid=_str_or(ds0.get("SeriesInstanceUID")),
        study_instance_uid=_str_or(ds0.get("StudyInstanceUID")),
        frame_of_reference_uid=_str_or(ds0.get("FrameOfReferenceUID")),
        paths=tuple(files[s.file] for s in flat),
        frames=tuple(s.frame for s in flat) if multi else (),
        issues=tuple(ctx.issues),
        extra=extra,
        volumes=tuple(infos),
    )


def _one_colour_kind(keep: list[int], decoded: list, files: list[str]) -> None:
    """Refuse a series that mixes colour (RGB, 3 samples per pixel) and grayscale images:
    they cannot share one array."""
    colour = [i for i in keep if decoded[i][0].ndim == 4]
    if colour and len(colour) < len(keep):
        gray = next(i for i in keep if decoded[i][0].ndim != 4)
        raise SeriesError(
            f"the series mixes {len(colour)} colour image(s) (e.g. {files[colour[0]]}, "
            f"(0028,0004) Photometric Interpretation {shown_cs(decoded[colour[0]][1])}) and "
            f"{len(keep) - len(colour)} grayscale image(s) (e.g. {files[gray]}); read them "
            "as separate lists of files.")


def _colour_into(vol: np.ndarray, k: int, stored: np.ndarray) -> bool:
    """Copy the stored RGB values of a colour slice into ``vol[k]`` (not rescaled: the
    rescale and Modality LUT of PS3.3 C.11.1 are for grayscale values, and dcm2niix writes
    the stored RGB values); False for a grayscale slice."""
    if vol.ndim != 4:
        return False
    vol[k] = stored
    return True


def select_volume(volume: Volume, k: int) -> Volume:
    """Volume ``k`` (0-based) of a 4-D :class:`Volume` as a 3-D one (the pixels are a view);
    see :meth:`dicomml.io.types.Volume.volume`."""
    return volume.volume(k)


def _describe_series(by_series, datasets) -> str:
    parts = []
    for uid, idx in by_series.items():
        ds = datasets[idx[0]]
        parts.append(f"{shown_uid(uid, '<no (0020,000E)>')} ({shown_cs(ds.get('Modality'), '?')}, "
                     f"{len(idx)} instance(s))")
    return "; ".join(parts)


def _str_or(v):
    return None if v in (None, "") else str(v)
