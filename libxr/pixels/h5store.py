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

import numpy as np

from libxr import __version__
from libxr.atomic import temporary_beside
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
        """Add images given by their summed per-channel histograms (C, 256): exact and cheap."""
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
    """Writes ``capacity`` rows to a temporary file that becomes ``path`` only in
    :meth:`finish`; an interrupted run leaves a hidden ``.NAME.*.part`` file, never
    a file at ``path`` that looks complete.

    Row i belongs to the i-th record. Without compression the pixels are one
    contiguous block allocated up front, so worker processes write each image
    straight into the file (:meth:`target`) and the writer only records the
    metadata; with compression the writer stores the images itself, one chunk
    per image. Rows whose image failed are dropped in :meth:`finish` (the file
    is rebuilt without them), so no garbage row ever remains.
    """

    def __init__(self, path, capacity, channels, size, classes=(), label_names=(), compression=None):
        import h5py

        if capacity < 1:
            raise XRError("no records to preprocess")
        self.path = path
        self.tmp = _temporary(path)
        self.shape = (channels, size, size)
        self.capacity = capacity
        self.compression = compression
        self.classes, self.label_names = list(classes), list(label_names)
        self.class_index = {c: i for i, c in enumerate(self.classes)}
        self.file = h5py.File(self.tmp, "x", libver="latest")
        self.images = _image_dataset(self.file, capacity, self.shape, compression)
        self.ids, self.split, self.label, self.labels = _meta_datasets(self.file, capacity, self.classes,
                                                                       self.label_names)
        self.good = np.zeros(capacity, bool)
        self.rows = self.kept = self.flushed = 0
        self.pending = []
        self.stats = Stats(channels)

    def target(self):
        """(file, byte offset of row 0, bytes per row) for direct writes, or None."""
        if self.compression is not None:
            return None
        return self.tmp, self.images.id.get_offset(), int(np.prod(self.shape))

    FLUSH = 4096
    """Rows of ids, splits and labels gathered before one write: h5py's per-call
    cost (string conversion above all) would otherwise be paid every window."""

    def add(self, records, ok, train_hist=None, images=None):
        """Record the next ``len(records)`` rows; ``ok[i]`` says whether image i was
        decoded (and written, unless ``images`` (n, C, H, W) are given to store).
        ``train_hist``: the summed (C, 256) histograms of the train-split images.

        Returns each record's final row (None for a failed one)."""
        start, end = self.rows, self.rows + len(records)
        self.pending.extend(records)
        if len(self.pending) >= self.FLUSH:
            self._flush()
        if images is not None:
            for i in np.flatnonzero(ok):
                self.images[start + i] = images[i]
        self.good[start:end] = ok
        if train_hist is not None:
            self.stats.add_histograms(train_hist)
        rows = []
        for good in ok:
            rows.append(self.kept if good else None)
            self.kept += bool(good)
        self.rows = end
        return rows

    def _flush(self):
        records, start = self.pending, self.flushed
        end = start + len(records)
        self.ids[start:end] = [r["id"] for r in records]
        self.split[start:end] = [r.get("split") or "" for r in records]
        if self.label is not None:
            self.label[start:end] = [self.class_index.get(str(r.get("label")), -1)
                                     if r.get("label") is not None else -1 for r in records]
        if self.labels is not None:
            self.labels[start:end] = label_matrix(records, self.label_names)
        self.flushed, self.pending = end, []

    def finish(self, params, manifest_sha256, extra=None):
        """Write the attributes, drop failed rows, and move the file into place."""
        self._flush()
        stats, over = self.stats, "train"
        if not stats.pixels:  # no train split: describe every image instead
            stats, over = Stats(self.shape[0]), "all"
            for start in range(0, self.capacity, 256):
                for image, good in zip(self.images[start:start + 256], self.good[start:start + 256]):
                    if good:
                        stats.add(image)
        count = int(self.good.sum())
        write_attrs(self.file, params, manifest_sha256, self.classes, self.label_names, stats, over,
                    count, extra)
        if count < self.capacity:
            self._compact(count)
        self.file.close()
        os.replace(self.tmp, self.path)

    def _compact(self, count):
        """Rebuild the file with the good rows only (the slow path, taken only on failures)."""
        import h5py

        tmp = _temporary(self.path)
        keep = np.flatnonzero(self.good)
        with h5py.File(tmp, "x", libver="latest") as out:
            images = _image_dataset(out, count, self.shape, self.compression)
            meta = _meta_datasets(out, count, self.classes, self.label_names)
            for start in range(0, count, 256):
                rows = keep[start:start + 256]
                images[start:start + len(rows)] = self.images[rows]
                for old, new in zip((self.ids, self.split, self.label, self.labels), meta):
                    if old is not None:
                        new[start:start + len(rows)] = old[rows]
            out.attrs.update(dict(self.file.attrs))
        self.file.close()
        os.unlink(self.tmp)
        self.file = h5py.File(tmp, "r")
        self.tmp = tmp

    def abort(self):
        try:
            self.file.close()
        finally:
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)


