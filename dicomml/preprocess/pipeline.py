"""The preprocessing pipeline: one plane of an Image or Volume → ``float32 (size, size, 3)``.

The fixed order of operations (STYLE habit 3), each step a function documented with its
input and output range, dtype and units:

1. stored values → modality values (Rescale / Modality LUT): done by :mod:`dicomml.io`;
   ``float32`` modality units (HU for CT).
2. VOI LUT or window (:func:`~dicomml.preprocess.apply_window`,
   :func:`~dicomml.preprocess.apply_voi_lut`, PS3.3 C.11.2): → ``float32`` [0, 1].
   (Colour images skip it: RGB is divided by ``2**BitsStored - 1``.)
3. MONOCHROME1 inversion ((0028,0004), PS3.3 C.7.6.3.1.2): ``y → 1 − y``, after windowing,
   so that 0 is always black on display.
4. Padding floor: pixels at (0028,0120) Pixel Padding Value / (0028,0121) Pixel Padding
   Range Limit become 0, the floor of the displayed range (black) — also for MONOCHROME1,
   whose padding is the displayed black after inversion, not the window's stored floor.
5. Resize to ``size × size`` (:func:`~dicomml.preprocess.resize_planes`): [0, 1] → [0, 1].
6. Channels: three windows, one window replicated, three adjacent slices (2.5D), or RGB;
   channels last. (Training only: geometric and intensity augmentation here.)
7. Normalize: ``unit`` [0, 1], ``imagenet`` per-channel mean/std, ``zscore`` per image.
"""

from __future__ import annotations

import functools
import os
import weakref
from dataclasses import dataclass

import numpy as np

from dicomml.errors import FATAL, ConfigError, DicommlError
from dicomml.io.pixels import exact_in_float32, rescale_into
from dicomml.io.types import VOILUT, Image, Volume, Window
from dicomml.preprocess._options import (IMAGENET_MEAN, IMAGENET_STD, Mode, Normalization,
                                         PreprocessError, ResizeMode, VOILUTFunction)
from dicomml.preprocess.augment import apply_geometry, apply_intensity, draw
from dicomml.preprocess.config import PreprocessConfig
from dicomml.preprocess.presets import (ResolvedWindow, resolve_window, window_is_fixed,
                                        window_needs_values)
from dicomml.preprocess.resize import compiled_kernel, resize_planes, window_resize
from dicomml.preprocess.window import apply_voi_lut, apply_window, window_coefficients

__all__ = ["Pipeline", "to_tensor", "invert_monochrome1", "apply_padding_floor",
           "normalize", "IMAGENET_MEAN", "IMAGENET_STD"]



# ---------------------------------------------------------------- pure steps
def invert_monochrome1(windowed: np.ndarray, photometric_interpretation: str | None, *,
                       inplace: bool = False) -> np.ndarray:
    """Step 3: ``1 − y`` for (0028,0004) MONOCHROME1, identity otherwise.

    PS3.3 C.7.6.3.1.2: MONOCHROME1 displays the minimum value as white. Inverting *after*
    the VOI transform keeps the window (defined on modality values) unchanged.
    Input and output ``float32`` [0, 1]; a new array (the input is not modified), or with
    ``inplace=True`` the input itself (a ``float32`` array), as the Pipeline does.
    """
    mono1 = (photometric_interpretation or "").strip().upper() == "MONOCHROME1"
    if inplace:
        y = _float32_array(windowed, "invert_monochrome1")
        if mono1:
            np.subtract(np.float32(1.0), y, out=y)
        return y
    y = np.asarray(windowed, dtype=np.float32)
    if mono1:
        return np.float32(1.0) - y
    return y.copy()


def _float32_array(x, what: str) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.dtype != np.float32:
        raise ConfigError(f"{what}(..., inplace=True) needs a float32 numpy array. Received: "
                          f"{getattr(x, 'dtype', type(x).__name__)}")
    return x


