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


@pytest.mark.parametrize("records, row", [
    pytest.param([{"label": "a"}, {"label": "b"}, {}, {"label": None}], "2 (50.0%)", id="single-label"),
    pytest.param([{"labels": {"x": 1}}, {"labels": {}}, {"labels": {"x": None}}, {"labels": {"x": 0}}],
                 "2 (50.0%)", id="multi-label-nothing-stated"),
])
def test_unlabelled_records_have_their_own_row(records, row):
    from rich.console import Console

    counts = LabelCounts()
    for rec in records:
        counts.add(rec)
    console = Console(record=True, width=100)
    console.print(counts.table("title"))
    lines = console.export_text().splitlines()
    no_label = next(line for line in lines if "(no label)" in line)
    assert no_label.count(row) == 2          # the split column and all
    assert "(no label)" not in counts.names() and counts.max_rate_gap() == 0


def test_single_label_rows_add_up_to_the_records(cli, tmp_path):
    """xr-index --summary on a table with blank class cells: the rows sum to the record count."""
    from xrtools.index import main as index

    (tmp_path / "labels.csv").write_text("path,label\na.png,x\nb.png,\nc.png,y\nd.png,\n")
    result = cli(index, tmp_path / "labels.csv", "--summary")
    assert result.exit_code == 0
    rows = {line.split("│")[1].strip(): line.split("│")[-2].strip() for line in result.stderr.splitlines()
            if line.count("│") >= 3}
    assert rows == {"x": "1 (25.0%)", "y": "1 (25.0%)", "(no label)": "2 (50.0%)", "records": "4"}
