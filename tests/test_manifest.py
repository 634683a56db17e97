"""libxr.records.manifest: streaming JSON Lines with line-exact errors."""

import io
import itertools

import pytest

from libxr.errors import ManifestError
from libxr.records.manifest import read_records, unlabelled, write_records


@pytest.mark.parametrize("data, line, reason", [
    pytest.param(b'{"id": "a"}\n{"id": \n', 2, "not JSON: Expecting value at column 8", id="not-json"),
    pytest.param(b'{"id": "a"}\n\n["a"]\n', 3, "expected a JSON object, got list",
                 id="list-after-blank-line"),
    pytest.param(b'{"path": "x"}\n', 1, "record has no 'id' string", id="no-id"),
    pytest.param(b'{"id": 7}\n', 1, "record has no 'id' string", id="number-id"),
    pytest.param(b'{"id": ""}\n', 1, "record has no 'id' string", id="empty-id"),
    pytest.param(b'{"id": "a"}\n{"id": "\xff"}\n', 2, "not UTF-8 (byte 9)", id="not-utf-8"),
    pytest.param(b'{"id": "a", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", 1,
                 "not a record: JSON nested too deeply", id="nested-100000-deep"),
    pytest.param(b'{"id": "a", "n": ' + b"9" * 5000 + b"}\n", 1, "not JSON: Exceeds the limit",
                 id="integer-of-5000-digits"),
    pytest.param(b'{"id": "a\\udcff"}\n', 1, "a string holds '\\udcff', half a UTF-16 pair: not text",
                 id="lone-surrogate-escape"),
    pytest.param(b'{"id": "a", "label": 1}\n', 1, "label 1 is not a class name (a non-empty string)",
                 id="number-label"),
    pytest.param(b'{"id": "a", "label": ["NORMAL"]}\n', 1, 'label ["NORMAL"] is not a class name',
                 id="list-label"),
    pytest.param(b'{"id": "a", "label": ""}\n', 1, 'label "" is not a class name', id="empty-label"),
    pytest.param(b'{"id": "a", "labels": "Edema"}\n', 1, "labels is a str, not an object of label: 1/0/-1/null",
                 id="labels-not-an-object"),
    pytest.param(b'{"id": "a", "labels": {"Edema": 1, "Mass": "1"}}\n', 1, "labels 'Mass': \"1\" is not 1, 0, -1 or null",
                 id="labels-string-value"),
    pytest.param(b'{"id": "a", "labels": {"Edema": [1]}}\n', 1, "labels 'Edema': [1] is not 1, 0, -1 or null",
                 id="labels-list-value"),
    pytest.param(b'{"id": "a", "labels": {"Edema": 0.5}}\n', 1, "labels 'Edema': 0.5 is not 1, 0, -1 or null",
                 id="labels-fraction"),
    pytest.param(b'{"id": "a", "split": "Train"}\n', 1, 'split "Train" is not train, val or test',
                 id="split-outside-the-contract"),
])
def test_malformed_lines_name_file_and_line(data, line, reason):
    with pytest.raises(ManifestError) as err:
        list(read_records(io.BytesIO(data), "m.jsonl"))
    assert str(err.value).startswith(f"m.jsonl:{line}: {reason}")
    assert "\n" not in str(err.value)


def test_contract_values_that_are_fine():
    """null and absent fields, every label value, an escaped emoji (a whole UTF-16 pair)."""
    data = (b'{"id": "a", "label": null, "labels": {"x": 1, "y": 0, "z": -1, "w": null}, "split": "val"}\n'
            b'{"id": "b\\ud83d\\ude00", "label": "NORMAL", "split": null}\n')
    assert [r["id"] for r in read_records(io.BytesIO(data))] == ["a", "b\U0001f600"]


@pytest.mark.parametrize("record, expected", [
    pytest.param({"id": "a"}, True, id="no-label-fields"),
    pytest.param({"id": "a", "label": None}, True, id="null-label"),
    pytest.param({"id": "a", "labels": {}}, True, id="empty-labels"),
    pytest.param({"id": "a", "labels": {"x": None}}, True, id="nothing-stated"),
    pytest.param({"id": "a", "labels": {"x": None, "y": 0}}, False, id="one-negative"),
    pytest.param({"id": "a", "label": "NORMAL"}, False, id="class"),
])
def test_unlabelled(record, expected):
    assert unlabelled(record) is expected


def test_blank_lines_are_allowed_and_unknown_fields_kept():
    data = b'\n{"id": "a", "weird": {"x": [1]}}\n   \n{"id": "b"}\n'
    assert list(read_records(io.BytesIO(data))) == [{"id": "a", "weird": {"x": [1]}}, {"id": "b"}]


def test_text_streams_work_too():
    assert list(read_records(io.StringIO('{"id": "é"}\n'))) == [{"id": "é"}]


def test_reading_is_lazy():
    """Constant memory: records come out while the input is still being produced."""
    endless = (b'{"id": "%d"}\n' % i for i in itertools.count())
    first = list(itertools.islice(read_records(endless), 3))
    assert [r["id"] for r in first] == ["0", "1", "2"]


def test_write_round_trip_keeps_order_and_unicode():
    records = [{"id": f"{i}", "label": "épanchement", "labels": {"b": 1, "a": -1}} for i in range(600)]
    out = io.StringIO()
    assert write_records(iter(records), out) == 600
    text = out.getvalue()
    assert text.count("\n") == 600 and "épanchement" in text
    assert list(read_records(io.StringIO(text))) == records
    assert text.splitlines()[0] == '{"id":"0","label":"épanchement","labels":{"b":1,"a":-1}}'
