"""Every model xr trains, built by name: ``build_model(name, in_channels, outputs, size, ...)``.

``cnn`` (report 000), ``vgg5`` and ``resnet10`` (report 001), ``dense``
(report 002), and any torchvision classifier by its name (``resnet18``,
``densenet121``, ``efficientnet_b0``, ...; see libxr.models.zoo). Every model
names its classifier ``head_name`` (``head`` for xr's own), the part pretrained
weights may replace (libxr.models.transfer) and fine-tuning treats apart.
"""

import inspect

from libxr.errors import UsageError
from libxr.models.cnn import ConfigurableCNN
from libxr.models.small import VGG5, Dense, ResNet10

OWN = {"cnn": ConfigurableCNN, "vgg5": VGG5, "resnet10": ResNet10, "dense": Dense}


def build_model(name, in_channels, outputs, size, weights="none", log=print, warn=print, **options):
    """A model for (in_channels, size, size) inputs with ``outputs`` logits.

    ``options`` are the constructor's (own models) or head/dropout/freeze (torchvision
    models); ``weights`` (``imagenet`` or a file) go in last, saying through ``log`` and
    ``warn`` what was loaded and what is new.
    """
    if name in OWN:
        model = OWN[name](in_channels, outputs, size, **options)
        model.head_name = "head"
    else:
        from libxr.models import zoo

        model = zoo.build(name, in_channels, outputs, **options)
    if weights not in ("none", None):
        from libxr.models.transfer import load_pretrained

        load_pretrained(model, name, weights, log, warn)
    return model


def check_arch(name, arch):
    """``--arch`` pairs for model ``name``, checked against its options (the constructor's keywords, or
    torchvision's weights/head/dropout/freeze) and of their defaults' kinds: a usage error naming the
    key and the keys there are, not a TypeError from deep in the model. Whole numbers are counts or
    strides (1 or more), fractions are dropout rates (0 to 1), ``widths`` a comma list. ``preset`` names
    a set of defaults (cnn: ``xr``, ``report000``)."""
    options = _options(name)
    presets = getattr(OWN.get(name), "PRESETS", {})
    arch = dict(arch)
    if "preset" in arch:
        preset = arch.pop("preset")
        if preset not in presets:
            raise UsageError(f"--arch preset={preset}: {name} has " + (f"the presets {', '.join(presets)}" if presets
                                                                        else "no presets"))
        arch = {**presets[preset], **arch}      # keys given beside the preset win
    checked = {}
    for key, value in arch.items():
        if key not in options:
            keys = [*options, "preset"] if presets else options
            raise UsageError(f"--arch {key}: {name} has no such option; it takes {', '.join(keys)}")
        checked[key] = _arch_value(value, options[key])
        if checked[key] is None:
            raise UsageError(f"--arch {key}={value}: {name}'s {key} is {_KINDS[type(options[key])]} "
                             f"(default {_spelled(options[key])})")
    # xr's own networks are stored whole, so that a checkpoint never depends on the defaults of the code reading it
    return {**options, **checked} if name in OWN else checked


def stored_arch(name, arch):
    """The options a checkpoint's model was built with. Checkpoints from before xr stored every option of its
    own networks hold only those given, and cnn then had no batch norm by default."""
    arch = dict(arch or {})
    if name == "cnn" and "batch_norm" not in arch:
        arch["batch_norm"] = False
    return arch


def _options(name):
    """Model ``name``'s options and their defaults."""
    from libxr.models import zoo

    params = inspect.signature(OWN.get(name, zoo.build)).parameters.values()
    options = {} if name in OWN else {"weights": "none"}     # --weights, as an --arch of torchvision models
    options.update({p.name: p.default for p in params if p.default is not p.empty})
    return options


_KINDS = {bool: "true or false", int: "a whole number from 1", float: "a number from 0 to 1",
          tuple: "whole numbers from 1, comma-separated", str: "a word", type(None): "a word or a number"}


def _arch_value(value, default):
    """``value`` as the kind of ``default``, or None when it is not one."""
    if isinstance(default, bool) or isinstance(value, bool):
        return value if isinstance(default, bool) and isinstance(value, bool) else None
    if isinstance(default, int):
        return value if isinstance(value, int) and value >= 1 else None
    if isinstance(default, float):
        return float(value) if isinstance(value, (int, float)) and 0 <= value <= 1 else None
    if isinstance(default, tuple):
        words = str(value).split(",")
        return tuple(int(w) for w in words) if all(w.isdigit() and int(w) >= 1 for w in words) else None
    return value if default is None or isinstance(value, str) else None


def _spelled(default):
    return ",".join(map(str, default)) if isinstance(default, tuple) else str(default).lower()


__all__ = ["OWN", "build_model", "check_arch", "stored_arch"]