def apply_padding_floor(displayed: np.ndarray, padding_mask: np.ndarray | None, *,
                        inplace: bool = False) -> np.ndarray:
    """Step 4: set padding pixels to 0 (black, the floor of the displayed range).

    ``displayed`` is ``float32`` [0, 1] of shape (..., rows, cols); ``padding_mask`` is a
    ``bool`` (rows, cols) or the same shape, from (0028,0120) Pixel Padding Value and
    (0028,0121) Pixel Padding Range Limit. Returns a new array, or with ``inplace=True``
    the input itself (a ``float32`` array), as the Pipeline does.
    """
    if inplace:
        y = _float32_array(displayed, "apply_padding_floor")
    else:
        y = np.array(displayed, dtype=np.float32, copy=True)
    if padding_mask is not None:
        m = np.asarray(padding_mask, dtype=bool)
        if m.shape == y.shape:
            y[m] = 0.0
        else:  # one (rows, cols) mask for every leading plane
            y[..., m] = 0.0
    return y


def normalize(tensor: np.ndarray, how: str | Normalization = "unit") -> np.ndarray:
    """Step 7: normalize a channels-last ``float32`` [0, 1] tensor.

    ``unit``: unchanged, range [0, 1]. ``imagenet``: ``(y − mean) / std`` with mean
    (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225) per channel, range
    [−2.1179, 2.6400]. ``zscore``: ``(y − mean(y)) / std(y)`` over the whole tensor (mean 0,
    standard deviation 1, unbounded); a constant tensor gives zeros. Returns a new array.
    """
    from dicomml.preprocess._options import choose

    how = choose(how, Normalization, "normalize")
    y = np.asarray(tensor, dtype=np.float32)
    if how is Normalization.UNIT:
        return y.copy()
    if how is Normalization.IMAGENET:
        if y.shape[-1] != 3:
            raise ConfigError(f"imagenet normalization needs 3 channels last. Received: "
                              f"shape={y.shape}")
        return (y - IMAGENET_MEAN) / IMAGENET_STD
    mean = float(y.mean(dtype=np.float64))
    std = float(y.std(dtype=np.float64))
    out = y - np.float32(mean)
    if std > 0:
        out /= np.float32(std)
    return out


# ---------------------------------------------------------------- sources
@dataclass
class _Plane:
    values: np.ndarray            # (rows, cols) | (3, rows, cols) for 2.5d | (rows, cols, 3) rgb
    padding: np.ndarray | None
    photometric: str
    spacing: tuple[float, float] | None
    windows: tuple[Window, ...]
    voi_luts: tuple[VOILUT, ...]
    bits_stored: int | None
    where: str
    #: (slope, intercept) when ``values`` are stored integers (``Image.stored_values``) whose
    #: modality values ``float32(v)·slope + intercept`` are exact; None: modality values.
    rescale: tuple[float, float] | None = None

    def modality(self) -> None:
        """Replace stored integers by their ``float32`` modality values (no-op otherwise)."""
        if self.rescale is not None:
            out = np.empty(self.values.shape, dtype=np.float32)
            rescale_into(self.values, *self.rescale, out, where=self.where)
            self.values, self.rescale = out, None


def _where(src) -> str:
    path = getattr(src, "path", None) or (getattr(src, "paths", None) or (None,))[0]
    if path:
        return os.fspath(path)
    uid = getattr(src, "sop_instance_uid", None) or getattr(src, "series_instance_uid", None)
    return f"SOP/Series Instance UID {uid}" if uid else "array"


def _check_index(index: int, n: int, where: str, what: str) -> int:
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) \
            or not -n <= int(index) < n:
        raise ConfigError(f"{where}: {what} index {index!r} is out of range; it has {n} "
                          f"{what}(s) (0-based).")
    return int(index) % n


