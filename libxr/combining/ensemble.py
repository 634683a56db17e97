"""Combining several models' predictions of the same records (libxr.combining.aligned):
majority vote, weighted mean of probabilities, expert routing by a record field,
and stacking with a logistic-regression meta-model.

Every mode writes ordinary prediction records — `scores` and `pred` over the
same classes — so xr-eval scores an ensemble like a single model. A record one
of the files could not score (`error`) keeps an `error` and gets no scores.
"""

import json

import numpy as np

from libxr.atomic import atomic_output
from libxr.combining.aligned import align, base, same_task
from libxr.errors import ManifestError, UsageError, XRError
from libxr.predicting.predict import decision


def _unscored(files, i):
    """Record ``i`` of the first file, marked with the file that could not score it; NaN where
    every file scored the record is a fault of the combination, never an `error` to hide it in."""
    bad = next((f.name for f in files if "error" in f.records[i]), None)
    if bad is None:
        raise XRError(f"record {i!r}: the combined probabilities are not numbers, "
                      "though every file scored it")
    return {**base(files[0].records[i]), "error": f"not scored in {bad}"}


def _records(files, ids, probs, threshold):
    """Output records from the first file's, with combined probabilities (rows of ``probs``)."""
    task = files[0].task
    for i, p in zip(ids, probs):
        rec = base(files[0].records[i])
        if np.isnan(p).any():
            yield _unscored(files, i)
        else:
            yield {**rec, **decision(task, p[1] if task.kind == "binary" else p, threshold)}


def _weights(weights, count):
    if weights is None:
        return np.ones(count) / count
    w = np.asarray(weights, np.float64)
    if len(w) != count or not np.isfinite(w).all() or (w < 0).any() or w.max() == 0:
        raise UsageError(f"--weights: give {count} non-negative finite numbers, not all zero (one per file)")
    w = w / w.max()                 # 1e308,1e308 would sum to infinity
    return w / w.sum()


def mean(files, weights=None, threshold=0.5):
    """The (weighted) mean of the files' probabilities."""
    ids = align(files)
    w = _weights(weights, len(files))
    probs = sum(wi * f.probabilities(ids) for wi, f in zip(w, files))
    return _records(files, ids, probs, threshold)


def vote(files, weights=None):
    """Majority vote of the files' decisions (`pred`); `scores` are the (weighted) vote shares.

    A tie goes to the class with the highest mean probability among the tied ones.
    Multi-label: a label is predicted when more than half the votes name it.
    """
    ids = align(files)
    task = files[0].task
    w = _weights(weights, len(files))
    shares, means = np.zeros((len(ids), len(task.names))), np.zeros((len(ids), len(task.names)))
    for wi, f in zip(w, files):
        means += wi * f.probabilities(ids)
        for row, i in enumerate(ids):
            pred = f.records[i].get("pred")
            if task.kind == "multilabel":
                shares[row] += wi * np.isin(task.names, pred or [])
            elif pred in task.names:
                shares[row, task.names.index(pred)] += wi
            elif "error" not in f.records[i]:
                raise ManifestError(f.name, f.lines[i], f"pred {pred!r} is not one of {', '.join(task.names)}")
    for row, i in enumerate(ids):
        if np.isnan(means[row]).any():
            yield _unscored(files, i)
            continue
        rec = base(files[0].records[i])
        scores = {n: round(float(s), 6) for n, s in zip(task.names, shares[row])}
        if task.kind == "multilabel":
            yield {**rec, "scores": scores, "pred": [n for n, s in zip(task.names, shares[row]) if s > 0.5]}
            continue
        top = np.flatnonzero(np.isclose(shares[row], shares[row].max()))
        winner = top[np.argmax(means[row][top])]
        yield {**rec, "scores": scores, "pred": task.names[winner]}


def route(files, experts, field):
    """Each record takes the prediction of its ``field`` value's expert (``experts``: value -> file)."""
    same_task(files)
    order = list(dict.fromkeys(i for f in files for i in f.records))
    for i in order:
        f = next(f for f in files if i in f.records)
        value = f.records[i].get(field)
        if value is None:
            raise ManifestError(f.name, f.lines[i], f"record has no `{field}` to route it by")
        expert = experts.get(str(value))
        if expert is None:
            raise ManifestError(f.name, f.lines[i], f"{field} {value!r}: no expert for it (give --expert {value}=FILE)")
        if i not in expert.records:
            raise XRError(f"{expert.name}: no record {i!r}, which its {field} {value!r} sends there")
        chosen = expert.records[i]
        yield {**chosen, "expert": expert.name}


