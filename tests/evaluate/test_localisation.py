"""The localisation check on known masks: dilation in millimetres (against a brute-force
distance), heatmap peaks mapped back through the run's resize, and the head task's masks
against its own pixels."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_rescale

from dicomml.evaluate.localisation import dilate_mm, heat_peak, peak_in_lesion
from dicomml.preprocess import PreprocessConfig
from dicomml.preprocess.resize import resize_planes
from dicomml.testing import read_task_masks, write_head_ct_task


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (0.5, 1.25)])
def test_dilate_mm_is_the_euclidean_neighbourhood(spacing):
    mask = np.zeros((40, 30), bool)
    mask[18:21, 12:14] = True
    got = dilate_mm(mask, spacing, 3.0)
    rr, cc = np.mgrid[:40, :30]
    pts = np.argwhere(mask)
    d = np.min([np.hypot((rr - r) * spacing[0], (cc - c) * spacing[1]) for r, c in pts],
               axis=0)
    np.testing.assert_array_equal(got, d <= 3.0)
    assert not dilate_mm(np.zeros((5, 5), bool), spacing, 3.0).any()


def _blob(shape, centre, sigma=3.0):
    rr, cc = np.mgrid[:shape[0], :shape[1]]
    return np.exp(-((rr - centre[0]) ** 2 + (cc - centre[1]) ** 2) / (2 * sigma ** 2)
                  ).astype(np.float32)


@pytest.mark.parametrize("shape, resize", [((160, 160), "pad"), ((200, 120), "pad"),
                                           ((120, 200), "crop")])
def test_heat_peak_comes_back_to_the_source_pixel(shape, resize):
    cfg = PreprocessConfig(size=64, resize=resize)
    centre = (int(shape[0] * 0.4), int(shape[1] * 0.55))
    heat = resize_planes(_blob(shape, centre, 4.0), cfg.size, cfg.resize)
    r, c = heat_peak(heat, shape, cfg)
    assert abs(r - centre[0]) <= 3 and abs(c - centre[1]) <= 3


def test_peak_in_lesion_with_and_without_the_margin():
    shape, spacing = (160, 160), (2.0, 2.0)
    cfg = PreprocessConfig(size=80)
    mask = np.zeros(shape, bool)
    rr, cc = np.mgrid[:160, :160]
    mask[(rr - 60) ** 2 + (cc - 90) ** 2 <= 9] = True        # a 6 mm lesion at (60, 90)
    inside = resize_planes(_blob(shape, (60, 90)), cfg.size)
    beside = resize_planes(_blob(shape, (60, 95)), cfg.size)   # 4 px = 8 mm off centre
    near = resize_planes(_blob(shape, (60, 94)), cfg.size)     # 1 px (2 mm) off the edge
    far = resize_planes(_blob(shape, (120, 30)), cfg.size)
    assert peak_in_lesion(inside, mask, cfg, spacing, 3.0)
    assert peak_in_lesion(near, mask, cfg, spacing, 3.0)
    assert not peak_in_lesion(near, mask, cfg, spacing, 0.0)
    assert not peak_in_lesion(beside, mask, cfg, spacing, 3.0)
    assert not peak_in_lesion(far, mask, cfg, spacing, 3.0)
    assert not peak_in_lesion(np.zeros((80, 80), np.float32), mask, cfg, spacing)


def test_head_task_masks_are_the_lesion_and_keep_the_dicom_bytes(tmp_path):
    kw = dict(n_patients=4, seed=3, rows=64, columns=64, slices=(3, 4))
    write_head_ct_task(tmp_path / "plain", **kw)
    write_head_ct_task(tmp_path / "masks", lesion_masks=True, **kw)
    plain = sorted(p.relative_to(tmp_path / "plain") for p in (tmp_path / "plain").rglob("*")
                   if p.is_file())
    assert all((tmp_path / "masks" / p).read_bytes() == (tmp_path / "plain" / p).read_bytes()
               for p in plain)
    assert not (tmp_path / "plain" / "masks.npz").exists()
    masks = read_task_masks(tmp_path / "masks")
    labels = dict(line.split(",") for line in
                  (tmp_path / "masks" / "labels.csv").read_text().split()[1:])
    slice_labels = dict(line.split(",") for line in
                        (tmp_path / "masks" / "slice_labels.csv").read_text().split()[1:])
    assert set(masks) == {k for k, v in slice_labels.items() if v == "haemorrhage"}
    seen = set()
    for p in sorted((tmp_path / "masks").rglob("IM*")):
        ds = pydicom.dcmread(p)
        if labels[ds.StudyInstanceUID] == "normal":
            assert ds.SOPInstanceUID not in masks
            continue
        seen.add(ds.StudyInstanceUID)
        m = masks[ds.SOPInstanceUID]        # every slice of a positive study cuts it
        hu = apply_rescale(ds.pixel_array, ds)
        # the lesion (70-90 HU) is brighter than the brain around it (20-45 HU)
        ring = dilate_mm(m, ds.PixelSpacing, 6.0) & ~dilate_mm(m, ds.PixelSpacing, 3.0)
        assert np.median(hu[m]) > np.median(hu[ring & (hu > 0) & (hu < 60)]) + 20
    assert seen
