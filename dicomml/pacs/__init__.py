"""dicomml.pacs: query, retrieve and store over DICOMweb and DIMSE; de-identification.

``DicomwebPacs(url)`` (dicomweb-client: QIDO-RS, WADO-RS, STOW-RS) and
``DimsePacs(aet, host, port)`` (pynetdicom: C-ECHO, C-FIND, C-GET, C-STORE) share one interface
(:class:`~dicomml.pacs.base.Pacs`): ``echo()``, ``query(level, **filters)``,
``retrieve(study_uid, out_dir, series_uid=None)`` (resumable) and ``store(paths)``.
``deidentify`` applies the PS3.15 Annex E Basic Application Level Confidentiality Profile.

Never imports TensorFlow; the client libraries load on first use.
"""

from __future__ import annotations

from dicomml._lazy import lazy_exports

_LAZY = {
    "PacsError": "dicomml.pacs.errors",
    "Pacs": "dicomml.pacs.base",
    "RetrieveResult": "dicomml.pacs.base",
    "StoreResult": "dicomml.pacs.base",
    "RetryPolicy": "dicomml.pacs._retry",
    "DicomwebPacs": "dicomml.pacs.dicomweb",
    "DimsePacs": "dicomml.pacs.dimse",
    "connect": "dicomml.pacs.connection",
    "predict_remote": "dicomml.pacs.remote",
    "deidentify": "dicomml.pacs.deid",
    "deidentify_table": "dicomml.pacs.deid",
    "remap_uid": "dicomml.pacs.deid",
    "DeidResult": "dicomml.pacs.deid",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY, eager=())
