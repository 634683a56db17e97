"""xr-index: any labelled X-ray collection to manifest records.

One reader per layout normalises its source into the record contract of
docs/manifest.md; :func:`index` adds what is common to all of them (patient ids
from file names, ``--map`` relabelling, missing-file accounting, header checks).
"""

import dataclasses
import os

from libxr.errors import UsageError
from libxr.index import chexpert, csv_layout, folders, mura, nih
from libxr.index.paths import ExistenceCache, FromName, Tally
from libxr.index.select import Relabel, describe
from libxr.index.table import Table

READERS = {"folders": folders.read, "mura": mura.read, "chexpert": chexpert.read,
           "nih": nih.read, "csv": csv_layout.read}
LAYOUTS = tuple(READERS)
TABLE_LAYOUTS = ("mura", "chexpert", "nih", "csv")
"""Layouts whose images are named by a table, so they may be missing."""
WHERE_LAYOUTS = ("chexpert", "nih", "csv")
"""Layouts read from tables with a header row, whose columns ``--where`` can name."""


@dataclasses.dataclass
class IndexOptions:
    root: str = None
    strip_prefix: str = None
    encoding: str = "utf-8"
    delimiter: str = None
    patient_regex: str = None
    fields: tuple = ()               # (name, regex) pairs: more fields from file names
    uncertain: str = "keep"
    blank: str = "unknown"
    frontal_only: bool = False
    propagate: bool = False
    labels: tuple = ()
    path_col: str = None
    label_col: str = None
    label_cols: tuple = ()
    patient_col: str = None
    study_col: str = None
    group_col: str = None
    view_col: str = None
    sex_col: str = None
    age_col: str = None
    split_col: str = None
    where: tuple = ()                # (column, negate, values) conditions on source rows
    mapping: tuple = ()              # (from, to) label renames; from "*" renames the rest
    drop_missing: bool = False


def detect_layout(source, opts=None):
    """The layout of a folder or label table, by its names and header (read as ``opts`` says)."""
    opts = opts or IndexOptions()

    def header_of(path):
        return Table(path, encoding=opts.encoding, delimiter=opts.delimiter).header

    if os.path.isdir(source):
        if mura.looks_like(source):
            return "mura"
        if any(os.path.isfile(os.path.join(source, n)) for n in ("train.csv", "valid.csv")):
            header = header_of(os.path.join(source, "train.csv" if os.path.isfile(
                os.path.join(source, "train.csv")) else "valid.csv"))
            if chexpert.looks_like(header):
                return "chexpert"
        try:
            nih.table_path(source)
            return "nih"
        except UsageError:
            pass
        if not folders.has_split_folders(source):
            try:
                csv_layout.table_path(source)
                return "csv"
            except UsageError:
                pass
        return "folders"
    name = os.path.basename(source)
    if "image_paths" in name or "labeled_studies" in name:
        return "mura"
    header = header_of(source)
    if nih.looks_like(header):
        return "nih"
    if chexpert.looks_like(header):
        return "chexpert"
    if header and mura.is_mura_path(header[0]):
        return "mura"
    return "csv"


def index(source, layout=None, opts=None, tally=None):
    """Yield the records of ``source`` (a folder or a label table).

    ``tally`` collects what was skipped or missing; it is complete once the
    generator is exhausted.
    """
    opts = opts or IndexOptions()
    tally = tally if tally is not None else Tally()
    if not os.path.exists(source):
        raise FileNotFoundError(2, "No such file or directory", source)
    layout = layout or detect_layout(source, opts)
    if layout == "folders" and not os.path.isdir(source):
        raise UsageError(f"{source}: the folders layout needs a directory")
    if opts.where and layout not in WHERE_LAYOUTS:
        raise UsageError(f"--where {describe(opts.where)}: selects rows of a table with a header row "
                         f"({', '.join(WHERE_LAYOUTS)} layouts); {source} is read as {layout}")
    records = READERS[layout](source, opts, tally)
    relabel = Relabel(opts.mapping) if opts.mapping else None
    patient_of = FromName(opts.patient_regex) if opts.patient_regex else None
    extra = [(name, FromName(pattern, f"--field {name}=")) for name, pattern in opts.fields]
    exists = ExistenceCache() if layout in TABLE_LAYOUTS else None
    for rec in records:
        if patient_of is not None:
            patient = patient_of(rec["path"])
            if patient is None:
                tally.no_patient += 1
            else:
                rec = _with_patient(rec, patient)
        for name, value_of in extra:
            value = value_of(rec["path"])
            if value is not None:
                rec[name] = value
        if relabel is not None:
            rec = relabel(rec)
        if exists is not None and not exists(rec["path"]):
            tally.miss(rec["path"])
            if opts.drop_missing:
                continue
        tally.records += 1
        yield rec
    if relabel is not None:
        tally.warnings.extend(f"--map {name}={relabel.names[name]}: no record has the label {name!r}"
                              for name in relabel.unused())


def _with_patient(rec, patient):
    """Put ``patient`` right after the labels, where the contract lists it."""
    out = {}
    for key, value in rec.items():
        if key in ("split", "source") and "patient" not in out:
            out["patient"] = patient
        if key != "patient":
            out[key] = value
    out.setdefault("patient", patient)
    return out
