"""Siemens mosaics: one stored image holding the slices of a volume as tiles.

Siemens syngo MR (VB/VD/VE) stores every EPI volume (fMRI, diffusion) as one *mosaic*:
(0008,0008) Image Type contains ``MOSAIC`` and the CSA image header (:mod:`dicomml.io.csa`)
gives ``NumberOfImagesInMosaic`` n. The tiles fill a square grid of ``g = ceil(sqrt(n))``
columns and rows, row by row; each tile is ``Rows / g`` × ``Columns / g`` pixels.

Geometry, as dcm2niix and nibabel compute it:

* (0020,0037) Image Orientation (Patient) and (0028,0030) Pixel Spacing hold for each tile.
* (0020,0032) Image Position (Patient) is the position of the top-left voxel of the *whole*
  mosaic; the first tile's top-left voxel is at
  ``IPP + row_cosine · Δc · (Columns − Columns/g)/2 + column_cosine · Δr · (Rows − Rows/g)/2``
  (Δr, Δc: the row and column spacing of (0028,0030)).
* Tile k lies at ``first + k · spacing · SliceNormalVector`` (CSA image header), spacing
  being (0018,0088) Spacing Between Slices, else (0018,0050) Slice Thickness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dicomml.errors import InvalidDicomError
from dicomml.io.csa import CSA_IMAGE, csa_header, csa_value, image_type_values

__all__ = ["MosaicLayout", "is_mosaic", "mosaic_layout", "cut_tiles"]


@dataclass(frozen=True)
class MosaicLayout:
    """How to cut one mosaic: ``n`` tiles on a ``grid`` × ``grid`` raster of ``rows`` × ``columns``
    pixels; ``positions`` (n, 3) are the tiles' (0020,0032) equivalents (LPS mm) and
    ``normal`` the CSA SliceNormalVector; ``spacing_source`` names the attribute the slice
    spacing came from."""

    n: int
    grid: int
    rows: int
    columns: int
    positions: np.ndarray
    normal: np.ndarray
    spacing_source: str


def is_mosaic(ds) -> bool:
    """True when (0008,0008) Image Type holds ``MOSAIC`` (a Siemens mosaic)."""
    return "MOSAIC" in image_type_values(ds)


def _floats(value, n: int, what: str) -> np.ndarray:
    try:
        out = np.asarray([float(v) for v in value], float)
    except (TypeError, ValueError):
        out = np.zeros(0)
    if out.shape != (n,) or not np.all(np.isfinite(out)):
        raise InvalidDicomError(f"{what} is missing or not {n} numbers (value {value!r})")
    return out


def mosaic_layout(ds) -> MosaicLayout:
    """The tile layout and geometry of a mosaic (see the module docs).

    Raises
    ------
    InvalidDicomError
        No readable CSA image header, no NumberOfImagesInMosaic, a grid that does not divide
        (0028,0010)/(0028,0011), or missing Image Position / Orientation / Pixel Spacing.
        The message names the attribute.
    """
    try:
        head = csa_header(ds, CSA_IMAGE)
    except InvalidDicomError as e:
        raise InvalidDicomError(f"the Siemens CSA image header (0029,1010) cannot be read: "
                                f"{e}") from None
    if head is None:
        raise InvalidDicomError("no Siemens CSA image header (0029,1010) (private creator "
                                "'SIEMENS CSA HEADER'), so NumberOfImagesInMosaic is unknown")
    try:
        n = int(csa_value(head, "NumberOfImagesInMosaic", 0))
    except (TypeError, ValueError):
        n = 0
    rows, cols = int(ds.Rows), int(ds.Columns)
    if n < 1:
        raise InvalidDicomError("the CSA image header (0029,1010) has no NumberOfImagesInMosaic")
    grid = math.ceil(math.sqrt(n))
    if rows % grid or cols % grid:
        raise InvalidDicomError(f"NumberOfImagesInMosaic {n} (a {grid}×{grid} grid) does not "
                                f"divide the {rows}×{cols} image")
    iop = _floats(ds.get("ImageOrientationPatient"), 6, "(0020,0037) Image Orientation (Patient)")
    ipp = _floats(ds.get("ImagePositionPatient"), 3, "(0020,0032) Image Position (Patient)")
    dr, dc = _floats(ds.get("PixelSpacing"), 2, "(0028,0030) Pixel Spacing")
    normal = _floats(head.get("SliceNormalVector") or [], 3,
                     "the CSA image header's SliceNormalVector")
    if not np.isclose(np.linalg.norm(normal), 1.0, atol=1e-3):
        raise InvalidDicomError(f"the CSA image header's SliceNormalVector {normal.tolist()} "
                                "is not a unit vector")
    tr, tc = rows // grid, cols // grid
    first = ipp + iop[:3] * dc * (cols - tc) / 2 + iop[3:] * dr * (rows - tr) / 2
    spacing, source = None, ""
    for keyword, tag in (("SpacingBetweenSlices", "(0018,0088)"), ("SliceThickness",
                                                                    "(0018,0050)")):
        try:
            spacing = float(ds.get(keyword))
        except (TypeError, ValueError):
            continue
        if spacing > 0 and math.isfinite(spacing):
            source = f"{tag} {keyword}"
            break
        spacing = None
    if spacing is None:
        raise InvalidDicomError("neither (0018,0088) Spacing Between Slices nor (0018,0050) "
                                "Slice Thickness gives the distance between the tiles")
    positions = first[None, :] + np.arange(n)[:, None] * spacing * normal[None, :]
    return MosaicLayout(n=n, grid=grid, rows=tr, columns=tc, positions=positions,
                        normal=normal, spacing_source=source)


def cut_tiles(stored: np.ndarray, layout: MosaicLayout) -> np.ndarray:
    """Cut a (1, Rows, Columns) or (Rows, Columns) mosaic into (n, rows, columns) tiles (a copy).

    Examples
    --------
    >>> lay = MosaicLayout(3, 2, 2, 2, np.zeros((3, 3)), np.array([0, 0, 1.0]), "")
    >>> cut_tiles(np.arange(16).reshape(4, 4), lay)[:, 0].tolist()
    [[0, 1], [2, 3], [8, 9]]
    """
    a = stored.reshape(stored.shape[-2:])
    g, r, c = layout.grid, layout.rows, layout.columns
    tiles = a.reshape(g, r, g, c).transpose(0, 2, 1, 3).reshape(g * g, r, c)
    return np.ascontiguousarray(tiles[:layout.n])
