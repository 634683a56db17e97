"""xr-preprocess: decode every image once into one HDF5 file (see libxr.pixels.h5store).

Two passes over the manifest: the first validates every line, counts the
records and collects the class and label names (so a bad line fails before any
decoding, and the HDF5 label arrays have fixed columns); the second decodes in a
process pool, in order, and writes rows as they come. Records go out only after
the HDF5 file is complete, so no record ever points at an unfinished file.

With ``update`` (an earlier output), an image whose id, size and mtime are those
stored there is copied from it instead of decoded: a nightly run decodes only
what is new or changed.
"""

import contextlib
import dataclasses
import hashlib
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import time

from libxr.errors import UsageError, XRError
from libxr.pixels.decode import DecodeError
from libxr.pixels.files import MAX_PIXELS
from libxr.pixels.h5store import Writer, check_whole_set, describe, histograms, merge, open_store
from libxr.pixels.prepare import prepare
from libxr.pixels.sources import source_stat
from libxr.processes import alive
from libxr.records.manifest import encode, read_records

AHEAD = 3
"""Windows of records in flight beyond the one being written."""


@dataclasses.dataclass
class PreprocessOptions:
    size: int = 224
    fit: str = "pad"
    channels: tuple = ("gray",)
    max_pixels: int = MAX_PIXELS   # a larger image is unreadable, refused from its header
    compression: str = None
    workers: int = 1
    shard: tuple = None          # (index, count)
    root: str = None
    strict: bool = False         # an unreadable image stops the run, and nothing is written
    update: str = None           # an earlier output to copy the rows of unchanged images from
    exact_resize: bool = False   # full-size decode, one bilinear step (libxr.pixels.fit), no reduction

    def params(self):
        return {"size": self.size, "fit": self.fit, "channels": list(self.channels),
                "interpolation": "bilinear", "resize": "exact" if self.exact_resize else "reduced",
                "gray": "luma (ITU-R 601); 16-bit and DICOM min-max"}


@dataclasses.dataclass
class Outcome:
    written: int = 0
    copied: int = 0              # of the written, copied from the earlier output (update)
    failed: list = dataclasses.field(default_factory=list)   # (record id, path, reason)


def image_path(record, root):
    path = record["path"]
    return path if root is None or os.path.isabs(path) else os.path.join(root, path)


# Pixels never travel through the pool's pipes (pickling ~50 KB per image halved
# the throughput on two cores): each worker writes its image at a byte offset of
# a file — the HDF5 file's contiguous pixel block when uncompressed, else a
# scratch file of slots the writer compresses from. Only the summed train
# histograms and the errors go back. Plain files work with every way of starting workers.
_files = {}


def _work(task):
    """In a worker: decode ``images`` [(path, byte offset, is train, kept)] into ``target`` — or
    copy row ``kept`` = (row, size, mtime ns) of the earlier output ``old`` when the image still
    has that size and mtime.

    Returns (summed (C, 256) histograms of the train images or None,
    [(None or why, the image's (size, mtime ns), whether copied), per image]).
    """
    size, how, kinds, max_pixels, exact, target, images, old = task
    if target not in _files:
        _files[target] = os.open(target, os.O_WRONLY)
    train_hist, results = None, []
    run, start = [], None        # consecutive rows decoded, written by one pwritev
    earlier = _Earlier(old)
    try:
        for path, offset, train, kept in images:
            stat = source_stat(path)     # before reading: a change after it shows as a change later
            copied = kept is not None and stat == kept[1:]
            try:
                if copied:
                    data, hist = earlier.row(kept[0], train)
                else:
                    data, hist = prepare(path, size, how, kinds, max_pixels, exact)
            except (DecodeError, MemoryError, ValueError) as exc:   # the last two: under --max-pixels,
                # yet more than this machine has
                why = str(exc) if isinstance(exc, DecodeError) else f"unreadable image: {exc}"
                results.append((why, stat, False))
                _write_run(target, run, start)
                start = None
                continue
            run.append(data)
            start = offset if start is None else start
            results.append((None, stat, copied))
            if train:
                train_hist = hist if train_hist is None else train_hist + hist
        _write_run(target, run, start)
    finally:
        earlier.close()
    return train_hist, results


