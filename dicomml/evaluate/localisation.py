"""Does the model look at the lesion? Heatmap and attention peaks against lesion masks.

For each **true-positive** study (a positive study whose study probability reaches the
decision threshold) the model's *chosen slice* is the slice with the highest pooling
weight (study-level / MIL models, :func:`dicomml.models.mil.attention_weights`) or the
highest slice probability (slice-level models). Two hits are counted:

``slice_in_lesion``
    the chosen slice cuts the lesion (its mask is not empty): the attention peak is on a
    lesion slice;
``peak_in_lesion``
    the Grad-CAM peak of the chosen slice, mapped back onto the source pixel grid through
    the run's own resize (:func:`dicomml.evaluate.heatmaps.to_source_grid`), lies inside
    the lesion mask dilated by ``dilate_mm`` millimetres (Euclidean distance with the
    source's (0028,0030) Pixel Spacing, PS3.3 C.7.6.2.1.1). A slice without lesion is a
    miss.
``fine_peak_in_lesion``
    the same for the finer map (``gradcam(..., fine=True)``: the smoothed gradient ⊙
    input of the same score, for models other than score maps times the Grad-CAM map),
    which places a small finding within the coarse map's cells.

Masks are what the task generators of :mod:`dicomml.testing` save (``masks.npz``: SOP
Instance UID → bool (rows, columns) on the source grid; :func:`dicomml.testing.read_task_masks`).
"""

from __future__ import annotations

import numpy as np

from dicomml.errors import ConfigError

__all__ = ["dilate_mm", "heat_peak", "peak_in_lesion", "localise_studies"]


def dilate_mm(mask, pixel_spacing, mm: float = 3.0) -> np.ndarray:
    """``mask`` grown by ``mm`` millimetres: every pixel whose centre is within ``mm`` of a
    mask pixel's centre (Euclidean, row / column spacing ``pixel_spacing`` in mm)."""
    from scipy.ndimage import distance_transform_edt

    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ConfigError(f"a lesion mask is 2-D (rows, columns). Received: shape={m.shape}")
    if not m.any():
        return m.copy()
    dist = distance_transform_edt(~m, sampling=(float(pixel_spacing[0]),
                                                float(pixel_spacing[1])))
    return dist <= float(mm) + 1e-9


def heat_peak(heat, shape: tuple[int, int], preprocess, pixel_spacing=None) -> tuple[int, int]:
    """(row, column) on the source grid ``shape`` of the maximum of the tensor heatmap
    ``heat`` (size, size), mapped by the run's resize (``preprocess``: its
    :class:`~dicomml.preprocess.PreprocessConfig`)."""
    from dicomml.evaluate.heatmaps import to_source_grid

    src = to_source_grid(np.asarray(heat, np.float32), tuple(shape), preprocess,
                         pixel_spacing)
    r, c = np.unravel_index(int(np.argmax(src)), src.shape)
    return int(r), int(c)


def peak_in_lesion(heat, mask, preprocess, pixel_spacing, dilate: float = 3.0) -> bool:
    """Whether the peak of the tensor heatmap ``heat`` lies inside ``mask`` (source grid)
    dilated by ``dilate`` mm. An all-zero heatmap (nothing raised the score) is a miss."""
    if not np.asarray(heat).any():
        return False
    m = np.asarray(mask, dtype=bool)
    r, c = heat_peak(heat, m.shape, preprocess, pixel_spacing)
    return bool(dilate_mm(m, pixel_spacing, dilate)[r, c])


def _pixel_spacing(path) -> tuple[float, float]:
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PixelSpacing"])
    ps = ds.get("PixelSpacing")
    if ps is None or len(ps) != 2:
        raise ConfigError(f"{path}: (0028,0030) Pixel Spacing is missing; the localisation "
                          "check needs it to dilate the lesion mask in millimetres")
    return float(ps[0]), float(ps[1])


def localise_studies(model, examples, tensors, masks: dict, preprocess, *,
                     positive: int = 1, threshold: float = 0.5,
                     dilate: float = 3.0) -> dict:
    """Localisation of ``model`` on the true-positive studies of ``examples``.

    Parameters
    ----------
    model : keras.Model
        A slice-level model or a study-level (MIL) model.
    examples : pandas.DataFrame
        Manifest rows (``study_instance_uid``, ``sop_instance_uid``, ``target``, ``path``).
    tensors : numpy.ndarray
        The model inputs of ``examples``, in the same order (N, size, size, 3).
    masks : dict
        SOP Instance UID → bool lesion mask on the source grid (slices without a lesion
        may be absent).
    preprocess : PreprocessConfig
        The run's preprocessing (size, resize, field of view).
    positive, threshold, dilate
        The positive class, the decision threshold on its study probability and the
        dilation of the mask (mm).

    Returns
    -------
    dict
        ``true_positives``, ``slice_in_lesion``, ``peak_in_lesion``,
        ``fine_peak_in_lesion`` (counts), ``share`` and ``fine_share`` (the peak counts
        over ``true_positives``, None without true positives) and ``studies`` (one record
        per true positive).
    """
    from dicomml.data.bags import study_groups
    from dicomml.evaluate.grad_cam import gradcam
    from dicomml.models.mil import attention_weights, is_study_model, slice_model_of

    x = np.asarray(tensors, np.float32)
    if len(x) != len(examples):
        raise ConfigError(f"{len(x)} tensors for {len(examples)} examples")
    examples = examples.reset_index(drop=True)
    study = is_study_model(model)
    smodel = slice_model_of(model) if study else model
    _, groups = study_groups(examples)
    records = []
    for g in groups:
        if int(examples["target"].iloc[g[0]]) != positive and not (
                examples["target"].iloc[g].astype(int) == positive).any():
            continue
        bag = x[g]
        if study:
            p = float(np.asarray(model.predict_on_batch(bag[None]))[0, positive])
            k = int(np.argmax(attention_weights(model, bag, positive)))
        else:
            ps = np.asarray(smodel.predict_on_batch(bag))[:, positive]
            p, k = float(ps.max()), int(np.argmax(ps))
        if p < threshold:
            continue
        row = examples.iloc[g[k]]
        mask = masks.get(str(row["sop_instance_uid"]))
        on_lesion = mask is not None and bool(np.asarray(mask).any())
        hit = fine = False
        if on_lesion:
            spacing = _pixel_spacing(row["path"])
            heat = gradcam(smodel, bag[k], class_index=positive)
            hit = peak_in_lesion(heat, mask, preprocess, spacing, dilate)
            heat = gradcam(smodel, bag[k], class_index=positive, fine=True)
            fine = peak_in_lesion(heat, mask, preprocess, spacing, dilate)
        records.append({"study_instance_uid": str(row["study_instance_uid"]),
                        "probability": p, "slice": str(row["sop_instance_uid"]),
                        "slice_in_lesion": on_lesion, "peak_in_lesion": hit,
                        "fine_peak_in_lesion": fine})
    n = len(records)
    out = {"true_positives": n, "slice_in_lesion": sum(r["slice_in_lesion"] for r in records)}
    for key, share in (("peak_in_lesion", "share"), ("fine_peak_in_lesion", "fine_share")):
        hits = sum(r[key] for r in records)
        out.update({key: hits, share: (hits / n) if n else None})
    return {**out, "studies": records}
