"""dicomml.evaluate: metrics with patient-level confidence intervals, per-study aggregation,
plots, Grad-CAM, and the ``evaluate`` / ``predict`` workflows over a run folder.

The metric, aggregation and plotting modules use numpy, scikit-learn and matplotlib only;
TensorFlow is imported by Grad-CAM and by prediction, on first use.
"""

from __future__ import annotations

from dicomml._lazy import lazy_exports

_LAZY = {
    # metrics (numpy)
    **{name: "dicomml.evaluate.metrics" for name in (
        "confusion_matrix", "accuracy", "sensitivity", "specificity", "precision", "f1",
        "roc_auc", "pr_auc", "roc_curve", "pr_curve", "brier", "reliability_curve",
        "expected_calibration_error", "youden_threshold", "threshold_for_sensitivity",
        "choose_threshold", "multiclass_roc_auc", "mse", "mae", "r2")},
    "cluster_bootstrap": "dicomml.evaluate.bootstrap",
    "classification_metrics": "dicomml.evaluate.bootstrap",
    "regression_metrics": "dicomml.evaluate.bootstrap",
    "aggregate_studies": "dicomml.evaluate.aggregate",
    "evaluate_predictions": "dicomml.evaluate.evaluation",
    "evaluate_run": "dicomml.evaluate.evaluation",
    "gradcam": "dicomml.evaluate.grad_cam",
    "find_gradcam_layer": "dicomml.evaluate.grad_cam",
    "save_gradcam_png": "dicomml.evaluate.grad_cam",
    "predict": "dicomml.evaluate.prediction",
    "PredictResult": "dicomml.evaluate.prediction",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY, eager=())
