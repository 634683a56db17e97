"""xr-featmap's work: which records to show, their pixels, and the figures written.

Feature maps and Grad-CAM need the checkpoint and see each image exactly as
the model did (libxr.pixels.datasets with the checkpoint's preprocessing);
prediction sheets need only prediction records. Records that cannot be shown
(an unreadable image or one over ``max_pixels``, an `error` field, no `path` nor `h5`/`row`,
`scores` that are not probabilities) are skipped: ``skip(record, reason)`` hears of each.
Every record and sheet gets a file of its own (:func:`file_names`).
"""

import collections
import hashlib
import os
import re

import numpy as np

from libxr.looking import figures
from libxr.looking.saliency import activations as layer_activations
from libxr.looking.saliency import conv_layers, grad_cam, module, require_convolutions
from libxr.pixels.datasets import RecordPixels
from libxr.pixels.files import MAX_PIXELS


def _told(rec, reason):
    print(f"{rec['id']}: {reason}")


def safe_name(name, extension=False):
    """``name`` as a portable file-name stem (an id's file extension dropped unless ``extension``)."""
    stem = name if extension else os.path.splitext(name)[0]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_")[:120] or "image"


def file_names(keys, extension=False):
    """A distinct stem per key, the same for the same keys: :func:`safe_name`, where keys would share
    one (`a/b` and `a_b`, `x.png` and `x.jpg`, or names alike but for case on macOS) with a short hash
    of the key, and where a key comes again with its count — so no record's file overwrites another's."""
    stems = [safe_name(k, extension) for k in keys]
    owners = collections.defaultdict(set)
    for key, stem in zip(keys, stems):
        owners[stem.lower()].add(key)
    taken, names = set(), []
    for key, stem in zip(keys, stems):
        if len(owners[stem.lower()]) > 1:
            stem = f"{stem}-{hashlib.sha1(key.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
        name, n = stem, 1
        while name.lower() in taken:
            n += 1
            name = f"{stem}-{n}"
        taken.add(name.lower())
        names.append(name)
    return names


def is_wrong(rec):
    pred = decided(rec)
    if isinstance(pred, list):
        truth = {k for k, v in (rec.get("labels") or {}).items() if v == 1}
        return set(pred) != truth
    return rec.get("label") is not None and str(pred) != str(rec["label"])


def decided(rec):
    """The record's `pred`; without one, its top-scoring class (records scored by another tool)."""
    scores = rec.get("scores")
    if rec.get("pred") is None and isinstance(scores, dict) and scores and _probabilities(scores):
        return max(scores, key=scores.get)
    return rec.get("pred")


def _probabilities(scores):
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scores.values())


def _readable(records, preprocess, check_store=None, skip=_told, max_pixels=MAX_PIXELS):
    """(position, record, uint8 (C, H, W) pixels) for each record whose image can be read;
    ``skip`` hears of the others."""
    imaged = []
    for i, rec in enumerate(records):
        if "error" in rec or rec.get("h5") is not None or rec.get("path"):
            imaged.append(i)
        else:     # RecordPixels would end the run for it; one record costs one image here
            skip(rec, f"record {rec['id']!r} has neither `h5`/`row` nor `path`: no image")
    source = RecordPixels([records[i] for i in imaged], preprocess, check_store=check_store, max_pixels=max_pixels)
    for k, i in enumerate(imaged):
        pixels, _, ok, reasons = source[[k]]
        if ok:
            yield i, records[i], pixels[0]
        else:
            skip(records[i], reasons.get(k, "no image (an `error` record)"))


def feature_maps(clf, records, out_dir, layers=None, every=2, channels=8, skip=_told, max_pixels=MAX_PIXELS):
    """Activation grids of ``layers`` (default every ``every``-th convolution) per record."""
    names = list(layers) if layers else conv_layers(clf.model)[every - 1::every] or conv_layers(clf.model)
    require_convolutions(names)
    for name in names:      # before any image: a wrong name is the user's, whatever the images
        module(clf.model, name, "--layers")
    stems = file_names([rec["id"] for rec in records])
    written = []
    for i, rec, pixels in _readable(records, clf.preprocess, clf.check_store, skip, max_pixels):
        maps = layer_activations(clf.model, clf.transform(pixels[None].to(clf.device)), names)
        png = os.path.join(out_dir, f"maps-{stems[i]}.png")
        figures.activation_grid(pixels.numpy(), maps, png, f"{rec['id']}: strongest channels per layer", channels)
        written.append(png)
    return written


