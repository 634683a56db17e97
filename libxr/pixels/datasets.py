"""Batches of uint8 pixels for manifest records: HDF5 rows, or image files decoded on the fly.

Every dataset here is indexed by a *list* of positions and returns one whole
:class:`Batch`, so a DataLoader moves one array per batch instead of collating
B small ones. Pixels stay uint8 until :class:`libxr.pixels.augment.BatchTransform`
turns them into normalised floats — on the GPU when training there.

Raw files go through :mod:`libxr.pixels.prepare`, xr-preprocess's own path. A
file that cannot be read (or is larger than ``max_pixels``) is an error naming it
and its record in a strict dataset (training: a model trained on fewer images
than the manifest names is not the one asked for); otherwise its position is left
out of the batch with the reason (prediction, where one bad file costs one
record, not the run).
"""

import os
import signal
from typing import NamedTuple

import numpy as np

from libxr.errors import RecordError, XRError
from libxr.pixels.decode import DecodeError
from libxr.pixels.files import MAX_PIXELS


class Batch(NamedTuple):
    pixels: object        # uint8 tensor (B, C, H, W) of the readable positions
    targets: object       # their targets (None when the dataset has none)
    positions: list       # the positions read, in the order asked
    reasons: dict         # position -> why it could not be read (lenient datasets only)


class H5Batches:
    """Rows of an xr HDF5 file (libxr.pixels.h5store).

    The file is opened lazily in each process (an h5py handle shared across
    fork breaks), and an uncompressed contiguous pixel block is read through a
    memory map: a random batch is one fancy-indexed copy, no HDF5 call per row.
    """

    def __init__(self, path, rows, targets):
        self.path = path
        self.rows = np.asarray(rows, np.int64)
        self.targets = np.asarray(targets)
        if len(self.rows) != len(self.targets):
            raise ValueError("rows and targets differ in length")
        self._pid = None

    def __len__(self):
        return len(self.rows)

    def _open(self):
        if self._pid == os.getpid():
            return
        from libxr.pixels.h5store import open_store

        f = open_store(self.path)
        images = f["images"]
        self.shape = images.shape[1:]
        offset = images.id.get_offset() if not images.is_virtual and images.chunks is None else None
        if offset is not None:
            self._pixels = np.memmap(self.path, np.uint8, "r", offset=offset, shape=images.shape)
            f.close()
        else:
            self._file, self._pixels = f, images
        self._pid = os.getpid()

    def __getitem__(self, positions):
        import torch

        self._open()
        positions = np.atleast_1d(np.asarray(positions, np.int64))
        rows = self.rows[positions]
        if isinstance(self._pixels, np.memmap):
            pixels = self._pixels[rows]
        else:  # h5py wants increasing, unique indices
            order = np.argsort(rows)
            unique, inverse = np.unique(rows[order], return_inverse=True)
            block = self._pixels[unique]
            pixels = np.empty((len(rows), *self.shape), np.uint8)
            pixels[order] = block[inverse]
        return Batch(torch.from_numpy(np.ascontiguousarray(pixels)), torch.from_numpy(self.targets[positions]),
                     positions.tolist(), {})


