"""apply_window on dicomml.io.read_image(...).pixels agrees with dcmtk's dcm2pnm rendering.

dcm2pnm (dcmtk 3.6; dcmj2pnm / dcml2pnm for JPEG / JPEG-LS) applies the modality
transform, the VOI window with the PS3.3 C.11.2.1.2 LINEAR formula (or SIGMOID with
+Wfs), renders MONOCHROME1 inverted (minimum is white) and writes 8-bit grey levels. Our [0, 1] output times 255 must be within one
grey level of it at native resolution.
"""

from __future__ import annotations

import numpy as np
import pytest

from dicomml.io import read_image
from dicomml.preprocess import apply_voi_lut, apply_window, invert_monochrome1, resolve_window
from tests.conftest import require_tool
from tests.conftest import testdata as sample_file
from tests.preprocess.helpers import dcmtk_render, dcmtk_tool, pydicom_modality

pytestmark = pytest.mark.tool

# Real grayscale files shipped with pydicom / pydicom-data that pydicom decodes losslessly:
# CT, MR, NM, US, CR (MONOCHROME1), multi-frame, RLE, JPEG Lossless,
# JPEG-LS lossless (dcmtk has no JPEG 2000 decoder, so no J2K file here).
FILES = [
    "CT_small.dcm",
    "693_UNCI.dcm",
    "MR_small.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR-SIEMENS-DICOM-WithOverlays.dcm",
    "emri_small_RLE.dcm",
    "JPEG-LL.dcm",
    "JPGLosslessP14SV1_1s_1f_8b.dcm",
    "RG3_UNCR.dcm",
    "RG1_UNCI.dcm",
    "6154",
]


def _explicit_windows(values: np.ndarray) -> list[tuple[float, float]]:
    """Three windows derived from the data (independently of dicomml): the full range,
    a narrow one about the median, and a width-1 step.

    dcmtk floors modality values to integers before its VOI LUT (it indexes an integer
    table). For a fractional (0028,1053) Rescale Slope that shifts values by up to one
    modality unit, which a window narrower than 255 units magnifies beyond one grey level;
    for such files the narrow windows are 256 units wide instead.
    """
    lo, hi = float(values.min()), float(values.max())
    med = float(np.median(values))
    if np.array_equal(values, np.rint(values)):
        return [(round((lo + hi) / 2, 1), round(max(hi - lo, 2.0), 1)),
                (round(med, 1), round(max((hi - lo) / 8, 2.0), 1)),
                (round(med, 1), 1.0)]
    return [(round((lo + hi) / 2, 1), round(max(hi - lo, 256.0), 1)), (round(med, 1), 256.0)]


def _render(path: str, out, *options: str) -> np.ndarray:
    return dcmtk_render(require_tool(dcmtk_tool(path)), path, out, *options)


def _display(y: np.ndarray, photometric: str) -> np.ndarray:
    return invert_monochrome1(y, photometric).astype(np.float64) * 255.0


@pytest.mark.parametrize("name", FILES)
def test_explicit_windows_match_dcm2pnm(name, tmp_path):
    path = sample_file(name)
    img = read_image(path)
    ref_values, _ = pydicom_modality(path)
    np.testing.assert_allclose(img.pixels[0], ref_values, rtol=0, atol=1e-3)
    for k, (c, w) in enumerate(_explicit_windows(ref_values)):
        ref = _render(path, tmp_path / f"w{k}.pgm", "+Ww", f"{c}", f"{w}")
        ours = _display(apply_window(img.pixels[0], c, w), img.photometric_interpretation)
        assert ours.shape == ref.shape
        diff = np.abs(ours - ref).max()
        assert diff <= 1.0 + 1e-3, (name, c, w, diff)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "RG3_UNCR.dcm",
                                  "JPEG-LL.dcm"])
