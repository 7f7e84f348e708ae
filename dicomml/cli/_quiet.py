"""Quiet by default: TensorFlow's C++ start-up lines never reach a CLI user's terminal.

TensorFlow writes "oneDNN custom operations are on" and "All log messages before
absl::InitializeLog() is called are written to STDERR" straight to file descriptor 2 while
it is imported, whatever ``TF_CPP_MIN_LOG_LEVEL`` says. :func:`quiet_tensorflow_import`
installs an import hook that points descriptor 2 at the null device only while the
``tensorflow`` package itself executes (Python errors still propagate as exceptions).
TensorFlow is still imported only by the verbs that need it.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import sys

__all__ = ["quiet_tensorflow_import", "silenced_fd2"]


@contextlib.contextmanager
def silenced_fd2():
    """Point file descriptor 2 (C-level stderr) at the null device for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        with silenced_fd2():
            self._loader.exec_module(module)

    def __getattr__(self, name):  # is_package, get_resource_reader, ...: the real loader's
        return getattr(self._loader, name)


class _QuietFinder(importlib.abc.MetaPathFinder):
    names = ("tensorflow",)

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def quiet_tensorflow_import() -> None:
    """Install the hook (once); a no-op when TensorFlow is already imported."""
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietFinder())
