"""Every verb's error paths: one line on stderr naming the file or option and what to do.

Usage errors and unusable inputs or outputs exit 2 with one line ``dicomml VERB: error:
...``; inputs that hold nothing to do exit 1 with one line. Nothing is written on error.
"""

from __future__ import annotations

import os
import warnings

import pydicom
import pytest

from dicomml.cli import main
from tests.conftest import testdata


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors")
    from dicomml.testing import write_ct_series, write_sr

    ct = write_ct_series(root / "ct", n_slices=2, rows=16, columns=16, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(ct[0], stop_before_pixels=True)
    sr = write_sr(root / "sr" / "report.dcm", [ds], seed=3)
    (root / "empty").mkdir()
    (root / "text.txt").write_text("not DICOM\n")
    (root / "a-folder").mkdir()
    (root / "a-file").write_text("x")
    (root / "run").mkdir()
    (root / "run" / "config.toml").write_text("")
    return {"root": root, "ct": str(ct[0]), "ct_dir": str(root / "ct"), "sr": str(sr),
            "empty": str(root / "empty"), "text": str(root / "text.txt"),
            "folder": str(root / "a-folder"), "file": str(root / "a-file"),
            "run": str(root / "run"), "cr": testdata("RG1_UNCR.dcm")}


@pytest.fixture
def readonly(tmp_path, monkeypatch):
    """A folder this user cannot write (mode 0555). For root, whom permissions do not stop,
    os.access is made to answer for that folder as the kernel does for other users."""
    d = tmp_path / "readonly"
    d.mkdir()
    d.chmod(0o555)
    try:
        (d / "probe").write_text("x")
    except PermissionError:
        pass
    else:
        (d / "probe").unlink()
        real = os.access

        def access(path, mode, *a, **k):
            if os.path.abspath(os.fspath(path)) == str(d) and mode & os.W_OK:
                return False
            return real(path, mode, *a, **k)

        monkeypatch.setattr(os, "access", access)
    yield str(d)
    d.chmod(0o755)


def _f(files, tmp_path, key):
    return str(tmp_path / key[4:]) if key.startswith("tmp:") else files[key]


# (id, argv with {placeholders}, exit status, words the one stderr line must contain)
CASES = [
    ("preview-frame-out-of-range", ["preview", "{ct}", "--frame", "3", "-o", "{tmp:p.png}"],
     2, ["--frame 3", "out of range", "1 frame"]),
    ("preview-folder", ["preview", "{ct_dir}", "-o", "{tmp:p.png}"], 2,
     ["{ct_dir}", "is a folder", "dicomml series"]),
    ("preview-not-dicom", ["preview", "{text}", "-o", "{tmp:p.png}"], 2, ["{text}", "not DICOM"]),
    ("preview-no-pixels", ["preview", "{sr}", "-o", "{tmp:p.png}"], 2, ["{sr}", "no image"]),
    ("preview-output-is-folder", ["preview", "{ct}", "-o", "{folder}"], 2, ["-o", "{folder}"]),
    ("preview-wrong-extension", ["preview", "{ct}", "-o", "{tmp:p.gif}"], 2,
     ["p.gif", ".png", ".jpg"]),
    ("preview-output-under-a-file", ["preview", "{ct}", "-o", "{file}/x.png"], 2,
     ["{file}", "not a folder"]),
    ("show-folder", ["show", "{ct_dir}"], 2, ["{ct_dir}", "--db"]),
    ("show-not-dicom", ["show", "{text}"], 2, ["{text}", "not DICOM"]),
    ("scan-empty", ["scan", "{empty}", "--db", "{tmp:i.sqlite}", "--no-progress"], 1,
     ["{empty}", "nothing indexed"]),
    ("series-empty", ["series", "{empty}", "--db", "{tmp:i.sqlite}", "--no-progress"], 1,
     ["no image series"]),
    ("series-not-an-index", ["series", "--db", "{text}"], 2, ["{text}", "Index"]),
    ("series-missing-db", ["series", "--db", "{tmp:none.sqlite}"], 2, ["none.sqlite"]),
    ("series-nothing-given", ["series"], 2, ["--db"]),
    ("preprocess-empty", ["preprocess", "{empty}", "--cache", "{tmp:cache}", "--db",
                          "{tmp:i.sqlite}", "--no-progress", "--workers", "0"], 1,
     ["{empty}", "nothing to cache"]),
    ("preprocess-cache-is-a-file", ["preprocess", "{ct_dir}", "--cache", "{file}", "--db",
                                    "{tmp:i.sqlite}", "--quiet", "--workers", "0"], 2,
     ["--cache", "{file}"]),
    ("train-config-is-folder", ["train", "--config", "{folder}", "--out", "{tmp:run}"], 2,
     ["{folder}", "folder"]),
    ("train-out-is-a-file", ["train", "--config", "{text}", "--out", "{file}"], 2,
     ["--out", "{file}", "not a folder"]),
    ("predict-out-is-a-file", ["predict", "{run}", "{ct_dir}", "--out", "{file}"], 2,
     ["--out", "{file}"]),
    ("report-not-a-run", ["report", "{folder}"], 2, ["{folder}", "not a run folder"]),
    ("report-wrong-extension", ["report", "{run}", "-o", "{tmp:r.pdf}"], 2, ["r.pdf", ".html"]),
    ("demo-out-is-a-file", ["demo", "--out", "{file}", "--no-progress"], 2, ["{file}"]),
    ("option-typo", ["scan", "{ct_dir}", "--no-prgress"], 2,
     ["--no-prgress", "Did you mean '--no-progress'"]),
    ("verb-typo", ["scna", "{ct_dir}"], 2, ["'scna'", "Did you mean 'scan'"]),
    ("log-level-typo", ["show", "{ct}", "--log-level", "inf"], 2, ["--log-level", "'INFO'"]),
    ("choice-typo", ["preview", "{ct}", "--resize", "crp", "-o", "{tmp:p.png}"], 2,
     ["--resize", "crp"]),
]


@pytest.mark.parametrize("argv, status, words", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_error_path_is_one_line(argv, status, words, files, tmp_path, capsys):
    def fill(s):
        for k in list(files) + [w for w in s.split("{")[1:]]:
            k = k.split("}")[0]
            if "{" + k + "}" in s:
                s = s.replace("{" + k + "}", _f(files, tmp_path, k))
        return s

    before = set(tmp_path.rglob("*"))
    got = main([fill(a) for a in argv])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert got == status, err
    assert len(err) == 1, err
    if status == 2:
        assert err[0].startswith(f"dicomml {argv[0]}: error:") or err[0].startswith(
            "dicomml: error:"), err[0]
    for w in words:
        assert fill(w) in err[0], (w, err[0])
    assert "Traceback" not in err[0]
    if status == 2:
        made = {p for p in set(tmp_path.rglob("*")) - before}
        assert not {p for p in made if p.suffix in (".png", ".gif", ".html", ".pdf")}, made


@pytest.mark.parametrize("verb, argv", [
    ("preview", ["{ct}", "-o", "{ro}/p.png"]),
    ("report", ["{run}", "-o", "{ro}/r.html"]),
    ("train", ["--config", "{text}", "--out", "{ro}/run"]),
    ("predict", ["{run}", "{ct_dir}", "--out", "{ro}/out"]),
    ("preprocess", ["{ct_dir}", "--cache", "{ro}/cache", "--db", "{tmp}/i.sqlite",
                    "--no-progress", "--workers", "0"]),
])
def test_read_only_output_is_one_line(verb, argv, files, readonly, tmp_path, capsys):
    args = [a.replace("{ro}", readonly).replace("{tmp}", str(tmp_path)) for a in argv]
    args = [files[a[1:-1]] if a.startswith("{") and a.endswith("}") else a for a in args]
    assert main([verb, *args]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith(f"dicomml {verb}: error:"), err
    assert readonly in err[0] and "not writable" in err[0]
    assert os.listdir(readonly) == []


@pytest.mark.parametrize("spelling", ["info", "INFO", "Info", "debug", "warning"])
def test_log_level_in_any_case(spelling, files, capsys):
    assert main(["show", files["ct"], "--log-level", spelling]) == 0
    assert "SOP class" in capsys.readouterr().out


def test_quiet_is_a_hidden_alias_of_no_progress(capsys):
    from dicomml.cli import build_parser

    for verb in ("train", "preprocess", "series"):
        parser = build_parser(verb)
        sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        p = sub.choices[verb]
        assert "--no-progress" in p.format_help() and "--quiet" not in p.format_help()
    every = build_parser()
    sub = next(a for a in every._actions if a.__class__.__name__ == "_SubParsersAction")
    for verb, p in sub.choices.items():
        text = p.format_help()
        assert "--quiet" not in text, verb
        opts = {s for a in p._actions for s in a.option_strings}
        if verb in ("scan", "series", "preprocess", "train", "evaluate", "predict", "demo",
                    "pull", "push"):
            assert "--no-progress" in opts, verb  # the one spelling of "no progress bar"
