"""The ``csv`` layout: any CSV/TSV whose columns the user names.

Single-label (``--label-col``) or multi-label (``--label-cols A,B,C`` with values
1/0/-1/blank or true/false/yes/no); patient, study, group, view and split columns
are optional. Columns not used are kept under ``source``.
"""

import os

from libxr.errors import ManifestError, UsageError
from libxr.index.paths import SPLIT_NAMES, TablePaths
from libxr.index.table import Table

PATH_GUESSES = ("path", "Path", "filename", "file", "image", "Image", "Image Index", "image_path")
LABEL_GUESSES = ("label", "Label", "class", "Class", "target", "diagnosis")
_FLAGS = {"1": 1, "1.0": 1, "true": 1, "yes": 1, "y": 1, "positive": 1,
          "0": 0, "0.0": 0, "false": 0, "no": 0, "n": 0, "negative": 0,
          "-1": -1, "-1.0": -1, "uncertain": -1, "": None}
FIELDS = (("patient", "patient_col", ("patient", "Patient", "patient_id", "Patient ID")),
          ("study", "study_col", ("study", "Study", "study_id")),
          ("group", "group_col", ("group", "Group", "body_part")),
          ("view", "view_col", ("view", "View", "View Position")))
SPLIT_GUESSES = ("split", "Split", "subset")


def _guess(header, explicit, guesses, option):
    if explicit:
        return explicit
    for name in guesses:
        if name in header:
            return name
    return None if option is None else _missing(option, header)


def _missing(option, header):
    raise UsageError(f"name the column with {option} (columns: {', '.join(header[:20])})")


def table_path(source):
    """The table itself, or the one table at the top of a folder."""
    if os.path.isfile(source):
        return source
    found = sorted(n for n in os.listdir(source) if n.lower().endswith((".csv", ".tsv")))
    if len(found) != 1:
        raise UsageError(f"{source}: the csv layout needs the table's path "
                         f"({len(found)} tables in the folder)")
    return os.path.join(source, found[0])


def read(source, opts, tally):
    path = table_path(source)
    table = Table(path, encoding=opts.encoding, delimiter=opts.delimiter)
    header = table.header
    i_path = table.column(_guess(header, opts.path_col, PATH_GUESSES, "--path-col"), "--path-col")
    multi = [(n, table.column(n, "--label-cols")) for n in opts.label_cols or ()]
    i_label = None
    if not multi:
        name = _guess(header, opts.label_col, LABEL_GUESSES, None)
        i_label = table.column(name, "--label-col") if name else None
    fields = []
    for field, option, guesses in FIELDS:
        name = _guess(header, getattr(opts, option), guesses, None)
        if name:
            fields.append((field, table.column(name, f"--{option.replace('_', '-')}")))
    split_name = _guess(header, opts.split_col, SPLIT_GUESSES, None)
    i_split = table.column(split_name, "--split-col") if split_name else None
    resolve = TablePaths(path, opts.root)
    used = {i_path, i_label, i_split, *(i for _, i in multi), *(i for _, i in fields)}
    unused = [(h, i) for i, h in enumerate(header) if h and i not in used]
    source_name = os.path.basename(path)

    for lineno, row in table.rows():
        if len(row) < len(header):
            raise table.too_short(lineno, row)
        image_id, image_path = resolve(row[i_path])
        if not image_id:
            raise ManifestError(path, lineno, "empty path cell")
        rec = {"id": image_id, "path": image_path}
        if multi:
            labels = {}
            for name, i in multi:
                try:
                    value = _FLAGS[row[i].strip().lower()]
                except KeyError:
                    raise ManifestError(path, lineno, f"{name}: {row[i]!r} is not 1/0/-1/blank") from None
                if value is not None:
                    labels[name] = value
            rec["labels"] = labels
        elif i_label is not None and row[i_label].strip():
            rec["label"] = row[i_label].strip()
        for field, i in fields:
            if row[i].strip():
                rec[field] = row[i].strip()
        if i_split is not None:
            split = SPLIT_NAMES.get(row[i_split].strip().lower())
            if split is None and row[i_split].strip():
                raise ManifestError(path, lineno, f"split {row[i_split]!r} is not train/val/test")
            if split:
                rec["split"] = split
        rec["source"] = {"table": source_name, "line": lineno, **{h: row[i] for h, i in unused}}
        yield rec
