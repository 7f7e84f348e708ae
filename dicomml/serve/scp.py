"""The node's C-STORE SCP (PS3.4 Annex B, PS3.7 9.1.1) on pynetdicom.

What it accepts:

* associations whose Called AE Title is ours and whose Calling AE Title is allowed
  (otherwise A-ASSOCIATE-RJ, rejected-permanent, "calling/called AE title not recognized",
  PS3.8 7.1.1.9);
* presentation contexts of the configured Storage SOP Classes in the configured transfer
  syntaxes (others are refused at negotiation: "abstract syntax not supported", PS3.8 9.3.3);
* datasets up to the size limit, while the spool has room, with Study, Series and SOP
  Instance UIDs. Otherwise C-STORE answers 0xA700 "Refused: Out of Resources" (too big, or
  spool full) or 0xC000 "Error: Cannot understand" (UIDs missing), and nothing is written.

An accepted instance is written atomically to ``SPOOL/studies/<Study>/<Series>/<SOP>.dcm``
(:func:`dicomml.pacs.base.instance_path`), then recorded in the queue; only then does the SCP
answer 0x0000 Success. An instance already received is answered Success and stored once;
so is one of the node's own results coming back (a PACS routing the whole study to the node
again), which is not stored at all.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from dicomml._atomic import atomic_write_bytes
from dicomml.pacs.base import InstanceRef, instance_path
from dicomml.evaluate.prediction import study_key
from dicomml.serve.queue import JobQueue

__all__ = ["StoreSCP", "SUCCESS", "OUT_OF_RESOURCES", "CANNOT_UNDERSTAND"]

log = logging.getLogger("dicomml.serve")

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000


def _storage_classes(configured) -> list[str]:
    if configured:
        return list(configured)
    from pynetdicom import AllStoragePresentationContexts

    return [cx.abstract_syntax for cx in AllStoragePresentationContexts]


class StoreSCP:
    """A C-STORE SCP writing into a spool and a :class:`JobQueue`.

    Parameters
    ----------
    config : dicomml.serve.config.ServeConfig
    queue : JobQueue
    own : callable, optional
        ``own(study_uid, series_uid) -> bool``: True for the node's own result series.
    """

    def __init__(self, config, queue: JobQueue, own=None):
        self.config = config
        self.queue = queue
        self.own = own
        self.root = Path(config.spool) / "studies"
        self.max_bytes = int(config.max_instance_mb * 2**20)
        self.max_spool = int(config.max_spool_gb * 2**30)
        self.server = None
        self.accepting = True

    def _ae(self):
        from pynetdicom import AE
        from pynetdicom.sop_class import Verification

        logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # it logs identifiers
        ae = AE(ae_title=self.config.ae_title)
        ae.require_called_aet = True
        ae.require_calling_aet = list(self.config.allowed_aets)
        ae.maximum_associations = int(self.config.max_associations)
        for attr in ("acse_timeout", "dimse_timeout", "network_timeout"):
            setattr(ae, attr, 60)
        ts = list(self.config.transfer_syntaxes)
        ae.add_supported_context(Verification, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
        for uid in _storage_classes(self.config.sop_classes):
            ae.add_supported_context(uid, ts)
        return ae

    def start(self) -> None:
        """Listen on ``(bind, port)`` in background threads."""
        from pynetdicom import evt

        ae = self._ae()
        self.server = ae.start_server((self.config.bind, int(self.config.port)), block=False,
                                      evt_handlers=[(evt.EVT_C_STORE, self.on_store)])

    def stop(self) -> None:
        """Stop listening (associations in progress are aborted; their senders retry)."""
        self.accepting = False
        if self.server is not None:
            self.server.shutdown()
            self.server = None

    def on_store(self, event) -> int:
        """The EVT_C_STORE handler: check, write atomically, record; return the status."""
        if not self.accepting:
            return OUT_OF_RESOURCES
        raw = event.request.DataSet
        size = len(raw.getbuffer()) if raw is not None else 0
        calling = event.assoc.requestor.ae_title
        if size > self.max_bytes:
            self._refuse(calling, f"a dataset of {size} bytes is over the limit of "
                                  f"{self.max_bytes} bytes (max_instance_mb)")
            return OUT_OF_RESOURCES
        if self.queue.spool_bytes() + size > self.max_spool:
            self._refuse(calling, f"the spool is full ({self.max_spool} bytes, max_spool_gb)")
            return OUT_OF_RESOURCES
        try:
            ds = event.dataset
            ref = InstanceRef(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID),
                              str(event.request.AffectedSOPInstanceUID))
        except Exception as e:  # noqa: BLE001 - answered with a status, never a crash
            self._refuse(calling, f"a dataset without readable Study/Series/SOP Instance "
                                  f"UIDs ({type(e).__name__})")
            return CANNOT_UNDERSTAND
        if not (ref.study_uid and ref.series_uid and ref.sop_uid):
            self._refuse(calling, "a dataset without Study/Series/SOP Instance UID")
            return CANNOT_UNDERSTAND
        if self.queue.has_instance(ref.sop_uid):
            return SUCCESS  # received before: stored once
        if self.own is not None and self.own(ref.study_uid, ref.series_uid):
            return SUCCESS  # our own result sent back to us: not an input
        path = instance_path(self.root, ref)
        try:
            atomic_write_bytes(path, event.encoded_dataset(include_meta=True))
        except Exception as e:  # noqa: BLE001 - e.g. disk full: the sender keeps its copy
            self._refuse(calling, f"cannot write to the spool: {e}")
            return OUT_OF_RESOURCES
        new = self.queue.add_instance(ref.study_uid, ref.series_uid, ref.sop_uid,
                                      str(event.request.AffectedSOPClassUID), str(path), size,
                                      now=time.time())
        if new:
            log.debug("study %s: instance received from %s", study_key(ref.study_uid), calling)
        return SUCCESS

    def _refuse(self, calling: str, why: str) -> None:
        msg = f"C-STORE from {calling!r} refused: {why}"
        log.warning(msg)
        self.queue.log_event("", "WARNING", msg)
