"""The HDF5 file xr-preprocess writes and the data loaders read (docs/hdf5.md).

/images  uint8 (N, C, H, W), one image per chunk: a random read touches one chunk
/ids     record ids (UTF-8), /split  the record's split ("" when none)
/label   int16 (N,) index into attrs["classes"], -1 = no label      (single-label)
/labels  float32 (N, L): 1 / 0 / -1, NaN = not stated               (multi-label)
attrs    params (JSON), manifest_sha256, xr_version, mean/std per channel over
         the train split (0..1 scale) and the sums they come from, complete
"""

import json
import os
import tempfile

import numpy as np

from libxr import __version__
from libxr.errors import XRError

FORMAT = "xr-hdf5/1"


def histograms(image):
    """Per-channel 256-bin histograms of a (C, H, W) uint8 image."""
    return np.stack([np.bincount(channel.ravel(), minlength=256) for channel in image])


class Stats:
    """Per-channel pixel sums (0..1 scale) over the train split, mergeable across shards."""

    def __init__(self, channels):
        self.sum = np.zeros(channels)
        self.sumsq = np.zeros(channels)
        self.pixels = 0

    _LEVELS = np.arange(256) / 255.0

    def add(self, image):
        self.add_histograms(histograms(image))

    def add_histograms(self, hist):
        """Add an image given by its per-channel histograms (C, 256): exact and cheap."""
        self.sum += hist @ self._LEVELS
        self.sumsq += hist @ np.square(self._LEVELS)
        self.pixels += int(hist[0].sum())

    def merge(self, other_sum, other_sumsq, other_pixels):
        self.sum += other_sum
        self.sumsq += other_sumsq
        self.pixels += int(other_pixels)

    def mean_std(self):
        if not self.pixels:
            return np.full(len(self.sum), np.nan), np.full(len(self.sum), np.nan)
        mean = self.sum / self.pixels
        return mean, np.sqrt(np.maximum(self.sumsq / self.pixels - mean ** 2, 0))


class Writer:
    """Writes rows to a temporary file that becomes ``path`` only in :meth:`finish`.

    An interrupted run leaves a hidden ``.NAME.*.part`` file, never a file at
    ``path`` that looks complete.
    """

    def __init__(self, path, capacity, channels, size, classes=(), label_names=(), compression=None):
        self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        fd, self.tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".part")
        os.close(fd)
        import h5py

        # "latest": chunk indexes that append in constant time (B-trees slowed writes 5x).
        self.file = h5py.File(self.tmp, "w", libver="latest")
        capacity = max(capacity, 1)
        shape = (channels, size, size)
        self.images = self.file.create_dataset(
            "images", shape=(capacity, *shape), maxshape=(None, *shape), dtype=np.uint8,
            chunks=(1, *shape), compression=compression)
        text = h5py.string_dtype("utf-8")
        self.ids = self.file.create_dataset("ids", shape=(capacity,), maxshape=(None,), dtype=text)
        self.split = self.file.create_dataset("split", shape=(capacity,), maxshape=(None,), dtype=text)
        self.classes, self.label_names = list(classes), list(label_names)
        self.class_index = {c: i for i, c in enumerate(self.classes)}
        self.label = self.file.create_dataset("label", shape=(capacity,), maxshape=(None,), dtype=np.int16) \
            if self.classes else None
        self.labels = self.file.create_dataset(
            "labels", shape=(capacity, len(self.label_names)), maxshape=(None, len(self.label_names)),
            dtype=np.float32) if self.label_names else None
        self.capacity = capacity
        self.rows = 0
        self.stats = Stats(channels)

    def append(self, records, images, hists=None):
        """Add rows: ``records`` and their (n, C, H, W) uint8 ``images``; returns the first row.

        ``hists``: the images' (n, C, 256) histograms, when the caller has them
        already. Writing many rows at once is much faster than one at a time.
        """
        start, end = self.rows, self.rows + len(records)
        if end > self.capacity:
            self.capacity = max(end, 2 * self.capacity)
            for ds in self._datasets():
                ds.resize(self.capacity, axis=0)
        self.images[start:end] = images
        self.ids[start:end] = [r["id"] for r in records]
        self.split[start:end] = [r.get("split") or "" for r in records]
        if self.label is not None:
            self.label[start:end] = [self.class_index.get(str(r.get("label")), -1)
                                     if r.get("label") is not None else -1 for r in records]
        if self.labels is not None:
            values = np.full((len(records), len(self.label_names)), np.nan, np.float32)
            for i, r in enumerate(records):
                for j, name in enumerate(self.label_names):
                    v = (r.get("labels") or {}).get(name)
                    if v is not None:
                        values[i, j] = v
            self.labels[start:end] = values
        for i, r in enumerate(records):
            if r.get("split") == "train":
                self.stats.add_histograms(hists[i] if hists is not None else histograms(images[i]))
        self.rows = end
        return start

    def _datasets(self):
        return [d for d in (self.images, self.ids, self.split, self.label, self.labels) if d is not None]

    def finish(self, params, manifest_sha256, extra=None):
        """Trim, write the attributes, and move the file into place."""
        for ds in self._datasets():
            ds.resize(self.rows, axis=0)
        stats, over = self.stats, "train"
        if not stats.pixels:  # no train split: describe all rows instead
            stats, over = Stats(self.images.shape[1]), "all"
            for start in range(0, self.rows, 256):
                for image in self.images[start:start + 256]:
                    stats.add(image)
        write_attrs(self.file, params, manifest_sha256, self.classes, self.label_names, stats, over,
                    self.rows, extra)
        self.file.close()
        os.replace(self.tmp, self.path)

    def abort(self):
        try:
            self.file.close()
        finally:
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)


