"""The ``mura`` layout: MURA-v1.1 as a tree or as its official CSVs.

``[train|valid/]XR_<PART>/patientN/studyM_{positive,negative}/imageK.png``: the
label, patient, study and body part all come from the path. The CSVs
(``*_image_paths.csv``) list the same paths, with or without a header row.
"""

import os
import re

from libxr.errors import ManifestError
from libxr.index.folders import walk
from libxr.index.paths import SPLIT_NAMES, TablePaths, posix
from libxr.index.table import open_table
from libxr.pixels.files import is_image_name

PATH_RE = re.compile(r"(?:^|/)(?:(train|valid|test)/)?(XR_[A-Z_]+)/(patient\d+)/"
                     r"(study\d+)_(positive|negative)/([^/]+)$")
LABELS = {"positive": "abnormal", "negative": "normal"}
TABLES = ("train_image_paths.csv", "valid_image_paths.csv", "test_image_paths.csv")


def is_mura_path(value):
    return PATH_RE.search(value.strip().replace("\\", "/")) is not None


def looks_like(root):
    """A MURA tree or a folder holding its CSVs."""
    if any(os.path.isfile(os.path.join(root, t)) for t in TABLES):
        return True
    with os.scandir(root) as entries:
        folders = [e for e in entries if e.is_dir()]
    return any(e.name.startswith("XR_") for e in folders) or any(
        n.startswith("XR_") for e in folders if e.name in ("train", "valid") for n in os.listdir(e.path))


def record(image_id, path, source):
    match = PATH_RE.search(image_id)
    if match is None:
        return None
    split, part, patient, study, outcome, _ = match.groups()
    rec = {"id": image_id, "path": path, "label": LABELS[outcome], "patient": patient,
           "study": f"{part}/{patient}/{study}", "group": part}
    if split:
        rec["split"] = SPLIT_NAMES[split]
    rec["source"] = source
    return rec


def read(root, opts, tally):
    """A directory: its CSVs if it has them, otherwise the image tree."""
    if os.path.isfile(root):
        yield from read_table(root, opts, tally)
        return
    tables = [os.path.join(root, t) for t in TABLES if os.path.isfile(os.path.join(root, t))]
    if tables:
        for table in tables:
            yield from read_table(table, opts, tally)
        return
    for dirpath, filenames in walk(root, tally):
        for name in filenames:
            path = os.path.join(dirpath, name)
            image_id = posix(os.path.relpath(path, root))
            rec = record(image_id, path, {"folder": posix(os.path.relpath(dirpath, root))}) \
                if is_image_name(name) else None
            if rec is None:
                tally.skip(f"non-image file {name}" if not is_image_name(name)
                           else "image outside the MURA folder pattern")
                continue
            yield rec


def read_table(path, opts, tally):
    """An ``*_image_paths.csv`` (one image per row) or ``*_labeled_studies.csv``
    (one study folder and its 0/1 label per row, expanded to the images in it);
    the header row some copies carry is optional."""
    table = open_table(path, opts, tally, header=False)
    resolve = TablePaths(path, opts.root, opts.strip_prefix, tally)
    tally.notes.append(f"{path}: labels from the study folder names (studyN_positive → abnormal, "
                       "studyN_negative → normal)")
    for lineno, row in table.rows():
        cell = row[0].strip()
        if lineno == 1 and not is_mura_path(cell) and not is_mura_path(cell + "x.png"):
            continue  # the header some copies carry ("Img_Path", "Img_Path,Label")
        source = {"table": os.path.basename(path), "line": lineno}
        if cell.endswith("/"):
            yield from _study(path, lineno, row, resolve, source, tally)
            continue
        image_id, image_path = resolve(cell, lineno)
        rec = record(image_id, image_path, source)
        if rec is None:
            raise ManifestError(path, lineno, f"{cell!r} is not a MURA image path "
                                "(XR_<PART>/patientN/studyM_positive|negative/imageK.png)")
        yield rec


def _study(path, lineno, row, resolve, source, tally):
    study_id, study_dir = resolve(row[0].strip(), lineno)
    if record(study_id + "image.png", "", source) is None:
        raise ManifestError(path, lineno, f"{row[0]!r} is not a MURA study folder")
    if len(row) > 1 and row[1].strip() not in ("0", "1"):
        raise ManifestError(path, lineno, f"label {row[1]!r} is not 0 or 1")
    try:
        listed = sorted(os.listdir(study_dir))
    except OSError:
        tally.miss(study_dir)
        return
    names = [n for n in listed if is_image_name(n)]
    for name in listed:
        if not is_image_name(name):
            tally.skip(f"non-image file {name}")
    if not names:
        tally.problem("study folder without images", f"{path}:{lineno}", study_dir)
    for name in names:
        rec = record(study_id + name, os.path.join(study_dir, name), source)
        if len(row) > 1 and rec["label"] != ("abnormal" if row[1].strip() == "1" else "normal"):
            raise ManifestError(path, lineno, f"label {row[1]} contradicts the folder name {row[0]!r}")
        yield rec
