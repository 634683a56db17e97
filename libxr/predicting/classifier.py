"""A trained classifier, rebuilt from an xr checkpoint, scoring uint8 batches.

The checkpoint carries everything prediction needs — architecture, task,
class names, normalisation and the preprocessing the training pixels went
through — so a new raw radiograph is prepared exactly as the training set
was, and an HDF5 file made with other settings is refused rather than
silently mis-scored. The checkpoint is read with ``weights_only=True``.
"""

import numpy as np
import torch

from libxr.errors import XRError
from libxr.judging.calibration import BOUNDS, SHIFTS, calibrated
from libxr.learning import checkpoint
from libxr.learning.distributed import pick_device
from libxr.learning.tta import TTA, mean_logits, views
from libxr.models import build_model, stored_arch
from libxr.models.weightfile import nonfinite
from libxr.pixels.augment import BatchTransform
from libxr.precision import autocast
from libxr.records.tasks import Task


class Classifier:
    """``calibrate``: scores with the checkpoint's temperature and the threshold chosen on them (the
    default), or raw scores with the threshold chosen on those. ``precision``: libxr.precision's.
    ``log`` hears once that a checkpoint from before xr-train calibrated has no temperature."""

    def __init__(self, path, device="auto", calibrate=True, log=lambda message: None, precision="auto"):
        state = checkpoint.load(path)
        missing = [k for k in ("task", "normalization", "preprocess", "model_name", "in_channels", "size")
                   if k not in state]
        if missing:
            raise XRError(f"{path}: not an xr-train checkpoint (no {', '.join(missing)})")
        _check_fields(state, path)
        self.path = path
        self.task = Task(**state["task"])
        self.preprocess = state["preprocess"]
        self.size, self.in_channels = state["size"], state["in_channels"]
        self.temperature, self.shift, self.threshold = _operating_point(state, calibrate)
        self.tta = state.get("tta", "none")     # what validation scored with: the threshold fits it
        self.trained_precision = checkpoint.trained_precision(state)      # and in what arithmetic
        if calibrate and self.temperature is None:
            log(f"{path} has no temperature (trained before xr-train calibrated): its scores are raw (T = 1)")
        arch = stored_arch(state["model_name"], state.get("arch"))
        if "weights" in arch:
            arch["weights"] = "none"        # the checkpoint holds them
        self.device, self.precision = pick_device(device), precision
        try:
            model = build_model(state["model_name"], self.in_channels, self.task.outputs, self.size, **arch)
        except Exception as exc:  # noqa: BLE001 - a crafted name or option fails in many ways, all the file's fault
            raise XRError(f"{path}: not a usable xr-train checkpoint (model {state['model_name']!r} with "
                          f"{arch!r}: {' '.join(str(exc).split()) or type(exc).__name__})") from None
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise XRError(f"{path}: its weights do not fit its architecture ({str(exc).splitlines()[0]})") from None
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()    # faster on CPUs too
        norm = state["normalization"]
        self.transform = BatchTransform(norm["mean"], norm["std"])
        self.epoch = (state.get("best") or {}).get("epoch")

    def check_store(self, params, where):
        """Refuse HDF5 pixels prepared differently from the training pixels."""
        for key in ("size", "fit", "channels"):
            want, got = self.preprocess.get(key), params.get(key)
            if want is not None and got is not None and want != got:
                raise XRError(f"{where}: preprocessed with {key} {got}, the model was trained on {key} {want}: "
                              "re-run xr-preprocess with the training settings, or predict from the raw images")

    @torch.no_grad()
    def logits(self, pixels, tta="none"):
        """Logits for a uint8 (B, C, H, W) batch; under ``tta`` those of the views' mean probability."""
        x = self.transform(pixels.to(self.device, non_blocking=True))
        with autocast(self.device, self.precision):
            outs = torch.stack([self.model(v).float() for v in views(x, tta)])
        return mean_logits(self.task, outs).cpu().numpy()

    def scores(self, pixels, tta="none"):
        """Per-record probabilities: (B,) positive-class for binary, (B, K) otherwise; calibrated
        unless ``self.temperature`` is None."""
        return calibrated(self.task, self.logits(pixels, tta), 1.0 if self.temperature is None else self.temperature,
                          self.shift)


