"""pydicom's ERROR traceback for a plugin that fails before a later one decodes is not shown."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import testdata

CODE = """
import logging, sys, warnings
logging.basicConfig(level=logging.WARNING)
warnings.simplefilter("ignore")
path = sys.argv[2]
if sys.argv[1] == "dicomml":
    from dicomml.io import read_image
    print(read_image(path).pixels.shape)
else:
    import pydicom
    print(pydicom.dcmread(path).pixel_array.shape)
"""


def _run(mode: str, path: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CODE, mode, path], capture_output=True,
                          text=True, timeout=120, check=True)


def test_plugin_fallback_traceback_is_silenced():
    from dicomml.io.codecs import plugins_that_decode

    path = testdata("JPGExtended.dcm")  # 12-bit JPEG: gdcm and Pillow fail, pylibjpeg decodes
    ok, failed = plugins_that_decode(path)
    assert ok and failed
    plain = _run("pydicom", path)
    quiet = _run("dicomml", path)
    assert quiet.stdout.split() and "Traceback" not in quiet.stderr, quiet.stderr[-2000:]
    assert "ERROR" not in quiet.stderr
    if "Traceback" in plain.stderr:  # pydicom alone does show it: the filter is what hides it
        assert len(quiet.stderr) < len(plain.stderr)
