"""Quiet by default: TensorFlow's start-up lines do not reach a CLI user's stderr."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import tensorflow  # noqa: F401 - a hard dependency: a broken install fails

CODE = ("import sys\n"
        "if sys.argv[1] == 'quiet':\n"
        "    from dicomml.cli._quiet import quiet_tensorflow_import\n"
        "    quiet_tensorflow_import()\n"
        "import tensorflow as tf\n"
        "print(float(tf.constant(2.0) * 2))\n"
        "print('after import', file=sys.stderr)\n")


def _run(mode: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-c", CODE, mode], capture_output=True, text=True,
                          timeout=300, env=env, check=True)


@pytest.mark.slow
def test_tensorflow_import_lines_are_silenced():
    loud = _run("loud")
    if "oneDNN" not in loud.stderr and "absl" not in loud.stderr:
        pytest.skip("this TensorFlow build prints nothing at import")
    quiet = _run("quiet")
    assert quiet.stdout.strip() == "4.0"  # TensorFlow works
    assert "oneDNN" not in quiet.stderr and "absl" not in quiet.stderr, quiet.stderr
    assert "after import" in quiet.stderr  # stderr itself is back after the import