def _temporary(path):
    """A free hidden name beside ``path``, for h5py to create (mode "x").

    Not an empty file opened with "w": truncating a file makes ext4 allocate all
    its delayed blocks when it is closed (auto_da_alloc), 0.2 s per 300 MB.
    """
    fd, tmp = temporary_beside(path)
    os.close(fd)
    os.unlink(tmp)
    return tmp


def _image_dataset(f, rows, shape, compression):
    import h5py

    if compression is not None:
        return f.create_dataset("images", shape=(rows, *shape), dtype=np.uint8, chunks=(1, *shape),
                                compression=compression, track_times=False)
    # Contiguous and allocated now (not at first write), with no fill: its byte
    # offset is fixed, so workers can write rows into it directly.
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.CONTIGUOUS)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    dcpl.set_obj_track_times(False)      # the same inputs give the same bytes (make, cmp)
    space = h5py.h5s.create_simple((rows, *shape))
    h5py.h5d.create(f.id, b"images", h5py.h5t.STD_U8LE, space, dcpl=dcpl)
    return f["images"]


def _meta_datasets(f, rows, classes, label_names):
    import h5py

    text = h5py.string_dtype("utf-8")
    ids = f.create_dataset("ids", shape=(rows,), dtype=text, track_times=False)
    split = f.create_dataset("split", shape=(rows,), dtype=text, track_times=False)
    label = f.create_dataset("label", shape=(rows,), dtype=np.int16, track_times=False) if classes else None
    labels = f.create_dataset("labels", shape=(rows, len(label_names)), dtype=np.float32, track_times=False) \
        if label_names else None
    return ids, split, label, labels


def label_matrix(records, names):
    """(n, L) float32: 1 / 0 / -1 as stated, NaN where a label is not stated."""
    values = np.full((len(records), len(names)), np.nan, np.float32)
    for i, r in enumerate(records):
        labels = r.get("labels") or {}
        for j, name in enumerate(names):
            v = labels.get(name)
            if v is not None:
                values[i, j] = v
    return values


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


def check_rows(f, path, ids, rows):
    """Refuse records whose `row` is not a row of ``f``, or holds another record's image: a
    manifest of another file, or of this file before xr-preprocess wrote it anew."""
    stored = f["ids"].asstr()[:]
    for rid, row in zip(ids, rows):
        if not isinstance(row, int) or isinstance(row, bool) or not 0 <= row < len(stored):
            raise XRError(f"{path}: row {row!r} of record {rid!r} is not one of its {len(stored)} rows "
                          "(a manifest of another file?)")
        if stored[row] != rid:
            raise XRError(f"{path}: row {row} holds {stored[row]!r}, not {rid!r}: the manifest is stale "
                          "(the file was written anew since; use the manifest xr-preprocess wrote with it)")


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
        params = {k: v for k, v in infos[0]["params"].items() if k != "shard"}
        for shard, info in zip(shards, infos):
            if {k: v for k, v in info["params"].items() if k != "shard"} != params:
                raise XRError(f"{shard}: preprocessed with other parameters than {shards[0]}")
        classes = sorted({c for i in infos for c in i["classes"]})
        label_names = sorted({n for i in infos for n in i["label_names"]})
        counts = [i["count"] for i in infos]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(int)
        total = int(offsets[-1])
        shape = opened[0]["images"].shape[1:]
        directory = os.path.dirname(os.path.abspath(path))
        tmp = _temporary(path)
        try:
            with h5py.File(tmp, "x", libver="latest") as out:
                layout = h5py.VirtualLayout(shape=(total, *shape), dtype=np.uint8)
                for shard, f, start, n in zip(shards, opened, offsets, counts):
                    source = h5py.VirtualSource(os.path.relpath(os.path.abspath(shard), directory), "images",
                                                shape=(n, *shape))
                    layout[start:start + n] = source
                out.create_virtual_dataset("images", layout, fillvalue=0)
                text = h5py.string_dtype("utf-8")
                out.create_dataset("ids", data=np.concatenate([f["ids"][:] for f in opened]), dtype=text,
                                  track_times=False)
                out.create_dataset("split", data=np.concatenate([f["split"][:] for f in opened]), dtype=text,
                                  track_times=False)
                if classes:
                    out.create_dataset("label", track_times=False, data=np.concatenate(
                        [_remap_classes(f, i["classes"], classes) for f, i in zip(opened, infos)]))
                if label_names:
                    out.create_dataset("labels", track_times=False, data=np.concatenate(
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
