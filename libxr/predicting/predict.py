"""Scoring manifest records with a classifier: each record back with `scores` and `pred`.

HDF5-backed records are read from their file (memory-mapped, as in training);
the others are decoded from `path` with the checkpoint's preprocessing. An
image that cannot be read gives its record an `error` and no scores; the run
goes on (or stops, when strict). Records keep their order and every field, but a
`temperature` or `shift` from an earlier scoring: a scored record carries those its
scores were calibrated with, or none when they are raw, so xr-eval can undo them.
"""

import numpy as np

from libxr.errors import XRError
from libxr.judging.calibration import FIELDS, record_field
from libxr.pixels.datasets import RecordPixels
from libxr.pixels.files import MAX_PIXELS


def predict(records, clf, batch_size=64, tta="none", threshold=None, workers=0, strict=False, tick=lambda n: None,
            on_error=lambda reason: None, max_pixels=MAX_PIXELS):
    """Yield every record, in order, scored (or with an `error`; raw images over ``max_pixels`` too)."""
    from torch.utils.data import BatchSampler, DataLoader

    inputs = RecordPixels(records, clf.preprocess, check_store=clf.check_store, max_pixels=max_pixels)
    threshold = clf.threshold if threshold is None else threshold
    loader = DataLoader(inputs, batch_size=None, sampler=BatchSampler(range(len(records)), batch_size, False),
                        num_workers=workers, pin_memory=clf.device.type == "cuda",
                        collate_fn=_as_is)
    applied = {field: record_field(clf.task, value)           # what the scores were calibrated with
               for field, value in zip(FIELDS, (clf.temperature, clf.shift)) if value is not None}
    start = 0
    for pixels, _, ok, reasons in loader:
        stop = min(start + batch_size, len(records))
        scores = clf.scores(pixels, tta) if len(ok) else None
        scored = dict(zip(ok, range(len(ok))))
        for p in range(start, stop):
            rec = records[p]
            if p in scored:
                rec = {k: v for k, v in rec.items() if k not in FIELDS}
                yield {**rec, **decision(clf.task, scores[scored[p]], threshold), **applied}
            elif p in reasons:
                if strict:
                    raise XRError(reasons[p])
                on_error(reasons[p])
                yield {**rec, "error": reasons[p]}
            else:
                yield rec
        tick(stop - start)
        start = stop


def _as_is(batch):
    return batch


def decision(task, score, threshold=0.5):
    """The `scores` and `pred` fields for one record's probabilities."""
    if task.kind == "binary":
        p = float(score)
        negative, positive = task.names
        return {"scores": {negative: round(1 - p, 6), positive: round(p, 6)},
                "pred": positive if p >= threshold else negative}
    score = np.asarray(score, np.float64)
    scores = {name: round(float(s), 6) for name, s in zip(task.names, score)}
    if task.kind == "multiclass":
        return {"scores": scores, "pred": task.names[int(score.argmax())]}
    cuts = np.broadcast_to(np.asarray(threshold, np.float64), score.shape)     # one, or one per label
    return {"scores": scores, "pred": [n for n, s, c in zip(task.names, score, cuts) if s >= c]}
