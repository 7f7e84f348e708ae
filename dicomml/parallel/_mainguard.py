"""Worker processes never run a user's script again, guarded by ``__main__`` or not.

With the "forkserver" and "spawn" start methods, Python re-imports the main module in every
new process (as ``__mp_main__``) so that functions defined there can be unpickled. A script
that calls dicomml at its top level without ``if __name__ == "__main__":`` would then run
again, whole, in every worker (scans, training, printing), and a script fed through stdin
cannot be re-imported at all, so its workers die. dicomml's worker functions all live in
importable dicomml modules, so its workers do not need the main module: when the caller is
such a script, :func:`main_hidden_if_unguarded` hides the main module from multiprocessing
while a worker starts (its ``__file__`` and ``__spec__``), and says so once in the log.
Guarded scripts, ``python -c``, notebooks and ``python -m dicomml`` are left as they are.
"""

from __future__ import annotations

import ast
import contextlib
import logging
import os
import sys

__all__ = ["unguarded_main", "main_hidden_if_unguarded"]

log = logging.getLogger("dicomml.parallel")
_told: set[str] = set()


def _is_main_test(node: ast.expr) -> bool:
    if not (isinstance(node, ast.Compare) and len(node.ops) == 1
            and isinstance(node.ops[0], ast.Eq)):
        return False
    sides = [node.left, node.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    consts = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return bool(names and consts)


def _guarded_lines(source: str) -> list[tuple[int, int]]:
    """Line ranges of the module-level ``if __name__ == "__main__":`` blocks."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return [(n.body[0].lineno, n.end_lineno or n.body[-1].lineno) for n in tree.body
            if isinstance(n, ast.If) and _is_main_test(n.test)]


def _main_source(main) -> tuple[str | None, str | None]:
    spec = getattr(main, "__spec__", None)
    path = getattr(spec, "origin", None) or getattr(main, "__file__", None)
    if not path:
        return None, None
    try:
        with open(path, encoding="utf-8") as f:
            return path, f.read()
    except (OSError, UnicodeDecodeError):
        return path, None


def unguarded_main() -> str | None:
    """Why a new worker process would run the main script again (or fail to), else None."""
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__name__", "") != "__main__":
        return None  # a worker itself, or an embedded interpreter
    spec = getattr(main, "__spec__", None)
    if spec is None and not getattr(main, "__file__", None):
        return None  # python -c, the REPL, notebooks: nothing is re-imported
    if spec is not None and str(spec.name).startswith("dicomml."):
        return None  # python -m dicomml.cli: guarded
    path, source = _main_source(main)
    if source is None:
        return (f"the main script {path or '?'} cannot be read again (fed through stdin?), "
                "so worker processes could not import it")
    frame = sys._getframe(1)
    line = None
    while frame is not None:
        if frame.f_globals is main.__dict__ and frame.f_code.co_name == "<module>":
            line = frame.f_lineno
        frame = frame.f_back
    if line is None:
        return None  # not called from the script's top level (a thread, a callback)
    if any(lo <= line <= hi for lo, hi in _guarded_lines(source)):
        return None
    return (f"{os.path.basename(path)} line {line} runs at the top level of the main script, "
            'outside `if __name__ == "__main__":`, so each worker process would run the '
            "whole script again")


@contextlib.contextmanager
def main_hidden_if_unguarded():
    """Hide an unguarded main script from multiprocessing while a worker starts."""
    reason = unguarded_main()
    main = sys.modules.get("__main__")
    if reason is None or main is None:
        yield
        return
    if reason not in _told:
        _told.add(reason)
        log.info("%s; dicomml starts its workers without importing the script (functions "
                 "defined in the script cannot be sent to them). To silence this, put the "
                 'script\'s code under `if __name__ == "__main__":`.', reason)
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.update(saved)
        if "__spec__" not in saved:
            main.__dict__.pop("__spec__", None)