def _write_run(target, run, start):
    """Write ``run``, consecutive rows from byte ``start`` of ``target``, in one system call, not one
    per image; empties it."""
    if run:
        want = sum(memoryview(row).nbytes for row in run)
        if os.pwritev(_files[target], run, start) != want:
            raise OSError(f"{target}: short write")
        run.clear()


class _Earlier:
    """Rows of the earlier output, opened at the first row asked for (so in the worker:
    no HDF5 handle crosses a fork)."""

    def __init__(self, path):
        self.path, self.file = path, None

    def row(self, row, train):
        """(pixels, (C, 256) histograms — only for a train image, which the statistics need) of ``row``."""
        import h5py

        if self.file is None:
            self.file = h5py.File(self.path, "r")
            self.images = self.file["images"]     # looked up once: a lookup costs more than the read
        image = self.images[row]
        return image, histograms(image) if train else None

    def close(self):
        if self.file is not None:
            self.file.close()


class Spool:
    """The input manifest as a file we can read twice, and its SHA-256."""

    def __init__(self, stream, name):
        self.name = name
        digest = hashlib.sha256()
        self.tmp = None
        if getattr(stream, "name", None) and os.path.isfile(stream.name):
            self.path = stream.name
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
        else:
            fd, self.tmp = tempfile.mkstemp(prefix="xr-manifest-", suffix=".jsonl")
            with os.fdopen(fd, "wb") as out:
                for block in iter(lambda: stream.read(1 << 20), b""):
                    digest.update(block)
                    out.write(block)
            self.path = self.tmp
        self.sha256 = digest.hexdigest()

    def records(self):
        with open(self.path, "rb") as f:
            yield from read_records(f, self.name, require=("id", "path"), unique=True)

    def close(self):
        if self.tmp:
            os.unlink(self.tmp)


def survey(spool):
    """Count the records and collect class and label names (and validate every line)."""
    count, classes, names = 0, set(), set()
    for rec in spool.records():
        count += 1
        if rec.get("label") is not None:
            classes.add(str(rec["label"]))
        if isinstance(rec.get("labels"), dict):
            names.update(rec["labels"])
    return count, sorted(classes), sorted(names)


def preprocess(stream, name, h5_path, opts, out, tick=lambda n, total=None: None, records_first=False):
    """Write ``h5_path`` and the records pointing into it (to the text stream ``out``).

    ``tick(n, total=None)`` is told the total, then every n records done (a progress bar).
    ``records_first``: ``out`` is a temporary file renamed into place after this returns, not a
    pipe, so the records are written to it before the HDF5 file is renamed into place: a failure
    writing them (a full disk) leaves neither, not a new HDF5 file whose records are lost.
    """
    spool = Spool(stream, name)
    try:
        count, classes, names = survey(spool)
        start, stop = 0, count
        if opts.shard:
            index, shards = opts.shard
            start, stop = count * index // shards, count * (index + 1) // shards
        records = (r for i, r in enumerate(spool.records()) if start <= i < stop)
        tick(0, stop - start)
        with tempfile.TemporaryFile("w+", encoding="utf-8") as lines:
            with _pool(opts.workers) as pool:   # workers start before the HDF5 file is open
                kept = _kept(opts) if opts.update else {}
                writer = Writer(h5_path, stop - start, len(opts.channels), opts.size, classes, names,
                                opts.compression)
                try:
                    with _target(writer, opts) as target:
                        outcome = _write(pool, records, opts, target, writer, h5_path, lines, tick, kept)
                    if opts.strict and outcome.failed:
                        _, path, reason = outcome.failed[0]
                        raise XRError(f"{path}: {reason} ({len(outcome.failed)} unreadable images; --strict "
                                      "writes neither the HDF5 file nor records)")
                    if outcome.failed and not outcome.written:
                        _, path, reason = outcome.failed[0]
                        hint = "; is --root right?" if reason == "missing" else ""
                        raise XRError(f"{path}: {reason}: no image could be read ({len(outcome.failed)} unreadable"
                                      f"{hint}): nothing written")
                    params = {**opts.params(), **({"shard": list(opts.shard)} if opts.shard else {})}
                    if records_first:
                        _copy(lines, out)
                        os.fsync(out.fileno())     # NFS and quotas report a full disk here, not at write
                    writer.finish(params, spool.sha256)
                except BaseException:
                    writer.abort()
                    raise
            if not records_first:
                _copy(lines, out)
        return outcome
    finally:
        spool.close()


