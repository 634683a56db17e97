"""The metrics xr-train logs per epoch.

Accuracy, ROC-AUC, Cohen's kappa (MURA's metric) and F1 for binary,
multiclass and multi-label tasks, and for validation the calibration error and Brier score
before and after the epoch's temperature, computed by libxr.judging.metrics (the same code as
xr-eval). A metric that is undefined on the data is None, never a crash.
"""

from libxr.judging.metrics import metrics

EPOCH = {   # the name in a run's metrics: libxr.judging.metrics's key per task kind
    "accuracy": {"binary": "accuracy", "multiclass": "accuracy", "multilabel": "accuracy"},
    "auc": {"binary": "auc", "multiclass": "auc_macro", "multilabel": "auc_macro"},
    "kappa": {"binary": "kappa", "multiclass": "kappa", "multilabel": "kappa_macro"},
    "f1": {"binary": "f1", "multiclass": "f1_macro", "multilabel": "f1_macro"},
}


def epoch_metrics(task, y, scores, threshold=0.5):
    """accuracy, auc, kappa and f1 (macro over classes or labels) — libxr.judging.metrics's, renamed."""
    values = metrics(task, y, scores, threshold, detail=False)
    return {name: values[keys[task.kind]] for name, keys in EPOCH.items()}


def calibration_metrics(task, y, raw, calibrated):
    """ECE and Brier score of the raw scores (``ece_raw``, ``brier_raw``) and of the calibrated ones."""
    before, after = (metrics(task, y, p, detail=False) for p in (raw, calibrated))
    return {"ece_raw": before["ece"], "ece": after["ece"], "brier_raw": before["brier"], "brier": after["brier"]}
