"""Class-by-split counts of a stream of records, and their table on stderr."""

import collections

SPLIT_ORDER = ("train", "val", "test")


class LabelCounts:
    """Counts records per split and class (or positive label) as they stream past."""

    def __init__(self):
        self.records = collections.Counter()
        self.classes = collections.Counter()
        self.multi = False

    def add(self, rec):
        split = rec.get("split") or "-"
        self.records[split] += 1
        label = rec.get("label")
        if label is not None:
            self.classes[(str(label), split)] += 1
        labels = rec.get("labels")
        if isinstance(labels, dict):
            self.multi = True
            for name, value in labels.items():
                if value == 1:
                    self.classes[(name, split)] += 1
        return rec

    def splits(self):
        known = [s for s in SPLIT_ORDER if s in self.records]
        return known + sorted(s for s in self.records if s not in SPLIT_ORDER)

    def names(self):
        return sorted({name for name, _ in self.classes})

    def rate(self, name, split=None):
        """Share of records in ``split`` (all splits when None) with this class or label."""
        splits = [split] if split else list(self.records)
        total = sum(self.records[s] for s in splits)
        return sum(self.classes[(name, s)] for s in splits) / total if total else 0.0

    def max_rate_gap(self):
        """Largest |rate in a split - overall rate| over all classes and splits."""
        return max((abs(self.rate(n, s) - self.rate(n)) for n in self.names() for s in self.records),
                   default=0.0)

    def table(self, title):
        from rich.table import Table

        splits = self.splits()
        kind = "positives" if self.multi else "class"
        table = Table(title=title, title_justify="left")
        table.add_column(kind)
        for split in splits + ["all"]:
            table.add_column(split, justify="right")
        for name in self.names():
            cells = [f"{self.classes[(name, s)]:,} ({100 * self.rate(name, s):.1f}%)" for s in splits]
            total = sum(self.classes[(name, s)] for s in splits)
            table.add_row(name, *cells, f"{total:,} ({100 * self.rate(name):.1f}%)")
        table.add_row("records", *(f"{self.records[s]:,}" for s in splits),
                      f"{sum(self.records.values()):,}", style="bold")
        return table