def _neighbours_by_position(image: Image, index: int, where: str) -> list[int]:
    pos, ori = image.positions, image.orientations
    if pos is None or ori is None:
        raise ConfigError(f"{where}: mode '2.5d' needs slice positions: pass a Volume "
                          "(dicomml.io.read_series) or a multi-frame image with (0020,0032) "
                          "Image Position (Patient) and (0020,0037) Image Orientation (Patient).")
    o = np.asarray(ori, dtype=np.float64)[index]
    normal = np.cross(o[:3], o[3:])
    order = np.argsort(np.asarray(pos, dtype=np.float64) @ normal, kind="stable")
    p = int(np.nonzero(order == index)[0][0])
    n = len(order)
    return [int(order[max(p - 1, 0)]), index, int(order[min(p + 1, n - 1)])]


def _plane(source, index: int, mode: Mode) -> _Plane:
    if isinstance(source, np.ndarray):
        arr = source
        if arr.ndim == 2 or (arr.ndim == 3 and mode is Mode.RGB and arr.shape[-1] == 3):
            arr = arr[None]
        if mode is Mode.TWO_HALF_D and arr.ndim == 3:
            source = Volume(pixels=arr, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0),
                            direction=np.eye(3))
        else:
            source = Image(pixels=arr)
    if isinstance(source, Volume):
        where = _where(source)
        if source.is_color:
            raise ConfigError(f"{where}: a colour (RGB) volume; preprocess takes grayscale "
                              "series. Received: pixels of shape " + str(source.pixels.shape))
        if source.pixels.ndim == 4:
            raise ConfigError(f"{where}: a series of {source.pixels.shape[0]} volumes (4-D); "
                              "preprocess one of them: volume.volume(k) or "
                              "read_series(..., volume=k).")
        n = source.pixels.shape[0]
        i = _check_index(index, n, where, "slice")
        idx = [max(i - 1, 0), i, min(i + 1, n - 1)] if mode is Mode.TWO_HALF_D else [i]
        sp = (float(source.spacing[1]), float(source.spacing[2])) if source.spacing else None
        pix, pad = source.pixels, source.padding_mask
        return _Plane(pix[idx] if len(idx) > 1 else pix[i],
                      None if pad is None else (pad[idx] if len(idx) > 1 else pad[i]),
                      source.photometric_interpretation, sp, tuple(source.windows),
                      tuple(source.voi_luts), None, where)
    if isinstance(source, Image):
        where = _where(source)
        n = source.pixels.shape[0]
        i = _check_index(index, n, where, "frame")
        pix, pad = source.pixels, source.padding_mask
        if mode is Mode.TWO_HALF_D:
            idx = _neighbours_by_position(source, i, where) if n > 1 else [i, i, i]
            values = pix[idx]
            padding = None if pad is None else pad[idx]
        else:
            values = pix[i]
            padding = None if pad is None else pad[i]
        plane = _Plane(values, padding, source.photometric_interpretation,
                       source.pixel_spacing, tuple(source.windows), tuple(source.voi_luts),
                       source.bits_stored, where)
        if source.stored_values:
            plane.rescale = (float(source.rescale_slope), float(source.rescale_intercept))
            if not exact_in_float32(values.dtype, *plane.rescale):
                plane.modality()
        return plane
    raise ConfigError("the source must be a dicomml.io.Image, a dicomml.io.Volume or a numpy "
                      f"array. Received: {type(source).__name__}")


def _range(x) -> str:
    try:
        a = np.asarray(x)
        if a.size == 0 or not np.issubdtype(a.dtype, np.number):
            return "empty"
        return f"{float(np.nanmin(a)):g}..{float(np.nanmax(a)):g}"
    except Exception:  # noqa: BLE001 - only used to describe a failure
        return "unknown"


