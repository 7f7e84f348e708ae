"""``dicomml preview`` decodes in a child process: a decoder that aborts on a corrupt
stream costs one line and exit status 2, never a SIGABRT of the command (GDCM, the plugin
``DICOMML_DECODERS=gdcm`` chooses, aborts on ``tests/hardening/_crashers.py``'s file)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hardening._crashers import crashes_default_chain, make_crasher

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_preview_survives_a_decoder_that_aborts(tmp_path):
    path = make_crasher(tmp_path)
    assert crashes_default_chain(path) is not None  # the file really kills GDCM
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2",
               DICOMML_DECODERS="gdcm")
    proc = subprocess.run([sys.executable, "-m", "dicomml.cli", "preview", str(path), "-o",
                           str(tmp_path / "p.png")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert str(path) in proc.stderr and "crash" in proc.stderr
    assert not (tmp_path / "p.png").exists()
