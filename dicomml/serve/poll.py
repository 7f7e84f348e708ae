"""Polling a DICOMweb PACS for new studies (QIDO-RS), retrieving them (WADO-RS) into the spool.

Each round lists the PACS's studies; a study whose (0020,1208) Number of Study Related
Instances changed since the last round is listed at instance level, and the instances the
queue does not have (other than the node's own results) are retrieved into the spool with
:meth:`dicomml.pacs.base.Pacs.retrieve` (atomic files, same layout as the C-STORE SCP) and
recorded in the queue: from there on a polled study is like a received one.
"""

from __future__ import annotations

import logging
import os

from dicomml.pacs.base import instance_path

__all__ = ["DicomwebPoller"]

log = logging.getLogger("dicomml.serve")


class DicomwebPoller:
    """``poll_once()`` against ``url``; see the module docstring.

    Parameters
    ----------
    url : str
        DICOMweb service root.
    queue : dicomml.serve.queue.JobQueue
    root : path
        The spool's ``studies`` folder.
    own : callable
        ``own(study_uid, series_uid) -> bool`` for the node's own result series.
    max_spool : int
        Bytes; no retrieval while the spool holds more.
    """

    def __init__(self, url: str, queue, root, own, max_spool: int):
        self.url, self.queue, self.root, self.own = url, queue, root, own
        self.max_spool = max_spool
        self._seen: dict[str, int] = {}

    def poll_once(self) -> int:
        """One round; the number of new instances recorded."""
        from dicomml.pacs.dicomweb import DicomwebPacs

        new = 0
        with DicomwebPacs(self.url, timeout=30, retries=1, total=60) as pacs:
            for st in pacs.query("study"):
                uid = st.get("StudyInstanceUID", "")
                count = int(st.get("NumberOfStudyRelatedInstances") or 0)
                if not uid or self._seen.get(uid) == count:
                    continue
                if self.queue.spool_bytes() >= self.max_spool:
                    log.warning("spool full: polling waits")
                    break
                new += self._study(pacs, uid)
                self._seen[uid] = count
        return new

    def _study(self, pacs, uid: str) -> int:
        refs = [r for r in pacs.list_instances(uid)
                if not self.own(uid, r.series_uid) and not self.queue.has_instance(r.sop_uid)]
        for series in sorted({r.series_uid for r in refs}):
            pacs.retrieve(uid, self.root, series_uid=series, progress=False)
        n = 0
        for r in refs:
            path = instance_path(self.root, r)
            if path.exists() and self.queue.add_instance(
                    r.study_uid, r.series_uid, r.sop_uid, r.sop_class_uid, str(path),
                    os.path.getsize(path)):
                n += 1
        return n
