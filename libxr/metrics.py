"""Logits to probabilities, and the four metrics xr-train logs per epoch.

Accuracy, ROC-AUC, Cohen's kappa (MURA's metric) and F1 for binary,
multiclass and multi-label tasks, computed by libxr.scoring (the same code as
xr-eval). A metric that is undefined on the data is None, never a crash.
"""

import numpy as np

from libxr import scoring


def scores_from_logits(logits, task):
    """Probabilities: sigmoid for binary (the positive class) and multi-label, softmax otherwise."""
    logits = np.asarray(logits, np.float64)
    if task.kind == "multiclass":
        z = np.exp(logits - logits.max(1, keepdims=True))
        return z / z.sum(1, keepdims=True)
    if task.kind == "binary":
        logits = logits.reshape(len(logits))
    return 1 / (1 + np.exp(-logits))


EPOCH = {"binary": ("accuracy", "auc", "kappa", "f1"),
         "multiclass": ("accuracy", "auc_macro", "kappa", "f1_macro"),
         "multilabel": ("accuracy", "auc_macro", "kappa_macro", "f1_macro")}


def epoch_metrics(task, y, scores, threshold=0.5):
    """accuracy, auc, kappa and f1 (macro over classes or labels) — libxr.scoring's, renamed."""
    values = scoring.metrics(task, y, scores, threshold, detail=False)
    return {short: values[key] for short, key in zip(("accuracy", "auc", "kappa", "f1"), EPOCH[task.kind])}
