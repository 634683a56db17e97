"""Scoring manifest records with a classifier: each record back with `scores` and `pred`.

HDF5-backed records are read from their file (memory-mapped, as in training);
the others are decoded from `path` with the checkpoint's preprocessing. An
image that cannot be read gives its record an `error` and no scores; the run
goes on (or stops, when strict). Records keep their order and every field.
"""

import numpy as np

from libxr.decode import DecodeError
from libxr.errors import XRError


class _Inputs:
    """Batches of pixels for positions of ``records``, mixing HDF5 rows and raw files.

    ``__getitem__`` returns (uint8 pixels of the readable positions, their mask,
    the reasons of the others) so a DataLoader's workers can decode in parallel.
    """

    def __init__(self, records, clf):
        from libxr.h5store import describe, open_store
        from libxr.loader import H5Batches

        self.records, self.clf = records, clf
        self.where = []              # per position: ("h5", store, index) | ("raw", path) | ("skip", None)
        rows = {}
        for rec in records:
            if "error" in rec:
                self.where.append(("skip", None))
            elif rec.get("h5") is not None:
                self.where.append(("h5", rec["h5"], len(rows.setdefault(rec["h5"], []))))
                rows[rec["h5"]].append(rec["row"])
            elif rec.get("path"):
                self.where.append(("raw", rec["path"]))
            else:
                raise XRError(f"record {rec['id']!r} has neither `h5`/`row` nor `path`: no image to score")
        self.stores = {}
        for path, wanted in rows.items():
            with open_store(path) as f:
                clf.check_store(describe(f)["params"], path)
                count = f["images"].shape[0]
            bad = next((r for r in wanted if not isinstance(r, int) or not 0 <= r < count), None)
            if bad is not None:
                raise XRError(f"{path}: row {bad!r} is not one of its {count} rows (a manifest of another file?)")
            self.stores[path] = H5Batches(path, wanted, np.zeros(len(wanted), np.float32))

    def __len__(self):
        return len(self.records)

    def __getitem__(self, positions):
        import torch

        from libxr.preprocess import prepare_array

        pp = self.clf.preprocess
        size, fit, kinds = self.clf.size, pp.get("fit", "pad"), tuple(pp.get("channels", ["gray"]))
        pixels, reasons = {}, {}
        wanted = {}
        for p in positions:
            kind, source, *index = self.where[p]
            if kind == "h5":
                wanted.setdefault(source, []).append((p, index[0]))
            elif kind == "raw":
                try:
                    pixels[p] = torch.from_numpy(prepare_array(source, size, fit, kinds).copy())
                except (DecodeError, OSError, ValueError, MemoryError) as exc:
                    reasons[p] = f"{source}: {exc}"
        for source, pairs in wanted.items():    # one fancy-indexed read per file
            block = self.stores[source][[i for _, i in pairs]][0]
            pixels.update((p, block[k]) for k, (p, _) in enumerate(pairs))
        ok = [p for p in positions if p in pixels]
        stacked = (torch.stack([pixels[p] for p in ok]) if ok
                   else torch.empty(0, self.clf.in_channels, size, size, dtype=torch.uint8))
        return stacked, ok, reasons


def predict(records, clf, batch_size=64, tta=(), threshold=None, workers=0, strict=False, tick=lambda n: None,
            on_error=lambda reason: None):
    """Yield every record, in order, scored (or with an `error`)."""
    from torch.utils.data import BatchSampler, DataLoader

    inputs = _Inputs(records, clf)
    threshold = clf.threshold if threshold is None else threshold
    loader = DataLoader(inputs, batch_size=None, sampler=BatchSampler(range(len(records)), batch_size, False),
                        num_workers=workers, pin_memory=clf.device.type == "cuda",
                        collate_fn=_as_is)
    start = 0
    for pixels, ok, reasons in loader:
        stop = min(start + batch_size, len(records))
        scores = clf.scores(pixels, tta) if len(ok) else None
        scored = dict(zip(ok, range(len(ok))))
        for p in range(start, stop):
            rec = records[p]
            if p in scored:
                yield {**rec, **decision(clf.task, scores[scored[p]], threshold)}
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
