"""Errors of :mod:`dicomml.pacs`."""

from __future__ import annotations

from dicomml.errors import DicommlError

__all__ = ["PacsError", "rejected_message"]


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


def rejected_message(endpoint: str, failures: list[tuple[str, str]]) -> str:
    """The message of a store that ``endpoint`` refused for some objects: ``failures`` are
    (SOP Instance UID, status) pairs, the first five shown (PS3.4 Annex B status codes)."""
    shown = "; ".join(f"SOP Instance UID {uid}: status {st}" for uid, st in failures[:5])
    more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
    return (f"{endpoint} rejected {len(failures)} object(s): {shown}{more}. Check the PACS log "
            "for the reason (PS3.4 Annex B status codes).")
