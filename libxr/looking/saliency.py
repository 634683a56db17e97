"""Looking inside a classifier: layer activations and Grad-CAM / Grad-CAM++ maps.

Works on any model xr builds — its own CNNs and torchvision's — through forward
hooks and tensor gradient hooks on named modules; the default Grad-CAM layer is
found by :func:`default_layer`. Maps are upsampled to the input and scaled to 0..1.
"""

import contextlib

import numpy as np
import torch

from libxr.errors import UsageError


def conv_layers(model):
    """Names of the model's Conv2d modules, in forward order."""
    return [name for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]


def require_convolutions(convs):
    if not convs:
        raise UsageError("this model has no convolution: Grad-CAM and feature maps need one")


def module(model, name, option="--layer"):
    """The module ``name``; a usage error naming the ``option`` that gave it when there is none."""
    modules = dict(model.named_modules())
    if name not in modules or not name:
        convs = conv_layers(model) or ["none"]
        raise UsageError(f"{option} {name!r} is not a layer of this model; its convolutions are "
                         f"{', '.join(convs[:8])}{', ...' if len(convs) > 8 else ''} (last: {convs[-1]})")
    return modules[name]


@contextlib.contextmanager
def _hooked(pairs):
    """Forward hooks on (module, hook) pairs, removed however the block ends."""
    handles = [m.register_forward_hook(hook) for m, hook in pairs]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def activations(model, x, names):
    """{layer name: (C, h, w) activation} for one input batch of size 1."""
    out = {}
    pairs = [(module(model, name), lambda _m, _i, o, name=name: out.__setitem__(name, o.detach()[0].float().cpu()))
             for name in names]
    with _hooked(pairs), torch.no_grad():
        model(x)
    return out


def target_logit(logits, task, cls):
    """The score Grad-CAM explains: class ``cls``'s logit (binary negative class: minus the logit)."""
    if task.kind == "binary":
        return logits[0, 0] if cls == 1 else -logits[0, 0]
    return logits[0, cls]


def default_layer(model, x):
    """The module Grad-CAM explains by default: the last one to output a feature map at the
    last convolution's resolution — its activation after the nonlinearity (a VGG block's ReLU,
    a ResNet's ``layer4``), where Grad-CAM expects non-negative feature maps."""
    done = []
    pairs = [(m, lambda _m, _i, o, name=name: done.append((name, _m, o))) for name, m in model.named_modules() if name]
    with _hooked(pairs), torch.no_grad():
        model(x)
    maps = [(name, m, o) for name, m, o in done if isinstance(o, torch.Tensor) and o.dim() == 4]
    convs = [o.shape[-2:] for _, m, o in maps if isinstance(m, torch.nn.Conv2d)]
    require_convolutions(convs)
    last_conv = convs[-1]
    return [name for name, _, o in maps if o.shape[-2:] == last_conv][-1]


def grad_cam(model, x, task, cls, layer=None, plus=False):
    """(h, w) map in 0..1 at the input's size, for class index ``cls`` of ``task``."""
    layer = layer or default_layer(model, x)
    saved = {}
    target = module(model, layer)

    def keep(_module, _inputs, output):
        saved["a"] = output
        output.register_hook(lambda grad: saved.__setitem__("g", grad))   # works under in-place ReLUs

    was_training = model.training
    model.eval()
    try:
        with _hooked([(target, keep)]):
            x = x.clone().requires_grad_(True)
            model.zero_grad(set_to_none=True)
            target_logit(model(x).float(), task, cls).backward()
    finally:
        model.train(was_training)
    a, g = saved["a"][0].detach().float(), saved["g"][0].detach().float()
    if plus:
        g2, g3 = g ** 2, g ** 3
        denominator = 2 * g2 + a.sum((1, 2), keepdim=True) * g3
        alpha = g2 / torch.where(denominator != 0, denominator, torch.ones_like(denominator))
        weights = (alpha * torch.relu(g)).sum((1, 2))
    else:
        weights = g.mean((1, 2))
    cam = torch.relu((weights[:, None, None] * a).sum(0))
    cam = torch.nn.functional.interpolate(cam[None, None], size=x.shape[-2:], mode="bilinear",
                                          align_corners=False)[0, 0]
    top = cam.max()
    return (cam / top if top > 0 else cam).cpu().numpy()


def mass_inside(cam, box):
    """The share of a map's total inside a pixel box [x0, y0, x1, y1] (end-exclusive)."""
    x0, y0, x1, y1 = (round(v) for v in box)
    total = float(np.sum(cam))
    return float(np.sum(cam[y0:y1, x0:x1]) / total) if total > 0 else 0.0
