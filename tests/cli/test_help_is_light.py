"""``dicomml --help`` loads no heavy library (so it answers in well under half a second).

Measured by what gets imported, not by timing: ``dicomml --help`` imports neither pydicom,
NumPy nor TensorFlow, and no ``dicomml VERB --help`` imports TensorFlow or Keras.
"""

from __future__ import annotations

import subprocess
import sys

from dicomml.cli import VERBS

HEAVY = ("pydicom", "numpy", "pandas", "tensorflow", "keras", "matplotlib", "PIL", "highdicom",
         "SimpleITK", "pynetdicom")


def _loaded(argv: list[str]) -> set[str]:
    code = ("import sys\nfrom dicomml.cli import main\n"
            f"rc = main({argv!r})\n"
            "print(rc)\nprint(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    rc, mods = out.stdout.strip().splitlines()[-2:]
    assert rc == "0", out.stdout[-2000:]
    return set(mods.split())


def test_top_level_help_imports_no_heavy_library():
    assert not _loaded(["--help"]) & set(HEAVY)


def test_version_imports_no_heavy_library():
    assert not _loaded(["--version"]) & set(HEAVY)


def test_no_verb_help_imports_tensorflow():
    code = ("import sys, contextlib, io\nfrom dicomml.cli import main\n"
            f"for verb in {list(VERBS)!r}:\n"
            "    with contextlib.redirect_stdout(io.StringIO()):\n"
            "        assert main([verb, '--help']) == 0, verb\n"
            "    bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')]\n"
            "    assert not bad, (verb, bad[:3])\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
