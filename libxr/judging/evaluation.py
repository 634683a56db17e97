"""From prediction records to a report: sections per split, thresholds tuned on
validation, per-group metrics, study-level aggregation and patient bootstrap.

Prediction records are any manifest records with truth (`label`, or `labels`)
and `scores` (probability per class or label) — from xr-predict or from any
other tool. When records carry the `temperature` their scores were calibrated
with, the raw scores are recovered too, and each section reports the calibration
metrics before (``ece_raw``, ``brier_raw``, ``log_loss_raw``) beside after. The
report is a plain dict (written as JSON, rendered as tables).
"""

import collections
import dataclasses
import json

import numpy as np

from libxr.errors import ManifestError, XRError
from libxr.judging import calibration, thresholds
from libxr.judging.metrics import HEADLINE, metrics
from libxr.records.manifest import group_key
from libxr.records.tasks import Task, guessed_positive, record_scores, task_from_scores

SECTION_ORDER = ("train", "val", "test")
CALIBRATION = ("ece", "brier", "log_loss")
"""The metrics a temperature changes, reported before it (``ece_raw``) as well as after."""
CI_LEVEL = 0.95
PER_IMAGE = ("id", "path", "h5", "row", "scores", "pred", "source", "sha256")
"""Fields of one image, not of the study its records are aggregated into (the others are kept
when every image of the study agrees on them)."""


@dataclasses.dataclass
class Predictions:
    task: Task
    y: np.ndarray
    p: np.ndarray
    records: list
    raw: np.ndarray = None      # like p, before the records' temperatures; None when no record has one

    def take(self, index):
        index = np.asarray(index, np.int64)
        return Predictions(self.task, self.y[index], self.p[index], [self.records[i] for i in index],
                           None if self.raw is None else self.raw[index])

    def join(self, other):
        """These predictions followed by ``other``'s (read with this task: :func:`read_predictions`)."""
        raw = None if self.raw is None and other.raw is None else np.concatenate([
            a.p if a.raw is None else a.raw for a in (self, other)])
        return Predictions(self.task, np.concatenate([self.y, other.y]), np.concatenate([self.p, other.p]),
                           self.records + other.records, raw)

    def split(self, name):
        """The predictions of records whose split is ``name`` (``all``: records without one)."""
        return self.take([i for i, r in enumerate(self.records) if (r.get("split") or "all") == name])


def read_predictions(numbered, name, positive=None, warn=print, seen=None, task=None, left_out=None):
    """Predictions from (line number, record) pairs; records with `error` are skipped (counted).
    ``seen``: {id: "FILE:LINE"} of the files read before, filled in, so that no record is scored twice;
    ``task``: theirs, whose class order these files' scores are read in (keys in any order);
    ``left_out`` (default ``warn``) hears of records and labels left out of the metrics (--strict)."""
    left_out = warn if left_out is None else left_out
    rows, skipped, first_error = [], 0, None
    seen = {} if seen is None else seen
    for line, rec in numbered:
        if rec["id"] in seen:       # one file named twice included: its lines would count twice
            raise ManifestError(name, line, f"id {rec['id']!r} again (first at {seen[rec['id']]})")
        seen[rec["id"]] = f"{name}:{line}"
        if "error" in rec:
            skipped += 1
            first_error = first_error or line
            continue
        scores = record_scores(rec, name, line)
        multilabel = isinstance(rec.get("labels"), dict)
        if not multilabel and rec.get("label") is None:
            raise ManifestError(name, line, "record has no `label` or `labels`: nothing to score against")
        if not multilabel and len(scores) < 2:
            raise ManifestError(name, line, f"scores for one class only ({', '.join(map(repr, scores))}): "
                                            "a classifier scores two classes or more")
        if task is None:
            task = task_from_scores(list(scores), multilabel, positive)
            if note := guessed_positive(task, positive):
                warn(f"{name}: {note}")
        elif set(scores) != set(task.names) or multilabel != (task.kind == "multilabel"):
            raise ManifestError(name, line, f"scores for {', '.join(scores)}, earlier records had "
                                            f"{', '.join(task.names)}")
        rows.append((line, rec))
    if skipped:
        left_out(f"{skipped} records have an `error` (unreadable images) and are left out (first "
                 f"{name}:{first_error})")
    if task is None:
        raise XRError(f"{name}: no scored records")
    return _arrays(task, rows, name, left_out)


