"""The ``nih`` layout: NIH ChestX-ray14 ``Data_Entry_2017*.csv``.

``Finding Labels`` is pipe-separated ("Effusion|Mass") or ``No Finding``; every
finding not listed is negative, so all labels are stated — unless the cell is blank, which
states nothing (a record with no label, counted). Images live in
``images/`` or the ``images_0NN/images/`` folders of the download; the official
``train_val_list.txt`` / ``test_list.txt`` give the split when present.
"""

import glob
import os

from libxr.errors import ManifestError, UsageError
from libxr.index import columns
from libxr.index.table import Table, open_table

FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule",
            "Pneumonia", "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis",
            "Pleural_Thickening", "Hernia")
NO_FINDING = "No Finding"
SPLIT_LISTS = {"train_val_list.txt": "train", "test_list.txt": "test"}
_NAMES = frozenset(FINDINGS + (NO_FINDING,))
_OFFICIAL = columns.by_canon(_NAMES)
KNOWN = ("Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
         "View Position")
"""The table's columns (the 2020 file adds image sizes and pixel spacing)."""


def looks_like(header):
    keys = {columns.canon(h) for h in header}
    return "findinglabels" in keys and "imageindex" in keys


def finding(name):
    """The official spelling of a finding written any way (``pleural thickening``), or None."""
    return _OFFICIAL.get(columns.canon(name))


def table_path(root):
    if os.path.isfile(root):
        return root
    found = sorted(glob.glob(os.path.join(glob.escape(root), "Data_Entry_2017*.csv")))
    if not found:
        raise UsageError(f"{root}: no Data_Entry_2017*.csv for the nih layout")
    return found[-1]


def _image_dirs(base, root):
    if root is not None:
        return [root]
    dirs = sorted(glob.glob(os.path.join(glob.escape(base), "images*", "images")))
    dirs += [d for d in (os.path.join(base, "images"),) if os.path.isdir(d)]
    return dirs or [base]


def _splits(base, encoding):
    """{image: split} from the official lists, read like the table (a byte-order mark decides,
    an undecodable line is an error at its line)."""
    splits = {}
    for name, split in SPLIT_LISTS.items():
        path = os.path.join(base, name)
        if os.path.isfile(path):
            listed = Table(path, encoding=encoding, delimiter="\t", header=False)
            splits.update((row[0].strip(), split) for _, row in listed.rows(skip_header=False) if row[0].strip())
    return splits


def read(root, opts, tally):
    path = table_path(root)
    base = os.path.dirname(path)
    table = open_table(path, opts, tally)
    col = table.column
    i_image, i_findings = col("Image Index"), col("Finding Labels")
    i_patient, i_view = col("Patient ID"), col("View Position")
    i_age = columns.find(table.header, ("Patient Age",))
    i_sex = columns.find(table.header, ("Patient Gender",))
    width = max(i_image, i_findings, i_patient, i_view) + 1
    dirs = _image_dirs(base, opts.root)
    locate = {}
    if len(dirs) > 1:
        for d in dirs:
            locate.update((n, d) for n in os.listdir(d))
    splits = _splits(base, opts.encoding)
    names = list(FINDINGS) + [NO_FINDING]
    if opts.labels:
        unknown = [n for n in opts.labels if finding(n) is None]
        if unknown:
            raise UsageError(f"--labels {', '.join(unknown)}: not an NIH finding ({', '.join(names)})")
        names = [finding(n) for n in opts.labels]
    header = table.header
    used = {i_image, i_findings, i_patient, i_view, i_age, i_sex}
    unused = [(h, i) for i, h in enumerate(header) if h and i not in used]
    table.used = used
    source_name = os.path.basename(path)
    tally.notes.append(f"{path}: {len(names)} labels from column {header[i_findings]!r}: {', '.join(names)}")
    known = {columns.canon(n) for n in KNOWN}
    label_like = columns.LabelLike(header, used | {i for h, i in unused if columns.canon(h) in known})

    for lineno, row in table.rows():
        if len(row) < width:
            raise table.too_short(lineno, row)
        if label_like.candidates:
            label_like.see(row)
        image = row[i_image].strip()
        if not image:
            raise ManifestError(path, lineno, f"empty {header[i_image]!r} cell")
        findings = {f.strip() for f in row[i_findings].split("|") if f.strip()}
        if not findings.issubset(_NAMES):
            findings = _official(findings, path, lineno)
        # A blank cell says nothing (not "no finding" either): no labels, counted as a record with none.
        labels = {n: int(n in findings) for n in names} if findings else {}
        rec = {"id": image, "path": os.path.join(locate.get(image, dirs[0]), image), "labels": labels}
        for field, i in (("patient", i_patient), ("view", i_view)):
            if row[i].strip():                # a blank cell is no value: "" would be one patient of many
                rec[field] = row[i].strip()
        columns.demographics(rec, "" if i_sex is None else row[i_sex], "" if i_age is None else row[i_age],
                             tally, path, lineno)
        if image in splits:
            rec["split"] = splits[image]
        rec["source"] = {"table": source_name, "line": lineno, **{h: row[i] for h, i in unused if i < len(row)}}
        yield rec
    label_like.report(tally, path, "the nih layout takes findings from the findings column only")


def _official(findings, path, lineno):
    """Findings spelt another way (``effusion``, ``Pleural Thickening``) as NIH spells them."""
    official = {finding(f) for f in findings}
    if None in official:
        raise ManifestError(path, lineno, f"unknown finding {min(f for f in findings if finding(f) is None)!r}")
    return official

