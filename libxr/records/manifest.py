"""JSON Lines manifests: one record per line, read and written as streams.

Reading never holds more than one line, so any manifest size runs in constant
memory. Every malformed line is an error naming the file and line; nothing is
silently dropped.
"""

import itertools
import json

from libxr.errors import ManifestError

# One encoder for every record: json.dumps with options builds a new one per call.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


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
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ManifestError(name, lineno, f"not JSON: {exc.msg} at column {exc.colno}") from None
        if not isinstance(record, dict):
            raise ManifestError(name, lineno, f"expected a JSON object, got {type(record).__name__}")
        for field in require:
            value = record.get(field)
            if not isinstance(value, str) or not value:
                raise ManifestError(name, lineno, f"record has no {field!r} string")
        if unique:
            first = seen.setdefault(record["id"], lineno)
            if first != lineno:
                raise ManifestError(name, lineno, f"id {record['id']!r} again (first on line {first})")
        yield (lineno, record) if numbered else record


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
