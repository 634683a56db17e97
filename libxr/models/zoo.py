"""Any torchvision classifier by name, adapted to radiographs.

Pretrained weights are never downloaded: ImageNet weights come from the local
torch cache (``$TORCH_HOME/hub/checkpoints``), or the error says which file to
put where; a file path may hold a state dict or an xr checkpoint (fine-tuning,
report 003's parent-then-child idea). Everything is loaded with
``weights_only=True``: a checkpoint cannot execute code.

One-channel input replaces the first convolution by one whose weights are the
pretrained RGB weights summed — the same function on a gray image copied to
three channels, at a third of the cost. The classifier is replaced by a new
head (``linear`` or ``mlp:1024,512``), and ``freeze`` stops gradients in the
backbone or in its first N blocks (report 000 trained only the head of a
frozen DenseNet).
"""

import os

import torch
from torch import nn

from libxr.errors import UsageError, XRError


def names():
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _qualified(model, kind):
    """(name, module) of every module of ``kind``, in definition order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, kind)]


def _replace(model, name, module):
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def cache_file(name):
    """Where torch's cache keeps the default ImageNet weights of model ``name``."""
    import torchvision

    weights = torchvision.models.get_model_weights(name).DEFAULT
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch")
    return os.path.join(home, "hub", "checkpoints", os.path.basename(weights.url)), weights.url


def load_state(path):
    """A state dict from a file, without unpickling code; an xr checkpoint's ``model`` entry."""
    from libxr.learning.checkpoint import read

    state = read(path, "weights file")
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise XRError(f"{path}: holds no state dict")
    return state


def load_matching(model, state):
    """Load the tensors whose names and shapes match; returns the names left out."""
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)
    return sorted(set(own) - set(usable))


def build(name, in_channels, outputs, weights="none", head="linear", dropout=0.0, freeze=None):
    import torchvision

    known = names()
    if name not in known:
        raise UsageError(f"unknown model {name!r}; torchvision has {', '.join(known[:12])}, ...")
    model = torchvision.models.get_model(name, weights=None)
    if weights == "imagenet":
        path, url = cache_file(name)
        if not os.path.isfile(path):
            raise XRError(f"ImageNet weights for {name} are not in the local torch cache: "
                          f"put {os.path.basename(path)} (from {url}) at {path}, or pass --weights PATH")
        model.load_state_dict(load_state(path))
    elif weights not in ("none", None):
        load_matching(model, load_state(weights))
    if in_channels != 3:
        _adapt_first_conv(model, in_channels)
    head_name = _replace_head(model, outputs, head, dropout)
    if freeze is not None:
        _freeze(model, head_name, freeze)
    return model


def _adapt_first_conv(model, in_channels):
    convs = _qualified(model, nn.Conv2d)
    if not convs:
        raise UsageError("this model has no convolution to adapt to the input channels")
    name, conv = convs[0]
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode)
    with torch.no_grad():
        summed = conv.weight.sum(1, keepdim=True)
        new.weight.copy_(summed.repeat(1, in_channels, 1, 1) / in_channels if in_channels > 1 else summed)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    _replace(model, name, new)


def parse_head(spec):
    """``linear`` -> []; ``mlp:1024,512`` -> [1024, 512]."""
    if spec == "linear":
        return []
    kind, _, widths = spec.partition(":")
    try:
        hidden = [int(w) for w in widths.split(",") if w]
    except ValueError:
        hidden = []
    if kind != "mlp" or not hidden:
        raise UsageError(f"--head {spec!r}: use linear or mlp:WIDTH,WIDTH,...")
    return hidden


def head_module(width, outputs, spec="linear", dropout=0.0):
    layers = []
    for hidden in parse_head(spec):
        layers += [nn.Dropout(dropout), nn.Linear(width, hidden), nn.ReLU(inplace=True)]
        width = hidden
    return nn.Sequential(*layers, nn.Dropout(dropout), nn.Linear(width, outputs))


def _replace_head(model, outputs, spec, dropout):
    linears = _qualified(model, nn.Linear)
    if not linears:
        raise UsageError("this model has no linear classifier to replace")
    name, last = linears[-1]
    _replace(model, name, head_module(last.in_features, outputs, spec, dropout))
    return name


def _freeze(model, head_name, freeze):
    """``backbone``: everything but the head; an integer N: the backbone's first N blocks."""
    for p in model.parameters():
        p.requires_grad_(True)
    backbone = []
    for n, m in model.named_children():
        if n == head_name.split(".")[0]:
            continue
        # DenseNet, EfficientNet, VGG, MobileNet keep their blocks in one `features` container
        backbone += list(m.named_children()) if n == "features" else [(n, m)]
    if freeze == "backbone":
        blocks = backbone
    else:
        try:
            count = int(freeze)
        except (TypeError, ValueError):
            raise UsageError(f"--freeze {freeze!r}: use backbone or a number of blocks") from None
        with_params = [(n, m) for n, m in backbone if any(True for _ in m.parameters())]
        blocks = with_params[:count]
    for _, block in blocks:
        for p in block.parameters():
            p.requires_grad_(False)
