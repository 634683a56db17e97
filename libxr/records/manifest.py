"""JSON Lines manifests: one record per line, read and written as streams.

Reading never holds more than one line, so any manifest size runs in constant
memory. Every malformed line is an error naming the file and line — text that is
not UTF-8, JSON nested past Python's recursion limit, a `label` that is not a
class name, `labels` that are not 1/0/-1/null, a `split` outside the contract;
nothing is silently dropped or turned into a new class.
"""

import itertools
import json

from libxr.errors import ManifestError

# One encoder for every record: json.dumps with options builds a new one per call.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_LABEL_VALUES = frozenset((1, 0, -1, None))
SPLITS = ("train", "val", "test")
GROUPINGS = ("patient", "study", "group")
"""Fields that group records (splits keep a patient together; metrics go per study and group)."""


def read_records(stream, name="<stdin>", require=("id",), numbered=False, unique=False):
    """Yield the records of a manifest read from a binary or text stream
    (``numbered``: (line number, record) pairs, for errors found later).

    Blank lines are allowed (``cat`` of files with trailing newlines); anything
    else that is not a JSON object with the ``require``d string fields raises
    :class:`ManifestError`, and so does an id seen before when ``unique``
    (consumers that bind pixels, targets or scores to ids).
    """
    seen = {}
    for lineno, line in enumerate(stream, 1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ManifestError(name, lineno, f"not UTF-8 (byte {exc.start + 1})") from None
        line = line.rstrip("\r\n")
        if lineno == 1 and line.startswith("\ufeff"):      # a byte-order mark, as Windows tools write
            line = line[1:]
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ManifestError(name, lineno, f"not JSON: {exc.msg} at column {exc.colno}") from None
        except RecursionError:
            raise ManifestError(name, lineno, "not a record: JSON nested too deeply") from None
        except ValueError as exc:              # e.g. an integer past Python's digit limit
            raise ManifestError(name, lineno, f"not JSON: {exc}") from None
        if not isinstance(record, dict):
            raise ManifestError(name, lineno, f"expected a JSON object, got {type(record).__name__}")
        for field in require:
            value = record.get(field)
            if not isinstance(value, str) or not value:
                raise ManifestError(name, lineno, f"record has no {field!r} string")
        problem = contract_problem(record) or (("\\ud" in line or "\\uD" in line) and _lone_surrogate(record))
        if problem:
            raise ManifestError(name, lineno, problem)
        if unique:
            first = seen.setdefault(record["id"], lineno)
            if first != lineno:
                raise ManifestError(name, lineno, f"id {record['id']!r} again (first on line {first})")
        yield (lineno, record) if numbered else record


def contract_problem(record):
    """Why ``record``'s `label`, `labels`, `split`, `patient`, `study` or `group` break the contract (docs/manifest.md), or None.

    A number or list as `label` would otherwise become a class of its own (``1`` beside
    ``"1"``, ``["NORMAL"]`` beside ``"NORMAL"``).
    """
    label = record.get("label")
    if label is not None and (not isinstance(label, str) or not label):
        shown = json.dumps(label, ensure_ascii=False)[:60]
        return f"label {shown} is not a class name (a non-empty string)"
    labels = record.get("labels")
    if labels is not None:
        if not isinstance(labels, dict):
            return f"labels is a {type(labels).__name__}, not an object of label: 1/0/-1/null"
        try:
            valid = _LABEL_VALUES.issuperset(labels.values())
        except TypeError:                       # an unhashable value: a list or an object
            valid = False
        if not valid:
            name, value = next((k, v) for k, v in labels.items() if not _label_value(v))
            return f"labels {name!r}: {json.dumps(value, ensure_ascii=False)[:60]} is not 1, 0, -1 or null"
    split = record.get("split")
    if split is not None and split not in SPLITS:
        return f"split {json.dumps(split, ensure_ascii=False)[:60]} is not train, val or test"
    for field in GROUPINGS:     # a list, true or "" would group records by accident
        value = record.get(field)
        if value is not None and (value == "" or isinstance(value, bool) or not isinstance(value, (str, int))):
            return (f"{field} {json.dumps(value, ensure_ascii=False)[:60]} is not an id "
                    "(a non-empty string or a whole number)")
    return None


def _label_value(value):
    try:
        return value in _LABEL_VALUES
    except TypeError:
        return False


def _lone_surrogate(record):
    """A `\\udcxx` escape that is half a character: the record could not be written as UTF-8."""
    try:
        _encode(record).encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"a string holds {exc.object[exc.start]!a}, half a UTF-16 pair: not text"
    return None


def unlabelled(record):
    """True when ``record`` states no class and no label value: nothing to learn or score."""
    if record.get("label") is not None:
        return False
    labels = record.get("labels")
    if not isinstance(labels, dict):
        return True
    for value in labels.values():     # a loop, not all(): this runs on every indexed record
        if value is not None:
            return False
    return True


def group_key(value, record_id):
    """A grouping field's value (patient, study) as one comparable key: 1 and "1" are one patient
    (pandas writes numeric ids as numbers), and a record without one is a group of its own."""
    if value is None or value == "":       # "" would group every record that lacks one
        return ("id", record_id)
    if isinstance(value, str):
        return value
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else json.dumps(value)


def encode(record):
    """One manifest line, without the newline."""
    return _encode(record)


def write_records(records, stream, batch=256):
    """Write records to a text stream; returns how many were written.

    Lines go out in small batches: one write per record costs more than
    encoding it, and a batch is still small enough to stream into ``head``.
    """
    n = 0
    records = iter(records)
    while chunk := list(itertools.islice(records, batch)):
        stream.write("\n".join(map(_encode, chunk)) + "\n")
        n += len(chunk)
    return n
