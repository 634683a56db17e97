"""The field's metrics from truth and probabilities, each equal to scikit-learn's.

Binary, multiclass and multi-label (per label over the records that state it,
then averaged). Sensitivity is recall of the positive class and specificity
recall of the negative one. A metric the data leaves undefined — AUC with one
class present, kappa with one true class, F1 with nothing positive in truth or
prediction — is None (xr-eval warns when AUC is), never a crash. ``headline`` names the
metrics that tables, confidence intervals and leaderboards show.
"""

import warnings

import numpy as np

HEADLINE = {
    "binary": ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "precision", "npv", "f1", "kappa",
               "auc", "pr_auc", "log_loss", "brier", "ece"),
    "multiclass": ("accuracy", "balanced_accuracy", "kappa", "f1_macro", "f1_micro", "f1_weighted",
                   "precision_macro", "recall_macro", "auc_macro", "auc_micro", "pr_auc_macro", "log_loss", "brier",
                   "ece"),
    "multilabel": ("accuracy", "sensitivity_macro", "specificity_macro", "f1_macro", "f1_micro", "f1_samples",
                   "precision_micro", "recall_micro", "kappa_macro", "auc_macro", "auc_micro", "pr_auc_macro",
                   "log_loss", "brier", "ece"),
}
ECE_BINS = 15
"""Equal-width confidence bins of the expected calibration error (Guo et al. 2017's 15)."""


