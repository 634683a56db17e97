"""Decision thresholds for a positive-class probability, by rule.

A number is used as given. ``youden`` maximises sensitivity + specificity − 1;
``sens=0.95`` is the highest threshold whose sensitivity reaches 0.95 — the
most specific one that misses at most 5 % of positives (report 004 weighs a
missed pneumonia far above a false alarm); ``spec=0.9`` likewise for
specificity. Rules are chosen on validation predictions and applied to test:
choosing on the test set itself flatters it.
"""

import numpy as np

from libxr.errors import UsageError


def parse(rule):
    """A float, ``youden``, ``sens=X`` or ``spec=X`` — checked early, as a usage error."""
    if rule == "youden":
        return rule
    name, sep, value = str(rule).partition("=")
    try:
        number = float(value if sep else rule)
    except ValueError:
        number = None
    if number is None or not 0 <= number <= 1 or (sep and name not in ("sens", "spec")):
        raise UsageError(f"threshold {rule!r}: use a probability (0.5), youden, sens=0.95 or spec=0.9")
    return (name, number) if sep else number


def choose(rule, truth, prob):
    """The threshold ``rule`` gives on (0/1 ``truth``, ``prob``); None when it needs both classes."""
    if isinstance(rule, float):
        return rule
    truth, prob = np.asarray(truth).astype(int), np.asarray(prob, np.float64)
    if len(np.unique(truth)) < 2:
        return None
    from sklearn.metrics import roc_curve

    fpr, tpr, cut = roc_curve(truth, prob, drop_intermediate=False)
    cut = np.minimum(cut, 1.0)          # roc_curve's first threshold is +inf (nothing positive)
    if rule == "youden":
        return float(cut[np.argmax(tpr - fpr)])
    name, target = rule
    if name == "sens":
        return float(cut[np.flatnonzero(tpr >= target)[0]])
    return float(cut[np.flatnonzero(1 - fpr >= target)[-1]])


def for_task(rule, task, y, p, warn=lambda message: None):
    """``rule``'s threshold for a task: one float (binary; None when undefined), one per label
    (multi-label; 0.5 for a label with one class), None for multiclass (decisions are argmax)."""
    if task.kind == "multiclass":
        return None
    if task.kind == "binary":
        return choose(rule, y, p)
    return per_label(task, y, p, lambda truth, prob: choose(rule, truth, prob), 0.5, "threshold", warn)


def per_label(task, y, values, fit, fallback, what, warn):
    """``fit(truth, values)`` for each label of a multi-label task, over the records that state it;
    ``fallback`` where it gives None (one class only), which ``warn`` hears of as the label's ``what``."""
    out = []
    for j, label in enumerate(task.names):
        known = ~np.isnan(y[:, j])
        value = fit(y[known, j], values[known, j])
        if value is None:
            stays = f"stay {' and '.join(map(str, fallback))}" if isinstance(fallback, tuple) else f"stays {fallback}"
            warn(f"label {label}: one class only; its {what} {stays}")
        out.append(fallback if value is None else value)
    return out
