"""The ``dicomml`` command: thin verbs over the Python API.

Each verb lives in its own module ``dicomml.cli.<verb>`` that defines

* ``HELP``: one line for the verb table,
* ``add_arguments(parser)``: its options (the parser's epilog should hold an example),
* ``run(args) -> int``: do the work; return 0 (done), 1 (done, but some inputs were
  skipped and listed, or there was nothing to do) or 2 (usage or fatal error).

A verb module imports only the standard library at its top level; its options are added
only for the verb being run (``dicomml --help`` adds none), so that ``--help`` never loads
pydicom or TensorFlow. Progress goes to stderr, results to stdout or files. A
:class:`~dicomml.errors.DicommlError`, a usage error or an unwritable output becomes one
line on stderr naming the file or option and what to do, and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from dicomml.errors import DicommlError, did_you_mean

__all__ = ["main", "VERBS", "build_parser", "LOG_LEVELS"]

#: Verbs in the order they appear in ``--help``; a verb whose module is absent is not offered.
VERBS = ("scan", "series", "show", "preview", "preprocess", "train", "evaluate", "predict",
         "report", "demo", "pull", "push", "deid", "serve")

EXIT_OK, EXIT_SKIPPED, EXIT_ERROR = 0, 1, 2
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class UsageError(Exception):
    """A command-line usage error (exit status 2), raised instead of argparse's exit."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and a did-you-mean for unknown options and verbs."""

    def error(self, message: str):
        if message.startswith("unrecognized arguments:"):
            known = [s for a in self._actions for s in a.option_strings
                     if a.help is not argparse.SUPPRESS]
            words = message.split(":", 1)[1].split()
            hint = did_you_mean(words[0].split("=")[0], known) if words else ""
            message += "." + hint
        elif "invalid choice:" in message and "argument VERB" in message:
            word = message.split("invalid choice:", 1)[1].split("(")[0].strip(" '")
            message = f"unknown verb {word!r}.{did_you_mean(word, VERBS)}"
        end = "" if message.rstrip().endswith((".", "?")) else "."
        raise UsageError(f"{self.prog}: error: {message}{end} See '{self.prog} --help'.")


def _verb_module(verb: str):
    try:
        return importlib.import_module(f"dicomml.cli.{verb}")
    except ModuleNotFoundError as e:
        if e.name == f"dicomml.cli.{verb}":
            return None
        raise


def _verb_modules():
    for verb in VERBS:
        mod = _verb_module(verb)
        if mod is not None:
            yield verb, mod


def _log_level(value: str) -> str:
    v = str(value).upper()
    if v not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"invalid level {value!r}: use one of {', '.join(LOG_LEVELS)}."
            + did_you_mean(v, LOG_LEVELS))
    return v


def build_parser(verb: str | None = "*") -> argparse.ArgumentParser:
    """The ``dicomml`` parser; the options of ``verb`` only (``"*"``: all, None: none)."""
    parser = _Parser(
        prog="dicomml",
        description="DICOM-native analysis toolkit: index, read, preprocess, train, evaluate, report.",
        epilog="Run 'dicomml VERB --help' for a verb's options and an example.",
    )
    from dicomml import __version__

    parser.add_argument("--version", action="version", version=f"dicomml {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    for name, mod in _verb_modules():
        p = sub.add_parser(name, help=mod.HELP.replace("%", "%%"), description=mod.HELP,
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog=getattr(mod, "EXAMPLE", None))
        if verb == "*" or verb == name:
            p.add_argument("--log-level", default="WARNING", type=_log_level,
                           metavar="LEVEL",
                           help="logging level on stderr: DEBUG, INFO, WARNING (default) or "
                                "ERROR, in any case")
            mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _subparser(parser: argparse.ArgumentParser, verb: str | None) -> argparse.ArgumentParser:
    """The parser of ``verb`` (for its options in a did-you-mean), else ``parser``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and verb in action.choices:
            return action.choices[verb]
    return parser


def _requested_verb(argv: list[str]) -> str | None:
    for a in argv:
        if not a.startswith("-"):
            return a
    return None


def _quiet_libraries() -> None:
    """TensorFlow's C++ INFO/WARNING lines (CPU features) are noise for a CLI user."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dicomml`` console script; returns the exit status."""
    _quiet_libraries()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_requested_verb(argv))
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            _subparser(parser, args.verb).error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as e:  # --help, --version
        return int(e.code or 0)
    except UsageError as e:
        print(e, file=sys.stderr)
        return EXIT_ERROR
    if not getattr(args, "verb", None):
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    logging.basicConfig(level=getattr(logging, args.log_level),
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from dicomml.privacy import install

    install()  # every warning and log record is scrubbed of quoted values (PHI)
    if args.log_level in ("WARNING", "ERROR"):
        from dicomml.cli._quiet import quiet_tensorflow_import

        quiet_tensorflow_import()
    try:
        return int(args._run(args))
    except DicommlError as e:
        print(f"dicomml {args.verb}: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except FileNotFoundError as e:
        print(f"dicomml {args.verb}: error: no such file or folder: {e.filename}",
              file=sys.stderr)
        return EXIT_ERROR
    except IsADirectoryError as e:
        print(f"dicomml {args.verb}: error: {e.filename} is a folder; give a file",
              file=sys.stderr)
        return EXIT_ERROR
    except PermissionError as e:
        print(f"dicomml {args.verb}: error: permission denied: {e.filename}; choose a "
              "writable location", file=sys.stderr)
        return EXIT_ERROR
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        print(f"dicomml {args.verb}: error:{where} {e.strerror or e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"dicomml {args.verb}: interrupted; run it again to resume", file=sys.stderr)
        return 130
