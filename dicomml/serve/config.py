"""Settings of a DICOM node (``dicomml serve``): dataclass, ``serve.toml`` and destinations.

A ``serve.toml`` holds the same names as :class:`ServeConfig` in a ``[serve]`` table::

    [serve]
    run_dir = "runs/ich-001"
    ae_title = "DICOMML"
    port = 11112
    bind = "127.0.0.1"
    spool = "/var/lib/dicomml/spool"
    send_to = ["dimse://ORTHANC@127.0.0.1:4242"]
    allowed_aets = ["ORTHANC"]
    stable_seconds = 10

Options given on the command line win over the file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from dicomml.errors import ConfigError, did_you_mean

__all__ = ["ServeConfig", "Destination", "parse_destination", "load_serve_toml",
           "DEFAULT_TRANSFER_SYNTAXES", "default_spool"]

#: Transfer syntaxes accepted by default (PS3.5 10, A.4): uncompressed, then the lossless
#: and lossy compressions pydicom can decode with the optional plugins.
DEFAULT_TRANSFER_SYNTAXES = (
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
)

_AE = re.compile(r"^[^\\]{1,16}$")


def default_spool(ae_title: str) -> Path:
    """``$XDG_CACHE_HOME/dicomml/serve/<AE title>`` (``~/.cache`` by default)."""
    from dicomml._atomic import safe_name

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dicomml" / "serve" / safe_name(ae_title)


@dataclass(frozen=True)
class Destination:
    """Where results go: ``dimse`` (AE title, host, port) or ``dicomweb`` (URL)."""

    kind: str
    url: str = ""
    aet: str = ""
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        if self.kind == "dicomweb":
            return self.url
        return f"dimse://{self.aet}@{self.host}:{self.port}"

    def client(self, calling_aet: str, timeout: float = 30.0):
        """A :mod:`dicomml.pacs` client for it (one attempt per call: the node retries)."""
        from dicomml.pacs.connection import connect

        if self.kind == "dicomweb":
            return connect(dicomweb=self.url, timeout=timeout, retries=0, total=timeout * 4)
        return connect(aet=self.aet, host=self.host, port=self.port, calling_aet=calling_aet,
                       timeout=timeout, retries=0, total=timeout * 4)


def parse_destination(text: str) -> Destination:
    """``dimse://AE@HOST:PORT`` or ``http(s)://HOST[:PORT]/dicom-web`` → :class:`Destination`."""
    t = str(text).strip()
    if t.startswith(("http://", "https://")):
        return Destination("dicomweb", url=t.rstrip("/"))
    m = re.fullmatch(r"dimse://([^@]{1,16})@([^:/]+):(\d{1,5})", t)
    if m is None:
        raise ConfigError("a destination is dimse://AE@HOST:PORT or http(s)://HOST/dicom-web. "
                          f"Received: send_to={text!r}")
    port = int(m.group(3))
    if not 0 < port < 65536:
        raise ConfigError(f"port must be in 1..65535. Received: send_to={text!r}")
    return Destination("dimse", aet=m.group(1), host=m.group(2), port=port)


