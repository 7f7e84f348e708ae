"""DICOMweb client (PS3.18): QIDO-RS queries, WADO-RS retrieval, STOW-RS storage.

All HTTP goes through :mod:`dicomweb_client`; this module adds the resumable retrieval,
timeouts, retries with back-off on transient faults (connection refused or reset, HTTP 5xx,
429, 408) and clear :class:`~dicomml.pacs.errors.PacsError` messages.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Iterable

import pydicom

from dicomml._atomic import atomic_write_bytes
from dicomml.pacs._retry import RetryPolicy, TransientError, call_with_retry, raise_level
from dicomml.pacs.base import (RETURN_KEYS, InstanceRef, Pacs, StoreResult, dataset_to_dict,
                               instance_path, read_store_items)
from dicomml.pacs.errors import PacsError, rejected_message

__all__ = ["DicomwebPacs"]

log = logging.getLogger("dicomml.pacs")

_TRANSIENT_HTTP = {408, 429}


class DicomwebPacs(Pacs):
    """A PACS reached over DICOMweb.

    Parameters
    ----------
    url : str
        Service root, e.g. ``http://pacs:8042/dicom-web``.
    timeout : float
        Seconds to wait for a connection and for each response.
    retries : int
        Retries of a transient fault, with exponential back-off from ``backoff`` seconds.
    backoff : float
        First wait between retries (doubled each time).
    total : float
        Bound in seconds on the retries of one operation.
    headers : dict, optional
        Extra HTTP headers (e.g. ``{"Authorization": "Bearer ..."}``).
    batch_size : int
        Instances per STOW-RS request.
    """

    def __init__(self, url: str, timeout: float = 30.0, retries: int = 3, *,
                 backoff: float = 0.5, total: float = 120.0, headers: dict | None = None,
                 batch_size: int = 16):
        from dicomweb_client.api import DICOMwebClient

        self.url = url.rstrip("/")
        self.policy = RetryPolicy(retries=retries, backoff=backoff, total=total)
        self.batch_size = max(1, int(batch_size))
        try:
            self._client = DICOMwebClient(self.url, timeout=timeout, headers=headers)
        except ValueError as e:
            from dicomml.errors import ConfigError

            raise ConfigError(f"invalid DICOMweb URL: {e}. Received: url={url!r}") from e
        # We retry ourselves (bounded total time, connection errors too); the client's
        # `retrying` helper would log a traceback for every failed attempt.
        self._client.set_http_retry_params(retry=False)
        # ... and the client and urllib3 log query URLs (which may hold a PatientID) at DEBUG.
        raise_level("retrying", logging.ERROR)
        raise_level("dicomweb_client", logging.INFO)
        raise_level("urllib3", logging.INFO)

    @property
    def endpoint(self) -> str:
        return f"DICOMweb service {self.url}"

    def close(self) -> None:
        """Close the pooled HTTP connections."""
        self._client._session.close()

    def _call(self, fn: Callable, what: str):
        """Run one HTTP exchange; map faults to TransientError or PacsError."""
        import requests

        try:
            return fn()
        except requests.HTTPError as e:
            status = e.response.status_code if e.response is not None else 0
            if status >= 500 or status in _TRANSIENT_HTTP:
                raise TransientError(f"HTTP {status} from {self.url}") from e
            raise PacsError(f"{what} on {self.endpoint} failed: HTTP {status} "
                            f"{getattr(e.response, 'reason', '')}. Check the URL and the "
                            "request's UIDs.") from e
        except (requests.ConnectionError, requests.Timeout,
                requests.exceptions.ChunkedEncodingError) as e:
            raise TransientError(f"{type(e).__name__} ({_short(e)})") from e

    def echo(self) -> bool:
        """Send a small QIDO-RS study search (``limit=1``); True, or raise PacsError."""
        call_with_retry(lambda: self._call(lambda: self._client.search_for_studies(limit=1),
                                           "echo"), self.policy, f"echo of {self.endpoint}")
        return True

    def _query(self, level: str, filters: dict[str, str]) -> list[dict[str, str]]:
        c = self._client
        fields = list(RETURN_KEYS["study" if level == "patient" else level])
        flt = dict(filters)
        if level in ("study", "patient"):
            rows = self._paged(lambda off: c.search_for_studies(
                fields=fields, search_filters=flt, offset=off), "study query")
        elif level == "series":
            study = flt.pop("StudyInstanceUID", None)
            rows = self._paged(lambda off: c.search_for_series(
                study_instance_uid=study, fields=fields, search_filters=flt, offset=off),
                "series query")
        else:
            study = flt.pop("StudyInstanceUID", None)
            series = flt.pop("SeriesInstanceUID", None)
            rows = self._paged(lambda off: c.search_for_instances(
                study_instance_uid=study, series_instance_uid=series, fields=fields,
                search_filters=flt, offset=off), "instance query")
        out = [dataset_to_dict(pydicom.Dataset.from_json(r)) for r in rows or []]
        if level == "patient":
            # QIDO-RS has no patient level (PS3.18 10.6): one row per distinct (0010,0020).
            seen: dict[str, dict[str, str]] = {}
            for r in out:
                pid = r.get("PatientID", "")
                if pid not in seen:
                    seen[pid] = {k: r[k] for k in RETURN_KEYS["patient"] if k in r}
            out = list(seen.values())
        return out

    def _paged(self, search: Callable[[int], list], what: str) -> list[dict]:
        """All pages of a QIDO-RS search (PS3.18 8.3.4.4 ``offset``).

        Stops at an empty page, or at a page that adds nothing new (a server that ignores
        ``offset``), so a misbehaving server cannot make it loop forever.
        """
        rows: list[dict] = []
        seen: set[str] = set()
        for _ in range(100_000):
            page = self._call(lambda: search(len(rows)), what) or []
            new = []
            for r in page:
                key = json.dumps(r, sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    new.append(r)
            if not new:
                break
            rows.extend(new)
        return rows

    def _fetch(self, refs: list[InstanceRef], out_dir: Path,
               on_written: Callable[[InstanceRef, Path], None]) -> None:
        for ref in refs:
            ds = self._call(lambda: self._client.retrieve_instance(
                ref.study_uid, ref.series_uid, ref.sop_uid,
                media_types=(("application/dicom", "*"),)), "instance retrieval")
            got = str(ds.get("SOPInstanceUID", ""))
            if got != ref.sop_uid:
                raise PacsError(f"{self.endpoint} answered a request for SOP Instance UID "
                                f"{ref.sop_uid} with {got or 'an object without (0008,0018)'}")
            buf = io.BytesIO()
            pydicom.dcmwrite(buf, ds, enforce_file_format=True)
            path = instance_path(out_dir, ref)
            atomic_write_bytes(path, buf.getvalue())
            on_written(ref, path)

    def store(self, paths: Iterable[str | os.PathLike], progress: bool = False) -> StoreResult:
        """Send files (folders recursively) with STOW-RS (PS3.18 10.5), in batches.

        Non-DICOM files are skipped and listed in the result. Each file is sent in its own
        transfer syntax.

        Raises
        ------
        PacsError
            The service is unreachable beyond the retry policy, or rejected objects: the
            message and ``.failures`` give each (0008,0018) SOP Instance UID with its
            (0008,1197) Failure Reason.
        """
        from tqdm import tqdm

        items, skipped = read_store_items(paths)
        result = StoreResult(skipped=skipped)
        failures: list[tuple[str, str]] = []
        bar = tqdm(total=len(items), unit="inst", desc="store", file=sys.stderr,
                   disable=not progress, leave=False)
        try:
            for i in range(0, len(items), self.batch_size):
                batch = items[i:i + self.batch_size]
                datasets = [pydicom.dcmread(it.path) for it in batch]
                resp = call_with_retry(lambda: self._stow(datasets), self.policy,
                                       f"STOW-RS of {len(batch)} instance(s) to {self.endpoint}")
                failed = {str(f.get("ReferencedSOPInstanceUID", "")): _reason(f.get("FailureReason"))
                          for f in resp.get("FailedSOPSequence", [])}
                for f in resp.get("ReferencedSOPSequence", []):
                    if "WarningReason" in f:
                        result.warnings.append((str(f.ReferencedSOPInstanceUID),
                                                _reason(f.WarningReason)))
                for it in batch:
                    if it.sop_uid in failed:
                        failures.append((it.sop_uid, failed[it.sop_uid]))
                    else:
                        result.stored.append(it.sop_uid)
                bar.update(len(batch))
        finally:
            bar.close()
        if failures:
            raise PacsError(rejected_message(self.endpoint, failures), failures=failures)
        return result

    def _stow(self, datasets: list[pydicom.Dataset]) -> pydicom.Dataset:
        import requests

        try:
            return self._call(lambda: self._client.store_instances(datasets), "STOW-RS")
        except PacsError as e:
            # A 4xx with a STOW-RS response body (409 Conflict): report per-instance failures.
            cause = e.__cause__
            if isinstance(cause, requests.HTTPError) and cause.response is not None:
                try:
                    body = pydicom.Dataset.from_json(cause.response.json())
                except Exception:  # noqa: BLE001 - no parsable body: keep the plain error
                    raise e from cause
                if "FailedSOPSequence" in body:
                    return body
            raise


def _reason(value) -> str:
    if value is None or value == "":
        return "unknown status"
    try:
        return f"0x{int(value):04X}"
    except (TypeError, ValueError):
        return str(value)


def _short(e: Exception) -> str:
    s = str(e)
    return s if len(s) < 200 else s[:200] + "..."
