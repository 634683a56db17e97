"""What a manifest asks a model to learn, and the targets and weights that follow.

A task is ``binary`` (two classes, one logit), ``multiclass`` (softmax over the
classes) or ``multilabel`` (one sigmoid per label), inferred from the records'
``label`` / ``labels`` fields. For binary tasks the positive class is the one
that is not called normal/negative/healthy/no finding, whatever the sort order
(MURA's ``abnormal`` sorts before ``normal``).
"""

import dataclasses

import numpy as np

from libxr.errors import ManifestError, RecordError, UsageError, XRError

KINDS = ("binary", "multiclass", "multilabel")
UNCERTAIN = {"ignore": np.nan, "ones": 1.0, "zeros": 0.0}
"""What a multi-label -1 (uncertain) becomes in training targets; NaN is masked in the loss."""
NEGATIVE_NAMES = ("normal", "negative", "healthy", "no finding", "no_finding", "noncovid", "non-covid", "0")


@dataclasses.dataclass
class Task:
    kind: str
    names: list        # classes (single-label, positive last for binary) or labels (multi-label)

    @property
    def outputs(self):
        return 1 if self.kind == "binary" else len(self.names)

    def to_dict(self):
        return dataclasses.asdict(self)

    def probabilities(self, logits):
        """Scores from a model's logits: sigmoid for binary (the positive class) and multi-label,
        softmax over the classes otherwise."""
        logits = np.asarray(logits, np.float64)
        if self.kind == "multiclass":
            z = np.exp(logits - logits.max(1, keepdims=True))
            return z / z.sum(1, keepdims=True)
        if self.kind == "binary":
            logits = logits.reshape(len(logits))
        with np.errstate(over="ignore"):        # exp(710) is inf, and 1 / inf the 0 it should be
            return 1 / (1 + np.exp(-logits))


def infer_task(records, kind=None, positive=None):
    """The task of ``records`` (an iterable of manifest records)."""
    classes, labels, unlabelled = set(), set(), 0
    for rec in records:
        if isinstance(rec.get("labels"), dict):
            labels.update(rec["labels"])
        elif rec.get("label") is not None:
            classes.add(str(rec["label"]))
        else:
            unlabelled += 1
    if not classes and not labels:
        raise XRError("the manifest has no `label` or `labels`: nothing to learn")
    if classes and labels:
        raise XRError("the manifest mixes `label` (single-label) and `labels` (multi-label) records")
    if labels:
        if kind not in (None, "multilabel"):
            raise UsageError(f"--task {kind}: the records carry multi-label `labels`")
        if positive is not None:
            raise UsageError("--positive is for binary tasks; the records carry multi-label `labels`")
        return Task("multilabel", sorted(labels))
    if len(classes) < 2:
        raise XRError(f"only one class ({', '.join(classes)}) in the manifest: nothing to tell apart")
    kind = kind or ("binary" if len(classes) == 2 else "multiclass")
    if kind == "multilabel":
        raise UsageError("--task multilabel: the records carry single `label`s")
    if kind == "binary" and len(classes) != 2:
        raise UsageError(f"--task binary: the records have {len(classes)} classes")
    names = sorted(classes)
    if kind == "binary":
        names = binary_order(names, positive)
    elif positive is not None:
        raise UsageError(f"--positive is for binary tasks; the records have {len(classes)} classes")
    return Task(kind, names)


def task_from_scores(names, multilabel, positive=None):
    """The task prediction records imply: their `scores` keys, and whether `labels`/`pred` are lists."""
    kind = "multilabel" if multilabel else "binary" if len(names) == 2 else "multiclass"
    return Task(kind, binary_order(list(names), positive) if kind == "binary" else list(names))


def record_scores(record, name, line):
    """A prediction record's `scores`: a non-empty object of numbers (not booleans or strings) from
    0 to 1, or a ManifestError naming ``name``:``line``."""
    scores = record.get("scores")
    if not isinstance(scores, dict) or not scores:
        raise ManifestError(name, line, "record has no `scores` object (run xr-predict first)")
    for key, value in scores.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ManifestError(name, line, f"the score of {key!r} is not a number ({value!r})")
        if not 0 <= value <= 1:      # NaN fails this too
            raise ManifestError(name, line, f"the score of {key!r} is not a probability from 0 to 1 ({value!r})")
    return scores


def guessed_positive(task, positive=None):
    """What to tell the user when a binary task's positive class was a guess: neither class
    reads as negative (cat/dog, covid/other) and no --positive was given; else None."""
    if task.kind != "binary" or positive is not None:
        return None
    if len(_negatives(task.names)) == 1:
        return None
    return (f"binary task: neither {task.names[0]!r} nor {task.names[1]!r} reads as negative, so "
            f"{task.names[1]!r} is taken as the positive class; --positive CLASS chooses")


