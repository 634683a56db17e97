"""libxr.records.manifest: streaming JSON Lines with line-exact errors."""

import io
import itertools

import pytest

from libxr.errors import ManifestError
from libxr.records.manifest import read_records, write_records


@pytest.mark.parametrize("data, line, reason", [
    pytest.param(b'{"id": "a"}\n{"id": \n', 2, "not JSON: Expecting value at column 8", id="not-json"),
    pytest.param(b'{"id": "a"}\n\n["a"]\n', 3, "expected a JSON object, got list",
                 id="list-after-blank-line"),
    pytest.param(b'{"path": "x"}\n', 1, "record has no 'id' string", id="no-id"),
    pytest.param(b'{"id": 7}\n', 1, "record has no 'id' string", id="number-id"),
    pytest.param(b'{"id": ""}\n', 1, "record has no 'id' string", id="empty-id"),
    pytest.param(b'{"id": "a"}\n{"id": "\xff"}\n', 2, "not UTF-8 (byte 9)", id="not-utf-8"),
])
def test_malformed_lines_name_file_and_line(data, line, reason):
    with pytest.raises(ManifestError) as err:
        list(read_records(io.BytesIO(data), "m.jsonl"))
    assert str(err.value) == f"m.jsonl:{line}: {reason}"


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
