"""xr-index: any labelled X-ray collection to manifest records.

One reader per layout normalises its source into the record contract of
docs/manifest.md; :func:`index` adds what is common to all of them (patient ids
from file names, ``--map`` relabelling, missing-file accounting, records without
a label, file names that cannot be written as UTF-8 JSON). Input that is no
collection — a binary file, a folder whose sub-folders hold label tables — is
refused with what to index instead, never read as something else.
"""

import dataclasses
import os

from libxr.errors import UsageError, XRError
from libxr.index import chexpert, csv_layout, folders, mura, nih, npz, repeats
from libxr.index.paths import SPLIT_NAMES, ExistenceCache, FromName, Tally, is_absolute
from libxr.index.select import Relabel, describe
from libxr.index.table import Table
from libxr.records.manifest import unlabelled

READERS = {"folders": folders.read, "mura": mura.read, "chexpert": chexpert.read,
           "nih": nih.read, "csv": csv_layout.read, "npz": npz.read}
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
    drop_unlabelled: bool = False
    extract: str = None              # npz: where the images are written as PNG files


NO_LABEL = "record with no label"
NOT_UTF8 = "file name that is not UTF-8, left out"
NO_PATIENT = "file name --patient-regex does not match (no patient id)"
FOLDER = "row naming a folder, not an image, left out"
HINTS = {NO_LABEL: "--drop-unlabelled leaves them out",
         NOT_UTF8: "manifests are UTF-8 JSON: rename the files, e.g. with convmv",
         repeats.REPEATED: repeats.HINT, repeats.CONFLICT: repeats.HINT}
TABLE_EXTENSIONS = (".csv", ".tsv")
IMAGE_HINT = "index the folder that holds it"
ARCHIVE_HINT = "unpack it and index what it holds"
OTHER_HINT = "xr-index reads dataset folders, CSV/TSV label tables and MedMNIST .npz files"
MAGIC = ((b"\x89PNG", "a PNG image", IMAGE_HINT), (b"\xff\xd8\xff", "a JPEG image", IMAGE_HINT),
         (b"II*\x00", "a TIFF image", IMAGE_HINT), (b"MM\x00*", "a TIFF image", IMAGE_HINT),
         (b"PK\x03\x04", "a zip archive", ARCHIVE_HINT), (b"\x1f\x8b", "gzip data", ARCHIVE_HINT),
         (b"BZh", "bzip2 data", ARCHIVE_HINT), (b"\xfd7zXZ", "xz data", ARCHIVE_HINT),
         (b"7z\xbc\xaf", "a 7-zip archive", ARCHIVE_HINT), (b"\x89HDF", "an HDF5 file", OTHER_HINT),
         (b"\x93NUMPY", "a NumPy .npy array", OTHER_HINT), (b"%PDF", "a PDF document", OTHER_HINT))
"""Leading bytes of files passed by mistake: what they are, and what to do instead."""


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
        _refuse_tables_among_classes(source)
        return "folders"
    if npz.looks_like(source):
        return "npz"
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


def _refuse_tables_among_classes(root):
    """Label tables beside the would-be class folders, or at their top, mean the folders are not
    classes (sites, batches, an images/ folder): name the tables to index instead."""
    top = folders.entries(root)
    split = [e.path for e in top if e.is_dir() and e.name.lower() in SPLIT_NAMES]
    parents = split or [root]
    tables = [] if split else [e.path for e in top if _is_table(e)]
    for parent in parents:
        for entry in folders.entries(parent):
            if entry.is_dir() and not entry.name.startswith("."):
                tables += [e.path for e in folders.entries(entry.path) if _is_table(e)]
    if tables:
        more = f" and {len(tables) - 1:,} more" if len(tables) > 1 else ""
        raise UsageError(f"{root}: label tables lie among the image folders ({tables[0]}{more}), so the "
                         f"folders are not classes: index a table (xr-index {tables[0]}), or pass "
                         "--layout folders if the folder names are the classes")


def _is_table(entry):
    if not entry.name.lower().endswith(TABLE_EXTENSIONS):
        return False
    try:
        return entry.is_file()
    except OSError:          # a symlink loop: no table (the folders reader counts what it is)
        return False


def refuse_binary(path, encoding="utf-8"):
    """A file that is not text cannot be a label table: say what it is (not "not utf-8 text")."""
    with open(path, "rb") as f:
        head = f.read(8192)
    kind, hint = next(((what, hint) for magic, what, hint in MAGIC if head.startswith(magic)),
                      (None, OTHER_HINT))
    if kind is None and head[128:132] == b"DICM":
        kind, hint = "a DICOM image", IMAGE_HINT
    wide = head.startswith((b"\xff\xfe", b"\xfe\xff")) or "16" in encoding or "32" in encoding
    if kind is None and b"\x00" in head and not wide:
        for order, zeros, text in (("le", head[1::2], head[0::2]), ("be", head[0::2], head[1::2])):
            if zeros.count(0) > 0.9 * len(zeros) and text.count(0) < 0.1 * len(text):
                raise XRError(f"{path}: UTF-16 text without a byte-order mark: pass --encoding utf-16-{order}")
        kind = "binary data"
    if kind is None:
        return
    raise XRError(f"{path} is binary ({kind}), not a label table: {hint}")


