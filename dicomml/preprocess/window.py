"""VOI transforms: DICOM windows (PS3.3 C.11.2.1.2) and VOI LUTs (PS3.3 C.11.2.1.1).

Place in the fixed order of operations::

    stored values → modality LUT / rescale (done by dicomml.io) → **VOI LUT or window**
    → MONOCHROME1 inversion → padding floor → resize → channels → normalize

Input: ``float`` values in modality units (Hounsfield units for CT), any shape.
Output: ``float32`` in [0, 1], same shape; 0 is the bottom of the window (black for
MONOCHROME2), 1 its top. The input is never modified.
"""

from __future__ import annotations

import numpy as np

from dicomml.errors import ConfigError
from dicomml.io.types import VOILUT
from dicomml.preprocess._options import VOILUTFunction, choose

__all__ = ["apply_window", "apply_voi_lut", "window_coefficients"]


def window_coefficients(center: float, width: float,
                        function: str | VOILUTFunction = "LINEAR") -> tuple[float, float]:
    """Return ``(a, b)`` such that a LINEAR or LINEAR_EXACT window is ``clip(a·x + b, 0, 1)``.

    PS3.3 C.11.2.1.2.1 (LINEAR), with output range [0, 1]::

        x <= c - 0.5 - (w - 1)/2        → 0
        x >  c - 0.5 + (w - 1)/2        → 1
        else  ((x - (c - 0.5)) / (w - 1) + 0.5)

    which is exactly ``clip((x - (c - 0.5))/(w - 1) + 0.5, 0, 1)``, so
    ``a = 1/(w - 1)`` and ``b = 0.5 - (c - 0.5)/(w - 1)``.
    PS3.3 C.11.2.1.3.2 (LINEAR_EXACT): ``clip((x - c)/w + 0.5, 0, 1)``.

    ``width == 1`` with LINEAR is a step at ``c - 0.5`` and has no finite slope; it returns
    ``(inf, nan)`` and :func:`apply_window` handles it separately.

    Raises
    ------
    ConfigError
        (0028,1051) Window Width below 1 for LINEAR or not positive for LINEAR_EXACT
        (the standard's constraints), or a SIGMOID function (not a clipped line).
    """
    fn = choose(function, VOILUTFunction, "VOI LUT Function (0028,1056)")
    c, w = float(center), float(width)
    if not (np.isfinite(c) and np.isfinite(w)):
        raise ConfigError("(0028,1050) Window Center and (0028,1051) Window Width must be finite "
                          f"numbers. Received: "
                          f"center={center!r}, width={width!r}")
    if fn is VOILUTFunction.LINEAR:
        if w < 1:
            raise ConfigError("(0028,1051) Window Width must be >= 1 for the LINEAR VOI LUT "
                              "Function (PS3.3 C.11.2.1.2.1); use LINEAR_EXACT for narrower "
                              f"windows. Received: width={width!r}")
        if w == 1:
            return float("inf"), float("nan")
        return 1.0 / (w - 1.0), 0.5 - (c - 0.5) / (w - 1.0)
    if fn is VOILUTFunction.LINEAR_EXACT:
        if w <= 0:
            raise ConfigError("(0028,1051) Window Width must be > 0 for the LINEAR_EXACT VOI "
                              f"LUT Function (PS3.3 C.11.2.1.3.2). Received: width={width!r}")
        return 1.0 / w, 0.5 - c / w
    raise ConfigError("SIGMOID is not a clipped line; call apply_window instead. "
                      f"Received: function={function!r}")