def _copy(lines, out):
    lines.seek(0)
    shutil.copyfileobj(lines, out)
    out.flush()


def _kept(opts):
    """id -> (row, source size, mtime ns) of the earlier output ``opts.update`` ({} when there is none yet)."""
    if not os.path.exists(opts.update):
        return {}
    with open_store(opts.update) as f:
        params = {k: v for k, v in describe(f)["params"].items() if k != "shard"}
        if params != opts.params():
            differs = ", ".join(f"{k} {params.get(k)}, not {v}" for k, v in opts.params().items()
                                if params.get(k) != v)
            raise XRError(f"{opts.update}: preprocessed with {differs}: --update copies rows only from a file "
                          "made with the same --size, --fit, --channels and --exact-resize")
        stored = zip(f["ids"].asstr()[:], f["source_size"][:].tolist(), f["source_mtime_ns"][:].tolist())
        return {rid: (row, size, mtime) for row, (rid, size, mtime) in enumerate(stored)}


def _write(pool, records, opts, target, writer, h5_path, lines, tick, kept):
    """Drive the workers and record each image's row (or error) as it comes."""
    outcome = Outcome()
    for batch, results, train_hist, pixels in _ordered(pool, records, opts, target, kept):
        problems = [problem for problem, _, _ in results]
        rows = writer.add(batch, [problem is None for problem in problems], train_hist, pixels,
                          [stat for _, stat, _ in results])
        outcome.copied += sum(copied for _, _, copied in results)
        for rec, row, problem in zip(batch, rows, problems):
            if problem is None:
                rec = {**rec, "h5": h5_path, "row": row}
                outcome.written += 1
            else:
                rec = {**rec, "error": problem}
                outcome.failed.append((rec["id"], image_path(rec, opts.root), problem))
            lines.write(encode(rec) + "\n")
        tick(len(batch))
    return outcome


