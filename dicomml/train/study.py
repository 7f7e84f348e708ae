"""Prediction with study-level (multiple-instance) models, per study and per slice.

A study model (:func:`dicomml.models.mil.study_model`) scores a whole study. Through the
common prediction path (:func:`dicomml.evaluate.runio.predict_examples`, used by
``evaluate`` and ``predict``) every image row carries its **study's** probabilities, so the
study levels (``study_max`` / ``study_mean``) are exactly the model's study output and the
decision threshold, ``predictions.csv`` and the SR use it unchanged. The per-slice
probabilities of the same model (its shared encoder and head on one slice) and the
pooling weights are available from :func:`predict_studies`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["predict_studies", "StudyPredictions"]


class StudyPredictions:
    """What :func:`predict_studies` returns.

    Attributes
    ----------
    study : numpy.ndarray
        (N, outputs): each example's study probabilities (NaN where it failed to decode or
        its study has no decodable slice).
    slice : numpy.ndarray
        (N, outputs): the per-slice probabilities of the same model.
    weight : numpy.ndarray
        (N,): each slice's pooling weight within its study (attention weights; see
        :func:`dicomml.models.mil.attention_weights`).
    """

    def __init__(self, study, slice_, weight):
        self.study, self.slice, self.weight = study, slice_, weight


def predict_studies(model, examples: pd.DataFrame, pipeline, *, workers: int | None = None,
                    cache_dir=None, progress: bool = True, batch_size: int = 32,
                    positive: int = 1) -> StudyPredictions:
    """Run a study model on the studies of ``examples`` (grouped by Study Instance UID);
    ``positive``: the class whose score sets the weights of max-pooled score maps
    (:func:`dicomml.models.mil.attention_weights`)."""
    import sys

    from dicomml.data.bags import study_groups
    from dicomml.data.tfdata import load_tensors
    from dicomml.models.mil import attention_weights, slice_model_of

    x = load_tensors(examples, pipeline, workers=workers, cache_dir=cache_dir,
                     batch_size=batch_size)
    ok = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    n_out = int(model.output_shape[-1])
    study = np.full((len(x), n_out), np.nan)
    per_slice = np.full((len(x), n_out), np.nan)
    weight = np.full(len(x), np.nan)
    slice_model = slice_model_of(model)
    _, groups = study_groups(examples)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(groups), desc="predict", unit="study", file=sys.stderr,
                   leave=False)
    try:
        for g in groups:
            g = g[ok[g]]
            if len(g):
                bag = x[g]
                study[g] = np.asarray(model.predict_on_batch(bag[None]), np.float64)[0]
                per_slice[g] = np.asarray(slice_model.predict_on_batch(bag), np.float64)
                weight[g] = attention_weights(model, bag, positive)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return StudyPredictions(study, per_slice, weight)
