"""The README tells the truth: its CLI table, its Quick start, its Python example."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.S | re.M)
    assert m, f"README has no '## {title}' section"
    return m.group(1)


def _python_block() -> str:
    blocks = re.findall(r"^```python\n(.*?)^```", README, re.S | re.M)
    assert len(blocks) == 1, "exactly one fenced python block (the API example)"
    return blocks[0]


def _cli_verbs() -> list[tuple[str, str]]:
    """(verb, one-line HELP) in the order of ``dicomml --help``."""
    import importlib

    from dicomml.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return [(verb, importlib.import_module(f"dicomml.cli.{verb}").HELP)
            for verb in sub.choices]


def test_cli_table_equals_dicomml_help():
    rows = re.findall(r"^\| `([a-z-]+)` \| (.*?) \|$", _section("Commands"), re.M)
    expected = _cli_verbs()
    assert rows == expected, "\n".join(
        ["README '## Commands' table must read:"]
        + [f"| `{verb}` | {help_} |" for verb, help_ in expected])


def test_dicomml_help_lists_every_verb_with_its_help(capsys):
    from dicomml.cli import main

    assert main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for verb, help_ in _cli_verbs():
        assert f"{verb} {' '.join(help_.split())}" in text, verb


def test_quick_start_is_one_sh_block_of_two_commands():
    section = _section("Quick start")
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", section, re.S | re.M)
    assert len(blocks) == 1 and blocks[0][0] in ("sh", "bash", "shell"), blocks
    lines = [ln for ln in blocks[0][1].splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")]
    assert len(lines) == 2, lines
    assert "pytest" in lines[1]


def test_python_example_uses_only_exported_names():
    import dicomml

    used = set(re.findall(r"(?<!from )(?<!import )\bdicomml\.([A-Za-z_]\w*)", _python_block()))
    assert used
    missing = sorted(used - set(dicomml.__all__))
    assert not missing, f"add to dicomml._LAZY: {missing}"


def test_import_dicomml_does_not_import_tensorflow():
    code = ("import sys, dicomml\n"
            "names = [n for n in dicomml.__all__ if n not in ('evaluate_run', 'predict')]\n"
            "for n in names: getattr(dicomml, n)\n"
            "import dicomml.demo, dicomml.cli\n"
            "dicomml.cli.build_parser()\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
            "print(bad[:5]); sys.exit(1 if bad else 0)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]


def test_api_names_survive_submodule_imports():
    code = ("import dicomml.evaluate.prediction, dicomml.evaluate.evaluation, dicomml\n"
            "assert callable(dicomml.predict), dicomml.predict\n"
            "assert callable(dicomml.evaluate_run), dicomml.evaluate_run\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["file", "stdin"])
def test_python_example_runs(how, tmp_path):
    """The example saved as a script (no ``__main__`` guard) and fed through stdin, in a
    fresh interpreter, from a folder laid out like the repository."""
    (tmp_path / "sample_dicom").symlink_to(ROOT / "sample_dicom", target_is_directory=True)
    env = dict(os.environ, HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "cache"),
               TMPDIR=str(tmp_path), TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                        os.environ.get("PYTHONPATH")])))
    script = tmp_path / "example.py"
    script.write_text(_python_block(), encoding="utf-8")
    cmd, stdin = ([sys.executable, str(script)], None) if how == "file" else (
        [sys.executable, "-"], _python_block())
    proc = subprocess.run(cmd, input=stdin, cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    # printed once: worker processes did not run the script again
    assert len(re.findall(r"^56 studies, 361 images$", out, re.M)) == 1, out[-2000:]
    assert "(224, 224, 3)" in out
    assert re.search(r"^study AUC \{'value': (0\.\d+|1\.0), 'ci95': \[", out, re.M), out[-2000:]
    assert re.search(r"^(haemorrhage|normal) (present|absent) \d\.\d+$", out, re.M), out[-2000:]
    results = tmp_path / "work" / "results"
    assert (results / "predictions.csv").is_file()
    import pandas as pd

    probs = pd.read_csv(results / "predictions.csv").filter(like="prob_")
    assert len(probs) and probs.notna().all().all(), "no prediction silently NaN"
    assert len(list(results.glob("SR_*.dcm"))) == 1
    assert (tmp_path / "work" / "run" / "metrics.json").is_file()