def apply_window(values: np.ndarray, center: float, width: float,
                 function: str | VOILUTFunction = "LINEAR", *,
                 out: np.ndarray | None = None) -> np.ndarray:
    """Apply one DICOM window, PS3.3 C.11.2.1.2 and C.11.2.1.3, to ``values``.

    Order of operations: stored → modality (dicomml.io) → **this window** → MONOCHROME1
    inversion → padding floor → resize → channels → normalize.

    Parameters
    ----------
    values : array_like
        Modality values (after (0028,1052) Rescale Intercept / (0028,1053) Rescale Slope),
        any shape, any real dtype. Not modified.
    center, width : float
        (0028,1050) Window Center and (0028,1051) Window Width, in modality units.
    function : {"LINEAR", "LINEAR_EXACT", "SIGMOID"} or VOILUTFunction
        (0028,1056) VOI LUT Function. LINEAR needs ``width >= 1``, the others ``width > 0``.
    out : numpy.ndarray, optional
        A ``float32`` array of the same shape to write the result into (no new array: the
        :class:`~dicomml.preprocess.Pipeline` windows into one preallocated stack).

    Returns
    -------
    numpy.ndarray
        ``float32`` in [0, 1] (the standard's ``y_min .. y_max`` mapped to 0 .. 1), same shape
        (``out`` when given).

        * LINEAR (C.11.2.1.2.1): ``clip(((x - (c - 0.5)) / (w - 1) + 0.5), 0, 1)``; a width
          of 1 is a step: 0 for ``x <= c - 0.5``, 1 above.
        * LINEAR_EXACT (C.11.2.1.3.2): ``clip((x - c) / w + 0.5, 0, 1)``.
        * SIGMOID (C.11.2.1.3.1): ``1 / (1 + exp(-4 (x - c) / w))``.

    Raises
    ------
    ConfigError
        Unknown function (with a "did you mean"), or a width the standard forbids.

    Examples
    --------
    >>> import numpy as np
    >>> [round(float(v), 4) for v in apply_window(np.array([0., 20., 40., 79., 1e3]), 40, 80)]
    [0.0, 0.2532, 0.5063, 1.0, 1.0]
    >>> apply_window(np.array([0., 40., 80.]), 40, 80, "LINEAR_EXACT").tolist()
    [0.0, 0.5, 1.0]
    >>> apply_window(np.array([40.]), 40, 80, "sigmoid").tolist()
    [0.5]
    """
    fn = choose(function, VOILUTFunction, "VOI LUT Function (0028,1056)")
    x = np.asarray(values)
    if out is not None and (not isinstance(out, np.ndarray) or out.dtype != np.float32
                            or out.shape != x.shape):
        raise ConfigError("out must be a float32 array of the values' shape. Received: "
                          f"out {getattr(out, 'dtype', type(out).__name__)} "
                          f"{getattr(out, 'shape', '')}, values {x.shape}")
    if fn is VOILUTFunction.SIGMOID:
        c, w = float(center), float(width)
        if not (np.isfinite(c) and np.isfinite(w)) or w <= 0:
            raise ConfigError("(0028,1051) Window Width must be > 0 for the SIGMOID VOI LUT "
                              f"Function (PS3.3 C.11.2.1.3.1). Received: width={width!r}")
        z = (x.astype(np.float64) - c) * (-4.0 / w)
        with np.errstate(over="ignore"):
            y = 1.0 / (1.0 + np.exp(z))
        if out is None:
            return y.astype(np.float32)
        out[...] = y
        return out
    a, b = window_coefficients(center, width, fn)
    if not np.isfinite(a):  # LINEAR, width 1: a step at c - 0.5
        if out is None:
            return (x > float(center) - 0.5).astype(np.float32)
        np.greater(x, float(center) - 0.5, out=out, casting="unsafe")
        return out
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    # Fused: clip(a·x + b, 0, 1) written in place, in float32.
    out = np.multiply(x, np.float32(a), out=out, dtype=np.float32, casting="unsafe")
    out += np.float32(b)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def apply_voi_lut(values: np.ndarray, lut: VOILUT) -> np.ndarray:
    """Apply one (0028,3010) VOI LUT Sequence item, PS3.3 C.11.2.1.1.

    Order of operations: stored → modality (dicomml.io) → **this VOI LUT** → MONOCHROME1
    inversion → padding floor → resize → channels → normalize.

    Input values below the first mapped value (second value of (0028,3002) LUT Descriptor)
    map to the first entry, values above the last mapped value to the last entry; values in
    between index (0028,3006) LUT Data at ``round(x) - first_mapped``. The entry is divided by
    ``2**bits - 1`` where ``bits`` is the third value of the LUT Descriptor.

    Parameters
    ----------
    values : array_like
        Modality values, any shape. Not modified.
    lut : VOILUT
        The item, as read by :mod:`dicomml.io`.

    Returns
    -------
    numpy.ndarray
        ``float32`` in [0, 1], same shape.

    Raises
    ------
    ConfigError
        Empty LUT Data or a bits value outside 1..16.

    Examples
    --------
    >>> import numpy as np
    >>> from dicomml.io.types import VOILUT
    >>> lut = VOILUT(first_mapped=10, bits=8, data=np.array([0, 51, 255], np.uint16))
    >>> (apply_voi_lut(np.array([0., 10., 11., 12., 99.]), lut) * 255).round(3).tolist()
    [0.0, 0.0, 51.0, 255.0, 255.0]
    """
    data = np.asarray(lut.data)
    bits = int(lut.bits)
    if data.size == 0 or not 1 <= bits <= 16:
        raise ConfigError("(0028,3010) VOI LUT Sequence item has an empty (0028,3006) LUT Data "
                          "or a (0028,3002) LUT Descriptor bits value outside 1..16. "
                          f"Received: entries={data.size}, bits={bits}")
    table = data.astype(np.float32) / np.float32(2 ** bits - 1)
    x = np.asarray(values, dtype=np.float64)
    idx = np.rint(x) - float(lut.first_mapped)
    np.clip(idx, 0, table.size - 1, out=idx)
    return table[idx.astype(np.intp)]
