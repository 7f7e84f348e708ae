"""``dicomml show`` tries every decoder plugin on a frame: a plugin that aborts (a C
``abort``) or panics (Rust) on a corrupt stream costs a line of the report, never the
process (found by ``bench/bench_fuzz.py`` on 10,000 mutated files)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hardening._crashers import crashes_default_chain, make_crasher
from tests.hardening._panics import make_panicker

REPO = Path(__file__).resolve().parents[2]


def _show(path: Path, tmp_path: Path):
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2", RUST_BACKTRACE="0")
    return subprocess.run([sys.executable, "-m", "dicomml.cli", "show", str(path)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("make", ["crasher", "panicker"])
def test_show_survives_a_decoder_that_kills_its_process(make, tmp_path):
    if make == "crasher":
        path = make_crasher(tmp_path)
        assert crashes_default_chain(path) is not None  # the file really kills a decoder
    else:
        path = make_panicker(tmp_path)
    proc = _show(path, tmp_path)
    assert proc.returncode in (0, 2), proc.stderr[-2000:]
    assert proc.returncode < 128 and "Traceback" not in proc.stderr
    if proc.returncode == 0:
        assert "decod" in proc.stdout  # the decoder line is there, naming what failed
