"""Temperature scaling (Guo et al. 2017): one number that divides a model's logits so that its
probabilities mean what they say, fitted on validation by minimising the negative log-likelihood.
Platt scaling adds a shift to the divided logit of a sigmoid, jointly fitted: class weights,
resampling and label smoothing move a model's scores off the validation prior, which a scale alone
cannot undo (a shift keeps the ranking, so AUC and the partition at a re-chosen threshold hold).

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
SHIFTS = (-20.0, 20.0)
"""The shifts Platt scaling searches (logit units: a probability of 1e-9 moved to 1 - 1e-9)."""
METHODS = ("temperature", "platt")
RAW = {"temperature": 1.0, "shift": 0.0}
"""A scored record's calibration fields, each with the value that leaves scores raw (a record
without the field)."""
FIELDS = tuple(RAW)
_VALID = {"temperature": (0.0, "positive number"), "shift": (-float("inf"), "finite number")}
"""Each field's exclusive lower bound and what the error calls a valid value."""


def fit(task, logits, y, method="temperature", warn=lambda message: None):
    """(temperature, shift) — ``shift`` None under ``temperature``, and for multiclass tasks, whose
    argmax a per-class shift would move: they get a temperature only, which ``warn`` hears."""
    if method == "temperature" or task.kind == "multiclass":
        if method != "temperature":
            warn("multiclass tasks are calibrated by a temperature only (a shift would change the argmax)")
        return fit_temperature(task, logits, y, warn), None
    logits = np.asarray(logits, np.float64)
    if task.kind == "multilabel":
        pairs = per_label(task, y, logits, lambda truth, z: _fit_platt(z, truth), (1.0, 0.0),
                          "temperature and shift", warn)
        return [t for t, _ in pairs], [b for _, b in pairs]
    pair = _fit_platt(logits.reshape(len(logits)), np.asarray(y, np.float64))
    if pair is None:
        warn("validation holds one class only: the temperature stays 1 and the shift 0 (scores are not calibrated)")
    return pair or (1.0, 0.0)


def _fit_platt(z, y):
    """(T, b) minimising the NLL of sigmoid(z / T + b): convex in (1/T, b), searched in the box
    BOUNDS × SHIFTS from T = 1, b = 0 — deterministic, so the same bytes every run."""
    if len(np.unique(y)) < 2:
        return None
    from scipy.optimize import minimize

    sign = 2 * y - 1
    found = minimize(lambda w: _sigmoid_nll(z * w[0] + w[1], y), x0=[1.0, 0.0], method="L-BFGS-B",
                     jac=lambda w: _sigmoid_grad(z, sign, w),
                     bounds=[(1 / BOUNDS[1], 1 / BOUNDS[0]), SHIFTS])
    scale, shift = found.x
    return float(np.clip(1 / scale, *BOUNDS)), float(np.clip(shift, *SHIFTS))


def _sigmoid_grad(z, sign, w):
    """∂NLL/∂(1/T, b) of sigmoid(z / T + b)."""
    m = sign * (z * w[0] + w[1])
    g = -sign / (1 + np.exp(np.clip(m, -700, 700)))
    return np.array([np.mean(g * z), np.mean(g)])


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


def calibrated(task, logits, temperature, shift=None):
    """Probabilities of ``logits`` divided by ``temperature`` (a float, or one per label), plus
    ``shift`` (likewise; binary and multi-label only)."""
    logits = np.asarray(logits, np.float64)
    if task.kind == "binary":
        logits = logits.reshape(len(logits))
    logits = logits / np.asarray(temperature, np.float64)
    return task.probabilities(logits if shift is None else logits + np.asarray(shift, np.float64))


def uncalibrated(task, p, temperature, shift=None):
    """The probabilities before ``temperature`` and ``shift`` (one per record: (N,), or (N, L)
    multi-label) were applied: (logit − shift) times T. Exact up to the rounding of ``p``
    (``--tta`` views are averaged before calibration)."""
    p, t = np.asarray(p, np.float64), np.asarray(temperature, np.float64)
    b = 0.0 if shift is None else np.asarray(shift, np.float64)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        if task.kind == "multiclass":
            z = t[:, None] * np.log(p)          # log 0 = -inf stays -inf: a probability of 0 stays 0
            z = np.exp(z - z.max(1, keepdims=True))
            return z / z.sum(1, keepdims=True)
        z = t * (np.log(p) - np.log1p(-p) - b)
        return 1 / (1 + np.exp(-z))


def record_field(task, value):
    """The `temperature` or `shift` field xr-predict writes: a number, or {label: number} for multi-label."""
    if task.kind == "multilabel":
        return {name: round(float(t), 6) for name, t in zip(task.names, value)}
    return round(float(value), 6)


def read_field(record, task, name, line, field="temperature"):
    """A prediction record's `temperature` (positive) or `shift` (any finite number): None when
    absent, else a float (an array per label for multi-label), or a ManifestError naming ``name``:``line``."""
    value = record.get(field)
    if value is None:
        return None
    low, what = _VALID[field]
    if field == "shift" and task.kind == "multiclass":
        raise ManifestError(name, line, "shift on a multiclass task: only binary and multi-label scores are shifted")
    if task.kind == "multilabel":
        if not isinstance(value, dict) or set(value) != set(task.names):
            raise ManifestError(name, line, f"{field} {value!r} is not one {what} per label "
                                            f"({', '.join(task.names)})")
        values = [value[n] for n in task.names]
    else:
        values = [value]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not low < v < float("inf"):
            raise ManifestError(name, line, f"{field} {value!r} is not a {what}")
    return np.array(values, np.float64) if task.kind == "multilabel" else float(value)
