"""What a complete xr HDF5 file holds (docs/hdf5.md), checked each time one is opened.

A reader memory-maps `images` at its byte offset and trusts `ids` to say which
record each row is: a file that only looks like one xr-preprocess wrote — no
`images`, a link in place of a dataset (an external link's offset is in another
file), another dtype or shape than its params say, `ids` of another length —
would give wrong pixels or a traceback. Each is refused in one line instead.
"""

import json

import numpy as np

from libxr.errors import XRError

FORMAT = "xr-hdf5/2"


def check_layout(f, path):
    """Raise an XRError naming ``path`` unless ``f`` is a complete file of this format."""
    import h5py

    found, complete = f.attrs.get("format"), f.attrs.get("complete")
    if isinstance(found, str) and found.startswith("xr-hdf5/") and found != FORMAT and complete:
        raise XRError(f"{path}: written in format {found}; this xr reads {FORMAT}: run xr-preprocess again")
    if found != FORMAT or not complete:
        raise XRError(f"{path}: not a complete xr-preprocess file")
    count, channels, size = _attributes(f, path)
    shapes = {"images": (np.uint8, (count, channels, size, size)), "ids": (str, (count,)),
              "split": (str, (count,)), "source_size": (np.int64, (count,)),
              "source_mtime_ns": (np.int64, (count,))}
    if "label" in f:
        shapes["label"] = (np.int16, (count,))
    if "labels" in f:
        shapes["labels"] = (np.float32, (count, len(json.loads(f.attrs["label_names"]))))
    for name, (dtype, shape) in shapes.items():
        found = _dataset(f, path, name)
        kind = "str" if h5py.check_string_dtype(found.dtype) else str(found.dtype)
        want = "str" if dtype is str else np.dtype(dtype).name
        if (kind, found.shape) != (want, shape):
            raise XRError(f"{path}: {name!r} is {kind} {found.shape}, not {want} {shape} "
                          "(as its `count` and `params` say)")
    if f["images"].is_virtual and "shards" not in f.attrs:
        raise XRError(f"{path}: 'images' is a virtual dataset, but the file records no shards")
    if "shards" in f.attrs and not f["images"].is_virtual:
        raise XRError(f"{path}: the file records shards, but 'images' is not a virtual dataset")


def _attributes(f, path):
    """(count, channels, size), after checking every attribute a reader decodes."""
    def attribute(name, test, what, parse=json.loads):
        try:
            value = parse(f.attrs[name])
            ok = test(value)
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise XRError(f"{path}: attribute {name!r} is not {what}, as xr-preprocess writes it")
        return value

    def strings(v):
        return isinstance(v, list) and all(isinstance(s, str) for s in v)

    params = attribute("params", lambda v: isinstance(v, dict) and isinstance(v.get("size"), int)
                       and v["size"] > 0 and strings(v.get("channels")) and v["channels"],
                       "JSON with a size and channels")
    count = attribute("count", lambda v: isinstance(v, np.integer) and v >= 0, "a row count", _as_is)
    attribute("classes", strings, "JSON: a list of class names")
    attribute("label_names", strings, "JSON: a list of label names")
    attribute("rows_sha256", lambda v: isinstance(v, str), "a SHA-256", _as_is)
    if "shards" in f.attrs:
        attribute("shards", lambda v: isinstance(v, list) and v and all(
            isinstance(s, dict) and isinstance(s.get("file"), str) and isinstance(s.get("rows"), int)
            and isinstance(s.get("rows_sha256"), str) for s in v), "JSON: the shards merged")
    return int(count), len(params["channels"]), params["size"]


def _as_is(value):
    return value


def _dataset(f, path, name):
    """``f[name]``, when it is a dataset of the file's own (no link to elsewhere)."""
    import h5py

    link = f.get(name, getlink=True)
    if link is None:
        raise XRError(f"{path}: no {name!r} dataset")
    if isinstance(link, h5py.SoftLink):
        raise XRError(f"{path}: {name!r} is a soft link to {link.path}, not a dataset of its own")
    if isinstance(link, h5py.ExternalLink):
        raise XRError(f"{path}: {name!r} is an external link to {link.filename}:{link.path}, "
                      "not a dataset of its own")
    found = f[name]
    if not isinstance(found, h5py.Dataset):
        raise XRError(f"{path}: {name!r} is a group, not a dataset")
    return found
