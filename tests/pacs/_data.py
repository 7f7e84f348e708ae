"""Small studies for the PACS tests, written with dicomml.testing and pydicom's samples."""

from __future__ import annotations

from pathlib import Path

import pydicom

from dicomml.testing import write_ct_series, write_sr
from tests.conftest import testdata


def ct_study(out_dir: Path, seed: int, n_slices: int = 6) -> list[Path]:
    """A synthetic CT series (64×64, Explicit VR Little Endian), one study."""
    return sorted(write_ct_series(out_dir, seed=seed, n_slices=n_slices, rows=64, columns=64))


def sr_for(paths: list[Path], out_path: Path, seed: int) -> Path:
    """A Comprehensive 3D SR in the study of ``paths``, referencing every one of them."""
    refs = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    return write_sr(out_path, refs, seed=seed)


def jpeg2000_mr() -> Path:
    """pydicom's MR_small in JPEG 2000 Lossless (a compressed transfer syntax)."""
    return Path(testdata("MR_small_jp2klossless.dcm"))


def header(path) -> pydicom.Dataset:
    return pydicom.dcmread(path, stop_before_pixels=True)


def by_sop(paths) -> dict[str, Path]:
    """``{SOPInstanceUID: path}`` read from the files themselves."""
    return {str(header(p).SOPInstanceUID): Path(p) for p in paths}


def assert_same_instance(got: Path, expected: Path) -> None:
    """Same transfer syntax, same Pixel Data bytes, same data elements (pydicom equality).

    (FFFC,FFFC) Data Set Trailing Padding is ignored."""
    a, b = pydicom.dcmread(got), pydicom.dcmread(expected)
    assert a.file_meta.TransferSyntaxUID == b.file_meta.TransferSyntaxUID
    assert a.SOPInstanceUID == b.SOPInstanceUID
    if "PixelData" in b:
        assert a.PixelData == b.PixelData
    # (FFFC,FFFC) Data Set Trailing Padding has no meaning (PS3.5 7.4) and DCMTK drops it.
    ka = {e.tag for e in a} - {0x7FE00010, 0xFFFCFFFC}
    kb = {e.tag for e in b} - {0x7FE00010, 0xFFFCFFFC}
    assert ka == kb, (sorted(ka - kb), sorted(kb - ka))
    for tag in kb:
        assert a[tag].value == b[tag].value, f"{tag} differs"
