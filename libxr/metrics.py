"""The field's per-epoch metrics from targets and scores, through scikit-learn.

Accuracy, ROC-AUC, Cohen's kappa (MURA's metric) and F1 for binary,
multiclass and multi-label tasks. A metric that is undefined on the data —
AUC with one class present — is None, never a crash.
"""

import warnings

import numpy as np


def scores_from_logits(logits, task):
    """Probabilities: sigmoid for binary (the positive class) and multi-label, softmax otherwise."""
    logits = np.asarray(logits, np.float64)
    if task.kind == "multiclass":
        z = np.exp(logits - logits.max(1, keepdims=True))
        return z / z.sum(1, keepdims=True)
    if task.kind == "binary":
        logits = logits.reshape(len(logits))
    return 1 / (1 + np.exp(-logits))


def epoch_metrics(task, y, scores, threshold=0.5):
    from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score, roc_auc_score

    y, scores = np.asarray(y), np.asarray(scores)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if task.kind == "binary":
            truth, pred = y.astype(int), (scores >= threshold).astype(int)
            auc = roc_auc_score(truth, scores) if len(np.unique(truth)) == 2 else None
            return {"accuracy": accuracy_score(truth, pred), "auc": auc,
                    "kappa": cohen_kappa_score(truth, pred), "f1": f1_score(truth, pred, zero_division=0)}
        if task.kind == "multiclass":
            pred = scores.argmax(1)
            present = np.unique(y)
            auc = None
            if len(present) == scores.shape[1]:
                auc = roc_auc_score(y, scores, multi_class="ovr", average="macro")
            return {"accuracy": accuracy_score(y, pred), "auc": auc, "kappa": cohen_kappa_score(y, pred),
                    "f1": f1_score(y, pred, average="macro", zero_division=0)}
        return _multilabel(y, scores, threshold, roc_auc_score, cohen_kappa_score, f1_score)


def _multilabel(y, scores, threshold, roc_auc_score, cohen_kappa_score, f1_score):
    """Per label over the examples where it is stated, then the mean over labels."""
    aucs, kappas, f1s, correct, stated = [], [], [], 0, 0
    for j in range(y.shape[1]):
        known = ~np.isnan(y[:, j])
        truth, s = y[known, j].astype(int), scores[known, j]
        if not known.any():
            continue
        pred = (s >= threshold).astype(int)
        correct += int((pred == truth).sum())
        stated += int(known.sum())
        if len(np.unique(truth)) == 2:
            aucs.append(roc_auc_score(truth, s))
        kappas.append(cohen_kappa_score(truth, pred) if len(np.unique(np.r_[truth, pred])) > 1 else 0.0)
        f1s.append(f1_score(truth, pred, zero_division=0))
    return {"accuracy": correct / stated if stated else None, "auc": float(np.mean(aucs)) if aucs else None,
            "kappa": float(np.mean(kappas)) if kappas else None, "f1": float(np.mean(f1s)) if f1s else None}