class _step:
    """``with _step(name, x, where):`` re-raises a failure with the step's name, the input's
    shape and range (and file). A class rather than a generator context manager: eight of
    them per plane cost 0.7 µs each that way, 0.2 µs each this way."""

    __slots__ = ("name", "x", "where")

    def __init__(self, name: str, x, where: str):
        self.name, self.x, self.where = name, x, where

    def __enter__(self):
        return self

    def __exit__(self, kind, e, tb):
        if e is None:
            return False
        name, x, where = self.name, self.x, self.where
        if isinstance(e, DicommlError):
            if getattr(e, "_dicomml_step", False):
                return False
            err = type(e)(f"preprocess step '{name}' failed on {where} (input shape "
                          f"{np.shape(x)}, range {_range(x)}): {e}")
        elif isinstance(e, FATAL):
            return False
        else:               # any other failure, a Rust panic (a BaseException) included
            err = PreprocessError(f"preprocess step '{name}' failed on {where} (input shape "
                                  f"{np.shape(x)}, range {_range(x)}): {type(e).__name__}: "
                                  f"{e}")
        err._dicomml_step = True
        raise err from e


def _window_stack(values: np.ndarray, windows: list[ResolvedWindow]) -> np.ndarray:
    """Window one plane with several windows (or several planes with one each) → (k, r, c).

    Each window is :func:`~dicomml.preprocess.apply_window` writing into one preallocated
    ``float32`` stack (``out=``); a VOI LUT is :func:`~dicomml.preprocess.apply_voi_lut`.
    """
    x = np.asarray(values)
    many = x.ndim == 3
    k = len(windows)
    shape = x.shape[-2:]
    out = np.empty((k, *shape), dtype=np.float32)
    for j, w in enumerate(windows):
        plane = x[j] if many else x
        if w.lut is None:
            apply_window(plane, w.center, w.width, w.function, out=out[j])
        else:
            out[j] = apply_voi_lut(plane, w.lut)
    return out


@functools.lru_cache(maxsize=256)
def _line_coefficients(lines: tuple) -> tuple[np.ndarray, np.ndarray] | None:
    """``a``, ``b`` (``float32``, read-only) of :func:`window_coefficients` for each
    (center, width, function) of ``lines``, or None where one has no finite slope; kept for
    the last 256 window sets (a pipeline's fixed windows ask again for every plane)."""
    coeffs = []
    for c, w, f in lines:              # in order, and no further than the first step window
        a, b = window_coefficients(c, w, f)
        if not np.isfinite(a):
            return None
        coeffs.append((a, b))
    a = np.array([c[0] for c in coeffs], dtype=np.float32)
    b = np.array([c[1] for c in coeffs], dtype=np.float32)
    a.flags.writeable = b.flags.writeable = False
    return a, b


def _fused(values, windows: list[ResolvedWindow], plane: _Plane, size, resize, fov_mm,
           empty=None):
    """Steps 2–5 in the compiled kernel (:func:`~dicomml.preprocess.resize.window_resize`),
    bit for bit :func:`_window_stack`, inversion, padding floor and resize one by one.

    It covers clipped-line windows (LINEAR, LINEAR_EXACT; not a LINEAR width of 1, a
    SIGMOID or a VOI LUT) of real-valued planes with a (rows, cols) padding mask or one per
    plane; ``None`` otherwise (or without numba): the caller then runs the steps one by one.
    Stored integers (``plane.rescale``) go to the kernel as they are, with their rescale.
    """
    x = np.asarray(values)
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        return None
    for w in windows:
        if w.lut is not None or w.function is VOILUTFunction.SIGMOID:
            return None
    ab = _line_coefficients(tuple((w.center, w.width, w.function) for w in windows))
    if ab is None:
        return None
    a, b = ab
    k = len(windows)
    many = x.ndim == 3
    planes = np.ascontiguousarray(x if many else x[None],
                                  dtype=None if plane.rescale is not None else np.float32)
    plane_of = np.arange(k, dtype=np.intp) if many else np.zeros(k, dtype=np.intp)
    if many and planes.shape[0] != k:
        return None
    pad, pad_of = plane.padding, np.full(k, -1, dtype=np.intp)
    if pad is not None:
        pad = np.asarray(pad, dtype=bool)
        if pad.shape == planes.shape[1:]:
            pad, pad_of = np.ascontiguousarray(pad[None]), np.zeros(k, dtype=np.intp)
        elif pad.shape == (k, *planes.shape[1:]):
            pad, pad_of = np.ascontiguousarray(pad), np.arange(k, dtype=np.intp)
        else:
            return None
    invert = (plane.photometric or "").strip().upper() == "MONOCHROME1"
    return window_resize(planes, plane_of, a, b, invert, pad, pad_of, size, resize,
                         None if fov_mm is None else float(fov_mm),
                         None if plane.spacing is None else
                         (float(plane.spacing[0]), float(plane.spacing[1])), plane.rescale,
                         empty=empty)