def binary_order(names, positive):
    """Negative first, positive last: ``positive`` if given, else the one name that reads as
    negative (normal, healthy, ...) goes first, else the order given."""
    if positive is not None:
        if positive not in names:
            raise UsageError(f"--positive {positive!r} is not one of the classes {', '.join(names)}")
        return [n for n in names if n != positive] + [positive]
    negatives = _negatives(names)
    return negatives + [n for n in names if n not in negatives] if len(negatives) == 1 else names


def _negatives(names):
    return [n for n in names if n.lower() in NEGATIVE_NAMES]


def targets(records, task, uncertain="ignore"):
    """Targets as numpy: binary float (N,) 0/1; multiclass int64 (N,); multilabel
    float32 (N, L) with NaN where a label is not stated (masked in the loss).

    ``uncertain``: what a remaining -1 becomes in multi-label targets —
    ``ignore`` (masked), ``ones`` or ``zeros``.
    """
    if task.kind == "multilabel":
        if uncertain not in UNCERTAIN:
            raise UsageError(f"uncertain policy {uncertain!r}: use {', '.join(UNCERTAIN)}")
        fill = UNCERTAIN[uncertain]
        silent = [rec.get("id") for rec in records
                  if not any(v is not None for v in (rec.get("labels") or {}).values())]
        if silent:      # an all-NaN row drops out of the loss unseen: a record that says nothing is a mistake
            raise RecordError(silent[0], f"{len(silent):,} of {len(records):,} records state no label "
                              f"({_shown(silent)}): label them, or leave them out (xr-index --drop-unlabelled)")
        y = np.full((len(records), len(task.names)), np.nan, np.float32)
        index = {n: j for j, n in enumerate(task.names)}
        for i, rec in enumerate(records):
            for name, value in (rec.get("labels") or {}).items():
                if value is not None and name in index:
                    y[i, index[name]] = fill if value == -1 else value
        return y
    index = {c: i for i, c in enumerate(task.names)}
    unlabelled = [rec.get("id") for rec in records if rec.get("label") is None]
    if unlabelled:
        raise RecordError(unlabelled[0], f"{len(unlabelled):,} of {len(records):,} records have no label "
                          f"({_shown(unlabelled)}): label them, or leave them out (xr-index --drop-unlabelled)")
    missing = [i for i, rec in enumerate(records) if str(rec.get("label")) not in index]
    if missing:
        rec = records[missing[0]]
        raise RecordError(rec.get("id"), f"record {rec.get('id')!r} has label {rec.get('label')!r}, not one of "
                          f"{', '.join(task.names)}")
    y = np.array([index[str(rec["label"])] for rec in records], np.int64)
    return y.astype(np.float32) if task.kind == "binary" else y


def _shown(ids):
    return ", ".join(repr(i) for i in ids[:3]) + (", ..." if len(ids) > 3 else "")


def check_training_targets(y, task):
    """Every class (or label) needs training examples: a clear error before training."""
    if len(y) == 0:
        raise XRError("the train split is empty")
    if task.kind == "multilabel":
        positives = np.nansum(y == 1, axis=0)
        empty = [n for n, p in zip(task.names, positives) if p == 0]
        if empty:
            raise XRError(f"no positive training example for {', '.join(empty)}")
        return
    counts = np.bincount(y.astype(np.int64), minlength=len(task.names))
    empty = [n for n, c in zip(task.names, counts) if c == 0]
    if empty:
        raise XRError(f"no training example of class {', '.join(empty)}")


def class_weights(y, task, mode="balanced"):
    """Loss weights from the training targets.

    Single-label: one weight per class — ``balanced`` is n / (k * count), as
    scikit-learn computes it (report 000's 0.839 / 1.237 on MURA), or an explicit
    list. Multi-label: CheXNet's positive weight per label, negatives / positives.
    ``none`` gives None.
    """
    if mode in (None, "none"):
        return None
    if task.kind == "multilabel":
        if mode != "balanced":
            raise UsageError("multi-label tasks weigh labels by their data (balanced) or not at all (none)")
        positives = np.nansum(y == 1, axis=0)
        negatives = np.nansum(y == 0, axis=0)
        return (negatives / np.maximum(positives, 1)).astype(np.float32)
    if mode == "balanced":
        from sklearn.utils.class_weight import compute_class_weight

        classes = np.arange(len(task.names))
        return compute_class_weight("balanced", classes=classes, y=y.astype(np.int64)).astype(np.float32)
    weights = np.asarray(mode, np.float32)
    if weights.shape != (len(task.names),):
        raise UsageError(f"{len(weights)} class weights for {len(task.names)} classes ({', '.join(task.names)})")
    return weights