def _arrays(task, rows, name, warn):
    records = [rec for _, rec in rows]
    p = np.array([[float(rec["scores"][n]) for n in task.names] for rec in records])   # checked as read
    if task.kind != "multilabel":
        p = one_per_record(p, rows, name)
    if task.kind == "multilabel":
        index = {n: j for j, n in enumerate(task.names)}
        y = np.full(p.shape, np.nan)
        unscored = {}                                       # truth label without scores -> first line
        for i, (line, rec) in enumerate(rows):
            for label, value in rec["labels"].items():
                if label not in index:
                    unscored.setdefault(label, line)
                elif value in (0, 1):                       # -1 (uncertain) and null are not stated
                    y[i, index[label]] = value
        _warn_unmatched(name, task, y, unscored, warn)
        return Predictions(task, y, p, records, _raw(task, p, rows, name))
    index = {n: j for j, n in enumerate(task.names)}
    for line, rec in rows:
        if str(rec["label"]) not in index:
            raise ManifestError(name, line, f"label {rec['label']!r} is not one of the scored classes "
                                            f"({', '.join(task.names)})")
    y = np.array([index[str(rec["label"])] for rec in records])
    p = p[:, 1] if task.kind == "binary" else p
    return Predictions(task, y, p, records, _raw(task, p, rows, name))


def _warn_unmatched(name, task, y, unscored, warn):
    """Multi-label truth and scores that do not meet: a model scoring fewer labels than the manifest
    has is common, but its silence would hide a misspelt label."""
    if unscored:
        line = min(unscored.values())
        warn(f"{name}:{line}: labels with truth but no scores, not evaluated: {', '.join(sorted(unscored)[:8])}"
             + (f" and {len(unscored) - 8} more" if len(unscored) > 8 else ""))
    untrue = [n for j, n in enumerate(task.names) if np.isnan(y[:, j]).all()]
    if untrue:
        warn(f"{name}: no record states {', '.join(untrue[:8])} (scored, but without truth): left out of the metrics")


def _raw(task, p, rows, name):
    """The scores before each record's `temperature` and `shift` (a record without them is raw
    already), or None."""
    temperatures = [calibration.read_field(rec, task, name, line) for line, rec in rows]
    shifts = [calibration.read_field(rec, task, name, line, "shift") for line, rec in rows]
    for (line, _), t, b in zip(rows, temperatures, shifts):
        if b is not None and t is None:
            raise ManifestError(name, line, "shift without a temperature: xr-predict writes both")
    if all(t is None for t in temperatures):
        return None
    width = len(task.names) if task.kind == "multilabel" else ()

    def filled(values, field):
        return [np.full(width, calibration.RAW[field]) if v is None else v for v in values]

    shifts = None if all(b is None for b in shifts) else filled(shifts, "shift")
    return calibration.uncalibrated(task, p, filled(temperatures, "temperature"), shifts)


def one_per_record(p, rows, name):
    """Class probabilities rescaled to sum to exactly 1: files round them (0.3333 x 3), and
    scikit-learn refuses multiclass AUC for rows that miss 1 by more than its tolerance."""
    sums = p.sum(1)
    off = np.abs(sums - 1) > 0.01
    if off.any():
        i = int(np.argmax(off))
        raise ManifestError(name, rows[i][0], f"the class scores sum to {sums[i]:.3g}, not 1")
    return p / sums[:, None]


def aggregate(preds, field):
    """One prediction per value of ``field`` (MURA: study): mean probability, the shared truth."""
    groups = collections.defaultdict(list)
    for i, rec in enumerate(preds.records):
        if rec.get(field) is None:
            raise XRError(f"record {rec['id']!r} has no `{field}` to aggregate by")
        groups[rec[field]].append(i)
    keep, y, p, raw = [], [], [], []
    for key, members in groups.items():
        truth = preds.y[members]
        if not np.array_equal(truth, truth[:1].repeat(len(members), 0), equal_nan=True):
            raise XRError(f"{field} {key!r}: its records disagree on the truth")
        records = [preds.records[i] for i in members]
        splits = sorted({str(r.get("split")) for r in records})
        if len(splits) > 1:
            raise XRError(f"{field} {key!r}: its records are in more than one split ({', '.join(splits)})")
        first = records[0]
        shared = {k: v for k, v in first.items() if k not in PER_IMAGE and all(r.get(k) == v for r in records)}
        keep.append({**shared, "id": str(key), field: key, "images": len(members)})
        y.append(truth[0])
        p.append(preds.p[members].mean(0))
        raw.append(None if preds.raw is None else preds.raw[members].mean(0))
    return Predictions(preds.task, np.array(y), np.array(p), keep, None if preds.raw is None else np.array(raw))


@dataclasses.dataclass
class EvalOptions:
    threshold: object = 0.5          # a float or a rule (libxr.judging.thresholds)
    tune_on: str = "val"
    by: tuple = ()
    aggregate: str = None
    bootstrap: int = 0
    seed: int = 0
    splits: tuple = ()


