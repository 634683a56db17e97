"""Planning a synthetic dataset and writing it in one of the layouts."""

import contextlib
import csv
import dataclasses
import json
import os
import shutil
import tempfile

import numpy as np

from libxr.errors import UsageError, XRError
from libxr.index.chexpert import OBSERVATIONS, PARENTS
from libxr.index.nih import FINDINGS
from libxr.synth.render import chest, limb

LAYOUTS = ("folders", "csv", "mura", "chexpert", "nih")
MURA_PARTS = ("XR_ELBOW", "XR_FINGER", "XR_FOREARM", "XR_HAND", "XR_HUMERUS", "XR_SHOULDER", "XR_WRIST")

# Where each class (after the first, the normal one) shows its finding: (cy, cx, sigma, strength).
CLASS_PATTERNS = (
    ((0.58, 0.32, 0.06, 0.35),),                                  # lobar, one lung
    ((0.62, 0.22, 0.045, 0.3), (0.62, 0.78, 0.045, 0.3)),        # peripheral, both lungs
    ((0.42, 0.38, 0.08, 0.2), (0.42, 0.62, 0.08, 0.2)),          # diffuse, perihilar
)
# One place per multi-label finding.
SPOTS = ((0.30, 0.30), (0.30, 0.70), (0.45, 0.24), (0.45, 0.76), (0.60, 0.30), (0.60, 0.70),
         (0.38, 0.38), (0.38, 0.62), (0.52, 0.36), (0.52, 0.64), (0.68, 0.24), (0.68, 0.76),
         (0.24, 0.40), (0.24, 0.60))


@dataclasses.dataclass
class SynthOptions:
    layout: str = "folders"
    count: int = 200
    size: int = 128
    classes: tuple = ("NORMAL", "PNEUMONIA")
    weights: tuple = ()
    prevalence: float = 0.2
    splits: tuple = (("train", 0.8), ("test", 0.2))
    seed: int = 0
    workers: int = 1


@dataclasses.dataclass
class Image:
    """One planned image: where it goes, what to draw, and its label facts."""
    rel: str
    index: int
    patient: int
    split: str
    draw: tuple                 # ("chest", findings) or ("limb", part_index, abnormal)
    facts: dict = dataclasses.field(default_factory=dict)


def _class_findings(opts, k):
    if k == 0:
        return []
    name = opts.classes[k]
    if k <= len(CLASS_PATTERNS):
        return [(name, *spot) for spot in CLASS_PATTERNS[k - 1]]
    cy, cx = SPOTS[(k - len(CLASS_PATTERNS) - 1) % len(SPOTS)]
    return [(name, cy, cx, 0.05, 0.35)]


def _label_findings(names, truth):
    return [(n, *SPOTS[i % len(SPOTS)], 0.04, 0.3) for i, n in enumerate(names) if truth[n]]


def _patients(rng, opts):
    """Patient ids with 1-3 images each, split by patient (no leakage)."""
    names, fractions = zip(*opts.splits) if opts.splits else ((None,), (1.0,))
    sizes = []
    while sum(sizes) < opts.count:
        sizes.append(int(min(rng.integers(1, 4), opts.count - sum(sizes))))
    splits = rng.choice(len(names), size=len(sizes), p=np.asarray(fractions) / sum(fractions))
    return [(p + 1, n, names[s]) for p, (n, s) in enumerate(zip(sizes, splits))]


def plan(opts):
    rng = np.random.default_rng(opts.seed)
    images = []
    planner = {"folders": _plan_single, "csv": _plan_single, "mura": _plan_mura,
               "chexpert": _plan_multi, "nih": _plan_multi}[opts.layout]
    for patient, n, split in _patients(rng, opts):
        images.extend(planner(rng, opts, patient, n, split, len(images)))
    return images


