"""Build a PACS client from settings, and the CLI options that give them (pull, push)."""

from __future__ import annotations

import argparse

from dicomml.errors import ConfigError
from dicomml.pacs.base import Pacs

__all__ = ["connect", "add_pacs_arguments", "pacs_from_args"]


def connect(*, dicomweb: str | None = None, aet: str | None = None, host: str | None = None,
            port: int | None = None, calling_aet: str = "DICOMML", timeout: float = 30.0,
            retries: int = 3, total: float = 120.0) -> Pacs:
    """A :class:`~dicomml.pacs.dicomweb.DicomwebPacs` for a URL, else a DIMSE client.

    Exactly one of ``dicomweb`` or (``aet``, ``host``, ``port``) must be given.
    """
    if dicomweb and (aet or host or port):
        raise ConfigError("give either a DICOMweb URL or an AE title, host and port, not both. "
                          f"Received: dicomweb={dicomweb!r}, aet={aet!r}")
    if dicomweb:
        from dicomml.pacs.dicomweb import DicomwebPacs

        return DicomwebPacs(dicomweb, timeout=timeout, retries=retries, total=total)
    if aet and host and port:
        from dicomml.pacs.dimse import DimsePacs

        return DimsePacs(aet, host, port, calling_aet=calling_aet, timeout=timeout,
                         retries=retries, total=total)
    raise ConfigError("which PACS? give --dicomweb URL, or --aet AET --host HOST --port PORT. "
                      f"Received: dicomweb={dicomweb!r}, aet={aet!r}, host={host!r}, "
                      f"port={port!r}")


def add_pacs_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --dicomweb, or --aet/--host/--port, and the timeout/retry options."""
    g = parser.add_argument_group("PACS (DICOMweb URL, or AE title + host + port for DIMSE)")
    g.add_argument("--dicomweb", metavar="URL", help="DICOMweb service root, e.g. "
                   "http://pacs:8042/dicom-web")
    g.add_argument("--aet", metavar="AET", help="the PACS's AE title (DIMSE)")
    g.add_argument("--host", metavar="HOST", help="the PACS's host name or address (DIMSE)")
    g.add_argument("--port", metavar="PORT", type=int, help="the PACS's DICOM port (DIMSE)")
    g.add_argument("--calling-aet", metavar="AET", default="DICOMML",
                   help="our AE title (DIMSE; default: DICOMML)")
    g.add_argument("--timeout", metavar="S", type=float, default=30.0,
                   help="network timeout in seconds (default: 30)")
    g.add_argument("--retries", metavar="N", type=int, default=3,
                   help="retries of transient faults, with exponential back-off (default: 3)")
    g.add_argument("--max-time", metavar="S", type=float, default=120.0,
                   help="bound on the retries of one operation in seconds (default: 120)")


def pacs_from_args(args):
    """The client that ``add_pacs_arguments`` options describe."""
    return connect(dicomweb=args.dicomweb, aet=args.aet, host=args.host, port=args.port,
                   calling_aet=args.calling_aet, timeout=args.timeout, retries=args.retries,
                   total=args.max_time)
