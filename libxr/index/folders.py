"""The ``folders`` layout: one folder per class, optionally under split folders.

``root/[train|val|valid|test/]CLASS/**/image`` — the Kaggle chest_xray and COVID
3-class layouts. Everything is walked in sorted order so the manifest is the
same on every machine.
"""

import os

from libxr.index.paths import SPLIT_NAMES, posix
from libxr.pixels.files import is_image_file, is_image_name


def entries(path):
    with os.scandir(path) as it:
        return sorted(it, key=lambda e: e.name)


def walk(top, tally):
    """(folder, sorted file names) below ``top``, in sorted order. Linked folders are followed
    (datasets are often assembled from links), each real folder once, so a link loop ends;
    hidden folders are skipped and counted."""
    seen = {os.path.realpath(top)}
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        keep = []
        for d in sorted(dirnames):
            real = os.path.realpath(os.path.join(dirpath, d))
            if d.startswith("."):
                tally.skip(f"hidden folder {d}")
            elif real in seen:
                tally.skip(f"folder {d}, a link to a folder already indexed")
            else:
                seen.add(real)
                keep.append(d)
        dirnames[:] = keep
        yield dirpath, sorted(filenames)


def _skip_reason(name):
    return f"non-image file {name}" if name.startswith(".") or "." in name else "file without extension"


def has_split_folders(root):
    return any(e.is_dir() and e.name.lower() in SPLIT_NAMES for e in entries(root))


def read(root, opts, tally):
    if has_split_folders(root):
        for entry in entries(root):
            if entry.is_dir() and entry.name.lower() in SPLIT_NAMES:
                yield from _classes(root, entry.name, SPLIT_NAMES[entry.name.lower()], opts, tally)
            else:
                tally.skip(f"{'folder' if entry.is_dir() else 'file'} {entry.name} outside the split folders")
    else:
        yield from _classes(root, "", None, opts, tally)


def _classes(root, split_dir, split, opts, tally):
    base = os.path.join(root, split_dir) if split_dir else root
    for entry in entries(base):
        if not entry.is_dir():
            tally.skip(_skip_reason(entry.name) if not is_image_name(entry.name)
                       else "image outside a class folder")
            continue
        if entry.name.startswith("."):
            tally.skip(f"hidden folder {entry.name}")
            continue
        for dirpath, filenames in walk(entry.path, tally):
            for name in filenames:
                path = os.path.join(dirpath, name)
                if not is_image_file(path):
                    tally.skip(_skip_reason(name))
                    continue
                record = {"id": posix(os.path.relpath(path, root)), "path": path,
                          "label": entry.name}
                if split:
                    record["split"] = split
                record["source"] = {"folder": posix(os.path.relpath(dirpath, root))}
                yield record