def _rgb_scale(values: np.ndarray, bits_stored: int | None) -> np.ndarray:
    """Colour (rows, cols, 3) stored values → [0, 1] by ``2**BitsStored − 1``; when the values
    exceed that (e.g. a 16-bit palette expanded to RGB), by the smallest of 8 or 16 bits that
    holds them."""
    x = np.asarray(values, dtype=np.float32)
    bits = int(bits_stored) if bits_stored else 8
    top = float(np.max(x)) if x.size else 0.0
    if top > 2 ** bits - 1:
        bits = 8 if top <= 255 else 16
    return np.clip(x / np.float32(2 ** bits - 1), 0.0, 1.0).transpose(2, 0, 1)


class _Outputs:
    """The output arrays of one Pipeline's compiled kernel, their memory used again.

    A new 224×224×3 ``float32`` tensor is 588 KiB of pages the kernel must fault in on
    first write (147 page faults, 0.15–0.25 ms of a 1 ms slice where faults are costly, as
    in a virtual machine). Each array handed out here lives on a buffer of its own; when
    the array is gone (the last reference and every view of it: numpy's views keep the
    array they were taken from alive, since its memory is a bytearray's) its buffer
    returns to this pool and backs a later array (already faulted in, warm in the cache).
    At most ``keep`` free buffers per shape are kept; arrays the caller keeps are never
    touched again (a caller that kept only ``arr.base``, the bytearray, and dropped the
    array itself would see it reused: keep the array). The kernel writes every element of
    its output, so nothing of an earlier tensor can show through. Safe across threads; not
    pickled (a Pipeline sent to a worker process arrives with an empty pool).
    """

    def __init__(self, keep: int = 64):
        self._free: dict[tuple[int, ...], list[bytearray]] = {}
        self._keep = keep

    def __getstate__(self):
        return {"keep": self._keep}

    def __setstate__(self, state):
        self.__init__(state.get("keep", 64))

    def empty(self, shape: tuple[int, ...]) -> np.ndarray:
        """A ``float32`` array of ``shape`` (contents undefined, like ``numpy.empty``)."""
        shape = tuple(int(n) for n in shape)
        try:
            buf = self._free[shape].pop()      # list.pop is atomic: threads may share this
        except (KeyError, IndexError):
            buf = bytearray(4 * int(np.prod(shape)))
        arr = np.ndarray(shape, dtype=np.float32, buffer=buf)
        weakref.finalize(arr, self._give_back, shape, buf).atexit = False
        return arr

    def _give_back(self, shape: tuple[int, ...], buf: bytearray) -> None:
        free = self._free.setdefault(shape, [])
        if len(free) < self._keep:
            free.append(buf)


