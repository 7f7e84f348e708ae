"""Errors of :mod:`dicomml.pacs`."""

from __future__ import annotations

from dicomml.errors import DicommlError

__all__ = ["PacsError"]


class PacsError(DicommlError, ConnectionError):
    """A PACS is unreachable, refused the association, timed out, or rejected an object.

    Messages name the endpoint (DICOMweb URL, or AE title, host and port), the operation,
    and for a rejected object its status code and SOP Instance UID; never patient identifiers.

    Attributes
    ----------
    failures : list of tuple of (str, str)
        For a store: ``(SOPInstanceUID, status)`` of every rejected object (may be empty).
    transient : bool
        True when the fault looked transient (connection refused or reset, HTTP 5xx/429,
        association abort) and retries were exhausted.
    """

    def __init__(self, message: str, *, failures: list[tuple[str, str]] | None = None,
                 transient: bool = False):
        super().__init__(message)
        self.failures = list(failures or [])
        self.transient = transient
