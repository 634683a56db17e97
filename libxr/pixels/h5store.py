"""The HDF5 file xr-preprocess writes and the data loaders read (docs/hdf5.md).

/images  uint8 (N, C, H, W), one image per chunk: a random read touches one chunk
/ids     record ids (UTF-8), /split  the record's split ("" when none)
/label   int16 (N,) index into attrs["classes"], -1 = no label      (single-label)
/labels  float32 (N, L): 1 / 0 / -1, NaN = not stated               (multi-label)
/source_size, /source_mtime_ns  int64 (N,): the source image's stat before decoding
attrs    params (JSON), manifest_sha256, rows_sha256, xr_version, mean/std per
         channel over the train split (0..1 scale) and the sums they come from, complete
"""

import hashlib
import json
import os

import numpy as np

from libxr import __version__
from libxr.atomic import temporary_beside
from libxr.errors import RecordError, XRError
from libxr.pixels.h5layout import FORMAT, check_layout


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
        self.meta = _meta_datasets(self.file, capacity, self.classes, self.label_names)
        self.ids, self.split, self.label, self.labels = self.meta[:4]
        self.good = np.zeros(capacity, bool)
        self.sources = np.zeros((capacity, 2), np.int64)
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

    def add(self, records, ok, train_hist=None, images=None, sources=None):
        """Record the next ``len(records)`` rows; ``ok[i]`` says whether image i was
        decoded (and written, unless ``images`` (n, C, H, W) are given to store).
        ``train_hist``: the summed (C, 256) histograms of the train-split images;
        ``sources``: (n, 2) source image sizes and mtimes (ns).

        Returns each record's final row (None for a failed one)."""
        start, end = self.rows, self.rows + len(records)
        self.pending.extend(records)
        if len(self.pending) >= self.FLUSH:
            self._flush()
        if images is not None:
            for i in np.flatnonzero(ok):
                self.images[start + i] = images[i]
        self.good[start:end] = ok
        if sources is not None:
            self.sources[start:end] = sources
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
        size, mtime = self.meta[4:]
        size[:], mtime[:] = self.sources[:, 0], self.sources[:, 1]
        digest = rows_digest(self.ids.asstr()[:][self.good], *self.sources[self.good].T)
        write_attrs(self.file, params, manifest_sha256, self.classes, self.label_names, stats, over,
                    count, {"rows_sha256": digest, **(extra or {})})
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
                for old, new in zip(self.meta, meta):
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
    size, mtime = (f.create_dataset(name, shape=(rows,), dtype=np.int64, track_times=False)
                   for name in ("source_size", "source_mtime_ns"))
    return ids, split, label, labels, size, mtime


