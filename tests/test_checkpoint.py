"""libxr.learning.checkpoint: written atomically (nothing half-written, no temporary left), read back whole,
and anything that would run pickled code on load refused in one line."""

import os

import pytest
import torch

from libxr.errors import XRError
from libxr.learning.checkpoint import load, read, save


def state():
    return {"model": {"conv.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3),
                      "bn.num_batches_tracked": torch.tensor(7)},
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.001, "params": [0, 1]}]},
            "epoch": 3, "config": {"model": "vgg5", "augment": True, "seed": None},
            "task": {"kind": "binary", "names": ["NORMAL", "PNEUMONIA"]},
            "normalization": {"mean": [0.5], "std": [0.25]}, "rng": torch.ByteTensor([1, 2, 3])}


def same(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def test_save_then_load_round_trip(tmp_path):
    path = tmp_path / "best.pt"
    save(state(), str(path))
    assert same(load(str(path)), state())
    assert same(read(str(path)), state())
    assert not same(load(str(path)), {**state(), "epoch": 4})         # the comparison can tell


def test_save_leaves_no_temporary_file_and_replaces_the_old_one(tmp_path):
    path = tmp_path / "last.pt"
    save({"model": {}, "epoch": 1}, str(path))
    save({"model": {}, "epoch": 2}, str(path))
    assert os.listdir(tmp_path) == ["last.pt"]
    assert load(str(path))["epoch"] == 2


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("cannot pickle this")


def test_a_failed_save_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "last.pt"
    save({"model": {}, "epoch": 1}, str(path))
    with pytest.raises(RuntimeError, match="cannot pickle this"):
        save({"model": {}, "epoch": 2, "bad": Unpicklable()}, str(path))
    assert os.listdir(tmp_path) == ["last.pt"]
    assert load(str(path))["epoch"] == 1
    with pytest.raises(RuntimeError, match="cannot pickle this"):
        save({"bad": Unpicklable()}, str(tmp_path / "new.pt"))
    assert os.listdir(tmp_path) == ["last.pt"]


def test_save_into_a_missing_folder(tmp_path):
    path = tmp_path / "nope" / "best.pt"
    with pytest.raises(XRError, match=f"^{path}: the folder {tmp_path / 'nope'} does not exist$"):
        save({"model": {}}, str(path))


class Payload:
    """Pickles to a call of os.system: what a hostile checkpoint would carry."""

    marker = None

    def __reduce__(self):
        return (os.system, (f"touch {Payload.marker}",))


class Custom:
    def __init__(self):
        self.x = 1


@pytest.mark.parametrize("obj", [
    pytest.param(lambda: {"model": Payload()}, id="reduce-to-os-system"),
    pytest.param(lambda: {"model": {}, "extra": Custom()}, id="custom-class"),
    pytest.param(lambda: Custom(), id="custom-class-alone"),
])
@pytest.mark.parametrize("reader, what", [
    pytest.param(load, "checkpoint", id="load"),
    pytest.param(read, "checkpoint", id="read"),
    pytest.param(lambda path: read(path, "meta-model"), "meta-model", id="read-what"),
])
def test_pickled_code_is_refused_in_one_line(tmp_path, obj, reader, what):
    Payload.marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save(obj(), path)                       # plain torch.save: full pickle, as a file from elsewhere
    with pytest.raises(XRError) as info:
        reader(str(path))
    assert str(info.value) == (f"{path}: not a loadable {what} (it holds pickled objects beyond tensors and "
                               "plain values, which could run code on load: refused)")
    assert not Payload.marker.exists()


@pytest.mark.parametrize("reader, message", [
    pytest.param(load, "no such checkpoint", id="load"),
    pytest.param(read, "no such checkpoint", id="read"),
    pytest.param(lambda path: read(path, "model file"), "no such model file", id="read-what"),
])
def test_a_missing_file(tmp_path, reader, message):
    path = tmp_path / "missing.pt"
    with pytest.raises(XRError, match=f"^{path}: {message}$"):
        reader(str(path))


@pytest.mark.parametrize("content, why", [
    pytest.param(b"", "an empty file", id="empty"),
    pytest.param(b"not a checkpoint at all\n", "not a file torch.save wrote", id="text"),
    pytest.param(b"\x89HDF\r\n\x1a\n" + b"\x00" * 40, "an HDF5 file, such as xr-preprocess writes", id="hdf5"),
    pytest.param(b"PK\x03\x04" + b"\x00" * 40, "PytorchStreamReader failed reading zip archive", id="broken-zip"),
])
def test_a_corrupt_file(tmp_path, content, why):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(XRError, match=f"^{path}: not a loadable checkpoint \\(.+\\)$") as info:
        load(str(path))
    assert "\n" not in str(info.value) and f"checkpoint ({why}" in str(info.value)


@pytest.mark.parametrize("obj", [
    pytest.param([1, 2, 3], id="list"),
    pytest.param(torch.zeros(3), id="tensor"),
    pytest.param({"state_dict": {"w": torch.zeros(1)}}, id="dict-without-model"),
    pytest.param({}, id="empty-dict"),
])
def test_load_needs_a_dict_with_a_model(tmp_path, obj):
    path = tmp_path / "other.pt"
    save(obj, str(path))
    back = read(str(path))
    assert torch.equal(back, obj) if isinstance(obj, torch.Tensor) else same(back, obj)
    with pytest.raises(XRError, match=f"^{path}: not an xr checkpoint$"):
        load(str(path))
