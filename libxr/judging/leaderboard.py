"""Runs ranked by a metric, from the JSON reports xr-eval wrote (report 000's
evaluation table across hyperparameter settings)."""

import csv
import json

from libxr.errors import UsageError, XRError
from libxr.judging.direction import lower_is_better
from libxr.judging.metrics import HEADLINE


def load(paths, split=None):
    """One row per report: name, split, n, and its headline metrics (with interval ends when present)."""
    rows = []
    for path in paths:
        try:
            rows.append(_row(path, split))
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            raise XRError(f"{path}: not an xr-eval JSON report ({type(exc).__name__}: {exc})") from None
    kinds = {}
    for row, path in zip(rows, paths):
        kinds.setdefault(row["task"], path)
    if len(kinds) > 1:
        raise XRError("reports of different tasks cannot be ranked together: "
                      + ", ".join(f"{kind} ({path})" for kind, path in kinds.items()))
    return rows


def _row(path, split):
    with open(path, encoding="utf-8") as f:
        report = json.load(f)
    sections, kind = report["sections"], report["task"]["kind"]
    if kind not in HEADLINE:
        raise ValueError(f"task {kind!r}")
    if not sections:
        raise ValueError("no sections")
    name = split or ("test" if "test" in sections else list(sections)[-1])
    if name not in sections:
        raise XRError(f"{path}: no {name!r} section (it has {', '.join(sections)})")
    section = sections[name]
    row = {"run": report.get("name") or path, "split": name, "task": kind, "n": int(section["n"])}
    for key in HEADLINE[kind]:
        value = section.get(key)
        if value is not None and not isinstance(value, (int, float)):
            raise ValueError(f"{key} is {value!r}, not a number")
        row[key] = value
        if key in section.get("ci", {}):
            row[f"{key}_low"], row[f"{key}_high"] = section["ci"][key]
    return row


def rank(rows, metric):
    usable = [r for r in rows if r.get(metric) is not None]
    if not usable:
        known = sorted({k for r in rows for k, v in r.items() if isinstance(v, float)})
        raise UsageError(f"--rank-by {metric!r}: no report has it (they have: {', '.join(known)})")
    usable.sort(key=lambda r: r[metric], reverse=not lower_is_better(metric))
    missing = [r for r in rows if r.get(metric) is None]
    return [{"rank": i + 1, **r} for i, r in enumerate(usable)] + [{"rank": None, **r} for r in missing]


def write_csv(rows, stream):
    columns = list(dict.fromkeys(k for r in rows for k in r))
    writer = csv.DictWriter(stream, columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else round(v, 6) if isinstance(v, float) else v)
                         for k, v in row.items()})
