"""The transfer-syntax UIDs of the native encodings (PS3.5 Section 10 and Annex A), in one
place: every module of dicomml that tests for one of them imports it from here."""

from __future__ import annotations

__all__ = ["TS_IMPLICIT_LE", "TS_EXPLICIT_LE", "TS_EXPLICIT_BE", "TS_DEFLATED_LE",
           "NATIVE_SYNTAXES", "is_encapsulated"]

#: Implicit VR Little Endian (PS3.5 A.1), the default transfer syntax.
TS_IMPLICIT_LE = "1.2.840.10008.1.2"
#: Explicit VR Little Endian (PS3.5 A.2).
TS_EXPLICIT_LE = "1.2.840.10008.1.2.1"
#: Explicit VR Big Endian (PS3.5 A.3, retired).
TS_EXPLICIT_BE = "1.2.840.10008.1.2.2"
#: Deflated Explicit VR Little Endian (PS3.5 A.5).
TS_DEFLATED_LE = "1.2.840.10008.1.2.1.99"
#: The uncompressed, not deflated, transfer syntaxes: the pixel data is the plain byte
#: stream of PS3.5 Section 8.1.1.
NATIVE_SYNTAXES = frozenset({TS_IMPLICIT_LE, TS_EXPLICIT_LE, TS_EXPLICIT_BE})


def is_encapsulated(ts_uid) -> bool:
    """True when (0002,0010) ``ts_uid`` is not one of the native or deflated syntaxes (PS3.5
    A.1-A.5), so the pixel data is encapsulated (PS3.5 A.4). A UID that is no transfer
    syntax at all (a corrupt header) counts as encapsulated: it goes where a decoder is
    tried (in an isolated process when asked for), which reports it, instead of raising
    pydicom's bare ``ValueError`` here.
    """
    return str(ts_uid) not in NATIVE_SYNTAXES and str(ts_uid) != TS_DEFLATED_LE
