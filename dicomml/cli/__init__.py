"""The ``dicomml`` command: thin verbs over the Python API.

Each verb lives in its own module ``dicomml.cli.<verb>`` that defines

* ``HELP``: one line for the verb table,
* ``add_arguments(parser)``: its options (the parser's epilog should hold an example),
* ``run(args) -> int``: do the work; return 0 (done), 1 (done, but some inputs were
  skipped and listed) or 2 (usage or fatal error).

Heavy imports (TensorFlow) happen inside ``run`` so that ``dicomml --help`` stays fast.
Progress goes to stderr, results to stdout or files. A :class:`~dicomml.errors.DicommlError`
becomes one clear line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from dicomml.errors import DicommlError

__all__ = ["main", "VERBS", "build_parser"]

#: Verbs in the order they appear in ``--help``; a verb whose module is absent is not offered.
VERBS = ("scan", "show", "preview", "preprocess", "train", "evaluate", "predict", "demo",
         "pull", "push", "deid", "serve")

EXIT_OK, EXIT_SKIPPED, EXIT_ERROR = 0, 1, 2


def _verb_modules():
    for verb in VERBS:
        try:
            mod = importlib.import_module(f"dicomml.cli.{verb}")
        except ModuleNotFoundError as e:
            if e.name == f"dicomml.cli.{verb}":
                continue
            raise
        yield verb, mod


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dicomml",
        description="DICOM-native analysis toolkit: index, read, preprocess, train, evaluate, report.",
        epilog="Run 'dicomml VERB --help' for a verb's options and an example.",
    )
    from dicomml import __version__

    parser.add_argument("--version", action="version", version=f"dicomml {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb, mod in _verb_modules():
        p = sub.add_parser(verb, help=mod.HELP.replace("%", "%%"), description=mod.HELP,
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog=getattr(mod, "EXAMPLE", None))
        p.add_argument("--log-level", default="WARNING",
                       choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                       help="logging level on stderr (default: WARNING)")
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dicomml`` console script; returns the exit status."""
    # TensorFlow's C++ INFO/WARNING lines (oneDNN, CPU features) are noise for a CLI user.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on usage errors, 0 on --help
        return int(e.code or 0)
    if not getattr(args, "verb", None):
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    logging.basicConfig(level=getattr(logging, args.log_level),
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from dicomml.privacy import install

    install()  # every warning and log record is scrubbed of quoted values (PHI)
    try:
        return int(args._run(args))
    except DicommlError as e:
        print(f"dicomml {args.verb}: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except FileNotFoundError as e:
        print(f"dicomml {args.verb}: error: no such file or folder: {e.filename}",
              file=sys.stderr)
        return EXIT_ERROR
    except OSError as e:  # e.g. a read-only or full output folder a verb did not wrap
        where = f" ({e.filename})" if e.filename else ""
        print(f"dicomml {args.verb}: error: {e.strerror or e}{where}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"dicomml {args.verb}: interrupted; run it again to resume", file=sys.stderr)
        return 130
