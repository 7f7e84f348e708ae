"""``dicomml report RUN``: one self-contained page, checked in headless Chromium.

The run folder is a real one (tests/evaluate/runfolder.py: synthetic head CTs scanned,
labelled, split by patient, a small Keras model) evaluated by ``evaluate_run``. The page
is opened in Debian's ``chromium --headless``: any console message (a JavaScript error, or
the page's own report of an image that failed to decode) fails the test, the DOM after
load must count every image as decoded, and the screenshot must not be blank.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dicomml.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory):
    from dicomml.evaluate.evaluation import evaluate_run
    from tests.evaluate.runfolder import make_run

    run = make_run(tmp_path_factory.mktemp("report"), n_patients=12)
    evaluate_run(run, n_resamples=50, workers=0, progress=False)
    return run


def _chromium(tool, page: Path, shot: Path, *args: str) -> subprocess.CompletedProcess:
    exe = tool("chromium")
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000",
           f"--user-data-dir={shot.parent / 'chromium-profile'}", *args, page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def test_report_writes_one_self_contained_page(evaluated_run, capsys):
    assert main(["report", str(evaluated_run), "--gallery", "2"]) == 0
    page = evaluated_run / "report.html"
    assert capsys.readouterr().out.strip() == str(page)
    text = page.read_text(encoding="utf-8")
    # no network and no other file: every image is embedded, no external reference at all
    srcs = re.findall(r'<img src="([^"]*)"', text)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r'(?:src|href)="(?!data:)', text)
    assert "http://" not in text and "https://" not in text
    for section in ("Data", "Configuration", "Training curves", "Metrics", "Gallery"):
        assert f">{section}</h2>" in text
    # the data summary matches the run's manifest
    import pandas as pd

    man = pd.read_csv(evaluated_run / "manifest.csv", dtype=str)
    n_all = [man["patient_key"].nunique(), man["study_instance_uid"].nunique(),
             man["series_instance_uid"].nunique(), len(man)]
    assert "<tr><td class=l>all</td>" + "".join(f"<td>{n}</td>" for n in n_all) in text
    # the operating point of metrics.json is on the page
    import json

    metrics = json.loads((evaluated_run / "metrics.json").read_text())
    assert f"{metrics['image']['threshold']['value']:.4g}" in text
    # privacy: not even the pseudonymous patient key
    assert not any(k in text for k in man["patient_key"].unique())
    # the gallery shows Grad-CAM images (model input + heatmap per card)
    assert text.count('alt="Grad-CAM ') >= 1
    assert text.count('alt="Grad-CAM ') == text.count('alt="input ')


@pytest.mark.tool
def test_report_renders_in_chromium_without_console_errors(evaluated_run, tool, tmp_path):
    page = evaluated_run / "report.html"
    if not page.is_file():
        assert main(["report", str(evaluated_run), "--gallery", "2"]) == 0
    shot = tmp_path / "report.png"
    proc = _chromium(tool, page, shot, "--window-size=1280,2400", f"--screenshot={shot}")
    console = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]
    assert not console, "\n".join(console)
    assert shot.is_file(), proc.stderr[-2000:]
    from PIL import Image

    px = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert px.shape == (2400, 1280)
    assert px.std() > 10, "blank screenshot"
    # text and axes: about 2 % of a 1280 x 2400 shot is dark, depending on what the tiny
    # model put into the gallery (1.98-2.02 % seen; the page with its images removed
    # 2.5 %: the images are light plots), a page that renders nothing 0 %; that the images
    # decode and paint is the load check below
    assert (px < 128).mean() > 0.005, "almost no dark pixels: nothing rendered"
    dom = _chromium(tool, page, shot, "--dump-dom")
    m = re.search(r'<body data-images="(\d+) (\d+)"', dom.stdout)
    assert m, "the page's load check did not run: " + dom.stdout[:500]
    n_images, n_bad = int(m.group(1)), int(m.group(2))
    assert n_images == page.read_text().count("<img ") and n_bad == 0


@pytest.mark.tool
def test_a_broken_image_is_caught(tool, tmp_path):
    """The check itself can fail: a page with an undecodable image logs it on the console."""
    from dicomml.evaluate.report_page import _CHECK

    page = tmp_path / "broken.html"
    page.write_text('<html><body><img src="data:image/png;base64,AAAA" alt="x">'
                    f"<script>{_CHECK}</script></body></html>")
    proc = _chromium(tool, page, tmp_path / "b.png", "--dump-dom")
    assert "image failed to load: x" in proc.stderr
    assert 'data-images="1 1"' in proc.stdout


def test_report_errors_are_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0] and str(tmp_path) in err[0]
    (tmp_path / "notrun").mkdir()
    assert main(["report", str(tmp_path / "notrun")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a run folder" in err[0]
    (tmp_path / "notrun" / "config.toml").write_text("")
    assert main(["report", str(tmp_path / "notrun"), "-o", str(tmp_path / "r.pdf")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "-o" in err[0] and ".html" in err[0]


def test_report_without_heatmaps_does_not_import_tensorflow(evaluated_run):
    import sys

    code = ("import sys\nfrom dicomml.evaluate.report_page import build_report\n"
            f"text = build_report({str(evaluated_run)!r}, n_gallery=1, heatmaps=False)\n"
            "assert 'alt=\"input ' in text and 'alt=\"Grad-CAM ' not in text\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')]\n"
            "assert not bad, bad[:3]\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
