"""dicomml.report and the metric functions of dicomml.evaluate never import TensorFlow."""

from __future__ import annotations

import subprocess
import sys


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\n"
                          "print('\\n'.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, timeout=300, check=True)
    return set(out.stdout.split())


def test_report_does_not_import_tensorflow():
    from tests.conftest import testdata

    path = testdata("CT_small.dcm")
    mods = _modules_after(
        "import dicomml.report, dicomml.report.tables\n"
        "import numpy as np, pydicom\n"
        "from dicomml.report import AlgorithmInfo, build_sr, build_heatmap_sc, heatmap_overlay\n"
        f"ds = pydicom.dcmread({path!r})\n"
        "build_sr([ds], finding='ich', probability=0.5, present=True,"
        " algorithm=AlgorithmInfo('m', '1'))\n"
        "build_heatmap_sc(ds, heatmap_overlay(np.ones((4, 4)), np.eye(4)))\n")
    assert "highdicom" in mods and "dicomml.report.sc" in mods  # the code above did run
    assert not {m for m in mods if m == "tensorflow" or m.startswith(("tensorflow.", "keras"))}


def test_evaluate_metrics_do_not_import_tensorflow():
    mods = _modules_after(
        "import dicomml.evaluate\n"
        "from dicomml.evaluate import metrics, bootstrap, aggregate, plots\n"
        "from dicomml.evaluate import classification_metrics, roc_auc, evaluate_predictions")
    assert {"dicomml.evaluate.metrics", "dicomml.evaluate.plots",
            "dicomml.evaluate.evaluation"} <= mods
    assert not {m for m in mods if m == "tensorflow" or m.startswith(("tensorflow.", "keras"))}
