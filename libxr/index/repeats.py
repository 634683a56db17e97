"""Table rows that name an image an earlier row named: found in bounded memory, then told exactly.

A manifest's ids are unique (every consumer refuses a repeat), but a table may list an image
twice. Holding every id to catch that would make xr-index's memory grow with the table (CheXpert:
120 MB more); instead each record leaves 8 bytes, its id's hash, and only when two hashes meet is
the table read again for just those ids, so what is reported — same labels or other ones, the
first repeat's FILE:LINE — is exact, a hash collision included.
"""

import array

REPEATED = "row repeating an earlier row's image and labels"
CONFLICT = "row labelling an earlier row's image otherwise"
HINT = "its records are kept, and xr-split refuses repeated ids: correct the table"


class Repeats:
    def __init__(self):
        self.hashes = array.array("q")

    def see(self, record_id):
        self.hashes.append(hash(record_id))

    def suspects(self):
        """The id hashes seen more than once (usually none)."""
        import numpy as np

        hashes = np.frombuffer(self.hashes, np.int64)     # the array's own memory, sorted in place: no copy
        hashes.sort()
        return set(hashes[1:][hashes[1:] == hashes[:-1]].tolist())

    def report(self, reread, tally, where):
        """Count the true repeats in ``tally``; ``reread()`` yields the records again, ``where(rec)``
        names a record's FILE:LINE."""
        suspects = self.suspects()
        if not suspects:
            return
        first = {}
        for rec in reread():
            if hash(rec["id"]) not in suspects:
                continue
            labels = (rec.get("label"), rec.get("labels"))
            if rec["id"] not in first:
                first[rec["id"]] = labels
            else:
                tally.problem(REPEATED if first[rec["id"]] == labels else CONFLICT, where(rec), rec["id"])