def write_attrs(f, params, manifest_sha256, classes, label_names, stats, over, count, extra=None):
    mean, std = stats.mean_std()
    f.attrs.update({"format": FORMAT, "xr_version": __version__, "params": json.dumps(params, sort_keys=True),
                    "manifest_sha256": manifest_sha256, "classes": json.dumps(list(classes)),
                    "label_names": json.dumps(list(label_names)), "mean": mean, "std": std,
                    "stats_sum": stats.sum, "stats_sumsq": stats.sumsq, "stats_pixels": stats.pixels,
                    "stats_over": over, "count": count, **(extra or {})})
    f.attrs["complete"] = True


def open_store(path):
    """Open an xr HDF5 file for reading; refuses files that are not complete."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise XRError(f"{path}: not a readable HDF5 file ({exc})") from None
    if f.attrs.get("format") != FORMAT or not f.attrs.get("complete"):
        f.close()
        raise XRError(f"{path}: not a complete xr-preprocess file")
    return f


def describe(f):
    """The attributes a consumer needs, decoded."""
    a = f.attrs
    return {"params": json.loads(a["params"]), "classes": json.loads(a["classes"]),
            "label_names": json.loads(a["label_names"]), "mean": np.asarray(a["mean"]),
            "std": np.asarray(a["std"]), "count": int(a["count"]), "manifest_sha256": a["manifest_sha256"]}


def merge(shards, path, manifest_sha256):
    """Join shard files into ``path`` through a virtual dataset: no pixel is copied.

    Returns the row offset of each shard in the merged file. Source files are
    referenced relative to the merged file's folder, so the set can move together.
    """
    import h5py

    opened = [open_store(s) for s in shards]
    try:
        infos = [describe(f) for f in opened]
        params = infos[0]["params"]
        for shard, info in zip(shards, infos):
            if info["params"] != params:
                raise XRError(f"{shard}: preprocessed with other parameters than {shards[0]}")
        classes = sorted({c for i in infos for c in i["classes"]})
        label_names = sorted({n for i in infos for n in i["label_names"]})
        counts = [i["count"] for i in infos]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(int)
        total = int(offsets[-1])
        shape = opened[0]["images"].shape[1:]
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".part")
        os.close(fd)
        try:
            with h5py.File(tmp, "w", libver="latest") as out:
                layout = h5py.VirtualLayout(shape=(total, *shape), dtype=np.uint8)
                for shard, f, start, n in zip(shards, opened, offsets, counts):
                    source = h5py.VirtualSource(os.path.relpath(os.path.abspath(shard), directory), "images",
                                                shape=(n, *shape))
                    layout[start:start + n] = source
                out.create_virtual_dataset("images", layout, fillvalue=0)
                text = h5py.string_dtype("utf-8")
                out.create_dataset("ids", data=np.concatenate([f["ids"][:] for f in opened]), dtype=text)
                out.create_dataset("split", data=np.concatenate([f["split"][:] for f in opened]), dtype=text)
                if classes:
                    out.create_dataset("label", data=np.concatenate(
                        [_remap_classes(f, i["classes"], classes) for f, i in zip(opened, infos)]))
                if label_names:
                    out.create_dataset("labels", data=np.concatenate(
                        [_remap_labels(f, i["label_names"], label_names) for f, i in zip(opened, infos)]))
                stats = Stats(shape[0])
                overs = set()
                for f in opened:
                    stats.merge(f.attrs["stats_sum"], f.attrs["stats_sumsq"], f.attrs["stats_pixels"])
                    overs.add(str(f.attrs["stats_over"]))
                write_attrs(out, params, manifest_sha256, classes, label_names, stats,
                            "train" if overs == {"train"} else "+".join(sorted(overs)), total,
                            {"shards": json.dumps([os.path.relpath(os.path.abspath(s), directory)
                                                   for s in shards])})
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    finally:
        for f in opened:
            f.close()
    return dict(zip(shards, offsets[:-1].tolist()))


def _remap_classes(f, own, union):
    if "label" not in f:
        return np.full(f["ids"].shape[0], -1, np.int16)
    index = np.array([union.index(c) for c in own] + [-1], np.int16)
    return index[f["label"][:]]   # -1 indexes the appended -1


def _remap_labels(f, own, union):
    out = np.full((f["ids"].shape[0], len(union)), np.nan, np.float32)
    if "labels" in f:
        out[:, [union.index(n) for n in own]] = f["labels"][:]
    return out