def _plan_single(rng, opts, patient, n, split, start):
    weights = np.asarray(opts.weights or [1] * len(opts.classes), float)
    k = int(rng.choice(len(opts.classes), p=weights / weights.sum()))
    label = opts.classes[k]
    out = []
    for j in range(n):
        name = f"person{patient:04d}_{j + 1}.png"
        if opts.layout == "folders":
            rel = "/".join(p for p in (split, label, name) if p)
        else:
            rel = f"images/{name}"
        out.append(Image(rel, start + j, patient, split, ("chest", _class_findings(opts, k)),
                         {"label": label}))
    return out


def _plan_mura(rng, opts, patient, n, split, start):
    split_dir = {"val": "valid"}.get(split, split) or "train"
    part = int(rng.integers(len(MURA_PARTS)))
    out, study, left = [], 0, n
    while left:
        study += 1
        k = int(min(left, rng.integers(1, 3)))
        abnormal = bool(rng.random() < opts.prevalence * 2)
        folder = (f"{split_dir}/{MURA_PARTS[part]}/patient{patient:05d}/"
                  f"study{study}_{'positive' if abnormal else 'negative'}")
        for j in range(k):
            out.append(Image(f"{folder}/image{j + 1}.png", start + len(out), patient, split_dir,
                             ("limb", part, abnormal), {"study": folder + "/", "abnormal": abnormal}))
        left -= k
    return out


def _plan_multi(rng, opts, patient, n, split, start):
    names = [o for o in OBSERVATIONS if o != "No Finding"] if opts.layout == "chexpert" else list(FINDINGS)
    out = []
    for j in range(n):
        truth = {name: bool(rng.random() < opts.prevalence) for name in names}
        if opts.layout == "chexpert":
            for child, parent in PARENTS.items():
                truth[parent] = truth[parent] or truth[child]
            for child, parent in PARENTS.items():  # Pneumonia -> Consolidation -> Lung Opacity
                truth[parent] = truth[parent] or truth[child]
            split_dir = {"val": "valid"}.get(split, split) or "train"
            rel = f"{split_dir}/patient{patient:05d}/study{j + 1}/view1_frontal.jpg"
        else:
            rel = f"images/{patient:08d}_{j:03d}.png"
        out.append(Image(rel, start + j, patient, split, ("chest", _label_findings(names, truth)),
                         {"truth": truth, "sex": "FM"[int(rng.integers(2))], "age": int(rng.integers(18, 90)),
                          "noise": rng.random(len(names) + 1).tolist()}))
    return out