def _operating_point(state, calibrate):
    """(temperature and shift applied — None for none —, decision threshold for those scores). A
    checkpoint without a temperature has one threshold, chosen on its raw scores; without any, 0.5."""
    temperature, shift, cut = state.get("temperature"), state.get("shift"), state.get("threshold")
    if temperature is not None and not calibrate:
        temperature, shift, cut = None, None, state.get("threshold_raw")
    return temperature, shift, 0.5 if cut is None else cut


def _check_fields(state, path):
    """A checkpoint from elsewhere is data: fields that would allocate gigabytes, or score every
    record one way, are refused before anything is built from them."""
    from libxr.records.tasks import KINDS

    def finite(values, low=-np.inf, high=np.inf):
        try:
            array = np.asarray(values, np.float64)
        except (TypeError, ValueError):
            return False
        return array.size > 0 and bool(np.isfinite(array).all() and (array >= low).all() and (array <= high).all())

    task, norm, tta = state["task"], state["normalization"], state.get("tta")
    temperature, shift = state.get("temperature"), state.get("shift")
    labels = task.get("names") if isinstance(task, dict) and task.get("kind") == "multilabel" else None
    shape = (len(labels),) if isinstance(labels, list) else ()     # one per label, or one
    channels = state["in_channels"]
    problems = [
        not (isinstance(state["size"], int) and 8 <= state["size"] <= 4096) and f"size {state['size']!r}",
        not (isinstance(channels, int) and 1 <= channels <= 16) and f"in_channels {channels!r}",
        not _task_ok(task, KINDS) and f"task {task!r}",
        *[state.get(key) is not None and not (finite(state[key], 0, 1) and _flags_none(state[key])
                                              and np.shape(state[key]) in {(), shape}) and f"{key} {state[key]!r}"
          for key in ("threshold", "threshold_raw")],
        not isinstance(state["model_name"], str) and f"model_name {state['model_name']!r}",
        not isinstance(state["preprocess"], dict) and f"preprocess {state['preprocess']!r}",
        not (isinstance(state.get("arch"), dict) or state.get("arch") is None) and f"arch {state['arch']!r}",
        tta is not None and tta not in TTA and f"tta {tta!r}",
        temperature is not None and not (finite(temperature, *BOUNDS) and np.shape(temperature) == shape)
        and f"temperature {temperature!r}",
        shift is not None and not (temperature is not None and finite(shift, *SHIFTS) and np.shape(shift) == shape
                                   and task.get("kind") != "multiclass") and f"shift {shift!r}",
        not (isinstance(norm, dict) and finite(norm.get("mean")) and finite(norm.get("std"), 1e-6)
             and np.size(norm["mean"]) == np.size(norm["std"]) == channels)
        and f"normalization {norm!r} (for {channels!r} channels)",
        _weights_problem(state["model"]),
    ]
    problems = [p for p in problems if p]
    if problems:
        raise XRError(f"{path}: not a usable xr-train checkpoint ({'; '.join(problems)})")


def _task_ok(task, kinds):
    """A task as xr-train writes it: its kind, and distinct class (label) names, two for binary."""
    if not (isinstance(task, dict) and set(task) == {"kind", "names"} and task["kind"] in kinds):
        return False
    names = task["names"]
    if not (isinstance(names, list) and all(isinstance(n, str) and n for n in names) and len(set(names)) == len(names)):
        return False
    return len(names) == 2 if task["kind"] == "binary" else len(names) >= 2 - (task["kind"] == "multilabel")


def _flags_none(value):
    """No true/false among a threshold's numbers (True would pass as 1.0)."""
    return not any(isinstance(v, bool) for v in np.ravel(np.asarray(value, object)))


def _weights_problem(weights):
    """Why the ``model`` entry is not finite tensors by name (NaN weights score every record NaN), or None."""
    if not (isinstance(weights, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in weights.items())):
        return f"model: a {type(weights).__name__}, not tensors by name"
    bad = nonfinite(weights)
    return bad and f"model: {bad} holds NaN or infinite weights"
