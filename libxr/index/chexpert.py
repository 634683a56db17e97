"""The ``chexpert`` layout: CheXpert ``train.csv`` / ``valid.csv``.

Fourteen observations valued 1 (positive), 0 (negative), -1 (uncertain) or
blank (not mentioned in the report). The policies below are the ones the
CheXpert paper and report 003 compare.
"""

import operator
import os
import re

from libxr.errors import ManifestError, UsageError
from libxr.index import columns
from libxr.index.paths import SPLIT_NAMES, TablePaths
from libxr.index.select import STRENGTH
from libxr.index.table import open_table

OBSERVATIONS = ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity",
                "Lung Lesion", "Edema", "Consolidation", "Pneumonia", "Atelectasis",
                "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture", "Support Devices")

PARENTS = {"Cardiomegaly": "Enlarged Cardiomediastinum", "Lung Lesion": "Lung Opacity",
           "Edema": "Lung Opacity", "Consolidation": "Lung Opacity",
           "Atelectasis": "Lung Opacity", "Pneumonia": "Consolidation"}
"""CheXpert's label hierarchy (report 003, figure 28): child -> parent."""

UNCERTAIN_POLICIES = {"keep": -1, "ones": 1, "zeros": 0, "ignore": None}
"""What an uncertain (-1) label becomes; ``ignore`` leaves it unstated (masked in training)."""

_VALUES = {"1": 1, "1.0": 1, "0": 0, "0.0": 0, "-1": -1, "-1.0": -1, "": None,
           " ": None}
_OFFICIAL = columns.by_canon(OBSERVATIONS)
_EXTRAS = ("Frontal/Lateral", "AP/PA", "Sex", "Age")
_FRONTAL = {"frontal": "Frontal", "lateral": "Lateral"}
"""Frontal/Lateral cells in any case, as CheXpert writes them."""
_PATIENT_STUDY = re.compile(r"(patient\d+)/(study\d+)/")


def ancestors(label):
    chain = []
    while label in PARENTS:
        label = PARENTS[label]
        chain.append(label)
    return chain


def propagate(labels):
    """Lift each parent to its strongest child: positive over uncertain over negative.

    Report 003 found many rows positive (or uncertain) for a child such as
    Cardiomegaly with the parent left blank. Done before the uncertainty policy,
    so ``ones`` reproduces the report exactly (an uncertain child makes its
    parent positive) and ``keep`` makes it uncertain.
    """
    for child, value in list(labels.items()):
        if value in (1, -1):
            for parent in ancestors(child):
                if STRENGTH[value] > STRENGTH[labels.get(parent)]:
                    labels[parent] = value
    return labels


def looks_like(header):
    keys = {columns.canon(h) for h in header}
    return "path" in keys and ("frontal/lateral" in keys or len(keys.intersection(_OFFICIAL)) >= 5)


def observation_columns(header):
    """(official name, position) of the observation columns, however the header spells them."""
    return [(_OFFICIAL[columns.canon(h)], i) for i, h in enumerate(header) if columns.canon(h) in _OFFICIAL]


def tables(root):
    if os.path.isfile(root):
        return [root]
    found = [os.path.join(root, n) for n in ("train.csv", "valid.csv", "test.csv")
             if os.path.isfile(os.path.join(root, n))]
    if not found:
        raise UsageError(f"{root}: no train.csv or valid.csv for the chexpert layout")
    return found


def read(root, opts, tally):
    if opts.uncertain not in UNCERTAIN_POLICIES:
        raise UsageError(f"unknown uncertainty policy {opts.uncertain!r}")
    for path in tables(root):
        yield from _read_table(path, opts, tally)


