"""The ``npz`` layout: MedMNIST(+) arrays, written out once as PNG files the records point at.

``{train,val,test}_images`` (N×H×W, or N×H×W×3) with ``{split}_labels`` (N×1 class
indices, or N×K 0/1 columns for multi-label sets such as ChestMNIST) at 28 to 224 px.
Records need files: every command (raw training, xr-featmap, xr-preprocess) reads a
`path`, so ``--extract DIR`` writes ``DIR/<split>/<row>.png`` — each once (a file
already holding the same bytes is left alone, so a rerun rewrites nothing) and
atomically — and the split and labels go into the records. Arrays are streamed from
the zip member, so a 224 px set (4 GB of pixels) indexes in constant memory.
"""

import contextlib
import io
import os
import zipfile
import zlib

import numpy as np

from libxr.atomic import atomic_output
from libxr.errors import UsageError, XRError
from libxr.index.nih import FINDINGS

SPLITS = ("train", "val", "test")
NAMES = {"chestmnist": ("multi-label", FINDINGS), "pneumoniamnist": ("single-label", ("normal", "pneumonia"))}
"""Label names of the chest sets, by file name (MedMNIST's INFO; ChestMNIST's in NIH's spelling,
so the records pool with xr-index NIH manifests). Other sets are named by their label numbers."""
_CHUNK = 8 << 20   # bytes of pixels read at a time


def looks_like(path):
    """A zip archive holding ``.npy`` arrays (what ``numpy.savez`` writes)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith(".npy") for n in zf.namelist())


def read(source, opts, tally):
    if not opts.extract:
        raise UsageError(f"{source} holds pixel arrays, not image files: pass --extract DIR to write "
                         "them once as PNG files the records point at")
    if not looks_like(source):
        raise XRError(f"{source} is not a .npz file (a zip of .npy arrays)")
    name = os.path.basename(source)
    with zipfile.ZipFile(source) as zf:
        arrays = {n[:-4] for n in zf.namelist() if n.endswith(".npy")}
        splits = [s for s in SPLITS if f"{s}_images" in arrays]
        if not splits:
            raise XRError(f"{source}: no train_images/val_images/test_images arrays (MedMNIST layout); "
                          f"it holds {', '.join(sorted(arrays)) or 'no arrays'}")
        for split in splits:
            if f"{split}_labels" not in arrays:
                raise XRError(f"{source}: {split}_images has no {split}_labels array")
        for unused in sorted(arrays - {f"{s}_{kind}" for s in splits for kind in ("images", "labels")}):
            # a split misnamed (test_imgs), or labels without images, would be lost unseen
            tally.problem("array that is not a split's images or labels, left out", source, unused)
        labels = {split: _labels(zf, source, split) for split in splits}
        names = _label_names(source, list(labels.values()), tally)
        # Every label and every array's shape is checked before the first PNG is written: a bad
        # array stops the run with nothing extracted, not with part of it.
        for split in splits:
            for i, row in enumerate(labels[split]):
                _label_fields(row, names, f"{source}:{split}_labels[{i}]")
        for split in splits:
            with _member(zf, source, f"{split}_images") as f:
                header = _header(f)
            if header is not None:
                _check_images(source, f"{split}_images", *header, len(labels[split]))
        for split in splits:
            rows = _rows(zf, source, f"{split}_images", len(labels[split]))
            width = max(6, len(str(len(labels[split]) - 1)))
            for i, (pixels, row_labels) in enumerate(zip(rows, labels[split])):
                file_name = f"{i:0{width}d}.png"
                path = os.path.join(opts.extract, split, file_name)
                _write_once(path, pixels)
                rec = {"id": f"{split}/{file_name}", "path": path}
                rec.update(_label_fields(row_labels, names, f"{source}:{split}_labels[{i}]"))
                rec["split"] = split
                rec["source"] = {"npz": name, "array": f"{split}_images", "index": i}
                yield rec


@contextlib.contextmanager
def _member(zf, source, array):
    """An array's .npy stream; a corrupt member (CRC, deflate, truncation) is a one-line error."""
    try:
        with zf.open(f"{array}.npy") as f:
            yield f
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error) as exc:
        raise XRError(f"{source}: {array}: {exc}") from None