def _window(opts):
    """Records per window: up to 128, and no more than ~16 MB of pixels."""
    return max(8, min(128, (16 << 20) // (len(opts.channels) * opts.size ** 2)))


def _ordered(pool, records, opts, target, kept, ahead=AHEAD):
    """Windows of (records, [(problem or None, source stat, copied)], summed train histograms,
    pixels or None) in input order; ``kept``: what :func:`_kept` found.

    ``ahead`` windows are in flight while the writer handles the oldest, so the
    workers never wait. ``target`` is (file, offset of row 0, is the HDF5 file):
    rows go to the HDF5 file directly, or window k goes to slot group
    k mod (ahead + 1) of a scratch file — free again by the time it is reused —
    and its pixels come out as a memory-mapped view. Memory stays flat.
    """
    import collections
    import itertools

    import numpy as np

    path, offset, direct = target
    window = _window(opts)
    shape = (len(opts.channels), opts.size, opts.size)
    nbytes = int(np.prod(shape))
    slots = None if direct else np.memmap(path, np.uint8, "r", shape=((ahead + 1) * window, *shape))
    inflight = collections.deque()
    windows = itertools.count()
    row = 0

    def submit():
        nonlocal row
        batch = list(itertools.islice(records, window))
        if batch:
            base = (next(windows) % (ahead + 1)) * window
            first = row if direct else base
            images = [(image_path(rec, opts.root), offset + (first + i) * nbytes, rec.get("split") == "train",
                       kept.get(rec["id"])) for i, rec in enumerate(batch)]
            row += len(batch)
            step = max(1, len(images) // 4)
            futures = [pool.submit(_work, (opts.size, opts.fit, opts.channels, opts.max_pixels,
                                           opts.exact_resize, path, images[i:i + step], opts.update))
                       for i in range(0, len(images), step)]
            inflight.append((batch, base, futures))

    for _ in range(ahead):
        submit()
    while inflight:
        batch, base, futures = inflight.popleft()
        results = [future.result() for future in futures]
        submit()
        hists = [hist for hist, _ in results if hist is not None]
        yield (batch, [result for _, per_image in results for result in per_image],
               sum(hists) if hists else None, None if direct else slots[base:base + len(batch)])


class _Serial:
    """The executor interface, in-process: one worker needs no processes."""

    def submit(self, fn, arg):
        import concurrent.futures

        future = concurrent.futures.Future()
        future.set_result(fn(arg))
        return future

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _pool(workers):
    """A process pool, or an in-process stand-in for one worker.

    A ProcessPoolExecutor, not multiprocessing.Pool, whose terminate() can hang
    on a worker killed while holding the task queue's lock. Workers are forked
    when this process has no threads to speak of (the command line), which
    starts fastest; a process that imported torch has thread pools a fork can
    deadlock on, so its workers come from a clean fork server. Either way they
    exit when this process is gone (:func:`_die_with`).
    """
    import concurrent.futures

    if workers <= 1:
        return _Serial()
    method = "forkserver" if "torch" in sys.modules else "fork"
    pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method),
                                                  initializer=_die_with, initargs=(os.getpid(),))
    pool.submit(int).result()   # a forking executor starts all its workers at the first task: now
    return pool


def _die_with(parent, every=0.2):
    """Worker initializer: exit within ``every`` seconds of ``parent``, xr-preprocess, being gone.

    ``kill -9`` of xr-preprocess runs no Python code, so no executor shuts the workers
    down: they would live on, holding stdout open, and ``xr-preprocess ... | wc -l``
    would never end. ``parent`` is watched by its id, not as this process's parent
    (getppid, PR_SET_PDEATHSIG): a fork server's workers are its children, and it
    lives as long as they do.
    """
    def watch():
        while alive(parent):
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


@contextlib.contextmanager
def _target(writer, opts):
    """Where workers write pixels: (file, offset of row 0, whether it is the HDF5 file)."""
    direct = writer.target()
    if direct is not None:
        yield (*direct[:2], True)
        return
    size = (AHEAD + 1) * _window(opts) * len(opts.channels) * opts.size ** 2
    with tempfile.NamedTemporaryFile(prefix="xr-slots-", suffix=".raw") as scratch:
        scratch.truncate(size)
        yield scratch.name, 0, False


def merge_shards(streams, h5_path, out):
    """Join shard manifests (and their HDF5 files) into one file and one manifest."""
    digest = hashlib.sha256()
    shards, spools = {}, []     # shard file -> (position, name) of the manifest whose records point at it
    try:
        for position, (stream, name) in enumerate(streams):
            spool = Spool(stream, name)
            spools.append(spool)
            digest.update(spool.sha256.encode())
            for rec in spool.records():
                if "h5" in rec and shards.setdefault(rec["h5"], (position, name))[0] != position:
                    raise XRError(f"{name}: its records point at {rec['h5']}, as {shards[rec['h5']][1]}'s do: "
                                  "one shard's manifest given twice?")
        if not shards:
            raise UsageError("no record points at a shard file (h5): nothing to merge")
        files = list(shards)
        check_whole_set(files)
        offsets = merge(files, h5_path, digest.hexdigest())
        for spool in spools:
            for rec in spool.records():
                if "h5" in rec:
                    rec = {**rec, "h5": h5_path, "row": offsets[rec["h5"]] + rec["row"]}
                out.write(encode(rec) + "\n")
    finally:
        for spool in spools:
            spool.close()
    return len(shards)
