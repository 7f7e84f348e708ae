"""The tutorial notebooks: committed without outputs, and each runs top to bottom."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NAMES = ["01_explore.ipynb", "02_preprocessing.ipynb", "03_train_evaluate.ipynb"]


def _generator():
    spec = importlib.util.spec_from_file_location("make_notebooks",
                                                  NOTEBOOKS / "make_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs(name):
    nb = json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, "a notebook with code"
    for cell in code:
        assert cell["outputs"] == [], cell["source"][:80]
        assert cell["execution_count"] is None, cell["source"][:80]
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert any(c["cell_type"] == "markdown" for c in nb["cells"])


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_equals_the_generator(name):
    assert (NOTEBOOKS / name).read_text(encoding="utf-8") == _generator().text(name), \
        "run 'python notebooks/make_notebooks.py' and commit the result"


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """A ``python3`` kernelspec that runs this interpreter, with dicomml importable."""
    from ipykernel.kernelspec import install

    prefix = tmp_path / "jupyter"
    install(prefix=str(prefix), kernel_name="python3")
    spec = json.loads((prefix / "share/jupyter/kernels/python3/kernel.json").read_text())
    assert spec["argv"][0] == sys.executable
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))  # the notebooks' WORK folder
    work = tmp_path / "cwd"
    work.mkdir()
    return work


def _run(name: str, cwd: Path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(nb, kernel_name="python3", timeout=600,
                            resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return nb


def _outputs(nb, kind: str):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if o.output_type == kind]


def _sample_untouched():
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "sample_dicom").rglob("*"))


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom(name, kernel_env):
    before = _sample_untouched()
    nb = _run(name, kernel_env)
    assert not _outputs(nb, "error")
    figures = [o for o in _outputs(nb, "display_data") if "image/png" in o.get("data", {})]
    assert figures, "the notebook shows pictures"
    assert _sample_untouched() == before, "nothing written into sample_dicom/"
    assert list(kernel_env.iterdir()) == [], "outputs go to a temporary folder"
    assert any(p.name.startswith("dicomml-notebook-")
               for p in (kernel_env.parent / "tmp").iterdir())
    text = "".join(o.get("text", "") for o in _outputs(nb, "stream"))
    if name == "01_explore.ipynb":
        assert "sample export:" in text and "shape (slice, row, column)" in text
    if name == "03_train_evaluate.ipynb":
        assert "study_max" in text and "roc_auc" in text
        assert "Measurement Report" in text or "Imaging Measurement Report" in text
