"""Predict a study that lives on a PACS and store the results back into the same study.

``predict_remote`` = :meth:`Pacs.retrieve` → :func:`dicomml.evaluate.predict` →
:func:`store_results` (the SR, and the secondary captures, go back with the study's
(0020,000D) Study Instance UID, in new series, as DESIGN.md's Structured Report contract says).
:mod:`dicomml.evaluate` is imported only when a prediction runs (it needs TensorFlow).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import pydicom

from dicomml._atomic import safe_join
from dicomml.pacs.base import Pacs, RetrieveResult, StoreResult
from dicomml.pacs.errors import PacsError

__all__ = ["predict_remote", "store_results", "RemotePrediction"]


@dataclass
class RemotePrediction:
    """What :func:`predict_remote` did: the retrieval, the prediction, the store."""

    retrieved: RetrieveResult
    prediction: object  # dicomml.evaluate.prediction.PredictResult
    stored: StoreResult | None


def store_results(pacs: Pacs, paths: Iterable[str | os.PathLike], study_uid: str,
                  progress: bool = False) -> StoreResult:
    """Store result objects (SR, SC) after checking they belong to study ``study_uid``.

    Raises
    ------
    PacsError
        A file's (0020,000D) Study Instance UID is not ``study_uid`` (it would land in
        another study), or the PACS rejects an object.
    """
    paths = [Path(p) for p in paths]
    for p in paths:
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        got = str(ds.get("StudyInstanceUID", ""))
        if got != study_uid:
            raise PacsError(f"{p.name} (SOP Instance UID {ds.get('SOPInstanceUID', '?')}) "
                            f"belongs to study {got or '<none>'}, not {study_uid}: "
                            "(0020,000D) Study Instance UID must match to store it back")
    if not paths:
        return StoreResult()
    return pacs.store(paths, progress=progress)


def predict_remote(run_dir: str | os.PathLike, pacs: Pacs | str, study_uid: str,
                   out_dir: str | os.PathLike, *, store: bool = True, progress: bool = True,
                   **predict_kwargs) -> RemotePrediction:
    """Retrieve a study, predict it with a trained run, store the SR and SCs back.

    Parameters
    ----------
    run_dir : path
        A trained run folder.
    pacs : Pacs or str
        A client (:class:`~dicomml.pacs.dicomweb.DicomwebPacs`,
        :class:`~dicomml.pacs.dimse.DimsePacs`) or a DICOMweb URL.
    study_uid : str
        (0020,000D) Study Instance UID of the study to predict.
    out_dir : path
        ``out_dir/retrieved/<study>/...`` receives the study (resumable);
        ``out_dir/`` receives predictions.csv, the SR and the SCs.
    store : bool
        Store the SR and SCs into the same study on the PACS.
    **predict_kwargs
        Passed to :func:`dicomml.evaluate.predict` (threshold, write_sc, aggregation...).

    Returns
    -------
    RemotePrediction
    """
    if isinstance(pacs, str):
        from dicomml.pacs.dicomweb import DicomwebPacs

        with DicomwebPacs(pacs) as client:
            return predict_remote(run_dir, client, study_uid, out_dir, store=store,
                                  progress=progress, **predict_kwargs)
    out_dir = Path(out_dir)
    retrieved = pacs.retrieve(study_uid, out_dir / "retrieved", progress=progress)
    from dicomml.evaluate.prediction import predict

    study_dir = safe_join(out_dir / "retrieved", study_uid)
    prediction = predict(run_dir, study_dir, out_dir, progress=progress, **predict_kwargs)
    stored = None
    if store:
        paths = [*getattr(prediction, "sr_paths", ()), *getattr(prediction, "sc_paths", ()),
                 *getattr(prediction, "pm_paths", ())]
        stored = store_results(pacs, paths, study_uid, progress=progress)
    return RemotePrediction(retrieved, prediction, stored)
