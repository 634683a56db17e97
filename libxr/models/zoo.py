"""Any torchvision classifier by name, adapted to radiographs.

One-channel input replaces the first convolution by one whose weights are the
RGB weights summed (:func:`spread_channels`) — the same function on a gray image
copied to three channels, at a third of the cost. The classifier is replaced by a
new head (``linear`` or ``mlp:1024,512``), whose name the model keeps as
``head_name``, and ``freeze`` stops gradients in the backbone or in its first N
blocks (report 000 trained only the head of a frozen DenseNet). Pretrained
weights go in afterwards (libxr.models.transfer); ``txv-densenet121`` is
densenet121 under the name of torchxrayvision's chest-X-ray weights.
"""

import torch
from torch import nn

from libxr.errors import UsageError

ALIASES = {"txv-densenet121": "densenet121"}
"""xr's names for torchvision architectures, after the weights they are meant for."""


def names():
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models)) + sorted(ALIASES)


def architecture(name):
    """The torchvision model ``name`` is built as; a usage error naming some when there is none."""
    known = names()
    if name not in known:
        raise UsageError(f"unknown model {name!r}; torchvision has {', '.join(known[:12])}, ...")
    return ALIASES.get(name, name)


def same_network(a, b):
    """Whether models named ``a`` and ``b`` (xr's own or torchvision's) are one network."""
    return ALIASES.get(a, a) == ALIASES.get(b, b)


def _qualified(model, kind):
    """(name, module) of every module of ``kind``, in definition order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, kind)]


def _replace(model, name, module):
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def build(name, in_channels, outputs, head="linear", dropout=0.0, freeze=None):
    import torchvision

    model = torchvision.models.get_model(architecture(name), weights=None)
    if in_channels != 3:
        _adapt_first_conv(model, in_channels)
    model.head_name = _replace_head(model, outputs, head, dropout)
    if freeze is not None:
        for _, block in frozen_blocks(model, freeze):
            block.requires_grad_(False)
    return model


def first_conv(model):
    """The name of ``model``'s first convolution, or None."""
    convs = _qualified(model, nn.Conv2d)
    return convs[0][0] if convs else None


def spread_channels(weight, in_channels):
    """Convolution weights for ``in_channels`` inputs from weights for any other number: summed over
    the inputs, then spread evenly, so an image copied to every channel gives the same outputs."""
    summed = weight.sum(1, keepdim=True)
    return summed.repeat(1, in_channels, 1, 1) / in_channels if in_channels > 1 else summed


def _adapt_first_conv(model, in_channels):
    name = first_conv(model)
    if name is None:
        raise UsageError("this model has no convolution to adapt to the input channels")
    conv = model.get_submodule(name)
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode)
    with torch.no_grad():
        new.weight.copy_(spread_channels(conv.weight, in_channels))
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


def backbone_blocks(model):
    """(qualified name, module) of the blocks below the head, from the input up; DenseNet,
    EfficientNet, VGG and MobileNet keep theirs in one ``features`` container."""
    blocks = []
    for n, m in model.named_children():
        if n == model.head_name.split(".")[0]:
            continue
        blocks += [(f"{n}.{c}", b) for c, b in m.named_children()] if n == "features" else [(n, m)]
    return blocks


def frozen_blocks(model, freeze):
    """The blocks ``--freeze`` stops: ``backbone``, all of them; a number N, the first N that have
    parameters."""
    if freeze == "backbone":
        return backbone_blocks(model)
    try:
        count = int(freeze)
    except (TypeError, ValueError):
        raise UsageError(f"--freeze {freeze!r}: use backbone or a number of blocks") from None
    return [(n, m) for n, m in backbone_blocks(model) if any(True for _ in m.parameters())][:count]
