"""Batches of uint8 pixels for training: from an xr HDF5 file, or straight from images.

Both datasets are indexed by a *list* of positions and return a whole batch
(uint8 tensor (B, C, H, W), targets), so the DataLoader moves one array per
batch instead of collating B small ones. Pixels stay uint8 until
:class:`libxr.augment.BatchTransform` turns them into normalised floats — on
the GPU when training there.
"""

import os

import numpy as np

from libxr.errors import XRError


class H5Batches:
    """Rows of an xr HDF5 file (libxr.h5store).

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
        from libxr.h5store import open_store

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
        return torch.from_numpy(np.ascontiguousarray(pixels)), torch.from_numpy(self.targets[positions])


class ImageBatches:
    """The same batches decoded from the records' image files (no HDF5 step).

    Images go through exactly xr-preprocess's decoding, fitting and channels.
    """

    def __init__(self, paths, targets, size=224, fit="pad", channels=("gray",)):
        self.paths = list(paths)
        self.targets = np.asarray(targets)
        self.size, self.fit, self.channels = size, fit, tuple(channels)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, positions):
        import torch

        from libxr.decode import DecodeError
        from libxr.preprocess import prepare_array

        positions = np.atleast_1d(np.asarray(positions, np.int64))
        try:
            pixels = np.stack([prepare_array(self.paths[i], self.size, self.fit, self.channels)
                               for i in positions])
        except DecodeError as exc:
            bad = next(self.paths[i] for i in positions if not _readable(self.paths[i]))
            raise XRError(f"{bad}: {exc}") from None
        return torch.from_numpy(pixels), torch.from_numpy(self.targets[positions])


def _readable(path):
    from libxr.images import header_problem

    return header_problem(path) is None


def batches(dataset, batch_size, order=None, workers=0, drop_last=False):
    """A DataLoader yielding (uint8 pixels, targets) batches of ``dataset``, visiting
    ``order`` (indices; libxr.sampling makes the seeded ones) or every row in turn."""
    import torch
    from torch.utils.data import BatchSampler, DataLoader

    sampler = BatchSampler(range(len(dataset)) if order is None else order, batch_size, drop_last)
    return DataLoader(dataset, batch_size=None, sampler=sampler, num_workers=workers,
                      persistent_workers=False, pin_memory=torch.cuda.is_available(),
                      prefetch_factor=4 if workers else None)
