"""The ``nih`` layout: NIH ChestX-ray14 ``Data_Entry_2017*.csv``.

``Finding Labels`` is pipe-separated ("Effusion|Mass") or ``No Finding``; every
finding not listed is negative, so all labels are stated. Images live in
``images/`` or the ``images_0NN/images/`` folders of the download; the official
``train_val_list.txt`` / ``test_list.txt`` give the split when present.
"""

import glob
import os

from libxr.errors import ManifestError, UsageError
from libxr.index.table import Table

FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule",
            "Pneumonia", "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis",
            "Pleural_Thickening", "Hernia")
NO_FINDING = "No Finding"
SPLIT_LISTS = {"train_val_list.txt": "train", "test_list.txt": "test"}


def looks_like(header):
    return "Finding Labels" in header and "Image Index" in header


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


def _splits(base):
    splits = {}
    for name, split in SPLIT_LISTS.items():
        path = os.path.join(base, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                splits.update((line.strip(), split) for line in f if line.strip())
    return splits


def read(root, opts, tally):
    path = table_path(root)
    base = os.path.dirname(path)
    table = Table(path, encoding=opts.encoding, delimiter=opts.delimiter)
    col = table.column
    i_image, i_findings = col("Image Index"), col("Finding Labels")
    i_patient, i_view = col("Patient ID"), col("View Position")
    i_age = table.header.index("Patient Age") if "Patient Age" in table.header else None
    i_sex = table.header.index("Patient Gender") if "Patient Gender" in table.header else None
    width = max(i_image, i_findings, i_patient, i_view) + 1
    dirs = _image_dirs(base, opts.root)
    locate = {}
    if len(dirs) > 1:
        for d in dirs:
            locate.update((n, d) for n in os.listdir(d))
    splits = _splits(base)
    names = list(FINDINGS) + [NO_FINDING]
    if opts.labels:
        unknown = [n for n in opts.labels if n not in names]
        if unknown:
            raise UsageError(f"--labels {', '.join(unknown)}: not an NIH finding ({', '.join(names)})")
        names = list(opts.labels)
    header = table.header
    used = {i_image, i_findings, i_patient, i_view, i_age, i_sex}
    unused = [(h, i) for i, h in enumerate(header) if h and i not in used]
    source_name = os.path.basename(path)

    for lineno, row in table.rows():
        if len(row) < width:
            raise table.too_short(lineno, row)
        image = row[i_image].strip()
        findings = {f.strip() for f in row[i_findings].split("|") if f.strip()}
        unknown = findings.difference(FINDINGS, (NO_FINDING,))
        if unknown:
            raise ManifestError(path, lineno, f"unknown finding {min(unknown)!r}")
        labels = {n: int(n in findings) for n in names}
        rec = {"id": image, "path": os.path.join(locate.get(image, dirs[0]), image), "labels": labels,
               "patient": row[i_patient].strip(), "view": row[i_view].strip()}
        if i_sex is not None and row[i_sex].strip() in ("F", "M"):
            rec["sex"] = row[i_sex].strip()
        if i_age is not None:
            age = row[i_age].strip().rstrip("Y")
            if age.isdigit():
                rec["age"] = int(age)
        if image in splits:
            rec["split"] = splits[image]
        rec["source"] = {"table": source_name, "line": lineno, **{h: row[i] for h, i in unused if i < len(row)}}
        yield rec