def _render(args):
    root, image, size, seed = args
    rng = np.random.default_rng([seed, image.index])
    if image.draw[0] == "chest":
        pixels, boxes = chest(rng, size, image.draw[1])
    else:
        pixels, boxes = limb(rng, size, image.draw[1], image.draw[2])
    from PIL import Image as PILImage

    path = os.path.join(root, image.rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    PILImage.fromarray(pixels).save(path, quality=92) if path.endswith(".jpg") else \
        PILImage.fromarray(pixels).save(path)
    return boxes


def _writer(path, header=None):
    f = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115 - the caller closes it
    w = csv.writer(f, lineterminator="\n")
    if header:
        w.writerow(header)
    return f, w


def synthesize(out, opts, progress=lambda it, total: it):
    """Write the dataset to ``out`` (created atomically: built aside, then renamed)."""
    if opts.layout not in LAYOUTS:
        raise UsageError(f"unknown layout {opts.layout!r}; layouts: {', '.join(LAYOUTS)}")
    if opts.layout in ("folders", "csv") and len(opts.classes) < 2:
        raise UsageError("--classes needs at least two classes")
    if opts.weights and len(opts.weights) != len(opts.classes):
        raise UsageError(f"--weights has {len(opts.weights)} values for {len(opts.classes)} classes")
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise XRError(f"{out}: exists and is not empty; choose a new folder")
    images = plan(opts)
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(out)}.", suffix=".part")
    try:
        jobs = [(tmp, image, opts.size, opts.seed) for image in images]
        if opts.workers > 1 and len(jobs) > 64:
            import multiprocessing

            with multiprocessing.get_context("spawn").Pool(opts.workers) as pool:
                boxes = list(progress(pool.imap(_render, jobs, chunksize=16), len(jobs)))
        else:
            boxes = list(progress(map(_render, jobs), len(jobs)))
        ids = LABEL_WRITERS[opts.layout](tmp, os.path.basename(os.path.abspath(out)), images)
        with open(os.path.join(tmp, "boxes.jsonl"), "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"id": image_id, "boxes": box}) + "\n" for image_id, box in zip(ids, boxes))
        if os.path.isdir(out):
            os.rmdir(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return images


def _write_folders(root, name, images):
    return [im.rel for im in images]


def _write_csv(root, name, images):
    f, w = _writer(os.path.join(root, "labels.csv"), ["file", "diagnosis", "patient", "split"])
    with f:
        for im in images:
            w.writerow([im.rel, im.facts["label"], f"P{im.patient:04d}", im.split or ""])
    return [im.rel for im in images]


def _write_mura(root, name, images):
    with contextlib.ExitStack() as stack:
        tables = {}
        for im in images:
            if im.split not in tables:
                paths = stack.enter_context(open(os.path.join(root, f"{im.split}_image_paths.csv"), "w"))
                studies = stack.enter_context(open(os.path.join(root, f"{im.split}_labeled_studies.csv"), "w"))
                tables[im.split] = (paths, studies, set())
            paths, studies, seen = tables[im.split]
            paths.write(f"{name}/{im.rel}\n")
            if im.facts["study"] not in seen:
                seen.add(im.facts["study"])
                studies.write(f"{name}/{im.facts['study']},{int(im.facts['abnormal'])}\n")
    return [im.rel for im in images]


def _chexpert_cell(truth, noise, parent):
    if truth:
        if parent and noise < 0.3:
            return ""            # parents left blank, as in the real file (report 003)
        return "-1.0" if noise > 0.85 else "1.0"
    return "" if noise < 0.6 else ("0.0" if noise < 0.95 else "-1.0")


def _write_chexpert(root, name, images):
    header = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *OBSERVATIONS]
    parents = set(PARENTS.values())
    files = {}
    try:
        for im in images:
            split = im.rel.split("/", 1)[0]
            if split not in files:
                files[split] = _writer(os.path.join(root, f"{split}.csv"), header)
            truth, noise = im.facts["truth"], im.facts["noise"]
            cells = ["1.0" if not any(truth.values()) else ""]
            cells += [_chexpert_cell(truth[o], noise[i], o in parents)
                      for i, o in enumerate(OBSERVATIONS[1:])]
            lateral = noise[-1] < 0.15
            files[split][1].writerow([f"{name}/{im.rel}", "Female" if im.facts["sex"] == "F" else "Male",
                                      im.facts["age"], "Lateral" if lateral else "Frontal",
                                      "" if lateral else ("AP" if noise[-1] < 0.6 else "PA"), *cells])
    finally:
        for f, _ in files.values():
            f.close()
    return [im.rel for im in images]


def _write_nih(root, name, images):
    header = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
              "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
    lists = {"train": [], "test": []}
    with open(os.path.join(root, "Data_Entry_2017_v2020.csv"), "w", encoding="utf-8") as f:
        f.write(header + "\n")
        for im in images:
            index = os.path.basename(im.rel)
            found = [n for n in FINDINGS if im.facts["truth"][n]]
            f.write(f"{index},{'|'.join(found) or 'No Finding'},{int(index[9:12])},{im.patient},"
                    f"{im.facts['age']},{im.facts['sex']},{'PA' if im.facts['noise'][-1] < 0.6 else 'AP'},"
                    f"1024,1024,0.143,0.143\n")
            lists["test" if im.split == "test" else "train"].append(index)
    for split, file in (("train", "train_val_list.txt"), ("test", "test_list.txt")):
        with open(os.path.join(root, file), "w", encoding="utf-8") as f:
            f.writelines(i + "\n" for i in lists[split])
    return [os.path.basename(im.rel) for im in images]


LABEL_WRITERS = {"folders": _write_folders, "csv": _write_csv, "mura": _write_mura,
                 "chexpert": _write_chexpert, "nih": _write_nih}