def cam_overlays(clf, records, out_dir, class_name=None, layer=None, skip=_told, max_pixels=MAX_PIXELS):
    """Grad-CAM and Grad-CAM++ overlays for the predicted class (or ``class_name``) per record."""
    task = clf.task
    if class_name is not None and class_name not in task.names:
        from libxr.errors import UsageError

        raise UsageError(f"--class {class_name!r} is not one of {', '.join(task.names)}")
    if layer is not None:
        module(clf.model, layer, "--layer")
    stems = file_names([rec["id"] for rec in records])
    written = []
    for i, rec, pixels in _readable(records, clf.preprocess, clf.check_store, skip, max_pixels):
        x = clf.transform(pixels[None].to(clf.device))
        score = clf.scores(pixels[None])[0]
        predicted = _predicted(task, score, clf.threshold)
        cls = task.names.index(class_name) if class_name is not None else predicted
        cams = {"Grad-CAM": grad_cam(clf.model, x, task, cls, layer),
                "Grad-CAM++": grad_cam(clf.model, x, task, cls, layer, plus=True)}
        probability = score if task.kind == "binary" else score[predicted]
        if task.kind == "binary" and predicted == 0:
            probability = 1 - score
        truth = rec.get("label", "?") if task.kind != "multilabel" else "—"
        title = (f"{rec['id']}: predicted {task.names[predicted]} ({float(probability):.2f}), true {truth}; "
                 f"map for {task.names[cls]}")
        png = os.path.join(out_dir, f"cam-{stems[i]}.png")
        figures.cam_overlay(pixels.numpy(), cams, png, title)
        written.append(png)
    return written


def _predicted(task, score, threshold):
    """The class index decided (multi-label: the most probable label)."""
    return int(score >= threshold) if task.kind == "binary" else int(np.argmax(score))


def sheets(records, out_dir, size=128, count=36, errors=False, by=None, skip=_told, max_pixels=MAX_PIXELS):
    """Contact sheets of prediction records: true and predicted labels and the score, one per group."""
    scored = []
    for rec in records:
        if "scores" not in rec or "error" in rec:
            continue
        if isinstance(rec["scores"], dict) and rec["scores"] and _probabilities(rec["scores"]):
            scored.append(rec)
        else:
            skip(rec, "`scores` is not an object of class: probability")
    if errors:
        scored = [r for r in scored if is_wrong(r)]
    groups = collections.defaultdict(list)
    for rec in scored:
        groups[("(none)" if rec.get(by) is None else str(rec[by])) if by else "all"].append(rec)
    stems = dict(zip(sorted(groups), file_names(sorted(groups), extension=True)))
    written = []
    for group, members in sorted(groups.items()):
        items = [(pixels.numpy(), _caption(rec), not is_wrong(rec)) for _, rec, pixels in
                 _readable(members[:count], {"size": size, "fit": "pad", "channels": ["gray"]}, skip=skip,
                           max_pixels=max_pixels)]
        if not items:
            continue
        name = "sheet" + (f"-{stems[group]}" if by else "") + ("-errors" if errors else "") + ".png"
        png = os.path.join(out_dir, name)
        wrong = sum(1 for *_, ok in items if not ok)
        what = "wrong predictions" if errors else f"predictions ({wrong} wrong)"
        figures.prediction_sheet(items, png, f"{len(items)} {what}" + (f", {by} {group}" if by else ""))
        written.append(png)
    return written


def _caption(rec):
    """Truth, decision and its score; "top" where the record has no `pred` (the top score stands in)."""
    pred = decided(rec)
    if isinstance(pred, list):
        return f"pred {', '.join(map(str, pred)) or 'none'}"
    score = rec["scores"].get(str(pred))
    shown = "nan" if score is None else f"{score:.2f}"
    return f"true {rec.get('label')}\n{'pred' if rec.get('pred') is not None else 'top'} {pred} {shown}"
