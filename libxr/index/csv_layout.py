"""The ``csv`` layout: any CSV/TSV, its columns found by their common names or named by options.

Single-label (``--label-col``) or multi-label (``--label-cols A,B,C`` with values
1/0/-1/blank or true/false/yes/no); patient, study, group, view, sex, age and split
columns are optional. Columns are found by their common names in any case and
spelling (``Patientid``, ``patient_id``, ``Patient ID``); columns not used are kept
under ``source``.
"""

import os

from libxr.errors import ManifestError, UsageError
from libxr.index import columns
from libxr.index.paths import SPLIT_NAMES, TablePaths
from libxr.index.table import open_table

_FLAGS = {"1": 1, "1.0": 1, "true": 1, "yes": 1, "y": 1, "positive": 1,
          "0": 0, "0.0": 0, "false": 0, "no": 0, "n": 0, "negative": 0,
          "-1": -1, "-1.0": -1, "uncertain": -1, "": None}
GUESSES = {
    "path": ("path", "file path", "image path", "filename", "file", "image", "image name", "image file",
             "img", "img path", "Image Index"),
    "label": ("label", "class", "class name", "target", "finding", "findings", "diagnosis", "category"),
    "patient": ("patient", "patient id", "subject", "subject id"),
    "study": ("study", "study id"),
    "group": ("group", "body part"),
    "view": ("view", "view position", "projection"),
    "sex": ("sex", "gender", "patient sex", "patient gender"),
    "age": ("age", "patient age"),
    "split": ("split", "subset", "partition"),
}
"""Column names each field is found by when no option names its column (matched by columns.canon)."""
FIELDS = ("patient", "study", "group", "view")
"""Fields whose cells are kept as written (sex and age are read as the contract says)."""


def _column(table, field, explicit, required=False):
    """Position of the column for ``field``: the one ``--FIELD-col`` names, else a common name."""
    option = f"--{field}-col"
    if explicit:
        return table.column(explicit, option)
    found = columns.find(table.header, GUESSES[field])
    if found is None and required:
        raise UsageError(f"{table.path}: name the column with {option} (columns: {', '.join(table.header[:20])})")
    return found


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
    table = open_table(path, opts, tally)
    header = table.header
    i_path = _column(table, "path", opts.path_col, required=True)
    multi = [(n, table.column(n, "--label-cols")) for n in opts.label_cols or ()]
    i_label = None if multi else _column(table, "label", opts.label_col)
    fields = [(f, _column(table, f, getattr(opts, f"{f}_col"))) for f in FIELDS]
    fields = [(f, i) for f, i in fields if i is not None]
    i_sex, i_age = _column(table, "sex", opts.sex_col), _column(table, "age", opts.age_col)
    i_split = _column(table, "split", opts.split_col)
    resolve = TablePaths(path, opts.root, opts.strip_prefix, tally)
    used = {i_path, i_label, i_sex, i_age, i_split, *(i for _, i in multi), *(i for _, i in fields)}
    unused = [(h, i) for i, h in enumerate(header) if h and i not in used]
    table.used = used
    source_name = os.path.basename(path)
    _took(path, header, [("path", i_path), ("label", i_label), *fields, ("sex", i_sex), ("age", i_age),
                         ("split", i_split)], multi, tally)
    label_like = columns.LabelLike(header, used)

    for lineno, row in table.rows():
        if len(row) < len(header):
            raise table.too_short(lineno, row)
        if label_like.candidates:
            label_like.see(row)
        image_id, image_path = resolve(row[i_path], lineno)
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
        columns.demographics(rec, "" if i_sex is None else row[i_sex], "" if i_age is None else row[i_age],
                             tally, path, lineno)
        if i_split is not None:
            split = SPLIT_NAMES.get(row[i_split].strip().lower())
            if split is None and row[i_split].strip():
                raise ManifestError(path, lineno, f"split {row[i_split]!r} is not train/val/test")
            if split:
                rec["split"] = split
        rec["source"] = {"table": source_name, "line": lineno, **{h: row[i] for h, i in unused}}
        yield rec
    label_like.report(tally, path, "--label-cols names the columns of a multi-label task")


def _took(path, header, found, multi, tally):
    """One line saying which column became which field."""
    took = [f"{field} from {header[i]!r}" for field, i in found if i is not None]
    if multi:
        took.insert(1, f"labels from {', '.join(repr(n) for n, _ in multi)}")
    elif all(field != "label" for field, i in found if i is not None):
        took.insert(1, "no label column (--label-col or --label-cols names it)")
    tally.notes.append(f"{path}: {', '.join(took)}")
