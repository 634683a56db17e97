"""libxr.records.summary: counts and rates per split."""

import pytest

from libxr.records.summary import LabelCounts


def test_single_label_rates_and_gap():
    counts = LabelCounts()
    for split, label, n in (("train", "a", 6), ("train", "b", 2), ("val", "a", 1), ("val", "b", 1)):
        for _ in range(n):
            counts.add({"split": split, "label": label})
    assert counts.splits() == ["train", "val"]
    assert counts.rate("a") == pytest.approx(0.7)
    assert counts.rate("a", "val") == pytest.approx(0.5)
    assert counts.max_rate_gap() == pytest.approx(0.2)


def test_multilabel_counts_positives_only():
    counts = LabelCounts()
    counts.add({"labels": {"x": 1, "y": -1}})
    counts.add({"labels": {"x": 0, "y": 1}})
    assert counts.multi and counts.names() == ["x", "y"]
    assert counts.rate("x") == counts.rate("y") == 0.5


def test_table_renders():
    from rich.console import Console

    counts = LabelCounts()
    counts.add({"split": "test", "label": "NORMAL"})
    console = Console(record=True, width=100)
    console.print(counts.table("title"))
    text = console.export_text()
    assert "NORMAL" in text and "1 (100.0%)" in text and "records" in text