# ---------------------------------------------------------------- the pipeline
class Pipeline:
    """Apply a :class:`PreprocessConfig` to planes; training and prediction share every step.

    Parameters
    ----------
    config : PreprocessConfig, optional
        Default ``PreprocessConfig()`` (brain/subdural/bone, 224, pad, unit).

    Examples
    --------
    >>> import numpy as np
    >>> hu = np.linspace(-1000, 2000, 64 * 48, dtype=np.float32).reshape(64, 48)
    >>> x = Pipeline()(hu)
    >>> x.shape, x.dtype.name, float(x.min()), float(x.max())
    ((224, 224, 3), 'float32', 0.0, 1.0)
    """

    def __init__(self, config: PreprocessConfig | None = None):
        if config is None:
            config = PreprocessConfig()
        if not isinstance(config, PreprocessConfig):
            raise ConfigError(f"Pipeline needs a PreprocessConfig (or from_dict of one). "
                              f"Received: config={type(config).__name__}")
        self.config = config
        self._mode = Mode(config.mode)
        self._resize = ResizeMode(config.resize)     # the config holds the members' values
        self._normalize = Normalization(config.normalize)
        self._rng = np.random.default_rng(config.augment.seed)
        self._outputs = _Outputs()
        # the windows resolved once where every choice is the same for every plane (presets,
        # "C/W", number pairs: presets.window_is_fixed); None where one depends on the plane
        # or its file. Never changed (augmentation makes new windows).
        self._fixed_windows = ([resolve_window(s, function=config.voi_function)
                                for s in config.windows]
                               if all(window_is_fixed(s) for s in config.windows) else None)

    def __repr__(self) -> str:
        return f"Pipeline({self.config!r})"

    @functools.cached_property
    def _needs_modality_values(self) -> bool:
        """Whether a plane must be in modality units before its windows are resolved: RGB
        mode, or a window computed from the values (percentiles, min-max)."""
        return self._mode is Mode.RGB or any(window_needs_values(spec)
                                             for spec in self.config.windows)

    @functools.cached_property
    def _stored_ok(self) -> bool:
        """Whether :meth:`from_path` reads stored integers: windows that do not need the
        modality values, and the compiled kernel that converts them."""
        return not self._needs_modality_values and compiled_kernel() is not None

    def config_hash(self) -> str:
        """:meth:`PreprocessConfig.config_hash` of this pipeline's config."""
        return self.config.config_hash()

    def __call__(self, source, index: int = 0, *, training: bool = False,
                 rng: np.random.Generator | int | None = None) -> np.ndarray:
        """Make the tensor of plane ``index`` (frame of an Image, slice of a Volume).

        Parameters
        ----------
        source : Image, Volume or numpy.ndarray
            A 2-D array is one plane in modality units (MONOCHROME2, no padding, no pixel
            spacing); use :func:`to_tensor` to give an array its metadata.
        index : int
            Frame (Image) or slice (Volume) index, 0-based.
        training : bool
            Apply random augmentation (never when False).
        rng : numpy.random.Generator or int, optional
            Randomness of this call's augmentation; default the pipeline's own generator,
            seeded with ``config.augment.seed``.

        Returns
        -------
        numpy.ndarray
            ``float32`` (size, size, 3), channels last, range set by ``config.normalize``.
        """
        return self._run(source, index, training, rng)[0]

    def channel_labels(self, source, index: int = 0) -> list[str]:
        """The window (or slice) behind each channel, e.g. ``["brain 40/80", ...]``."""
        return self._run(source, index, False, None)[1]

    def from_path(self, path: str | os.PathLike, frame: int = 0, *, training: bool = False,
                  rng: np.random.Generator | int | None = None) -> np.ndarray:
        """Read ``path`` with :func:`dicomml.io.read_image` and return the tensor of ``frame``.

        Only that frame is decoded, except in ``"2.5d"`` mode (neighbours by position).
        Where the windows are fixed (not percentiles) the stored integers are read
        (``read_image(stored_values=True)``) and converted row by row inside the compiled
        window-and-resize kernel: the same tensor, bit for bit, without a ``float32`` plane.
        """
        from dicomml.io import read_image

        stored = self._stored_ok
        if self._mode is Mode.TWO_HALF_D:
            return self(read_image(path, stored_values=stored), frame, training=training,
                        rng=rng)
        return self(read_image(path, frames=[int(frame)], stored_values=stored), 0,
                    training=training, rng=rng)

    # ------------------------------------------------------------------------------------
    def _run(self, source, index, training, rng):
        cfg, mode = self.config, self._mode
        where = _where(source) if not isinstance(source, np.ndarray) else "array"
        with _step("select plane", getattr(source, "pixels", source), where):
            plane = _plane(source, index, mode)
        params = None
        if training:
            if rng is None:
                rng = self._rng
            elif not isinstance(rng, np.random.Generator):
                rng = np.random.default_rng(rng)
            params = draw(cfg.augment, rng)
        if plane.rescale is not None and self._needs_modality_values:
            plane.modality()               # percentiles of modality values, not stored ones

        x = plane.values
        out = None
        is_color = (x.ndim == 3 and x.shape[-1] == 3 and mode is not Mode.TWO_HALF_D)
        if mode is Mode.RGB:
            if not is_color:
                raise ConfigError(f"{where}: mode 'rgb' needs a colour image, but (0028,0004) "
                                  f"Photometric Interpretation is {plane.photometric!r}; use "
                                  "mode 'windows' or 'replicate'.")
            with _step("scale RGB", x, where):
                stack = _rgb_scale(x, plane.bits_stored)
            labels = ["red", "green", "blue"]
        else:
            if is_color:
                raise ConfigError(f"{where}: a colour image ((0028,0004) Photometric "
                                  f"Interpretation {plane.photometric!r}) cannot be windowed; "
                                  "use mode 'rgb'.")
            with _step("resolve windows", x, where):
                windows = self._fixed_windows
                if windows is None:
                    windows = [resolve_window(s, values=x if x.ndim == 2 else x[1],
                                              padding_mask=(plane.padding
                                                            if plane.padding is None
                                                            or plane.padding.ndim == 2
                                                            else plane.padding[1]),
                                              file_windows=plane.windows,
                                              voi_luts=plane.voi_luts,
                                              function=cfg.voi_function, where=where)
                               for s in cfg.windows]
                if params is not None:
                    windows = [w.jittered(params.center_shift * (w.width or 0.0),
                                          params.width_factor) for w in windows]
            if mode is Mode.TWO_HALF_D:
                windows = windows * 3
                labels = [f"slice {d:+d} {windows[0].label}" for d in (-1, 0, 1)]
            else:
                labels = [w.label for w in windows]
            if mode is Mode.REPLICATE:  # one channel is resized, then copied to three
                labels = labels * 3
            with _step("window and resize", x, where):
                out = _fused(x, windows, plane, cfg.size, self._resize, cfg.fov_mm,
                             self._outputs.empty)
            if out is None:
                plane.modality()
                x = plane.values
                with _step("window", x, where):
                    stack = _window_stack(x, windows)
                with _step("MONOCHROME1 inversion", stack, where):
                    invert_monochrome1(stack, plane.photometric, inplace=True)
                with _step("padding floor", stack, where):
                    apply_padding_floor(stack, plane.padding, inplace=True)
        if out is None:
            with _step("resize", stack, where):
                out = resize_planes(stack, cfg.size, self._resize, cfg.fov_mm, plane.spacing)
        with _step("channels", out, where):
            if out.shape[-1] == 1:
                out = np.repeat(out, 3, axis=-1)
        if params is not None:
            with _step("augment", out, where):
                out = apply_intensity(apply_geometry(out, params), params)
        if self._normalize is not Normalization.UNIT:   # unit: the tensor as it is
            with _step("normalize", out, where):
                out = normalize(out, self._normalize)
        return np.ascontiguousarray(out, dtype=np.float32), labels


