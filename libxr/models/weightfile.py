"""What a weights file holds, as a state dict and the words that say what it is.

Three kinds are read: a state dict (torchvision's ImageNet files, ``torch.save(model.state_dict())``,
or one under a ``model`` or ``state_dict`` key), an xr checkpoint (its ``model``, with the name of the
model it was trained as), and a model pickled whole (torchxrayvision's DenseNets), whose tensors are
taken without running its code (libxr.models.pickled). Names are made uniform on the way:
DataParallel's ``module.`` prefix goes, and the ``norm.1``-style names of torchvision's older
DenseNet files become today's ``norm1`` (as torchvision's own loader renames them).
"""

import dataclasses
import re

import torch

from libxr.errors import XRError
from libxr.learning import checkpoint
from libxr.models import pickled

_OLD_DENSENET = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")
_NOT_WEIGHTS = ("op_threshs",)
"""Tensors of pickled models that are no weights: torchxrayvision's per-pathology operating points."""


@dataclasses.dataclass
class Weights:
    path: str
    state: dict              # tensor name -> tensor
    kind: str                # what the file is, for messages
    model_name: str = None   # an xr checkpoint's model


def read_weights(path, kind=None):
    """The weights in ``path``; ``kind`` describes the file when the caller knows better."""
    try:
        held = checkpoint.read(path, "weights file")
    except XRError as refused:
        whole = pickled.module_state(path)
        if whole is None:
            raise refused from None
        state, cls = whole
        return Weights(path, _uniform({k: v for k, v in state.items() if k not in _NOT_WEIGHTS}, path),
                       kind or f"a pickled {cls}")
    if isinstance(held, dict) and isinstance(held.get("model"), dict) and "model_name" in held:
        epoch = held.get("epoch")
        kind = f"an xr checkpoint of {held['model_name']}" + (f" (epoch {epoch + 1})" if isinstance(epoch, int)
                                                               else "")
        return Weights(path, _uniform(held["model"], path), kind, held["model_name"])
    for key in ("model", "state_dict"):
        if isinstance(held, dict) and isinstance(held.get(key), dict):
            held = held[key]
            break
    return Weights(path, _uniform(held, path), kind or "a state dict")


def _uniform(state, path):
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise XRError(f"{path}: holds no state dict (names and tensors)")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return {_OLD_DENSENET.sub(r"\1\2", k): v for k, v in state.items()}


def nonfinite(state):
    """The name of the first floating tensor of ``state`` that holds NaN or infinity, or None: such
    weights score every record NaN, or make the first step's loss NaN."""
    return next((k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
