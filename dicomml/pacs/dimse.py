"""DIMSE client (PS3.4, PS3.7, PS3.8): C-ECHO, C-FIND, C-GET and C-STORE over pynetdicom.

Retrieval uses C-GET (PS3.4 C.4.3): the instances come back as C-STORE sub-operations on the
same association, so no listening port is needed. Storage proposes one presentation context
per (SOP Class, Transfer Syntax) pair found in the files, so every file goes in its own
transfer syntax (Comprehensive 3D SR, Enhanced SR, Secondary Capture, images...).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Callable, Iterable

import pydicom
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
                         ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000,
                         JPEG2000Lossless, JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLosslessSV1,
                         JPEGLSLossless, JPEGLSNearLossless, RLELossless)

from dicomml._atomic import atomic_write_bytes
from dicomml.pacs._retry import RetryPolicy, TransientError, call_with_retry, raise_level
from dicomml.pacs.base import (RETURN_KEYS, InstanceRef, Pacs, StoreResult, dataset_to_dict,
                               instance_path, read_store_items)
from dicomml.pacs.errors import PacsError, rejected_message

__all__ = ["DimsePacs"]

log = logging.getLogger("dicomml.pacs")

_UNCOMPRESSED = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
_OTHER_TS = [JPEG2000Lossless, JPEGLosslessSV1, JPEGLSLossless, RLELossless, JPEGBaseline8Bit,
             JPEGExtended12Bit, JPEG2000, JPEGLSNearLossless, DeflatedExplicitVRLittleEndian,
             ExplicitVRBigEndian]
_MAX_CONTEXTS = 128  # PS3.8 9.3.2.2: context IDs are odd numbers 1..255

#: Storage SOP classes proposed for C-GET when the PACS does not return (0008,0016).
_COMMON_STORAGE = [
    "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.4",
    "1.2.840.10008.5.1.4.1.1.4.1", "1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1",
    "1.2.840.10008.5.1.4.1.1.1.2", "1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.7",
    "1.2.840.10008.5.1.4.1.1.128", "1.2.840.10008.5.1.4.1.1.20", "1.2.840.10008.5.1.4.1.1.12.1",
    "1.2.840.10008.5.1.4.1.1.88.22", "1.2.840.10008.5.1.4.1.1.88.33",
    "1.2.840.10008.5.1.4.1.1.88.34", "1.2.840.10008.5.1.4.1.1.88.11",
    "1.2.840.10008.5.1.4.1.1.88.59", "1.2.840.10008.5.1.4.1.1.66.4",
    "1.2.840.10008.5.1.4.1.1.11.1", "1.2.840.10008.5.1.4.1.1.481.3",
]

_STATUS_OK = 0x0000
_PENDING = (0xFF00, 0xFF01)
_WARNINGS = (0x0001, 0xB000, 0xB006, 0xB007)


class DimsePacs(Pacs):
    """A PACS reached over DIMSE.

    Parameters
    ----------
    aet : str
        The PACS's (called) AE title.
    host, port
        Where it listens.
    calling_aet : str
        Our AE title (the PACS may only answer AE titles it knows).
    timeout : float
        Seconds for connecting, association negotiation, each DIMSE response and network
        idleness.
    retries, backoff, total
        Retry policy for transient faults (connection refused or reset, association abort).
    """

    def __init__(self, aet: str, host: str, port: int, calling_aet: str = "DICOMML",
                 timeout: float = 30.0, retries: int = 3, *, backoff: float = 0.5,
                 total: float = 120.0):
        from dicomml.errors import ConfigError

        for name, value in (("aet", aet), ("calling_aet", calling_aet)):
            if not value or len(value) > 16 or "\\" in value:
                raise ConfigError(f"an AE title has 1 to 16 characters and no backslash "
                                  f"(PS3.5 6.2 AE). Received: {name}={value!r}")
        try:
            port = int(port)
        except (TypeError, ValueError):
            port = -1
        if not 0 < port < 65536:
            raise ConfigError(f"port must be in 1..65535. Received: port={port!r}")
        self.aet, self.host, self.port = aet, host, port
        self.calling_aet = calling_aet
        self.timeout = float(timeout)
        self.policy = RetryPolicy(retries=retries, backoff=backoff, total=total)
        # pynetdicom dumps identifiers (Patient ID, names) at DEBUG/INFO: keep them out of logs.
        raise_level("pynetdicom", logging.WARNING)

    @property
    def endpoint(self) -> str:
        return f"AE {self.aet} at {self.host}:{self.port} (calling AE {self.calling_aet})"

    # -- association -------------------------------------------------------------------
    def _associate(self, contexts: list[tuple[str, list[str]]], roles: list[str] = (),
                   handlers: list | None = None):
        """Open an association; raise TransientError (retry) or PacsError (rejected)."""
        from pynetdicom import AE, build_role, evt

        # Probe the port first: a clear reason for the message, and pynetdicom leaks its
        # socket when the connection is refused (a ResourceWarning).
        try:
            with socket.create_connection((self.host, self.port), timeout=self.timeout):
                pass
        except OSError as e:
            raise TransientError(f"cannot connect to {self.endpoint}: "
                                 f"{e.strerror or type(e).__name__}") from e
        _one_line_records("pynetdicom")  # its loggers exist once it is imported
        ae = AE(ae_title=self.calling_aet)
        for attr in ("acse_timeout", "dimse_timeout", "network_timeout", "connection_timeout"):
            setattr(ae, attr, self.timeout)
        for abstract, syntaxes in contexts:
            ae.add_requested_context(abstract, syntaxes)
        ext = [build_role(uid, scp_role=True) for uid in roles]
        rejection: dict = {}

        def on_acse_recv(event):
            prim = event.primitive
            if getattr(prim, "result", None) in (0x01, 0x02):
                rejection.update(result=prim.result_str, source=prim.source_str,
                                 reason=prim.reason_str, transient=prim.result == 0x02)

        hs = list(handlers or []) + [(evt.EVT_ACSE_RECV, on_acse_recv)]
        assoc = ae.associate(self.host, self.port, ae_title=self.aet, ext_neg=ext or None,
                             evt_handlers=hs)
        # Keep the TCP socket: pynetdicom drops it unclosed when the peer vanishes (its
        # shutdown() fails first), and _close() closes it.
        assoc._dicomml_socket = getattr(getattr(assoc.dul, "socket", None), "socket", None)
        if assoc.is_established:
            return assoc
        _close(assoc)
        if assoc.is_rejected:
            msg = (f"{self.endpoint} rejected the association ({rejection.get('result', '')}, "
                   f"source: {rejection.get('source', '')}, reason: "
                   f"{rejection.get('reason', 'unknown')}). Check the called AE title "
                   f"{self.aet!r}, and that the PACS knows our AE title {self.calling_aet!r}.")
            if rejection.get("transient"):
                raise TransientError(msg)
            raise PacsError(msg)
        raise TransientError(f"no association with {self.endpoint} (connection refused, "
                             "reset, timed out, or no presentation context accepted)")

    # -- echo / find -------------------------------------------------------------------
    def echo(self) -> bool:
        """C-ECHO (PS3.7 9.1.5); True, or raise PacsError."""
        from pynetdicom.sop_class import Verification

        def once():
            assoc = self._associate([(Verification, [ExplicitVRLittleEndian,
                                                     ImplicitVRLittleEndian])])
            try:
                status = assoc.send_c_echo()
            finally:
                _close(assoc)
            if not status:
                raise TransientError("association aborted during C-ECHO")
            if status.Status != _STATUS_OK:
                raise PacsError(f"{self.endpoint} answered C-ECHO with status "
                                f"0x{status.Status:04X}")
            return True

        return call_with_retry(once, self.policy, f"C-ECHO of {self.endpoint}")

    def _query(self, level: str, filters: dict[str, str]) -> list[dict[str, str]]:
        from pynetdicom.sop_class import (PatientRootQueryRetrieveInformationModelFind,
                                          StudyRootQueryRetrieveInformationModelFind)

        model = (PatientRootQueryRetrieveInformationModelFind if level == "patient"
                 else StudyRootQueryRetrieveInformationModelFind)
        ident = pydicom.Dataset()
        ident.QueryRetrieveLevel = {"patient": "PATIENT", "study": "STUDY", "series": "SERIES",
                                    "instance": "IMAGE"}[level]
        for kw in RETURN_KEYS[level]:
            setattr(ident, kw, "")
        for kw, value in filters.items():
            setattr(ident, kw, value)
        assoc = self._associate([(model, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])])
        rows = []
        try:
            for status, found in assoc.send_c_find(ident, model):
                if not status:
                    raise TransientError("association aborted or timed out during C-FIND")
                code = int(status.Status)
                if code in _PENDING:
                    if found is not None:
                        rows.append(dataset_to_dict(found))
                elif code == _STATUS_OK:
                    break
                else:
                    raise PacsError(f"{self.endpoint} answered C-FIND ({level} level) with "
                                    f"status 0x{code:04X}")
        finally:
            _close(assoc)
        return rows

    # -- get ---------------------------------------------------------------------------
    def _fetch(self, refs: list[InstanceRef], out_dir: Path,
               on_written: Callable[[InstanceRef, Path], None]) -> None:
        from pynetdicom import evt
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GetModel

        by_sop = {r.sop_uid: r for r in refs}
        classes = sorted({r.sop_class_uid for r in refs if r.sop_class_uid}) or _COMMON_STORAGE
        per_class = 1 + len(_OTHER_TS)
        if 1 + len(classes) * per_class <= _MAX_CONTEXTS:
            contexts = [(c, list(_UNCOMPRESSED)) for c in classes]
            contexts += [(c, [ts]) for c in classes for ts in _OTHER_TS]
        else:
            contexts = [(c, _UNCOMPRESSED + _OTHER_TS) for c in classes[:_MAX_CONTEXTS - 1]]
        contexts.insert(0, (GetModel, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]))
        errors: list[str] = []

        unsolicited: list[str] = []

        def on_store(event):
            try:
                sop = str(event.request.AffectedSOPInstanceUID)
            except Exception:  # noqa: BLE001 - a malformed request: refused, never a traceback
                return 0xC000  # Error: cannot understand
            ref = by_sop.get(sop)
            if ref is None:
                # Not requested (a PACS may send other instances, even of other studies):
                # refused, never written.
                unsolicited.append(sop)
                return 0xA700  # Refused: out of resources
            path = instance_path(out_dir, ref)
            try:
                atomic_write_bytes(path, event.encoded_dataset(include_meta=True))
            except Exception as e:  # noqa: BLE001 - reported to the PACS and to the caller
                errors.append(f"cannot write SOP Instance UID {sop}: {e}")
                return 0xA700  # Out of resources
            try:
                on_written(ref, path)
            except Exception as e:  # noqa: BLE001 - a callback must not break the association
                errors.append(f"callback failed after SOP Instance UID {sop}: {e!r}")
            return _STATUS_OK

        assoc = self._associate(contexts, roles=classes, handlers=[(evt.EVT_C_STORE, on_store)])
        try:
            series: dict[str, list[InstanceRef]] = {}
            for r in refs:
                series.setdefault(r.series_uid, []).append(r)
            for series_uid, items in series.items():
                ident = pydicom.Dataset()
                ident.QueryRetrieveLevel = "IMAGE"
                ident.StudyInstanceUID = items[0].study_uid
                ident.SeriesInstanceUID = series_uid
                ident.SOPInstanceUID = [r.sop_uid for r in items]
                for status, _ in assoc.send_c_get(ident, GetModel):
                    if not status:
                        raise TransientError("association aborted or timed out during C-GET")
                    code = int(status.Status)
                    if code in _PENDING:
                        continue
                    if code == _STATUS_OK or code in _WARNINGS:
                        break
                    raise PacsError(f"{self.endpoint} answered C-GET of series {series_uid} "
                                    f"with status 0x{code:04X}")
        finally:
            _close(assoc)
        if unsolicited:
            log.warning("%s sent %d instance(s) that were not requested during C-GET; they "
                        "were refused and not written", self.endpoint, len(unsolicited))
        if errors:
            raise PacsError("; ".join(errors[:3]) + " (check the output folder)")

    # -- store -------------------------------------------------------------------------
    def store(self, paths: Iterable[str | os.PathLike], progress: bool = False) -> StoreResult:
        """C-STORE files (folders recursively) in their own transfer syntaxes (PS3.4 B.2).

        Raises
        ------
        PacsError
            Unreachable beyond the retry policy, association rejected, no accepted
            presentation context for a file's (SOP Class, Transfer Syntax), or objects
            rejected: ``.failures`` lists ``(SOPInstanceUID, status)``.
        """
        from tqdm import tqdm

        items, skipped = read_store_items(paths)
        result = StoreResult(skipped=skipped)
        failures: list[tuple[str, str]] = []
        pairs = sorted({(it.sop_class_uid, it.transfer_syntax) for it in items})
        groups = [pairs[i:i + _MAX_CONTEXTS] for i in range(0, len(pairs), _MAX_CONTEXTS)]
        done: set[str] = set()
        bar = tqdm(total=len(items), unit="inst", desc="store", file=sys.stderr,
                   disable=not progress, leave=False)

        def send_group(group):
            todo = [it for it in items if (it.sop_class_uid, it.transfer_syntax) in group
                    and it.sop_uid not in done]
            if not todo:
                return
            assoc = self._associate([(c, [ts]) for c, ts in group])
            try:
                accepted = {(cx.abstract_syntax, cx.transfer_syntax[0])
                            for cx in assoc.accepted_contexts}
                for it in todo:
                    if (it.sop_class_uid, it.transfer_syntax) not in accepted:
                        failures.append((it.sop_uid, f"no accepted presentation context for SOP "
                                         f"Class {it.sop_class_uid} in transfer syntax "
                                         f"{it.transfer_syntax}"))
                    else:
                        status = assoc.send_c_store(it.path)
                        if not status:
                            raise TransientError("association aborted or timed out during "
                                                 "C-STORE")
                        code = int(status.Status)
                        if code == _STATUS_OK:
                            result.stored.append(it.sop_uid)
                        elif code in _WARNINGS:
                            result.stored.append(it.sop_uid)
                            result.warnings.append((it.sop_uid, f"0x{code:04X}"))
                        else:
                            failures.append((it.sop_uid, f"0x{code:04X}"))
                    done.add(it.sop_uid)
                    bar.update(1)
            finally:
                _close(assoc)

        try:
            for group in groups:
                call_with_retry(lambda: send_group(group), self.policy,
                                f"C-STORE to {self.endpoint}")
        finally:
            bar.close()
        if failures:
            raise PacsError(rejected_message(self.endpoint, failures), failures=failures)
        return result


class _OneLine(logging.Filter):
    """Drops the traceback of a record (pynetdicom logs handler exceptions with one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        return True


_ONE_LINE = _OneLine()


def _one_line_records(prefix: str) -> None:
    """Attach :class:`_OneLine` to logger ``prefix`` and every existing child of it."""
    names = [prefix] + [n for n in logging.root.manager.loggerDict if n.startswith(prefix + ".")]
    for name in names:
        lg = logging.getLogger(name)
        if _ONE_LINE not in lg.filters:
            lg.addFilter(_ONE_LINE)


def _close(assoc) -> None:
    """Release (or abort) an association and close its TCP socket."""
    raw = getattr(assoc, "_dicomml_socket", None)
    try:
        if assoc.is_established:
            assoc.release()
        elif not (assoc.is_aborted or assoc.is_rejected or assoc.is_released):
            assoc.abort()
    finally:
        if raw is not None:
            with contextlib.suppress(OSError):
                raw.close()
