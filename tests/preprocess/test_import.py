"""dicomml.preprocess stays light: importing and using it never imports TensorFlow."""

from __future__ import annotations

import subprocess
import sys


def test_preprocess_does_not_import_tensorflow():
    code = ("import sys, numpy as np\n"
            "import dicomml.preprocess as p\n"
            "p.to_tensor(np.zeros((8, 8), np.float32), windows='brain', size=4)\n"
            "import dicomml.cli.preview\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'keras', 'torch'))\n"
            "print(bad)\n"
            "sys.exit(1 if bad else 0)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