def rows_digest(ids, sizes, mtimes):
    """SHA-256 of the rows' ids and source sizes and mtimes: what a merged file records of
    each shard, so a shard written anew since (other records, changed images) is noticed."""
    digest = hashlib.sha256(json.dumps([str(i) for i in ids]).encode())
    digest.update(np.asarray(sizes, "<i8").tobytes())
    digest.update(np.asarray(mtimes, "<i8").tobytes())
    return digest.hexdigest()


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
    """Open an xr HDF5 file for reading; refuses files that are not complete, not laid out as
    xr-preprocess writes them (libxr.pixels.h5layout), or merged from shards that are gone or
    were written anew since the merge (a virtual dataset would read zeros or other images)."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise XRError(f"{path}: not a readable HDF5 file ({exc})") from None
    try:
        check_layout(f, path)
        if "shards" in f.attrs:
            _check_shards(f, path)
    except BaseException:
        f.close()
        raise
    return f


def _check_shards(f, path):
    """Every shard the merge recorded is there, complete, and still holds the rows merged."""
    recorded = json.loads(f.attrs["shards"])
    mapped = sorted({source.file_name for source in f["images"].virtual_sources()})
    if mapped != sorted(s["file"] for s in recorded):
        raise XRError(f"{path}: 'images' maps {', '.join(mapped)}, not the shards it records")
    params = json.loads(f.attrs["params"])
    for shard in recorded:
        where = os.path.join(os.path.dirname(path), shard["file"])
        if not os.path.exists(where):
            raise XRError(f"{path}: its shard {where} is missing (a merged file reads its pixels from its "
                          "shards): restore it, or preprocess and merge again")
        try:
            with open_store(where) as part:
                rows, digest = int(part.attrs["count"]), part.attrs["rows_sha256"]
                own = {k: v for k, v in json.loads(part.attrs["params"]).items() if k != "shard"}
        except XRError as exc:
            raise XRError(f"{path}: its shard {exc}") from None
        if (rows, digest, own) != (shard["rows"], shard["rows_sha256"], params):
            differs = (f"{rows} rows, {shard['rows']} were merged" if rows != shard["rows"] else
                       "other parameters" if own != params else "other ids or source images in its rows")
            raise XRError(f"{path}: its shard {where} was written anew since the merge ({differs}): "
                          "merge the shards again")


def check_rows(f, path, ids, rows):
    """Refuse records whose `row` is not a row of ``f``, or holds another record's image: a
    manifest of another file, or of this file before xr-preprocess wrote it anew."""
    stored = f["ids"].asstr()[:]
    for rid, row in zip(ids, rows):
        if not isinstance(row, int) or isinstance(row, bool) or not 0 <= row < len(stored):
            raise RecordError(rid, f"{path}: row {row!r} of record {rid!r} is not one of its {len(stored)} rows "
                              "(a manifest of another file?)")
        if stored[row] != rid:
            raise RecordError(rid, f"{path}: row {row} holds {stored[row]!r}, not {rid!r}: the manifest is stale "
                              "(the file was written anew since; use the manifest xr-preprocess wrote with it)")


def describe(f):
    """The attributes a consumer needs, decoded."""
    a = f.attrs
    return {"params": json.loads(a["params"]), "classes": json.loads(a["classes"]),
            "label_names": json.loads(a["label_names"]), "mean": np.asarray(a["mean"]),
            "std": np.asarray(a["std"]), "count": int(a["count"]), "manifest_sha256": a["manifest_sha256"]}


def check_whole_set(shards):
    """Refuse shard files that are not slices 0..N-1 of one manifest, each once (xr-preprocess
    --merge): a missing one would lose its images in silence, a repeated or foreign one give ids twice."""
    infos = []
    for shard in shards:
        with open_store(shard) as f:
            infos.append(describe(f))
    first = {}
    for shard, info in zip(shards, infos):
        index = info["params"].get("shard")
        if not (isinstance(index, list) and len(index) == 2):
            raise XRError(f"{shard}: not a shard (xr-preprocess --shard I/N wrote none of it)")
        if info["manifest_sha256"] != infos[0]["manifest_sha256"]:
            raise XRError(f"{shard}: a shard of another manifest than {shards[0]}")
        if index[1] != infos[0]["params"]["shard"][1]:
            raise XRError(f"{shard}: shard {index[0]}/{index[1]}, {shards[0]} is one of {infos[0]['params']['shard'][1]}")
        if index[0] in first:
            raise XRError(f"{shard}: shard {index[0]}/{index[1]} again (first {first[index[0]]})")
        first[index[0]] = shard
    total = infos[0]["params"]["shard"][1]
    missing = [str(i) for i in range(total) if i not in first]
    if missing:
        raise XRError(f"shard {', '.join(missing[:5])} of {total} missing: merge all {total} shard manifests")


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
        names = [os.path.relpath(os.path.abspath(s), directory) for s in shards]
        tmp = _temporary(path)
        try:
            with h5py.File(tmp, "x", libver="latest") as out:
                layout = h5py.VirtualLayout(shape=(total, *shape), dtype=np.uint8)
                layout.dcpl.set_obj_track_times(False)    # the same shards give the same bytes
                for name, start, n in zip(names, offsets, counts):
                    layout[start:start + n] = h5py.VirtualSource(name, "images", shape=(n, *shape))
                out.create_virtual_dataset("images", layout, fillvalue=0)
                text = h5py.string_dtype("utf-8")
                columns = {name: np.concatenate([f[name][:] for f in opened])
                           for name in ("ids", "split", "source_size", "source_mtime_ns")}
                for name, data in columns.items():
                    out.create_dataset(name, data=data, dtype=text if name in ("ids", "split") else np.int64,
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
                recorded = [{"file": name, "rows": n, "rows_sha256": f.attrs["rows_sha256"]}
                            for name, n, f in zip(names, counts, opened)]
                digest = rows_digest([i.decode() for i in columns["ids"]], columns["source_size"],
                                     columns["source_mtime_ns"])
                write_attrs(out, params, manifest_sha256, classes, label_names, stats,
                            "train" if overs == {"train"} else "+".join(sorted(overs)), total,
                            {"shards": json.dumps(recorded), "rows_sha256": digest})
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
