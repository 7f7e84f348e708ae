"""``dicomml serve RUN --ae TITLE --port N --send-to DEST``: run dicomml as a DICOM node."""

from __future__ import annotations

import argparse
import json
import sys

HELP = "run as a DICOM node: receive studies (C-STORE), predict each, store the SR back"
EXAMPLE = """example:
  dicomml serve runs/ich-001 --ae DICOMML --port 11112 --spool /var/lib/dicomml \\
      --allow-aet ORTHANC --send-to dimse://ORTHANC@pacs.local:4242
  dicomml serve --config serve.toml
  dicomml serve --status --spool /var/lib/dicomml
  dicomml serve --trigger 1.2.3.4 --spool /var/lib/dicomml

A study is complete after --stable-seconds without a new instance (or --trigger); its
eligible series are predicted and the SR (and Grad-CAM images) stored to every --send-to,
retried with back-off until it succeeds. The queue (SPOOL/queue.sqlite) survives crashes:
a restart finishes every study exactly once. SIGTERM stops receiving and finishes the work
in progress. Exit status: 0 stopped cleanly, 2 error."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", nargs="?", default=None,
                        help="the run folder whose model predicts")
    parser.add_argument("--config", metavar="TOML", help="serve.toml with a [serve] table; "
                        "command-line options win")
    parser.add_argument("--ae", dest="ae_title", metavar="TITLE",
                        help="our AE title (default: DICOMML)")
    parser.add_argument("--port", type=int, metavar="N", help="DICOM port (default: 11112)")
    parser.add_argument("--bind", metavar="ADDR",
                        help="listening address (default: 127.0.0.1, this machine only)")
    parser.add_argument("--spool", metavar="DIR", help="received studies, results and "
                        "queue.sqlite (default: ~/.cache/dicomml/serve/<AE>)")
    parser.add_argument("--send-to", dest="send_to", metavar="DEST", action="append",
                        help="dimse://AE@HOST:PORT or http://HOST/dicom-web (repeatable)")
    parser.add_argument("--allow-aet", dest="allowed_aets", metavar="AET", action="append",
                        help="calling AE title allowed to send (repeatable; default: any)")
    parser.add_argument("--sop-class", dest="sop_classes", metavar="UID", action="append",
                        help="accepted Storage SOP Class UID (repeatable; default: all)")
    parser.add_argument("--transfer-syntax", dest="transfer_syntaxes", metavar="UID",
                        action="append", help="accepted transfer syntax UID (repeatable; "
                        "default: uncompressed, RLE, JPEG, JPEG-LS, JPEG 2000)")
    parser.add_argument("--poll", metavar="URL", help="also poll this DICOMweb PACS for new "
                        "studies (QIDO-RS) and retrieve them (WADO-RS)")
    parser.add_argument("--poll-seconds", type=float, metavar="S",
                        help="time between two polls (default: 30)")
    parser.add_argument("--stable-seconds", type=float, metavar="S",
                        help="quiet period after which a study is complete (default: 10)")
    parser.add_argument("--max-instance-mb", type=float, metavar="MB",
                        help="largest dataset accepted (default: 512)")
    parser.add_argument("--max-spool-gb", type=float, metavar="GB",
                        help="spool size beyond which instances are refused (default: 20)")
    parser.add_argument("--max-concurrent", type=int, metavar="N",
                        help="studies inferred or sent at once (default: 2)")
    parser.add_argument("--max-associations", type=int, metavar="N",
                        help="associations received at once (default: 32)")
    parser.add_argument("--retention-hours", type=float, metavar="H",
                        help="delete finished studies from the spool after H hours "
                             "(default: 24)")
    parser.add_argument("--send-timeout-hours", type=float, metavar="H",
                        help="retry sending a study's results for H hours (default: 24)")
    parser.add_argument("--threshold", type=float, metavar="T",
                        help="decision threshold (default: the run's, else 0.5)")
    parser.add_argument("--no-sc", dest="write_sc", action="store_false", default=None,
                        help="do not make Grad-CAM heatmap images")
    parser.add_argument("--status", action="store_true",
                        help="print the node's status (JSON) from its --spool and exit")
    parser.add_argument("--trigger", metavar="STUDY_UID",
                        help="mark a receiving study complete now and exit")


_OPTIONS = ("run_dir", "ae_title", "port", "bind", "spool", "send_to", "allowed_aets",
            "sop_classes", "transfer_syntaxes", "stable_seconds", "max_instance_mb",
            "max_spool_gb", "max_concurrent", "max_associations", "retention_hours",
            "send_timeout_hours", "poll", "poll_seconds", "threshold", "write_sc")


def config_from_args(args):
    """The :class:`~dicomml.serve.config.ServeConfig` of the options (and ``--config``)."""
    from dicomml.errors import ConfigError
    from dicomml.serve.config import ServeConfig, load_serve_toml

    values = {k: getattr(args, k, None) for k in _OPTIONS}
    if args.config:
        return load_serve_toml(args.config, **values)
    if values["run_dir"] is None:
        raise ConfigError("give RUN_DIR (the run folder whose model predicts) or --config")
    return ServeConfig(**{k: v for k, v in values.items() if v is not None})


def _spool(args):
    from dicomml.serve.config import default_spool, load_serve_toml

    if args.spool:
        return args.spool
    if args.config:
        return load_serve_toml(args.config, run_dir=".").spool
    return default_spool(args.ae_title or "DICOMML")


def run(args) -> int:
    if args.status:
        from dicomml.serve.monitor import status

        print(json.dumps(status(_spool(args)), indent=1))
        return 0
    if args.trigger:
        from dicomml.serve.monitor import trigger

        if not trigger(_spool(args), args.trigger):
            print("dicomml serve: that study is not receiving (unknown, or already "
                  "complete)", file=sys.stderr)
            return 1
        return 0
    from dicomml.serve.node import serve

    serve(config_from_args(args))
    return 0
