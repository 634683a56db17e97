"""Pretrained weights into a model built for this task, with nothing left out silently.

Every tensor of the model's backbone must come from the file under its own name and shape — the
first convolution excepted, whose weights are spread over this input's channels
(:func:`libxr.models.zoo.spread_channels`) — and the file may hold nothing else below the head:
otherwise it was made for another architecture (resnet weights for a densenet, resnet34's for
resnet18, another ``--arch``), and the error names the first tensor that differs. The head (the
model's ``head_name``) is loaded where it fits and is new where it does not: ImageNet's 1000
classes, torchxrayvision's 18 pathologies, yesterday's checkpoint with other classes. One line on
stderr says what was loaded and what is new; a head an xr checkpoint could not give is a warning,
since the classes changed since it was trained.
"""

from libxr.errors import XRError
from libxr.models import zoo
from libxr.models.weightfile import nonfinite, read_weights


def load_pretrained(model, name, weights, log=print, warn=print, progress=False):
    """``weights`` (``imagenet`` or a file) into ``model``, built as ``name``."""
    if weights == "imagenet":
        from libxr.models.imagenet import imagenet_file

        source = read_weights(imagenet_file(name, log, progress), "torchvision's ImageNet weights")
    else:
        source = read_weights(weights)
    if source.model_name and not zoo.same_network(source.model_name, name):
        raise XRError(f"{source.path}: {source.kind}, not of {name}")
    load_weights(model, name, source, log, warn)


def load_weights(model, name, source, log=print, warn=print):
    """The tensors of ``source`` (a weightfile.Weights) into ``model``, as the module docstring says."""
    own, given, head = model.state_dict(), source.state, model.head_name
    bad = nonfinite(given)
    if bad is not None:     # else the first step's loss is NaN, and "lower --lr" the wrong advice
        raise XRError(f"{source.path}: {bad} holds NaN or infinite weights")
    conv = zoo.first_conv(model)
    conv = conv and conv + ".weight"
    usable, new_head, differ, adapted = {}, [], [], None
    for key, tensor in own.items():
        found = given.get(key)
        if found is not None and found.shape == tensor.shape:
            usable[key] = found
        elif key == conv and found is not None and found.dim() == 4 and found.shape[2:] == tensor.shape[2:] \
                and found.shape[0] == tensor.shape[0]:
            usable[key] = zoo.spread_channels(found, tensor.shape[1])
            adapted = f"{key} adapted from {found.shape[1]} input channels to {tensor.shape[1]}"
        elif _under(key, head):
            new_head.append(key)
        elif not (found is None and key.endswith("num_batches_tracked")):     # older files lack the count
            differ.append(_difference(key, found, tensor, name))
    differ += [f"the file has {key}, which {name} has not" for key in given if key not in own
               and not _under(key, head)]
    if differ:
        fits = any(not _under(key, head) for key in usable)
        raise XRError(_wrong(source, name, differ, fits, own))
    model.load_state_dict(usable, strict=False)
    said = [f"{source.path}: {len(usable)} of {name}'s {len(own)} tensors from {source.kind}"] + (
        [adapted] if adapted else [])
    if new_head:
        theirs, kept = _outputs(given, head), [k for k in usable if _under(k, head)]
        parts = sorted({k.rpartition(".")[0] for k in new_head})
        what = f"{', '.join(parts)} of the head ({head})" if kept else f"the head ({head})"
        said.append(f"{what} is new ({_count(_outputs(own, head))}; the file's "
                    + (f"has {_count(theirs)})" if theirs else "is named otherwise)"))
    (warn if new_head and source.model_name else log)("; ".join(said))


def _under(key, prefix):
    return key == prefix or key.startswith(prefix + ".")


def _outputs(state, head):
    """The output count of the last matrix under ``head`` (its classifier), or None."""
    matrices = [v for k, v in state.items() if _under(k, head) and v.dim() == 2]
    return matrices[-1].shape[0] if matrices else None


def _count(outputs):
    return f"{outputs} output" + ("s" if outputs != 1 else "")


def _difference(key, found, tensor, name):
    if found is None:
        return f"{key} is not in the file"
    return f"{key} is {tuple(found.shape)} in the file, {tuple(tensor.shape)} in {name}"


def _wrong(source, name, differ, fits, own):
    """One line: which architecture the file is not, and the first tensor that shows it."""
    if not fits:
        return (f"{source.path}: {source.kind} with nothing that fits {name} (its tensors are named like "
                f"{next(iter(source.state))}, {name}'s like {next(iter(own))})")
    return (f"{source.path}: {source.kind} for another architecture than {name}: {len(differ)} tensors differ, "
            f"first {differ[0]}")