class Stacker:
    """A logistic-regression meta-model over the files' probabilities, saved as plain JSON
    (coefficients, not a pickle: a meta-model from elsewhere cannot run code)."""

    def __init__(self, task, coef, intercept, files):
        self.task, self.coef, self.intercept, self.files = task, np.asarray(coef), np.asarray(intercept), files

    @staticmethod
    def features(files, ids, task):
        """Binary: each file's positive probability; otherwise every class (label) probability."""
        probs = [f.probabilities(ids) for f in files]
        if task.kind == "binary":
            return np.stack([p[:, 1] for p in probs], 1)
        return np.concatenate(probs, 1)

    @classmethod
    def fit(cls, files, ids, y, task, seed=0):
        from sklearn.linear_model import LogisticRegression

        x = cls.features(files, ids, task)
        if task.kind == "multilabel":
            coef, intercept = [], []
            for j, label in enumerate(task.names):
                known = ~np.isnan(y[:, j])
                if len(np.unique(y[known, j])) < 2:
                    raise XRError(f"label {label}: one class only in the fitting records; cannot stack")
                model = LogisticRegression(max_iter=1000, random_state=seed).fit(x[known], y[known, j])
                coef.append(model.coef_[0])
                intercept.append(model.intercept_[0])
            return cls(task, coef, intercept, len(files))
        if len(np.unique(y)) < (2 if task.kind == "binary" else len(task.names)):
            raise XRError("the fitting records do not have every class; cannot stack")
        model = LogisticRegression(max_iter=1000, random_state=seed).fit(x, y)
        return cls(task, model.coef_, model.intercept_, len(files))

    def probabilities(self, files, ids):
        if len(files) != self.files:
            raise UsageError(f"the meta-model was fitted on {self.files} files, not {len(files)}")
        x = self.features(files, ids, self.task)
        z = x @ self.coef.T + self.intercept
        if self.task.kind == "multiclass":
            e = np.exp(z - z.max(1, keepdims=True))
            return e / e.sum(1, keepdims=True)
        p = 1 / (1 + np.exp(-z))
        return np.concatenate([1 - p, p], 1) if self.task.kind == "binary" else p

    def save(self, path):
        with atomic_output(path) as f:
            json.dump({"format": "xr-stacker-1", "task": self.task.to_dict(), "files": self.files,
                       "coef": self.coef.tolist(), "intercept": self.intercept.tolist()}, f, indent=1)

    @classmethod
    def load(cls, path):
        from libxr.records.tasks import Task

        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
            if not isinstance(d, dict) or d.get("format") != "xr-stacker-1":
                raise ValueError("no xr-stacker-1 format tag")
            task, files = Task(**d["task"]), d["files"]
            _check_task(task)
            if isinstance(files, bool) or not isinstance(files, int) or files < 1:
                raise ValueError(f"files {files!r} is not a count of files")
            outputs = 1 if task.kind == "binary" else len(task.names)
            features = files * (1 if task.kind == "binary" else len(task.names))
            return cls(task, _numbers(d["coef"], (outputs, features), "coef"),
                       _numbers(d["intercept"], (outputs,), "intercept"), files)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise XRError(f"{path}: not an xr-cascade stack meta-model ({exc})") from None


def _check_task(task):
    """ValueError unless ``task`` is one Scored could infer: distinct names, as many as its kind has."""
    names = task.names
    if (not isinstance(names, list) or not all(isinstance(n, str) for n in names)
            or len(set(names)) != len(names)):
        raise ValueError(f"task names {names!r} are not distinct class names")
    fits = {"binary": len(names) == 2, "multiclass": len(names) > 2, "multilabel": len(names) > 0}
    if not fits.get(task.kind):
        raise ValueError(f"a {task.kind!r} task of {len(names)} classes")


def _numbers(value, shape, what):
    """``value`` (from JSON) as a float array of ``shape``, or ValueError: a meta-model of another
    shape would broadcast into wrong probabilities, and NaN or infinity into none."""
    a = np.asarray(value, dtype=object)          # ragged lists stay lists, so the shape shows it
    if a.shape != shape:
        raise ValueError(f"{what} has shape {a.shape}, not {shape}")
    bad = [v for v in a.flat if isinstance(v, bool) or not isinstance(v, (int, float))]
    if bad:
        raise ValueError(f"{what} holds {bad[0]!r}, not a number")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{what} holds {a[~np.isfinite(a)][0]}, not a finite number")
    return a


def stack(files, fit_on="val", load=None, save=None, threshold=0.5, seed=0, log=print):
    """Fit (on the records whose split is ``fit_on``) or load a meta-model; apply it to every record."""
    from libxr.judging.evaluation import read_predictions

    ids = align(files)
    task = files[0].task
    if load:
        stacker = Stacker.load(load)
        if stacker.task != task:
            raise XRError(f"{load} was fitted on {', '.join(stacker.task.names)}, the files score "
                          f"{', '.join(task.names)}")
        if stacker.files != len(files):
            raise UsageError(f"{load} was fitted on {stacker.files} files, not {len(files)}")
    else:
        fit_ids = [i for i in ids if files[0].records[i].get("split") == fit_on
                   and all("error" not in f.records[i] for f in files)]
        if not fit_ids:
            raise XRError(f"no records of split {fit_on!r} to fit the meta-model on (--fit-on)")
        truth = read_predictions(((files[0].lines[i], files[0].records[i]) for i in fit_ids), files[0].name)
        stacker = Stacker.fit(files, fit_ids, truth.y, task, seed)
        log(f"meta-model fitted on {len(fit_ids)} {fit_on} records")
        if save:
            stacker.save(save)
    return _records(files, ids, stacker.probabilities(files, ids), threshold)