def _read_table(path, opts, tally):
    table = open_table(path, opts, tally)
    i_path = table.column("Path")
    observations = observation_columns(table.header)
    if not observations:
        raise UsageError(f"{path}: none of the CheXpert observation columns "
                         f"({', '.join(OBSERVATIONS[:3])}, ...)")
    names = [n for n, _ in observations]
    selected = _selection(opts.labels, names, path)
    blank = 0 if opts.blank == "zero" else None
    uncertain = UNCERTAIN_POLICIES[opts.uncertain]
    resolve = TablePaths(path, opts.root, opts.strip_prefix, tally)
    header = table.header
    width = max(i for _, i in observations + [("", i_path)]) + 1
    # Optional columns that are absent read the path cell and are blanked.
    extra = [columns.find(header, (n,)) for n in _EXTRAS]
    _took(path, header, observations, tally)
    table.used = {i_path, *extra, *(i for _, i in observations)}
    label_like = columns.LabelLike(header, table.used)
    extras_of = operator.itemgetter(*[i_path if i is None else i for i in extra])
    absent = [k for k, i in enumerate(extra) if i is None]
    cells_of = _cells([i for _, i in observations])
    # One lookup table per run: raw cell -> final value. Propagation needs the
    # raw -1 before the policy applies, so it takes the slower path.
    raw = dict(_VALUES, **{k: blank for k, v in _VALUES.items() if v is None})
    final = raw if opts.propagate else {k: (uncertain if v == -1 else v) for k, v in raw.items()}
    subset = None if selected == set(names) else selected
    source_name = os.path.basename(path)
    patient_study = _PATIENT_STUDY.search

    for lineno, row in table.rows():
        if len(row) < width:
            raise table.too_short(lineno, row)
        if label_like.candidates:
            label_like.see(row)
        frontal, view, sex, age = extras_of(row)
        if absent:
            frontal, view, sex, age = ("" if k in absent else v
                                       for k, v in enumerate((frontal, view, sex, age)))
        frontal = _FRONTAL.get(frontal.strip().lower(), frontal)
        if opts.frontal_only and frontal != "Frontal":
            tally.skip("row not frontal (--frontal-only)")
            continue
        try:
            values = list(map(final.__getitem__, cells_of(row)))
        except KeyError as exc:
            name = names[cells_of(row).index(exc.args[0])]
            raise ManifestError(path, lineno, f"{name}: {exc.args[0]!r} is not 1, 0, -1 or blank") from None
        labels = {n: v for n, v in zip(names, values) if v is not None}
        if opts.propagate:
            labels = {n: (uncertain if v == -1 else v) for n, v in propagate(labels).items()}
            labels = {n: v for n, v in labels.items() if v is not None}
        if subset is not None:
            labels = {n: v for n, v in labels.items() if n in subset}

        image_id, image_path = resolve(row[i_path], lineno)
        rec = {"id": image_id, "path": image_path, "labels": labels}
        match = patient_study(image_id)
        if match:
            rec["patient"] = match.group(1)
            rec["study"] = match.group(1) + "/" + match.group(2)
        if frontal or view:
            rec["view"] = view if frontal == "Frontal" and view else frontal
        columns.demographics(rec, sex, age, tally, path, lineno)
        split = SPLIT_NAMES.get(image_id.partition("/")[0])
        if split:
            rec["split"] = split
        rec["source"] = {"table": source_name, "line": lineno}
        yield rec
    label_like.report(tally, path, "not one of CheXpert's 14 observations (--layout csv --label-cols takes any)")


def _cells(positions):
    """row -> the tuple of cells at ``positions``; itemgetter of one position gives the cell itself."""
    if len(positions) == 1:
        (i,) = positions
        return lambda row: (row[i],)
    return operator.itemgetter(*positions)


def _took(path, header, observations, tally):
    named = [name if header[i] == name else f"{header[i]} as {name}" for name, i in observations]
    tally.notes.append(f"{path}: labels from {len(named)} columns: {', '.join(named)}")


def _selection(wanted, available, path):
    if not wanted:
        return set(available)
    official = columns.by_canon(available)
    missing = [w for w in wanted if columns.canon(w) not in official]
    if missing:
        raise UsageError(f"{path}: --labels names {', '.join(map(repr, missing))}, "
                         f"not among {', '.join(available)}")
    return {official[columns.canon(w)] for w in wanted}