def metrics(task, y, p, threshold=0.5, detail=True):
    """Headline metrics (and, with ``detail``, per class/label and confusion matrices).

    ``y``/``p``: binary (N,) 0/1 and positive-class probabilities; multiclass (N,)
    class indices and (N, K) probabilities; multi-label (N, L) 0/1 with NaN where
    not stated and (N, L) probabilities. ``threshold``: a float, or one per label.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # sklearn's ill-defined-metric warnings: we report None instead
        if task.kind == "binary":
            return _binary(np.asarray(y).astype(int), np.asarray(p, np.float64), threshold, detail, task.names)
        if task.kind == "multiclass":
            return _multiclass(np.asarray(y).astype(int), np.asarray(p, np.float64), task.names, detail)
        return _multilabel(np.asarray(y, np.float64), np.asarray(p, np.float64), threshold, task.names, detail)


def _binary(y, p, threshold, detail, names=("negative", "positive")):
    """Decision metrics from the four confusion counts (the formulas sklearn uses — tests hold
    them equal — without its per-call input checks, which made bootstraps slow); ranking
    metrics through sklearn."""
    from sklearn import metrics as m

    pred = p >= threshold
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred)) - tp
    fn = int(np.sum(y == 1)) - tp
    n = len(y)
    tn = n - tp - fp - fn
    both = bool(tp + fn) and bool(tn + fp)
    clipped = np.clip(p, 1e-15, 1 - 1e-15)
    out = {"n": n, "positives": tp + fn, "threshold": float(threshold), **_decided(tp, fp, fn, tn),
           "auc": m.roc_auc_score(y, p) if both else None,
           "pr_auc": m.average_precision_score(y, p) if tp + fn else None,
           "log_loss": float(-np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))),
           "brier": float(np.mean((p - y) ** 2)),
           "ece": expected_calibration_error(y, p)}
    if detail:
        out["confusion"] = {"labels": list(names), "matrix": [[tn, fp], [fn, tp]]}
    return _plain(out)


def _decided(tp, fp, fn, tn):
    """The decision metrics of one class against the rest, from its four confusion counts."""
    n = tp + fp + fn + tn
    both = bool(tp + fn) and bool(tn + fp)
    sens, spec = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    agree, chance = (tp + tn) / n, ((tp + fp) * (tp + fn) + (tn + fn) * (tn + fp)) / n ** 2
    return {"accuracy": agree, "balanced_accuracy": (sens + spec) / 2 if both else None,
            "sensitivity": sens, "specificity": spec,
            "precision": _ratio(tp, tp + fp), "npv": _ratio(tn, tn + fn),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            # agreement beyond chance means nothing when the truth has one class (a MURA body part's normals)
            "kappa": (agree - chance) / (1 - chance) if both and chance < 1 else (0.0 if both else None)}


def _ratio(a, b):
    return a / b if b else None


def _multiclass(y, p, names, detail):
    from sklearn import metrics as m

    k = len(names)
    pred = p.argmax(1)
    present = np.unique(y)
    onehot = np.eye(k)[y]
    counts = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    out = {"n": len(y), **_decisions(counts)}
    complete = len(present) == k
    out["auc_macro"] = m.roc_auc_score(y, p, multi_class="ovr", average="macro", labels=range(k)) if complete else None
    out["auc_micro"] = m.roc_auc_score(onehot, p, average="micro") if len(present) > 1 else None
    out["pr_auc_macro"] = m.average_precision_score(onehot, p, average="macro") if complete else None
    out["log_loss"] = m.log_loss(y, np.clip(p, 1e-15, 1), labels=range(k))
    out["brier"] = float(np.mean(np.sum((p - onehot) ** 2, axis=1))) if len(y) else None
    out["ece"] = expected_calibration_error(pred == y, p.max(1))
    if detail:
        out["per_class"] = {}
        for j, name in enumerate(names):
            out["per_class"][name] = _binary((y == j).astype(int), p[:, j], 0.5, False) | {
                # one-vs-rest decisions come from the argmax, not a 0.5 cut
                **_one_vs_rest(counts, j)}
        out["confusion"] = {"labels": list(names), "matrix": counts.tolist()}
    return _plain(out)


def _decisions(counts):
    """Multiclass decision metrics from the k x k confusion counts (true x predicted): sklearn's
    formulas with every class a label and zero_division=0 — tests hold them equal — without its
    per-call input checks, eleven of which made each bootstrap replicate slow."""
    c = counts.astype(np.float64)
    n = c.sum()
    hits, truth, called = np.diag(c), c.sum(1), c.sum(0)

    def share(a, b):
        return np.divide(a, b, out=np.zeros_like(a), where=b > 0)

    per = {"precision": share(hits, called), "recall": share(hits, truth), "f1": share(2 * hits, truth + called)}
    agree, chance = hits.sum() / n, truth @ called / n ** 2
    out = {"accuracy": agree, "balanced_accuracy": per["recall"][truth > 0].mean(),
           "kappa": (agree - chance) / (1 - chance) if np.count_nonzero(truth + called) > 1 else None}
    for name, values in per.items():
        out[f"{name}_macro"], out[f"{name}_micro"], out[f"{name}_weighted"] = \
            values.mean(), agree, values @ truth / n
    return out


def _one_vs_rest(counts, j):
    """Class ``j`` against the rest, decided by the argmax: from the confusion counts."""
    n, hits, truth, called = int(counts.sum()), int(counts[j, j]), int(counts[j].sum()), int(counts[:, j].sum())
    decided = _decided(hits, called - hits, truth - hits, n - truth - called + hits)
    return {**decided, "f1": decided["f1"] or 0.0, "support": truth, "threshold": None}


def _multilabel(y, p, threshold, names, detail):
    from sklearn import metrics as m

    cuts = np.broadcast_to(np.asarray(threshold, np.float64), (y.shape[1],))
    per = {}
    for j, name in enumerate(names):
        known = ~np.isnan(y[:, j])
        if known.any():
            per[name] = _binary(y[known, j].astype(int), p[known, j], cuts[j], detail, ("0", "1"))
    stated = ~np.isnan(y)
    truth, prob = y[stated].astype(int), p[stated]
    pred = (p >= cuts).astype(int)

    def mean(key):
        values = [r[key] for r in per.values() if r[key] is not None]
        return float(np.mean(values)) if values else None

    def micro(score):       # over every stated cell; none stated (all uncertain) leaves it undefined
        return score(truth, pred[stated], zero_division=0) if len(truth) else None

    complete = stated.all(1)
    out = {"n": len(y), "stated": int(stated.sum()),
           "accuracy": m.accuracy_score(truth, pred[stated]) if len(truth) else None,
           "sensitivity_macro": mean("sensitivity"), "specificity_macro": mean("specificity"),
           "f1_macro": mean("f1"), "f1_micro": micro(m.f1_score),
           "f1_samples": m.f1_score(y[complete].astype(int), pred[complete], average="samples", zero_division=0)
           if complete.any() else None,
           "precision_micro": micro(m.precision_score), "recall_micro": micro(m.recall_score),
           "kappa_macro": mean("kappa"), "auc_macro": mean("auc"),
           "auc_micro": m.roc_auc_score(truth, prob) if len(np.unique(truth)) == 2 else None,
           "pr_auc_macro": mean("pr_auc"), "log_loss": mean("log_loss"), "brier": mean("brier"),
           "ece": mean("ece")}
    if detail:
        out["per_label"] = per
    return _plain(out)


def expected_calibration_error(hit, confidence, bins=ECE_BINS):
    """Σ over equal-width confidence bins of |accuracy − confidence| weighted by the bin's share.

    Binary (and each label): ``hit`` the truth and ``confidence`` the positive-class probability;
    multiclass: whether the top class was right, and its probability (top-label ECE)."""
    hit, confidence = np.asarray(hit, np.float64), np.asarray(confidence, np.float64)
    if not len(hit):
        return None
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(which):
        inside = which == b
        total += inside.mean() * abs(hit[inside].mean() - confidence[inside].mean())
    return float(total)


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (np.floating, float)):
        return None if np.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value
