"""The records a run learns from and checks itself against, as datasets and targets.

Records preprocessed into one HDF5 file are read from it (its stored
normalisation and preprocessing go into the checkpoint); records without one
are decoded from their files with the run's --size/--fit/--channels, exactly
as xr-preprocess would, and an unreadable file stops the run naming it and its
record, in one line, whatever the DataLoader workers (libxr.pixels.datasets).
"""

import functools

import numpy as np

from libxr.errors import ManifestError, RecordError, XRError
from libxr.pixels.datasets import H5Batches, RecordPixels
from libxr.records.tasks import check_training_targets, infer_task, targets


class Data:
    """The train and validation records, their datasets and targets. ``lines``: (the manifest's name,
    {id: line}), naming the record an error is about by its FILE:LINE."""

    def __init__(self, records, opts, lines=None):
        if not records:
            raise XRError("no records to train on (the manifest is empty)")
        if opts.group:
            records = [r for r in records if r.get("group") == opts.group]
            if not records:
                raise XRError(f"no record has group {opts.group!r}")
        usable = [r for r in records if "error" not in r]
        self.notes = _unreadable(records, lines)
        self.task = infer_task(usable, opts.task, opts.positive)
        self.train = [r for r in usable if r.get("split") == "train"]
        self.val = [r for r in usable if r.get("split") == "val"]
        if not self.train:
            raise XRError("no record has split 'train' (xr-split makes one)")
        if not self.val:
            raise XRError("no record has split 'val': early stopping and checkpoints need one (xr-split --val)")
        targets_of = functools.partial(targets, task=self.task, uncertain=opts.uncertain)
        self.y_train = _located(lambda: targets_of(self.train), lines)
        self.y_val = _located(lambda: targets_of(self.val), lines)
        check_training_targets(self.y_train, self.task)
        used = [r for r in usable if r.get("split") in ("train", "val")]      # in the manifest's order
        h5 = {r.get("h5") for r in used}
        if len(h5) == 1 and None not in h5:
            from libxr.pixels.h5store import check_rows, describe, open_store

            path = h5.pop()
            with open_store(path) as f:
                _located(lambda: check_rows(f, path, [r["id"] for r in used], [r.get("row") for r in used]), lines)
                info = describe(f)
                shape = f["images"].shape[1:]
            self.preprocess = {**info["params"], "h5": path}
            self.in_channels, self.size = shape[0], shape[1]
            self.mean, self.std = info["mean"].tolist(), info["std"].tolist()
            self.train_set = H5Batches(path, [r["row"] for r in self.train], self.y_train)
            self.val_set = H5Batches(path, [r["row"] for r in self.val], self.y_val)
        elif None in h5 and len(h5) == 1:
            self.preprocess = {"size": opts.size, "fit": opts.fit, "channels": list(opts.channels)}
            self.in_channels, self.size = len(opts.channels), opts.size

            def pixels(part, y):
                return _located(lambda: RecordPixels(part, self.preprocess, y, strict=True,
                                                     max_pixels=opts.max_pixels), lines)

            self.train_set, self.val_set = pixels(self.train, self.y_train), pixels(self.val, self.y_val)
            self.mean, self.std = _sample_stats(self.train_set)
        else:
            raise XRError("records point at several HDF5 files, or some at none: preprocess them together")


def _unreadable(records, lines):
    """What says that train and val records with an `error` (images xr-preprocess could not
    read) are left out: [] or one line naming the first by FILE:LINE."""
    failed = [r for r in records if "error" in r and r.get("split") in ("train", "val")]
    if not failed:
        return []
    first = failed[0]
    where = f"{lines[0]}:{lines[1][first['id']]}" if lines and first.get("id") in lines[1] else repr(first.get("id"))
    return [f"{len(failed):,} train/val records with an `error` are left out (first {where}: {first['error']})"]


def _located(check, lines):
    """``check()``, a :class:`RecordError` it raises named by its record's manifest FILE:LINE."""
    try:
        return check()
    except RecordError as exc:
        if lines is None:
            raise
        name, numbers = lines
        raise ManifestError(name, numbers[exc.record], str(exc)) from None


def _sample_stats(dataset, limit=256):
    """Mean/std per channel from up to ``limit`` training images (raw-image runs)."""
    positions = np.linspace(0, len(dataset) - 1, min(limit, len(dataset))).astype(int)
    x = dataset[positions].pixels.double() / 255
    return x.mean((0, 2, 3)).tolist(), x.std((0, 2, 3)).tolist()
