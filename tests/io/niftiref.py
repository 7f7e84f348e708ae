"""Compare a dicomml Volume with one of dcm2niix's reference NIfTI files.

The mapping between the two grids is derived from the affines, never by trying flips:
dicomml's voxel (column, row, slice) maps to LPS millimetres by ``direction · diag(spacing)``
plus ``origin``; RAS = diag(-1, -1, 1) · LPS; the NIfTI affine maps its voxel (i, j, k) to
RAS. Each NIfTI axis is parallel to exactly one dicomml axis (|cos| > 0.999): that gives the
permutation, the sign gives the flip.
"""

from __future__ import annotations

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def ras_affine(volume) -> np.ndarray:
    """4×4 affine of a dicomml Volume: voxel (column, row, slice) -> RAS mm."""
    d = np.asarray(volume.direction, float)
    s_slice, s_row, s_col = volume.spacing
    a = np.eye(4)
    a[:3, 0] = d[:, 0] * s_col
    a[:3, 1] = d[:, 1] * s_row
    a[:3, 2] = d[:, 2] * s_slice
    a[:3, 3] = volume.origin
    return LPS_TO_RAS @ a


def on_reference_grid(volume, nifti_affine: np.ndarray):
    """``(array, affine)``: the Volume's voxels in the NIfTI's (i, j, k[, t]) order and the
    affine of that reordered grid (to compare with ``nifti_affine``)."""
    pix = volume.pixels
    arr = pix.transpose(2, 1, 0) if pix.ndim == 3 else pix.transpose(3, 2, 1, 0)
    ours = ras_affine(volume)
    unit_ours = ours[:3, :3] / np.linalg.norm(ours[:3, :3], axis=0)
    unit_ref = nifti_affine[:3, :3] / np.linalg.norm(nifti_affine[:3, :3], axis=0)
    cos = unit_ref.T @ unit_ours  # [nifti axis, dicomml axis]
    perm = [int(np.argmax(np.abs(cos[i]))) for i in range(3)]
    assert sorted(perm) == [0, 1, 2] and all(abs(cos[i, perm[i]]) > 0.999 for i in range(3)), \
        f"the grids are not parallel: cosines {cos.round(4).tolist()}"
    flips = [cos[i, perm[i]] < 0 for i in range(3)]
    arr = arr.transpose(perm + list(range(3, arr.ndim)))
    index_map = np.zeros((4, 4))  # nifti index -> dicomml index
    index_map[3, 3] = 1
    for i, (a, flip) in enumerate(zip(perm, flips)):
        if flip:
            arr = np.flip(arr, axis=i)
            index_map[a, i] = -1
            index_map[a, 3] = pix.shape[::-1][a] - 1  # (columns, rows, slices)[a] - 1
        else:
            index_map[a, i] = 1
    return arr, ours @ index_map


def geometry_error_mm(affine: np.ndarray, reference: np.ndarray, shape) -> float:
    """Largest distance (mm) between the two grids' positions of the 8 corner voxels."""
    corners = np.array([[i, j, k, 1] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1)
                        for k in (0, shape[2] - 1)], float).T
    return float(np.max(np.linalg.norm((affine @ corners - reference @ corners)[:3], axis=0)))