def test_sigmoid_matches_dcm2pnm(name, tmp_path):
    path = sample_file(name)
    img = read_image(path)
    c, w = _explicit_windows(img.pixels[0].astype(np.float64))[1]
    ref = _render(path, tmp_path / "s.pgm", "+Ww", f"{c}", f"{w}", "+Wfs")
    ours = _display(apply_window(img.pixels[0], c, w, "SIGMOID"), img.photometric_interpretation)
    assert np.abs(ours - ref).max() <= 1.0 + 1e-3


@pytest.mark.parametrize("name", ["MR_small.dcm", "MR-SIEMENS-DICOM-WithOverlays.dcm",
                                  "693_UNCI.dcm", "RG3_UNCR.dcm", "RG1_UNCI.dcm", "6154",
                                  "JPGLosslessP14SV1_1s_1f_8b.dcm"])
def test_file_windows_match_dcm2pnm(name, tmp_path):
    """Every window stored in the file, chosen as 'file:i', against dcm2pnm +Wi i+1."""
    path = sample_file(name)
    img = read_image(path)
    assert img.windows, "the sample file carries (0028,1050) Window Center"
    for i in range(len(img.windows)):
        ref = _render(path, tmp_path / f"f{i}.pgm", "+Wi", str(i + 1))
        w = resolve_window(f"file:{i}", file_windows=img.windows)
        ours = _display(w.apply(img.pixels[0]), img.photometric_interpretation)
        assert np.abs(ours - ref).max() <= 1.0 + 1e-3, (name, i)


def test_voi_lut_matches_dcm2pnm(tmp_path):
    path = sample_file("vlut_04.dcm")
    img = read_image(path)
    assert img.voi_luts
    ref = _render(path, tmp_path / "l.pgm", "+Wl", "1")
    ours = _display(apply_voi_lut(img.pixels[0], img.voi_luts[0]),
                    img.photometric_interpretation)
    assert np.abs(ours - ref).max() <= 1.0 + 1e-3


#: Square files (the Pipeline at native size with "stretch" resizes nothing): CT, MR (also
#: RLE, JPEG-LS, multi-frame), CT with (0028,0120) padding, CR MONOCHROME1.
SQUARE = ["CT_small.dcm", "693_UNCI.dcm", "MR_small.dcm", "MR_small_RLE.dcm",
          "MR_small_jpeg_ls_lossless.dcm", "MR-SIEMENS-DICOM-WithOverlays.dcm",
          "emri_small_RLE.dcm", "6154"]


@pytest.mark.parametrize("name", SQUARE)
def test_pipeline_matches_dcm2pnm(name, tmp_path):
    """The Pipeline itself (window → MONOCHROME1 inversion → padding floor → resize →
    channels → normalize "unit"), at native size, against dcm2pnm: within one grey level
    outside the padding, and padding pixels black."""
    from dicomml.preprocess import Pipeline, PreprocessConfig

    path = sample_file(name)
    img = read_image(path)
    rows, cols = img.pixels.shape[-2:]
    assert rows == cols
    c, w = _explicit_windows(img.pixels[0].astype(np.float64))[1]
    ref = _render(path, tmp_path / "p.pgm", "+Ww", f"{c}", f"{w}")
    cfg = PreprocessConfig(windows=[(c, w)], mode="replicate", size=int(rows),
                           resize="stretch", normalize="unit")
    out = Pipeline(cfg)(img, 0)
    assert out.shape == (rows, cols, 3) and out.dtype == np.float32
    assert np.array_equal(out[..., 0], out[..., 2])
    ours = out[..., 0].astype(np.float64) * 255.0
    pad = np.zeros((rows, cols), bool) if img.padding_mask is None else \
        np.asarray(img.padding_mask, bool).reshape(-1, rows, cols)[0]
    assert (ours[pad] == 0).all()
    diff = np.abs(ours - ref)[~pad].max()
    assert diff <= 1.0 + 1e-3, (name, c, w, diff)
