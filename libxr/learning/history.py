"""A run's metrics.jsonl — one JSON object per finished epoch — written whole, read back strictly.

xr-train rewrites the file atomically after every epoch, so a run never leaves half a line; a
last line without its newline that is not JSON (a copy taken while an older xr appended to it)
is left out with a warning. Any other line that is not an epoch's row (numbers, epochs 1, 2, ...)
is a ``FILE:LINE`` error: ``xr-train --resume`` and ``xr-eval --run`` build on no history they
cannot read. Torch-free, for xr-eval.
"""

import io
import json

from libxr.atomic import atomic_output
from libxr.errors import ManifestError
from libxr.records.manifest import read_records


def read_history(path, warn):
    """The rows of ``path``; ``warn`` hears of an unfinished last line left out."""
    with open(path, "rb") as f:
        data = f.read()
    lines = data.splitlines(keepends=True)
    if lines and not lines[-1].endswith(b"\n") and not _parses(lines[-1]):
        warn(f"{path}:{len(lines)}: an unfinished last line (a run stopped while writing it?) is left out")
        lines.pop()
    rows = []
    for line, row in read_records(io.BytesIO(b"".join(lines)), path, require=(), numbered=True):
        problem = _problem(row, len(rows) + 1)
        if problem:
            raise ManifestError(path, line, problem)
        rows.append(row)
    return rows


def write_history(rows, path):
    with atomic_output(path) as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)


def _parses(line):
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def _problem(row, epoch):
    """Why ``row`` is not the row of epoch ``epoch``, or None."""
    if row.get("epoch") != epoch or isinstance(row.get("epoch"), bool):
        return f"epoch {row.get('epoch')!r} where epoch {epoch} belongs (not a metrics.jsonl of xr-train?)"
    for key, value in row.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return f"{key} is {value!r}, not a number"
    return None
