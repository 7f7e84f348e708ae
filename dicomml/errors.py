"""The exception family of dicomml.

Every error that dicomml raises on purpose is a :class:`DicommlError`. Each
subclass also inherits the builtin exception that matches it, so callers that
already catch ``ValueError`` or ``OSError`` keep working.

Messages name the file (or SOP Instance UID), the DICOM attribute with its tag
number, what was expected, and what to do. They never contain patient names,
IDs, birth dates or accession numbers.
"""

from __future__ import annotations

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
