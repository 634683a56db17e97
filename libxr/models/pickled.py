"""The tensors of a whole pickled model (``torch.save(model)``), read without running its code.

torchxrayvision publishes its chest-X-ray DenseNets this way: each file is a pickled
``torchxrayvision.models.DenseNet``, so ``weights_only=True`` refuses it and a plain
``torch.load`` would run whatever the file names. Here every class the pickle names becomes an
inert stub (an object that only keeps the attributes the pickle gives it), and the only callables
the pickle may reach are torch's tensor-rebuilding functions and a few plain containers — the same
functions ``weights_only=True`` allows. The module tree is then walked like
``nn.Module.state_dict`` walks it. TorchScript archives are left alone: ``torch.load`` would pass
them to ``torch.jit.load``, which runs the code they carry.
"""

import _compat_pickle
import collections
import pickle
import types
import warnings
import zipfile

import torch

from libxr.errors import XRError

_CALLABLES = {("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
              ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
              ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
              ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
              ("collections", "OrderedDict"): collections.OrderedDict,
              ("builtins", "set"): set, ("builtins", "frozenset"): frozenset}


class _Stub:
    """Whatever class the pickle names: built, given attributes, never run."""

    dump_patches = False        # torch's legacy loader asks modules' classes this

    def __init__(self, *args, **kwargs):
        self.args = args


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        # protocol 2 spells Python 2's names (__builtin__.set), as pickle's own find_class maps them
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in _CALLABLES:
            return _CALLABLES[module, name]
        return type(name, (_Stub,), {"__module__": f"stub:{module}"})


_STUBBING = types.SimpleNamespace(__name__="libxr.models.pickled", Unpickler=_Unpickler,
                                  load=lambda f, **kw: _Unpickler(f, **kw).load())


def module_state(path):
    """(state dict, class name) of the model pickled whole in ``path`` (or under its ``model`` key),
    or None when the file holds no pickled model."""
    if _torchscript(path):      # torch.load would hand it to torch.jit.load, which runs its code
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")     # source-changed and non-weights-only warnings
            obj = torch.load(path, map_location="cpu", pickle_module=_STUBBING, weights_only=False)
    except Exception:  # noqa: BLE001 - whatever the reason, the caller reports the weights_only error
        return None
    if isinstance(obj, dict) and isinstance(obj.get("model"), _Stub):
        obj = obj["model"]
    if not _is_module(obj):
        return None
    state = {}
    _walk(obj, "", state)
    if not state:
        raise XRError(f"{path}: a pickled model without weights")
    return state, type(obj).__module__.removeprefix("stub:") + "." + type(obj).__name__


def _torchscript(path):
    """Whether ``path`` is a TorchScript archive (a zip with ``constants.pkl``, as torch tells them)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("constants.pkl") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _is_module(obj):
    return isinstance(obj, _Stub) and isinstance(vars(obj).get("_modules"), dict)


def _walk(module, prefix, state):
    """``nn.Module.state_dict``'s order: parameters, persistent buffers, then each child."""
    fields = vars(module)
    skip = fields.get("_non_persistent_buffers_set") or set()
    for kind in ("_parameters", "_buffers"):
        for name, tensor in (fields.get(kind) or {}).items():
            if isinstance(tensor, torch.Tensor) and name not in skip:
                state[prefix + name] = tensor.detach()
    for name, child in fields["_modules"].items():
        if _is_module(child):
            _walk(child, f"{prefix}{name}.", state)
