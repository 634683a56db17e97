"""xr-featmap's work: which records to show, their pixels, and the figures written.

Feature maps and Grad-CAM need the checkpoint and see each image exactly as
the model did (libxr.pixels.datasets with the checkpoint's preprocessing);
prediction sheets need only prediction records. Records that cannot be shown
(an unreadable image or one over ``max_pixels``, an `error` field) are skipped and counted.
"""

import collections
import os
import re

import numpy as np

from libxr.looking import figures
from libxr.looking.saliency import activations as layer_activations
from libxr.looking.saliency import conv_layers, grad_cam, require_convolutions
from libxr.pixels.datasets import RecordPixels
from libxr.pixels.files import MAX_PIXELS


def safe_name(record_id):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.splitext(record_id)[0]).strip("_")[:120] or "image"


def is_wrong(rec):
    if isinstance(rec.get("pred"), list):
        truth = {k for k, v in (rec.get("labels") or {}).items() if v == 1}
        return set(rec["pred"]) != truth
    return rec.get("label") is not None and str(rec.get("pred")) != str(rec["label"])


def _readable(records, preprocess, check_store=None, skip=print, max_pixels=MAX_PIXELS):
    """(record, uint8 (C, H, W) pixels) for each record whose image can be read; ``skip`` hears of the others."""
    source = RecordPixels(records, preprocess, check_store=check_store, max_pixels=max_pixels)
    for i, rec in enumerate(records):
        pixels, _, ok, reasons = source[[i]]
        if ok:
            yield rec, pixels[0]
        else:
            skip(f"{rec['id']}: {reasons.get(i, 'no image (an `error` record)')}")


def feature_maps(clf, records, out_dir, layers=None, every=2, channels=8, skip=print, max_pixels=MAX_PIXELS):
    """Activation grids of ``layers`` (default every ``every``-th convolution) per record."""
    names = list(layers) if layers else conv_layers(clf.model)[every - 1::every] or conv_layers(clf.model)
    require_convolutions(names)
    written = []
    for rec, pixels in _readable(records, clf.preprocess, clf.check_store, skip, max_pixels):
        maps = layer_activations(clf.model, clf.transform(pixels[None].to(clf.device)), names)
        png = os.path.join(out_dir, f"maps-{safe_name(rec['id'])}.png")
        figures.activation_grid(pixels.numpy(), maps, png, f"{rec['id']}: strongest channels per layer", channels)
        written.append(png)
    return written


def cam_overlays(clf, records, out_dir, class_name=None, layer=None, skip=print, max_pixels=MAX_PIXELS):
    """Grad-CAM and Grad-CAM++ overlays for the predicted class (or ``class_name``) per record."""
    task = clf.task
    if class_name is not None and class_name not in task.names:
        from libxr.errors import UsageError

        raise UsageError(f"--class {class_name!r} is not one of {', '.join(task.names)}")
    written = []
    for rec, pixels in _readable(records, clf.preprocess, clf.check_store, skip, max_pixels):
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
        png = os.path.join(out_dir, f"cam-{safe_name(rec['id'])}.png")
        figures.cam_overlay(pixels.numpy(), cams, png, title)
        written.append(png)
    return written


def _predicted(task, score, threshold):
    """The class index decided (multi-label: the most probable label)."""
    return int(score >= threshold) if task.kind == "binary" else int(np.argmax(score))


def sheets(records, out_dir, size=128, count=36, errors=False, by=None, skip=print, max_pixels=MAX_PIXELS):
    """Contact sheets of prediction records: true and predicted labels and the score, one per group."""
    scored = [r for r in records if "scores" in r and "error" not in r]
    if errors:
        scored = [r for r in scored if is_wrong(r)]
    groups = collections.defaultdict(list)
    for rec in scored:
        groups[("(none)" if rec.get(by) is None else str(rec[by])) if by else "all"].append(rec)
    written = []
    for group, members in sorted(groups.items()):
        items = [(pixels.numpy(), _caption(rec), not is_wrong(rec)) for rec, pixels in
                 _readable(members[:count], {"size": size, "fit": "pad", "channels": ["gray"]}, skip=skip,
                           max_pixels=max_pixels)]
        if not items:
            continue
        name = "sheet" + (f"-{safe_name(group)}" if by else "") + ("-errors" if errors else "") + ".png"
        png = os.path.join(out_dir, name)
        wrong = sum(1 for *_, ok in items if not ok)
        what = "wrong predictions" if errors else f"predictions ({wrong} wrong)"
        figures.prediction_sheet(items, png, f"{len(items)} {what}" + (f", {by} {group}" if by else ""))
        written.append(png)
    return written


def _caption(rec):
    pred = rec["pred"]
    if isinstance(pred, list):
        return f"pred {', '.join(pred) or 'none'}"
    return f"true {rec.get('label')}\npred {pred} {rec['scores'].get(pred, float('nan')):.2f}"
