"""One value-scrubbing filter for every warning and log record (PHI never reaches a log).

pydicom, highdicom and pynetdicom quote element values in their warnings and log records:
``Invalid value for VR DA: '1971-02-03'``, highdicom's ``The string "CQ500-CT-310" is unlikely
to represent the intended person name``, pynetdicom's dumps of identifiers. A corrupt file can
put a patient's name into any element, so no quoted value is safe to show. :func:`scrub`
removes every quoted value and every person-name-shaped token (``Family^Given``);
:func:`install` routes every log record (of any logger: dicomml, pydicom, highdicom,
pynetdicom, the root) and every warning shown through it, and shows each distinct scrubbed
warning once. The ``dicomml`` command installs it before running any verb; notebooks and
services can call :func:`install` themselves.

Examples
--------
>>> scrub("Unable to convert '1971-02-03' to 'DA' object")
"Unable to convert '…' to '…' object"
>>> scrub('The string "CQ500-CT-310" is unlikely to represent the intended person name')
"The string '…' is unlikely to represent the intended person name"
>>> scrub("Patient Doe^John (0010,0010) in /data/x.dcm")
'Patient … (0010,0010) in /data/x.dcm'
"""

from __future__ import annotations

import logging
import re
import threading
import warnings

__all__ = ["scrub", "install", "uninstall", "installed", "ScrubFilter"]

#: Quoted text (single, double, typographic quotes; bytes literals), on one line.
_QUOTED = re.compile(r"""b?'[^'\n]*'|b?"[^"\n]*"|“[^”\n]*”|‘[^’\n]*’""")
#: A token holding a PN component separator: ``Family^Given`` (PS3.5 6.2.1).
_PERSON_NAME = re.compile(r"[^\s'\"()\[\],;:]*\^[^\s'\"()\[\],;:]*")

_lock = threading.Lock()
_state: dict = {}


def scrub(text: object) -> str:
    """``text`` with every quoted value replaced by ``'…'`` and every ``A^B`` token by ``…``.

    Tags such as ``(0010,0010)``, numbers outside quotes, file paths and words are kept.
    """
    s = _QUOTED.sub("'…'", str(text))
    return _PERSON_NAME.sub("…", s)


class ScrubFilter(logging.Filter):
    """A :class:`logging.Filter` that scrubs a record's message (and its exception text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        _scrub_record(record)
        return True


def _scrub_record(record: logging.LogRecord) -> logging.LogRecord:
    if getattr(record, "_dicomml_scrubbed", False):
        return record
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a record whose args do not fit its format
        message = str(record.msg)
    record.msg, record.args = scrub(message), ()
    if record.exc_info and record.exc_info[1] is not None:
        import traceback

        record.exc_text = scrub("".join(traceback.format_exception(*record.exc_info)))
        record.exc_info = None
    record._dicomml_scrubbed = True
    return record


def install() -> None:
    """Scrub every log record and every shown warning from now on; idempotent.

    * every :class:`logging.LogRecord`, whatever its logger, is scrubbed when it is created
      (a log-record factory: it covers loggers and handlers that do not exist yet), and the
      root, ``pydicom``, ``highdicom`` and ``pynetdicom`` loggers' handlers get a
      :class:`ScrubFilter` as well;
    * :func:`warnings.showwarning` scrubs the message and shows each distinct
      (category, scrubbed message) once.
    """
    with _lock:
        if _state:
            return
        old_factory = logging.getLogRecordFactory()

        def factory(*args, **kwargs):
            return _scrub_record(old_factory(*args, **kwargs))

        logging.setLogRecordFactory(factory)
        flt = ScrubFilter()
        for name in (None, "pydicom", "highdicom", "pynetdicom"):
            for handler in logging.getLogger(name).handlers:
                handler.addFilter(flt)
        old_show = warnings.showwarning
        seen: set = set()

        def showwarning(message, category, filename, lineno, file=None, line=None):
            text = scrub(message)
            key = (category, text)
            if key in seen:
                return
            seen.add(key)
            old_show(text, category, filename, lineno, file, "")

        warnings.showwarning = showwarning
        _state.update(factory=old_factory, show=old_show, filter=flt, seen=seen)


def uninstall() -> None:
    """Undo :func:`install` (for tests)."""
    with _lock:
        if not _state:
            return
        logging.setLogRecordFactory(_state["factory"])
        warnings.showwarning = _state["show"]
        for name in (None, "pydicom", "highdicom", "pynetdicom"):
            for handler in logging.getLogger(name).handlers:
                handler.removeFilter(_state["filter"])
        _state.clear()


def installed() -> bool:
    """True while :func:`install` is in effect."""
    return bool(_state)