def to_tensor(source, index: int = 0, *, windows=("brain", "subdural", "bone"),
              size: int = 224, mode: str | Mode | None = None, resize: str = "pad",
              fov_mm: float | None = None, normalize: str = "unit",
              voi_function: str = "LINEAR",
              photometric_interpretation: str | None = None,
              padding_mask: np.ndarray | None = None,
              pixel_spacing: tuple[float, float] | None = None,
              file_windows: tuple[Window, ...] = (), voi_luts: tuple[VOILUT, ...] = (),
              bits_stored: int | None = None) -> np.ndarray:
    """One plane → ``float32 (size, size, 3)``, channels last (see :class:`Pipeline`).

    Parameters
    ----------
    source : Image, Volume or numpy.ndarray
        An Image (``index`` = frame), a Volume (``index`` = slice; needed for 2.5D), or an
        array in modality units: (rows, cols), (slices, rows, cols) ordered by position, or
        (rows, cols, 3) colour with ``mode="rgb"``.
    windows
        Window choices (presets, ``"C/W"``, ``"file:N"``, ``"p1-p99"``...).
    mode : {"windows", "replicate", "2.5d", "rgb"}, optional
        Default: ``"rgb"`` for a colour Image, ``"replicate"`` for one window, else
        ``"windows"``.
    size, resize, fov_mm, normalize, voi_function
        As in :class:`PreprocessConfig`.
    photometric_interpretation, padding_mask, pixel_spacing, file_windows, voi_luts, bits_stored
        Metadata of an array source (an error with an Image or Volume, which carry their own).
    """
    meta = dict(photometric_interpretation=photometric_interpretation,
                padding_mask=padding_mask, pixel_spacing=pixel_spacing,
                file_windows=file_windows, voi_luts=voi_luts, bits_stored=bits_stored)
    given = [k for k, v in meta.items() if v is not None and not (isinstance(v, tuple) and not v)]
    if isinstance(source, np.ndarray):
        arr = source
        color = mode is not None and str(getattr(mode, "value", mode)).lower() == "rgb"
        if arr.ndim == 2 or (color and arr.ndim == 3):
            arr = arr[None]
        if padding_mask is not None and np.ndim(padding_mask) == arr.ndim - 1 - int(color):
            padding_mask = np.asarray(padding_mask)[None]
        if mode is not None and str(getattr(mode, "value", mode)).lower() == "2.5d":
            sp = (1.0, *(pixel_spacing or (1.0, 1.0)))
            source = Volume(pixels=arr, spacing=sp, origin=(0.0, 0.0, 0.0), direction=np.eye(3),
                            photometric_interpretation=photometric_interpretation or "MONOCHROME2",
                            padding_mask=padding_mask, windows=tuple(file_windows),
                            voi_luts=tuple(voi_luts))
        else:
            source = Image(pixels=arr, photometric_interpretation=(photometric_interpretation
                                                                   or "MONOCHROME2"),
                           padding_mask=padding_mask, pixel_spacing=pixel_spacing,
                           windows=tuple(file_windows), voi_luts=tuple(voi_luts),
                           bits_stored=bits_stored)
    elif given:
        raise ConfigError(f"{', '.join(given)} describe an array source; an Image or Volume "
                          "carries its own metadata.")
    if isinstance(windows, (str, Window)) or (
            isinstance(windows, (tuple, list)) and len(windows) == 2
            and all(isinstance(v, (int, float)) for v in windows)):
        windows = [windows]
    windows = list(windows)
    if mode is None:
        if isinstance(source, Image) and source.is_color:
            mode = "rgb"
        else:
            mode = "replicate" if len(windows) == 1 else "windows"
    cfg = PreprocessConfig(windows=tuple(windows), mode=mode, size=size, resize=resize,
                           fov_mm=fov_mm, normalize=normalize, voi_function=voi_function)
    return Pipeline(cfg)(source, index)
