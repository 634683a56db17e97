"""Which source rows become records (``--where``) and what their labels are called (``--map``).

The same for every layout, so "COVID-19 against everything else, X-ray rows only" is one
xr-index call, and NIH's ``Effusion`` and CheXpert's ``Pleural Effusion`` can be one label
in manifests that are pooled later (as torchxrayvision's ``relabel_dataset`` aligns them).
"""

from libxr.errors import UsageError
from libxr.index.columns import canon

STRENGTH = {None: 0, 0: 1, -1: 2, 1: 3}
"""How strongly a label value states a finding: positive over uncertain over negative over unstated."""


def describe(conditions):
    """``--where`` conditions as the user wrote them."""
    return " ".join(f"{col}{'!=' if negate else '='}{','.join(values)}" for col, negate, values in conditions)


class Where:
    """``--where`` conditions, (column, negate, values) each; a row is kept when all hold.

    A cell holds ``COL=A,B`` when it is A or B (spaces around it ignored), ``COL!=A,B``
    when it is neither. Rows left out are counted in ``tally``, not errors.
    """

    def __init__(self, conditions, tally):
        self.conditions, self.tally = tuple(conditions), tally

    def bind(self, table):
        """A row filter for ``table`` (None when there are no conditions)."""
        if not self.conditions:
            return None
        if not table.has_header:
            raise UsageError(f"{table.path}: --where needs a table with a header row")
        keys = [canon(h) for h in table.header]
        checks = []
        for col, negate, values in self.conditions:
            if canon(col) not in keys:
                shown = ", ".join(repr(h) for h in table.header[:20])
                raise UsageError(f"{table.path}: --where {col}: no such column; columns are {shown}")
            checks.append((keys.index(canon(col)), negate, frozenset(values)))
        why = f"row left out by --where {describe(self.conditions)}"
        skipped = self.tally.skipped

        def keep(row):
            for i, negate, values in checks:
                if i < len(row) and (row[i].strip() in values) == negate:
                    skipped[why] += 1
                    return False
            return True  # a short row is kept: its reader reports it

        return keep


class Relabel:
    """``--map FROM=TO`` pairs: renames ``label`` and the keys of ``labels``; ``*=TO`` renames
    every other label. Labels that become one keep the strongest value (:data:`STRENGTH`)."""

    def __init__(self, pairs):
        self.names = {src: dst for src, dst in pairs if src != "*"}
        self.other = dict(pairs).get("*")
        self.seen = set()

    def name(self, label):
        if label in self.names:
            self.seen.add(label)
            return self.names[label]
        return self.other if self.other is not None else label

    def __call__(self, rec):
        label = rec.get("label")
        if isinstance(label, str):
            rec["label"] = self.name(label)
        labels = rec.get("labels")
        if isinstance(labels, dict):
            merged = {}
            for label, value in labels.items():
                new = self.name(label)
                if new not in merged or STRENGTH.get(value, 0) > STRENGTH.get(merged[new], 0):
                    merged[new] = value
            rec["labels"] = merged
        return rec

    def unused(self):
        """The FROM names no record had: most often a typo."""
        return [name for name in self.names if name not in self.seen]