def index(source, layout=None, opts=None, tally=None):
    """Yield the records of ``source`` (a folder, a label table or a MedMNIST .npz).

    ``tally`` collects what was skipped, missing or faulty; it is complete once the
    generator is exhausted.
    """
    opts = opts or IndexOptions()
    tally = tally if tally is not None else Tally()
    if not os.path.exists(source):
        raise FileNotFoundError(2, "No such file or directory", source)
    if os.path.isfile(source) and layout != "npz" and not (layout is None and npz.looks_like(source)):
        refuse_binary(source, opts.encoding)
    layout = layout or detect_layout(source, opts)
    if layout == "folders" and not os.path.isdir(source):
        raise UsageError(f"{source}: the folders layout needs a directory")
    if opts.extract and layout != "npz":
        raise UsageError(f"--extract is for MedMNIST .npz files; {source} is read as the {layout} layout")
    if opts.where and layout not in WHERE_LAYOUTS:
        raise UsageError(f"--where {describe(opts.where)}: selects rows of a table with a header row "
                         f"({', '.join(WHERE_LAYOUTS)} layouts); {source} is read as {layout}")
    seen = repeats.Repeats() if layout in TABLE_LAYOUTS else None     # ids of folders and arrays are unique
    relabel = Relabel(opts.mapping) if opts.mapping else None
    for rec in _finished(READERS[layout](source, opts, tally), source, layout, opts, tally, relabel):
        if seen is not None:
            seen.see(rec["id"])
        yield rec
    if relabel is not None:
        tally.warnings.extend(f"--map {name}={relabel.names[name]}: no record has the label {name!r}"
                              for name in relabel.unused())
    if seen is not None:        # read again, as the records were made, for just the ids whose hashes met
        seen.report(lambda: _finished(READERS[layout](source, opts, Tally()), source, layout, opts, Tally(),
                                      Relabel(opts.mapping) if opts.mapping else None),
                    tally, lambda rec: _where(rec, source))


def _finished(records, source, layout, opts, tally, relabel):
    """The reader's ``records`` as the manifest gets them: patient and fields from file names,
    labels renamed, missing and unlabelled ones counted (or left out); ``tally`` counts."""
    patient_of = FromName(opts.patient_regex) if opts.patient_regex else None
    extra = [(name, FromName(pattern, f"--field {name}=")) for name, pattern in opts.fields]
    exists = ExistenceCache() if layout in TABLE_LAYOUTS else None
    for rec in records:
        if not rec["path"].isascii() and not _utf8(rec["path"]):
            tally.problem(NOT_UTF8, os.fsencode(rec["path"]).decode("utf-8", "backslashreplace"))
            continue
        if patient_of is not None:
            patient = patient_of(rec["path"])
            if patient is None:
                tally.problem(NO_PATIENT, rec["path"])
            else:
                rec = _with_patient(rec, patient)
        for name, value_of in extra:
            value = value_of(rec["path"])
            if value is not None:
                rec[name] = value
        if relabel is not None:
            rec = relabel(rec)
        if exists is not None and not exists(rec["path"]):
            if exists.folder(rec["path"]):
                tally.problem(FOLDER, _where(rec, source), rec["path"])
                continue
            tally.miss(rec["path"], absolute=rec["id"] == rec["path"] and is_absolute(rec["path"]))
            if opts.drop_missing:
                continue
        if unlabelled(rec):
            tally.problem(NO_LABEL, _where(rec, source))
            if opts.drop_unlabelled:
                continue
        tally.records += 1
        yield rec


def _utf8(text):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:      # undecodable bytes of a file name, kept by Python as surrogates
        return False
    return True


def _where(rec, source):
    """FILE:LINE of a record read from a table row, else its path."""
    origin = rec.get("source") or {}
    if "line" not in origin:
        return rec["path"]
    table = source if os.path.isfile(source) else os.path.join(source, origin.get("table", ""))
    return f"{table}:{origin['line']}"


def problem_lines(tally):
    """One warning per kind of problem: how many, the first FILE:LINE (or path), what to do."""
    return [f"{n:,} × {what} (first {first}" + (f": {value!r})" if value is not None else ")")
            + (f"; {HINTS[what]}" if what in HINTS else "")
            for what, (n, first, value) in tally.problems.items()]


def problems(tally):
    """What did not become a correct record, short: what --strict fails on."""
    found = [f"{n:,} × {what.split(' (')[0]}" for what, (n, _, _) in tally.problems.items()]
    if tally.missing:
        found.append(f"{tally.missing:,} listed images do not exist")
    if tally.unreadable:
        found.append(f"{len(tally.unreadable):,} images are unreadable")
    return found


def nothing_indexed(source, tally):
    """Why ``source`` gave no records, and what to do: the error of an empty result."""
    outside = tally.skipped.get("image outside a class folder", 0)
    if outside:
        return (f"{source}: no records: {outside:,} images lie outside class folders; for a flat folder with "
                "a label table use `xr-index TABLE` (--layout csv), for classes make one folder per class")
    arrays = sorted(why.split()[-1] for why in tally.skipped if why.endswith(".npz"))
    if arrays:
        return (f"{source}: no records; for its MedMNIST arrays use "
                f"`xr-index {os.path.join(source, arrays[0])} --extract DIR`")
    dropped = problems(tally)
    if dropped:
        return f"{source}: no records: {'; '.join(dropped)} (left out)"
    skipped = ", ".join(f"{n:,} × {why}" for why, n in sorted(tally.skipped.items())[:3])
    return (f"{source}: no images found{f' (skipped {skipped})' if skipped else ''}; layouts: "
            f"{', '.join(LAYOUTS)} (see docs/xr-index.md)")


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
