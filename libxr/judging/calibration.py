"""Temperature scaling (Guo et al. 2017): one number that divides a model's logits so that its
probabilities mean what they say, fitted on validation by minimising the negative log-likelihood.

One temperature for binary (sigmoid) and multiclass (softmax) tasks, one per label for multi-label
tasks (their sigmoids are separate problems; unstated labels are left out). Dividing logits by a
positive number keeps every ranking, so AUC and the argmax are unchanged; only the confidence
moves. The fit is a bounded 1-D search on log T — convex in 1/T, so one minimum, and the same
bytes every run. Torch-free: xr-eval undoes a record's temperature to report the raw scores too.
"""

import numpy as np

from libxr.errors import ManifestError
from libxr.judging.thresholds import per_label

BOUNDS = (0.05, 20.0)
"""The temperatures searched; a bound reached means the logits carry (almost) no information, or
separate validation perfectly."""


def fit_temperature(task, logits, y, warn=lambda message: None):
    """The temperature minimising validation NLL: a float, or a list of one per label (multi-label).

    ``logits``: the model's, (N, 1) or (N,) binary, (N, K) multiclass, (N, L) multi-label; ``y`` the
    targets as libxr.records.tasks.targets gives them. A task (or label) whose validation records
    hold one class only cannot be fitted: it keeps 1, and ``warn`` says so.
    """
    logits = np.asarray(logits, np.float64)
    if task.kind == "multilabel":
        return per_label(task, y, logits, lambda truth, z: _fit(_sigmoid_nll, z, truth), 1.0, "temperature", warn)
    if task.kind == "binary":
        t = _fit(_sigmoid_nll, logits.reshape(len(logits)), np.asarray(y, np.float64))
    else:
        t = _fit(_softmax_nll, logits, np.asarray(y, np.int64))
    if t is None:
        warn("validation holds one class only: the temperature stays 1 (scores are not calibrated)")
    return 1.0 if t is None else t


def _fit(nll, z, y):
    if len(np.unique(y)) < 2:
        return None
    from scipy.optimize import minimize_scalar

    low, high = np.log(BOUNDS)
    found = minimize_scalar(lambda log_t: nll(z / np.exp(log_t), y), bounds=(low, high), method="bounded",
                            options={"xatol": 1e-6})
    return float(np.clip(np.exp(found.x), *BOUNDS))


def _sigmoid_nll(z, y):
    return float(np.mean(np.logaddexp(0, -(2 * y - 1) * z)))


def _softmax_nll(z, y):
    top = z.max(1)
    return float(np.mean(top + np.log(np.exp(z - top[:, None]).sum(1)) - z[np.arange(len(y)), y]))


def calibrated(task, logits, temperature):
    """Probabilities of ``logits`` divided by ``temperature`` (a float, or one per label)."""
    logits = np.asarray(logits, np.float64)
    if task.kind == "binary":
        logits = logits.reshape(len(logits))
    return task.probabilities(logits / np.asarray(temperature, np.float64))


def uncalibrated(task, p, temperature):
    """The probabilities before ``temperature`` (one per record: (N,), or (N, L) multi-label) was
    applied: scores times T in logit space. Exact up to the rounding of ``p`` (``--tta`` views are
    averaged before the temperature)."""
    p, t = np.asarray(p, np.float64), np.asarray(temperature, np.float64)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        if task.kind == "multiclass":
            z = t[:, None] * np.log(p)          # log 0 = -inf stays -inf: a probability of 0 stays 0
            z = np.exp(z - z.max(1, keepdims=True))
            return z / z.sum(1, keepdims=True)
        z = t * (np.log(p) - np.log1p(-p))
        return 1 / (1 + np.exp(-z))


def record_field(task, temperature):
    """The `temperature` field xr-predict writes: a number, or {label: number} for multi-label."""
    if task.kind == "multilabel":
        return {name: round(float(t), 6) for name, t in zip(task.names, temperature)}
    return round(float(temperature), 6)


def read_field(record, task, name, line):
    """A prediction record's `temperature`: None when absent, else a float (an array per label for
    multi-label), or a ManifestError naming ``name``:``line``."""
    value = record.get("temperature")
    if value is None:
        return None
    if task.kind == "multilabel":
        if not isinstance(value, dict) or set(value) != set(task.names):
            raise ManifestError(name, line, f"temperature {value!r} is not one positive number per label "
                                            f"({', '.join(task.names)})")
        values = [value[n] for n in task.names]
    else:
        values = [value]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < float("inf"):
            raise ManifestError(name, line, f"temperature {value!r} is not a positive number")
    return np.array(values, np.float64) if task.kind == "multilabel" else float(value)
