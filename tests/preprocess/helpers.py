"""Independent references for the preprocess tests: pydicom's own reading and dcmtk's rendering."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut

from dicomml.io.types import Image


def pydicom_modality(path: str) -> tuple[np.ndarray, pydicom.Dataset]:
    """Frame 0 in modality units read by pydicom alone (float64), and the dataset."""
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        arr = arr[0]
    return np.asarray(apply_modality_lut(arr, ds), dtype=np.float64), ds


def image_from_pydicom(path: str) -> Image:
    """A minimal :class:`Image` built from pydicom (no dicomml.io involved)."""
    values, ds = pydicom_modality(path)
    return Image(pixels=values.astype(np.float32)[None], path=path,
                 photometric_interpretation=str(ds.PhotometricInterpretation))


def read_pgm(path: str | Path) -> np.ndarray:
    """Read a binary 8-bit PGM (P5, comments allowed) as float64."""
    data = Path(path).read_bytes()
    fields, pos = [], 0
    while len(fields) < 4:
        while data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            pos = data.index(b"\n", pos) + 1
            continue
        end = pos
        while not data[end:end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    pos += 1  # the single whitespace after maxval
    if fields[0] != b"P5" or int(fields[3]) != 255:
        raise ValueError(f"not an 8-bit binary PGM: {path}")
    w, h = int(fields[1]), int(fields[2])
    return np.frombuffer(data[pos:pos + w * h], dtype=np.uint8).reshape(h, w).astype(np.float64)


def dcmtk_tool(path: str) -> str:
    """dcmtk's renderer for the file's transfer syntax: dcml2pnm (JPEG-LS), dcmj2pnm (JPEG),
    dcm2pnm (native, RLE)."""
    ts = str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
    if ts.startswith("1.2.840.10008.1.2.4.8"):
        return "dcml2pnm"
    if ts.startswith("1.2.840.10008.1.2.4.") and not ts.startswith("1.2.840.10008.1.2.4.9"):
        return "dcmj2pnm"
    return "dcm2pnm"


def dcmtk_render(exe: str, path: str, out: Path, *options: str) -> np.ndarray:
    """Render frame 0 of ``path`` with dcm2pnm as an 8-bit PGM (no overlays) and read it back."""
    subprocess.run([exe, "--no-overlays", *options, "+op", path, str(out)], check=True,
                   capture_output=True, timeout=120)
    return read_pgm(out)


def two_csr_products(planes, size, resize="pad", fov_mm=None, pixel_spacing=None):
    """The resize written out as two CSR products per channel, ``C @ (R @ X).T``, from the
    public :func:`~dicomml.preprocess.resize.axis_matrices`: the float32 arithmetic whose
    bytes the tensors of the default settings have. A faster resize (other products, other
    layouts, fused steps) must give the same bytes, or the tests that use this fail."""
    import scipy.sparse as sparse

    from dicomml.preprocess.resize import axis_matrices

    x = np.asarray(planes, dtype=np.float32)
    squeeze = x.ndim == 2
    x = x[None] if squeeze else x
    ch, rows, cols = x.shape
    R, C = (sparse.csr_array(m) for m in axis_matrices((rows, cols), size, resize, fov_mm,
                                                        pixel_spacing))
    y = np.stack([R @ x[c] for c in range(ch)])                       # (ch, size, cols)
    z = C @ np.ascontiguousarray(y.reshape(ch * size, cols).T)          # (size, ch·size)
    out = np.clip(z.reshape(size, ch, size).transpose(2, 0, 1), 0.0, 1.0)
    return np.ascontiguousarray(out[..., 0] if squeeze else out, dtype=np.float32)