class RecordPixels:
    """The pixels of ``records``, mixing HDF5 rows and raw files, with ``preprocess``'s
    settings (size, fit, channels, resize) for the raw ones.

    ``strict``: an unreadable file raises an XRError naming it and its record (training;
    see :meth:`require`); otherwise its position is left out of the batch and its reason
    returned. Records with an `error` field are left out silently in both modes: an
    earlier step already reported them. ``check_store(params, path)`` may refuse an HDF5
    file prepared differently. ``max_pixels``: larger images are unreadable, refused from
    their header before decoding.
    """

    def __init__(self, records, preprocess, targets=None, strict=False, check_store=None,
                 max_pixels=MAX_PIXELS):
        from libxr.pixels.h5store import check_rows, describe, open_store

        self.records = records
        self.targets = None if targets is None else np.asarray(targets)
        self.strict, self.max_pixels = strict, max_pixels
        self.size, self.fit = preprocess["size"], preprocess.get("fit", "pad")
        self.kinds = tuple(preprocess.get("channels", ["gray"]))
        self.exact = preprocess.get("resize") == "exact"      # xr-preprocess --exact-resize
        self.where = []              # per position: ("h5", store, index) | ("raw", path) | ("skip", None)
        rows, ids = {}, {}
        for rec in records:
            if "error" in rec:
                self.where.append(("skip", None))
            elif rec.get("h5") is not None:
                self.where.append(("h5", rec["h5"], len(rows.setdefault(rec["h5"], []))))
                rows[rec["h5"]].append(rec.get("row"))
                ids.setdefault(rec["h5"], []).append(rec["id"])
            elif rec.get("path"):
                self.where.append(("raw", rec["path"]))
            else:
                raise RecordError(rec["id"], f"record {rec['id']!r} has neither `h5`/`row` nor `path`: no image")
        self.stores = {}
        for path, wanted in rows.items():
            with open_store(path) as f:
                if check_store is not None:
                    check_store(describe(f)["params"], path)
                check_rows(f, path, ids[path], wanted)
            self.stores[path] = H5Batches(path, wanted, np.zeros(len(wanted), np.float32))

    def __len__(self):
        return len(self.records)

    def __getitem__(self, positions):
        import torch
        from torch.utils.data import get_worker_info

        from libxr.pixels.prepare import prepare_array

        positions = np.atleast_1d(np.asarray(positions, np.int64)).tolist()
        pixels, reasons, wanted = {}, {}, {}
        for p in positions:
            kind, source, *index = self.where[p]
            if kind == "h5":
                wanted.setdefault(source, []).append((p, index[0]))
            elif kind == "raw":
                try:
                    pixels[p] = torch.from_numpy(prepare_array(source, self.size, self.fit, self.kinds,
                                                               self.max_pixels, self.exact).copy())
                except (DecodeError, OSError, ValueError, MemoryError) as exc:
                    reasons[p] = f"{source}: {exc}"
        for source, pairs in wanted.items():    # one fancy-indexed read per file
            block = self.stores[source][[i for _, i in pairs]].pixels
            pixels.update((p, block[k]) for k, (p, _) in enumerate(pairs))
        ok = [p for p in positions if p in pixels]
        stacked = (torch.stack([pixels[p] for p in ok]) if ok
                   else torch.empty(0, len(self.kinds), self.size, self.size, dtype=torch.uint8))
        targets = None if self.targets is None else torch.from_numpy(self.targets[ok])
        batch = Batch(stacked, targets, ok, reasons)
        # In a DataLoader worker the reasons travel back: batches() raises there, in one line
        # (torch would wrap an error raised here in a traceback that names no file first).
        return self.require(batch) if get_worker_info() is None else batch

    def require(self, batch):
        """``batch``; in a strict dataset, an XRError naming its first unreadable file and record."""
        if self.strict and batch.reasons:
            position, reason = next(iter(batch.reasons.items()))
            raise XRError(f"{reason}; record {self.records[position]['id']!r} (xr-preprocess lists "
                          "every unreadable image and leaves them out)")
        return batch


def batches(dataset, batch_size, order=None, workers=0, drop_last=False):
    """The :class:`Batch` es of ``dataset`` from a DataLoader, visiting ``order`` (indices;
    libxr.learning.sampling makes the seeded ones) or every position in turn; a strict
    dataset's unreadable file is an error here, in this process, whatever the ``workers``;
    ``workers`` processes leave stop signals to this one (:func:`_started`)."""
    import torch
    from torch.utils.data import BatchSampler, DataLoader

    sampler = BatchSampler(range(len(dataset)) if order is None else order, batch_size, drop_last)
    loader = DataLoader(dataset, batch_size=None, sampler=sampler, num_workers=workers,
                        persistent_workers=False, pin_memory=torch.cuda.is_available(),
                        prefetch_factor=4 if workers else None, worker_init_fn=_ignore_stops if workers else None)
    loader = _started(loader) if workers else loader
    require = getattr(dataset, "require", None)
    return loader if require is None else map(require, loader)


_STOPS = (signal.SIGTERM, signal.SIGINT)


def _started(loader):
    """``loader``'s batches, its workers started with SIGTERM and SIGINT blocked.

    A scheduler's stop or Ctrl-C reaches the whole process group; torch's worker dies of it and
    the loader raises in the parent, which wanted to finish its batch and checkpoint (xr-train's
    exit 75). A worker inherits the blocked mask, ignores both in :func:`_ignore_stops` and only
    then unblocks them, so not even a signal sent while it starts is its own to act on.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
    try:
        iterator = iter(loader)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    yield from iterator


def _ignore_stops(worker_id):
    for sig in _STOPS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOPS)
