"""The pixels of manifest records, as a checkpoint (or a sheet) wants them.

HDF5-backed records are read from their file (memory-mapped rows); the others
are decoded from `path` with given preprocessing — exactly xr-preprocess's. A
batch of positions comes back with the readable ones' pixels, their positions,
and why the others could not be read, so a DataLoader's workers can decode in
parallel and one bad file costs one record, not the run.
"""

import numpy as np

from libxr.decode import DecodeError
from libxr.errors import XRError


class RecordPixels:
    """Batches of pixels for positions of ``records``, mixing HDF5 rows and raw files.

    ``__getitem__`` returns (uint8 pixels of the readable positions, those positions,
    the reasons of the others) so a DataLoader's workers can decode in parallel.
    """

    def __init__(self, records, preprocess, check_store=None):
        from libxr.h5store import describe, open_store
        from libxr.loader import H5Batches

        self.records = records
        self.size, self.fit = preprocess["size"], preprocess.get("fit", "pad")
        self.kinds = tuple(preprocess.get("channels", ["gray"]))
        self.where = []              # per position: ("h5", store, index) | ("raw", path) | ("skip", None)
        rows = {}
        for rec in records:
            if "error" in rec:
                self.where.append(("skip", None))
            elif rec.get("h5") is not None:
                self.where.append(("h5", rec["h5"], len(rows.setdefault(rec["h5"], []))))
                rows[rec["h5"]].append(rec["row"])
            elif rec.get("path"):
                self.where.append(("raw", rec["path"]))
            else:
                raise XRError(f"record {rec['id']!r} has neither `h5`/`row` nor `path`: no image")
        self.stores = {}
        for path, wanted in rows.items():
            with open_store(path) as f:
                if check_store is not None:
                    check_store(describe(f)["params"], path)
                count = f["images"].shape[0]
            bad = next((r for r in wanted if not isinstance(r, int) or not 0 <= r < count), None)
            if bad is not None:
                raise XRError(f"{path}: row {bad!r} is not one of its {count} rows (a manifest of another file?)")
            self.stores[path] = H5Batches(path, wanted, np.zeros(len(wanted), np.float32))

    def __len__(self):
        return len(self.records)

    def __getitem__(self, positions):
        import torch

        from libxr.preprocess import prepare_array

        size, fit, kinds = self.size, self.fit, self.kinds
        pixels, reasons = {}, {}
        wanted = {}
        for p in positions:
            kind, source, *index = self.where[p]
            if kind == "h5":
                wanted.setdefault(source, []).append((p, index[0]))
            elif kind == "raw":
                try:
                    pixels[p] = torch.from_numpy(prepare_array(source, size, fit, kinds).copy())
                except (DecodeError, OSError, ValueError, MemoryError) as exc:
                    reasons[p] = f"{source}: {exc}"
        for source, pairs in wanted.items():    # one fancy-indexed read per file
            block = self.stores[source][[i for _, i in pairs]][0]
            pixels.update((p, block[k]) for k, (p, _) in enumerate(pairs))
        ok = [p for p in positions if p in pixels]
        stacked = (torch.stack([pixels[p] for p in ok]) if ok
                   else torch.empty(0, len(kinds), size, size, dtype=torch.uint8))
        return stacked, ok, reasons
