"""Shared fixtures.

External tools (dcmtk, dicom3tools, Orthanc) are required in CI: when the environment
variable ``CI`` is set, a missing tool fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _system_path() -> str:
    """``PATH`` without this interpreter's own scripts folder.

    pynetdicom installs Python ``storescu``/``findscu``/``getscu``/``movescu``/``echoscu``
    scripts into the virtual environment's ``bin``; with the venv activated (as ``.ci/run``
    does) they shadow dcmtk's executables of the same names, and they differ from them in
    messages and exit codes. External tools are system tools, so the venv's folder is left out.
    """
    own = {Path(sys.prefix, "bin").resolve(), Path(sys.executable).parent.resolve()}
    dirs = [d for d in os.environ.get("PATH", os.defpath).split(os.pathsep)
            if d and Path(d).resolve() not in own]
    return os.pathsep.join(dirs)


def require_tool(name: str) -> str:
    """Return the path of external executable ``name`` (never a script of this venv);
    skip locally, fail in CI when it is missing."""
    path = shutil.which(name, path=_system_path())
    if path is None:
        msg = (f"external tool {name!r} is not installed (Debian: dcmtk, dicom3tools, orthanc); "
               "run .ci/run or apt-get install it")
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def testdata(name: str) -> str:
    """Path of a real sample file shipped with pydicom or pydicom-data (never downloads)."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    if path is None:
        msg = f"pydicom test file {name!r} not found (install pydicom-data)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return str(path)


testdata.__test__ = False  # imported into test modules: not a test itself
require_tool.__test__ = False


@pytest.fixture
def tool():
    return require_tool