def evaluate(preds, opts, warn=print, tick=lambda n, total=None: None):
    """The report dict: task, thresholds, and a section per split (or one, ``all``).

    ``preds`` are already aggregated when ``opts.aggregate`` names a field (:func:`aggregate`).
    """
    rule = thresholds.parse(opts.threshold)
    task = preds.task
    split_of = [rec.get("split") or "all" for rec in preds.records]
    names = sorted(set(split_of), key=lambda s: (SECTION_ORDER.index(s) if s in SECTION_ORDER else 9, s))
    if opts.splits:
        missing = [s for s in opts.splits if s not in names]
        if missing:
            raise XRError(f"no scored records of split {', '.join(missing)} (there are: {', '.join(names)})")
        names = [s for s in names if s in opts.splits]
    cut, tuned_on = _thresholds(preds, rule, opts.tune_on, warn)
    report = {"task": task.to_dict(), "threshold_rule": opts.threshold, "threshold": cut, "tuned_on": tuned_on,
              "aggregate": opts.aggregate, "records": len(preds.records), "sections": {}}
    for name in names:
        part = preds.split(name)
        section = metrics(task, part.y, part.p, cut)
        if part.raw is not None:
            section.update(_before_calibration(part, cut))
        _warn_undefined(section, name, task, warn)
        if opts.bootstrap:
            section["ci"] = bootstrap(part, cut, opts.bootstrap, opts.seed, tick)
            section["ci_level"] = CI_LEVEL
            section["ci_resampled"] = ("patients" if any(r.get("patient") is not None for r in part.records)
                                       else "records")
        for field in opts.by:
            section.setdefault("by", {})[field] = _by(part, field, cut)
        report["sections"][name] = section
    return report


def _thresholds(preds, rule, tune_on, warn):
    if isinstance(rule, float) or preds.task.kind == "multiclass":
        if not isinstance(rule, float):
            warn("multiclass decisions are the most probable class; the threshold rule is not used")
        return (rule if isinstance(rule, float) else None), None
    part, source = preds.split(tune_on), tune_on
    if not part.records:
        warn(f"no records of split {tune_on!r} to choose the threshold on: chose it on all records, which "
             "flatters them")
        part, source = preds, "all"
    cut = thresholds.for_task(rule, preds.task, part.y, part.p, warn)
    if cut is None:
        raise XRError(f"cannot choose a {rule} threshold on split {source!r}: it has one class only")
    return cut, source


def _before_calibration(part, cut):
    """The calibration metrics of the raw scores, and the temperature (and shift) the section's
    records share (None when they differ)."""
    before = metrics(part.task, part.y, part.raw, cut, detail=False)
    out = {f"{k}_raw": before[k] for k in CALIBRATION}
    for field, none in calibration.RAW.items():
        shared = {json.dumps(r.get(field, none), sort_keys=True) for r in part.records}
        if field == "temperature" or any(field in r for r in part.records):
            out[field] = json.loads(shared.pop()) if len(shared) == 1 else None
    return out


def _warn_undefined(section, name, task, warn):
    key = "auc" if task.kind == "binary" else "auc_macro"
    if section.get(key) is None:
        why = "only one class present" if task.kind == "binary" else "not every class or label has both truths"
        warn(f"{name}: ROC-AUC is undefined ({why})")


def _by(part, field, cut):
    values = collections.defaultdict(list)
    for i, rec in enumerate(part.records):
        values["(none)" if rec.get(field) is None else str(rec[field])].append(i)
    if list(values) == ["(none)"]:
        raise XRError(f"--by {field}: no record has a `{field}` field")
    out = {}
    for value, idx in sorted(values.items()):
        sub = part.take(idx)
        out[value] = metrics(part.task, sub.y, sub.p, cut, detail=False)
    return out


def bootstrap(part, cut, replicates, seed, tick=lambda n, total=None: None):
    """Percentile intervals of the headline metrics, resampling patients (or records without one)."""
    groups = collections.defaultdict(list)
    for i, rec in enumerate(part.records):
        groups[group_key(rec.get("patient"), rec["id"])].append(i)
    members = [np.array(v) for v in groups.values()]
    rng = np.random.default_rng(seed)
    draws = collections.defaultdict(list)
    tick(0, replicates)
    for _ in range(replicates):
        picked = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
        values = metrics(part.task, part.y[picked], part.p[picked], cut, detail=False)
        for key in HEADLINE[part.task.kind]:
            if values.get(key) is not None:
                draws[key].append(values[key])
        tick(1)
    alpha = (1 - CI_LEVEL) / 2
    return {k: [float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha))] for k, v in draws.items()
            if len(v) >= replicates // 2}