@dataclass(frozen=True)
class ServeConfig:
    """Everything a node needs; see ``dicomml serve --help`` for each setting.

    Attributes
    ----------
    run_dir : Path
        The trained run folder whose model predicts.
    ae_title, port, bind
        Our AE title, TCP port and listening address (loopback unless configured).
    spool : Path
        Received instances, work folders and ``queue.sqlite``; never a source folder.
    send_to : tuple of str
        Destinations of the results (``dimse://AE@HOST:PORT``, ``http://HOST/dicom-web``);
        none: results are only written into the spool.
    allowed_aets : tuple of str
        Calling AE titles allowed to associate; empty: any.
    sop_classes : tuple of str
        Accepted Storage SOP Class UIDs; empty: every storage SOP class pynetdicom knows.
    transfer_syntaxes : tuple of str
        Accepted transfer syntax UIDs.
    stable_seconds : float
        A study is complete after this long without a new instance (Orthanc's "stable").
    max_instance_mb, max_spool_gb : float
        Largest dataset accepted; spool size (received, not yet cleaned) beyond which new
        instances are refused with C-STORE status 0xA700 (Refused: Out of Resources).
    max_concurrent : int
        Studies inferred or sent at once.
    max_associations : int
        Associations received at once (more are rejected, transient: "local limit
        exceeded", PS3.8 7.1.1.9).
    retention_hours : float
        Spool and work folders of finished studies are deleted after this long.
    send_timeout_hours : float
        How long a study's results are retried (exponential back-off up to a minute)
        before the study fails.
    poll : str
        A DICOMweb URL to poll for new studies (QIDO-RS, then WADO-RS); empty: none.
    poll_seconds : float
        Time between two polls.
    threshold, aggregation, write_sc
        Passed to :func:`dicomml.evaluate.predict`.
    """

    run_dir: Path
    ae_title: str = "DICOMML"
    port: int = 11112
    bind: str = "127.0.0.1"
    spool: Path | None = None
    send_to: tuple[str, ...] = ()
    allowed_aets: tuple[str, ...] = ()
    sop_classes: tuple[str, ...] = ()
    transfer_syntaxes: tuple[str, ...] = DEFAULT_TRANSFER_SYNTAXES
    stable_seconds: float = 10.0
    max_instance_mb: float = 512.0
    max_spool_gb: float = 20.0
    max_concurrent: int = 2
    max_associations: int = 32
    retention_hours: float = 24.0
    send_timeout_hours: float = 24.0
    poll: str = ""
    poll_seconds: float = 30.0
    threshold: float | None = None
    aggregation: str = "max"
    write_sc: bool = True
    destinations: tuple[Destination, ...] = field(default=(), init=False, repr=False)

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "run_dir", Path(self.run_dir))
        for name in ("send_to", "allowed_aets", "sop_classes", "transfer_syntaxes"):
            v = getattr(self, name)
            set_(self, name, (v,) if isinstance(v, str) else tuple(str(x) for x in v or ()))
        for name, value in (("ae_title", self.ae_title), *(("allowed_aets", a)
                                                           for a in self.allowed_aets)):
            if not _AE.match(str(value)) or not str(value).strip():
                raise ConfigError(f"an AE title has 1 to 16 characters and no backslash "
                                  f"(PS3.5 6.2 AE). Received: {name}={value!r}")
        if not 0 < int(self.port) < 65536:
            raise ConfigError(f"port must be in 1..65535. Received: port={self.port!r}")
        for name in ("stable_seconds", "max_instance_mb", "max_spool_gb", "retention_hours",
                     "send_timeout_hours", "poll_seconds"):
            if float(getattr(self, name)) < 0:
                raise ConfigError(f"{name} must be >= 0. Received: {name}={getattr(self, name)}")
        for name in ("max_concurrent", "max_associations"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1. Received: {name}={getattr(self, name)}")
        set_(self, "spool", Path(self.spool) if self.spool else default_spool(self.ae_title))
        set_(self, "destinations", tuple(parse_destination(d) for d in self.send_to))

    @property
    def queue_path(self) -> Path:
        return Path(self.spool) / "queue.sqlite"

    def with_overrides(self, **values) -> "ServeConfig":
        """A copy with the non-None ``values`` replaced."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})


def load_serve_toml(path: str | os.PathLike, **overrides) -> ServeConfig:
    """Read the ``[serve]`` table of a TOML file; ``overrides`` (non-None) win.

    Relative paths in the file are relative to the file's folder.
    """
    import tomllib

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the serve options: {e}") from e
    table = data.get("serve", data)
    names = {f.name for f in fields(ServeConfig) if f.init}
    for key in table:
        if key not in names:
            raise ConfigError(f"{path}: unknown option {key!r} in [serve]."
                              + did_you_mean(key, names) + f" Known: {', '.join(sorted(names))}")
    values = dict(table)
    for key in ("run_dir", "spool"):
        if key in values:
            values[key] = path.parent / Path(values[key]).expanduser()
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "run_dir" not in values:
        raise ConfigError(f"{path}: no run_dir in [serve] and none given (the run folder "
                          "whose model predicts)")
    return ServeConfig(**values)
