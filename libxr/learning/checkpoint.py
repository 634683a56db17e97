"""Checkpoints: written atomically, read without executing pickled code.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts —
model, optimiser and scheduler states, the epoch, the run's configuration,
the task, normalisation and preprocessing parameters and RNG states — so
``torch.load(weights_only=True)`` reads it and a file from elsewhere cannot
run code on load.
"""

import io
import warnings

import torch

from libxr.atomic import atomic_output
from libxr.errors import XRError


def save(state, path):
    """Atomically; the same state gives the same bytes (torch names the archive inside after the
    file it writes, so it writes to memory, not to a randomly named temporary)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_output(path, "wb") as f:
        f.write(buffer.getbuffer())


def read(path, what="checkpoint"):
    """Whatever ``path`` holds, loaded with ``weights_only=True``; ``what`` names it in errors."""
    try:
        with warnings.catch_warnings():     # torch warns, over two lines, of a TorchScript archive it then refuses
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise XRError(f"{path}: no such {what}") from None
    except Exception as exc:  # noqa: BLE001 - torch raises several types for refused or corrupt files
        raise XRError(f"{path}: not a loadable {what} ({_why(path, exc)})") from None


def _why(path, exc):
    """What the file is instead, in words — not torch's advice to load it with weights_only=False."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as err:
        return err.strerror or str(err)
    if not head:
        return "an empty file"
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file, such as xr-preprocess writes; a checkpoint is a run's best.pt or last.pt"
    if not head.startswith((b"PK\x03\x04", b"\x80")):      # torch.save's zip archive, or its old pickle format
        return "not a file torch.save wrote"
    if "weights_only" in str(exc):
        return "it holds pickled objects beyond tensors and plain values, which could run code on load: refused"
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def load(path):
    """An xr checkpoint (a dict with at least ``model``)."""
    state = read(path)
    if not isinstance(state, dict) or "model" not in state:
        raise XRError(f"{path}: not an xr checkpoint")
    return state


_RUN = {"the manifest (sha256)": lambda s: (s.get("config") or {}).get("manifest_sha256"),
        "--model": lambda s: s.get("model_name"), "--arch": lambda s: s.get("arch"),
        "the classes": lambda s: (s.get("task") or {}).get("names"), "--task": lambda s: (s.get("task") or {}).get("kind"),
        "the image size": lambda s: s.get("size"),
        "the channels": lambda s: s.get("in_channels"),
        # the weight average's state is in the checkpoint only when it was trained with one
        "--ema": lambda s: ((s.get("config") or {}).get("options") or {}).get("ema") or "none",
        # a resumed run keeps one calibration: best.pt from before would hold the other
        "--calibration": lambda s: ((s.get("config") or {}).get("options") or {}).get("calibration") or "temperature",
        # the best value so far is of the monitored metric: another one's would be compared with it
        "--early-stop": lambda s: ((s.get("config") or {}).get("options") or {}).get("early_stop") or "none"}


def trained_precision(state):
    """The --precision a checkpoint was trained with (auto before xr-train had the option)."""
    options = (state.get("config") or {}).get("options")
    return (options.get("precision") if isinstance(options, dict) else None) or "auto"


def differences(state, meta):
    """What checkpoint ``state`` was trained with that the run described by ``meta`` (the same
    fields, without the weights) is not: manifest, model, classes, input, weight average, calibration."""
    changed = [(name, get(state), get(meta)) for name, get in _RUN.items() if get(state) != get(meta)]
    if any(name == "--model" for name, _, _ in changed):     # another model's options differ anyway
        changed = [c for c in changed if c[0] != "--arch"]
    return [f"{name} {_short(old)}, not {_short(new)}" if name != "--arch" else _options_changed(old, new)
            for name, old, new in changed]


def _options_changed(old, new):
    """``--arch dropout=0.5, not dropout=0.2``: only the options that differ."""
    old, new = old or {}, new or {}
    keys = [k for k in {**old, **new} if old.get(k) != new.get(k)]
    return "--arch " + ", not ".join(", ".join(f"{k}={d.get(k)}" for k in keys) for d in (old, new))


def _short(value):
    return value[:12] + "…" if isinstance(value, str) and len(value) == 64 else value
