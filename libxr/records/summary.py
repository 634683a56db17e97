"""Class-by-split counts of a stream of records, and their table on stderr."""

import collections

from libxr.records.manifest import unlabelled

SPLIT_ORDER = ("train", "val", "test")
NO_LABEL = "(no label)"
"""The summary row of records that state no class or label, so single-label rows add up."""


class LabelCounts:
    """Counts records per split and class (or positive label) as they stream past."""

    def __init__(self):
        self.records = collections.Counter()
        self.classes = collections.Counter()
        self.unlabelled = collections.Counter()     # per split
        self.multi = False

    def add(self, rec):
        split = rec.get("split") or "-"
        self.records[split] += 1
        if unlabelled(rec):
            self.unlabelled[split] += 1
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
        total = sum(self.records.values())
        rows = [(name, [self.classes[(name, s)] for s in splits], None) for name in self.names()]
        if self.unlabelled:
            rows.append((NO_LABEL, [self.unlabelled[s] for s in splits], "yellow"))
        for name, counts, style in rows:
            cells = map(_cell, counts, (self.records[s] for s in splits))
            table.add_row(name, *cells, _cell(sum(counts), total), style=style)
        table.add_row("records", *(f"{self.records[s]:,}" for s in splits), f"{total:,}", style="bold")
        return table


def _cell(count, records):
    return f"{count:,} ({100 * count / records:.1f}%)" if records else f"{count:,}"
