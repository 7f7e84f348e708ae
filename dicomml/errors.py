"""The exception family of dicomml.

Every error that dicomml raises on purpose is a :class:`DicommlError`. Each
subclass also inherits the builtin exception that matches it, so callers that
already catch ``ValueError`` or ``OSError`` keep working.

Messages name the file (or SOP Instance UID), the DICOM attribute with its tag
number, what was expected, and what to do. They never contain patient names,
IDs, birth dates or accession numbers.
"""

from __future__ import annotations

import difflib
from typing import Iterable

__all__ = [
    "DicommlError",
    "NotDicomError",
    "InvalidDicomError",
    "MissingAttributeError",
    "NoPixelDataError",
    "UnsupportedTransferSyntaxError",
    "DecodeError",
    "DecoderCrashedError",
    "SeriesError",
    "ConfigError",
    "PreprocessError",
    "OutputError",
    "FATAL",
    "is_own_failure",
    "closest",
    "did_you_mean",
]


class DicommlError(Exception):
    """Base class of every error dicomml raises on purpose."""


class NotDicomError(DicommlError, ValueError):
    """The file is empty, not DICOM, or only a bare preamble."""


class InvalidDicomError(DicommlError, ValueError):
    """The file is DICOM but broken: truncated, corrupted lengths, bad values."""


class MissingAttributeError(DicommlError, ValueError):
    """A required attribute is absent or empty."""


class NoPixelDataError(DicommlError, ValueError):
    """The object carries no (7FE0,0010) Pixel Data: SR, RT, PR, KO, waveform..."""


class UnsupportedTransferSyntaxError(DicommlError, NotImplementedError):
    """No installed plugin decodes the transfer syntax; the message names the package."""


class DecodeError(DicommlError, RuntimeError):
    """A codec failed on the pixel data (corrupt or truncated compressed stream)."""


class DecoderCrashedError(DecodeError):
    """A decoder killed its worker process (for example SIGABRT in a C library)."""


class SeriesError(DicommlError, ValueError):
    """The slices of a series are inconsistent (sizes, orientation, spacing)."""


class ConfigError(DicommlError, ValueError):
    """A configuration value or option is invalid."""


class PreprocessError(DicommlError, ValueError):
    """A preprocessing step failed or was given an invalid option (window, preset, size)."""


class OutputError(DicommlError, OSError):
    """An output could not be written (read-only or full disk, unsafe path)."""


#: The exceptions that keep their meaning everywhere: per-item isolation catches every other
#: ``BaseException`` (a Rust panic surfaces as ``pyo3_runtime.PanicException``, which derives
#: from ``BaseException`` only) and re-raises these. Use as
#: ``except BaseException as e: if isinstance(e, FATAL): raise``.
FATAL = (KeyboardInterrupt, SystemExit, GeneratorExit)


def is_own_failure(exc: BaseException) -> bool:
    """True when ``exc`` is the fault of the item being processed, so that recording it as
    that item's failure (and not retrying it) is right.

    False for what says nothing about the item: an :class:`OutputError` or any other
    ``OSError`` about an output (full disk, read-only folder), ``MemoryError``, and the
    :data:`FATAL` exceptions. An ``OSError`` with a file name is the input's own only when
    it is a missing or unreadable input (``FileNotFoundError``, ``IsADirectoryError``);
    permission and space errors may be transient and are retried by a later run.
    """
    if isinstance(exc, FATAL) or isinstance(exc, (OutputError, MemoryError)):
        return False
    if isinstance(exc, OSError):
        return isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError))
    return True


def closest(word: object, candidates: Iterable, *, n: int = 1,
            cutoff: float = 0.6) -> list[str]:
    """The candidates closest to ``word`` (case-insensitive), best first, spelled as given."""
    by_lower = {str(c).lower(): str(c) for c in candidates}
    return [by_lower[m] for m in
            difflib.get_close_matches(str(word).lower(), list(by_lower), n=n, cutoff=cutoff)]


def did_you_mean(word: object, candidates: Iterable, *, n: int = 1,
                 cutoff: float = 0.6) -> str:
    """``" Did you mean 'x'?"`` for the closest candidate(s), or ``""`` when none is close."""
    close = closest(word, candidates, n=n, cutoff=cutoff)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
