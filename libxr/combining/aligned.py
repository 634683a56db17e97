"""Several prediction files over the same records, matched by `id` — never by line order.

Every file must score the same classes (or labels); a duplicate id in a file, or
an id some files have and others lack, is an error that names the file and line.
"""

import numpy as np

from libxr.errors import ManifestError, XRError
from libxr.judging.calibration import FIELDS
from libxr.records.manifest import read_records
from libxr.records.tasks import record_scores, task_from_scores


class Scored:
    """One prediction file: records by id, in file order, and the task their scores imply —
    multi-label when the truth is (`labels` an object, as xr-eval reads it), else when `pred` is a list."""

    def __init__(self, stream, name):
        self.name = name
        self.records, self.lines = {}, {}
        self.names = None
        multilabel = None
        for line, rec in read_records(stream, name, numbered=True, unique=True):
            self.records[rec["id"]], self.lines[rec["id"]] = rec, line
            if "error" in rec:
                continue
            scores = record_scores(rec, name, line)
            if self.names is None:
                self.names = list(scores)
            elif set(scores) != set(self.names):
                raise ManifestError(name, line, f"scores for {', '.join(scores)}, earlier records had "
                                                f"{', '.join(self.names)}")
            if multilabel is None:              # the first scored record that tells decides
                multilabel = _multilabel(rec)
        if self.names is None:
            raise XRError(f"{name}: no scored records")
        self.task = task_from_scores(self.names, bool(multilabel))

    def probabilities(self, ids):
        """(len(ids), classes) scores in task order; NaN rows for records with an `error`."""
        rows = [self.records[i].get("scores") for i in ids]
        return np.array([[np.nan] * len(self.task.names) if s is None else [float(s[n]) for n in self.task.names]
                         for s in rows])


def _multilabel(record):
    """Whether ``record`` is multi-label: its truth decides, as in xr-eval's read_predictions (`labels` an
    object, or a `label`), else its `pred` (a list); None when neither tells."""
    if isinstance(record.get("labels"), dict):
        return True
    if record.get("label") is not None:
        return False
    pred = record.get("pred")
    return None if pred is None else isinstance(pred, list)


def same_task(files):
    """The one task every file scores; files that list its classes in another order take the first's."""
    for other in files[1:]:
        if other.task.kind == files[0].task.kind and set(other.task.names) == set(files[0].task.names):
            other.task = files[0].task
        if other.task != files[0].task:
            raise XRError(f"{other.name} scores {', '.join(other.task.names)}; {files[0].name} scores "
                          f"{', '.join(files[0].task.names)}")
    return files[0].task


def align(files):
    """The ids of the first file, checked present exactly once in every other file, and one task."""
    same_task(files)
    return same_ids(files)


def same_ids(files):
    """The ids of the first file, checked present exactly once in every other file (whatever they score)."""
    first = files[0]
    ids = list(first.records)
    for other in files[1:]:
        missing = [i for i in ids if i not in other.records]
        extra = [i for i in other.records if i not in first.records]
        if missing or extra:
            which, file = (missing[0], first) if missing else (extra[0], other)
            raise ManifestError(file.name, file.lines[which], f"id {which!r} is not in "
                                f"{other.name if missing else first.name} ({len(missing) + len(extra)} ids differ)")
    return ids


def base(record):
    """A record without the fields a combination replaces — its `temperature` and `shift` too:
    combined scores are no longer one model's calibrated ones, which xr-eval could undo."""
    return {k: v for k, v in record.items() if k not in ("scores", "pred", "error", "stages", *FIELDS)}