def _header(f):
    """(shape, dtype) of a C-ordered .npy stream positioned at its data; None for other orders."""
    version = np.lib.format.read_magic(f)
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    if version not in readers:
        return None
    shape, fortran_order, dtype = readers[version](f)
    return None if fortran_order or dtype.hasobject else (shape, dtype)


def _labels(zf, source, split):
    array = f"{split}_labels"
    with _member(zf, source, array) as f:
        labels = np.lib.format.read_array(f, allow_pickle=False)
    if labels.ndim == 1:
        labels = labels[:, None]
    if labels.ndim != 2 or not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise XRError(f"{source}: {array} is {labels.dtype} {labels.shape}: expected integers, N×1 class "
                      "numbers or N×K 0/1 columns")
    return labels.astype(np.int64)


def _label_names(source, labels, tally):
    """Names for the label numbers (single-label) or columns (multi-label), the same in every split."""
    columns = {part.shape[1] for part in labels}
    if len(columns) > 1:
        widths = " and ".join(map(str, sorted(columns)))
        raise XRError(f"{source}: the splits' label arrays have {widths} columns")
    multi = columns.pop() > 1
    wanted = labels[0].shape[1] if multi else max(int(part.max(initial=0)) for part in labels) + 1
    flag = os.path.splitext(os.path.basename(source))[0].lower().rsplit("_", 1)
    flag = flag[0] if len(flag) == 2 and flag[1].isdigit() else "_".join(flag)
    kind, known = NAMES.get(flag, (None, ()))
    if kind == ("multi-label" if multi else "single-label") and (len(known) == wanted if multi else
                                                                   len(known) >= wanted):
        return known
    if kind == "single-label" and not multi:    # a known set with a class number past its classes
        return known                            # is an error at that row (_label_fields), not renamed
    tally.warnings.append(f"{source}: label names unknown for this file (known by file name: "
                       f"{', '.join(f'{n}*.npz' for n in NAMES)}); labels are named by their numbers "
                       f"0..{wanted - 1}")
    return [str(j) for j in range(wanted)]


def _label_fields(row, names, where):
    if len(row) == 1:
        value = int(row[0])
        if not 0 <= value < len(names):
            raise XRError(f"{where}: class {value} is not one of 0..{len(names) - 1}")
        return {"label": names[value]}
    bad = [int(v) for v in row if v not in (0, 1, -1)]
    if bad:
        raise XRError(f"{where}: label value {bad[0]} is not 1, 0 or -1")
    return {"labels": {name: int(v) for name, v in zip(names, row)}}


def _rows(zf, source, array, count):
    """The images of ``array`` one at a time, read in chunks from the zip member."""
    with _member(zf, source, array) as f:
        header = _header(f)
        if header is None:
            with _member(zf, source, array) as whole:
                data = np.lib.format.read_array(whole, allow_pickle=False)
            shape, dtype = data.shape, data.dtype
        else:
            shape, dtype = header
        _check_images(source, array, shape, dtype, count)
        if header is None:
            yield from data
            return
        per_row = int(np.prod(shape[1:])) * dtype.itemsize
        step = max(1, _CHUNK // max(per_row, 1))
        for start in range(0, shape[0], step):
            n = min(step, shape[0] - start)
            chunk = f.read(n * per_row)
            if len(chunk) != n * per_row:
                raise XRError(f"{source}: {array} is truncated at row {start + len(chunk) // per_row}")
            yield from np.frombuffer(chunk, dtype).reshape((n, *shape[1:]))


def _check_images(source, array, shape, dtype, count):
    if shape[0] != count:
        raise XRError(f"{source}: {array} has {shape[0]:,} images, the labels {count:,}")
    grey = len(shape) == 3 and dtype in (np.uint8, np.uint16)
    colour = len(shape) == 4 and shape[3] == 3 and dtype == np.uint8
    if not (grey or colour):
        raise XRError(f"{source}: {array} is {dtype} {tuple(shape)}: expected N×H×W 8- or 16-bit or "
                      "N×H×W×3 8-bit images (3-D volumes are not supported)")


def _write_once(path, pixels):
    """The PNG of ``pixels`` at ``path``, atomically; a file with the same bytes is left as it is."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, "PNG")
    data = buffer.getvalue()
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_output(path, "wb") as out:
        out.write(data)
