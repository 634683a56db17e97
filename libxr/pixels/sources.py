"""Source images since preprocessing: the size and mtime xr-preprocess stored per row, and now.

An image edited, replaced or touched after xr-preprocess decoded it shows as another size
or modification time — a stat, cheap where hashing every image again is not. The
consumers of HDF5 rows warn when their records' images differ (the pixels may be stale);
``xr-preprocess --update`` decodes just those again.
"""

import os

NONE = (-1, -1)
"""The stat of an image that is not there (or cannot be stat'ed)."""


def source_stat(path):
    """(size in bytes, mtime in ns) of ``path``; :data:`NONE` when it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return NONE
    return st.st_size, st.st_mtime_ns


def changed_sources(records):
    """One line per HDF5 file some of whose ``records`` (by `h5`, `row` and `path`) have a
    source image that differs from the one preprocessed: counted, the first named; [] when
    none does. Records with an unusable `row` are left to :func:`libxr.pixels.h5store.check_rows`."""
    from libxr.pixels.h5store import open_store

    files = {}
    for rec in records:
        if "error" not in rec and rec.get("h5") is not None and rec.get("path") and \
                isinstance(rec.get("row"), int) and not isinstance(rec["row"], bool):
            files.setdefault(rec["h5"], []).append(rec)
    notes = []
    for h5, recs in files.items():
        with open_store(h5) as f:
            stored = list(zip(f["source_size"][:].tolist(), f["source_mtime_ns"][:].tolist()))
        differ = [(rec, stored[rec["row"]], now) for rec in recs if 0 <= rec["row"] < len(stored)
                  for now in [source_stat(rec["path"])] if now != stored[rec["row"]]]
        if differ:
            rec, then, now = differ[0]
            why = ("not found" if now == NONE else f"{then[0]:,} bytes then, {now[0]:,} now" if now[0] != then[0]
                   else "modified since")
            notes.append(f"{h5}: {len(differ)} of {len(recs)} source images differ from when it was written "
                         f"(first: {rec['id']!r} at {rec['path']}, {why}): its pixels may be stale "
                         "(xr-preprocess --update decodes just those again)")
    return notes
