"""Package-level contracts: light imports, the layering of DESIGN.md, the public names."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import dicomml

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "dicomml"

#: Sub-packages that must never import TensorFlow (DESIGN.md, STYLE.md habit 1).
TF_FREE = ["dicomml", "dicomml.io", "dicomml.preprocess", "dicomml.report", "dicomml.pacs",
           "dicomml.parallel", "dicomml.testing", "dicomml.cli"]


def _submodules(package: str) -> list[str]:
    base = ROOT.joinpath(*package.split("."))
    if package == "dicomml":
        return ["dicomml"]
    mods = []
    for py in sorted(base.rglob("*.py")):
        rel = py.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts[-1] == "__main__":
            continue
        mods.append(".".join(parts))
    return mods


@pytest.mark.parametrize("package", TF_FREE)
def test_importing_does_not_import_tensorflow(package):
    if package == "dicomml.cli":
        mods = ["dicomml.cli"]  # verb modules import TF lazily inside run()
    else:
        mods = _submodules(package)
    code = ("import sys, importlib\n"
            f"for m in {mods!r}:\n"
            "    importlib.import_module(m)\n"
            "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('tensorflow', 'keras'))\n"
            "print(len(bad), bad[:5])\n"
            "sys.exit(1 if bad else 0)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       timeout=300)
    assert r.returncode == 0, f"{package} imported TensorFlow/Keras: {r.stdout} {r.stderr[-2000:]}"


def test_cli_help_does_not_import_tensorflow():
    code = ("import sys\nfrom dicomml.cli import build_parser\nbuild_parser()\n"
            "sys.exit(1 if 'tensorflow' in sys.modules else 0)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


#: The layering of DESIGN.md: a package may import only the packages listed for it.
ALLOWED = {
    "io": {"io", "parallel"},
    "parallel": {"parallel"},
    "testing": {"testing", "io"},
    "preprocess": {"preprocess", "io"},
    "data": {"data", "io", "preprocess", "parallel"},
    "models": {"models"},
    "train": {"train", "data", "models", "io", "preprocess", "parallel"},
    "evaluate": {"evaluate", "train", "data", "models", "io", "preprocess", "parallel", "report"},
    "report": {"report", "io"},
    "pacs": {"pacs", "io", "parallel", "report", "evaluate"},
}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_down_the_pipeline(package):
    allowed = ALLOWED[package] | {"errors", "_atomic", "_lazy", "__init__", "privacy"}
    offenders = []
    for py in sorted((PKG / package).rglob("*.py")):
        tree = ast.parse(py.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                parts = name.split(".")
                if parts[0] == "dicomml" and len(parts) > 1 and parts[1] not in allowed:
                    offenders.append(f"{py.relative_to(ROOT)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_version_and_lazy_names():
    assert dicomml.__version__
    for name in dicomml.__all__:
        if name == "__version__":
            continue
        assert getattr(dicomml, name) is not None, name


def _lazy_tables():
    import importlib

    for py in sorted(PKG.rglob("__init__.py")):
        name = ".".join(py.relative_to(ROOT).parent.parts)
        mod = importlib.import_module(name)
        table = getattr(mod, "_LAZY", None)
        if table:
            yield name, py.parent, table


def test_lazy_names_are_not_shadowed_by_submodules():
    """A lazily exported function must not share its name with a submodule: importing the
    submodule would bind the module object to the package attribute and hide the function."""
    clashes = []
    for name, folder, table in _lazy_tables():
        for attr in table:
            if (folder / f"{attr}.py").exists() or (folder / attr / "__init__.py").exists():
                clashes.append(f"{name}.{attr}")
    assert not clashes, clashes


def test_lazy_names_point_at_their_defining_module():
    import importlib

    for name, _folder, table in _lazy_tables():
        for attr, module in table.items():
            obj = getattr(importlib.import_module(module), attr)
            assert obj is not None, f"{name}.{attr}"
