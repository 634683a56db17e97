"""Pretrained weights (libxr.models.transfer, weightfile, pickled, imagenet): ImageNet from the torch
cache or torchvision's download and one line offline; torchvision state dicts, xr checkpoints of any
model and torchxrayvision's pickled DenseNets; heads replaced with a message; other architectures
refused in one line. Nothing here downloads: downloads come from a server on 127.0.0.1, and the
offline case goes through a proxy on a closed port."""

import hashlib
import http.server
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import warnings

import pytest
import torch
import torchvision
from conftest import checked, needs_commands, sh
from xrtools.train import main as train

from libxr.errors import XRError
from libxr.models import build_model, imagenet


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def offline_env(torch_home):
    """Shell assignments: the torch cache in ``torch_home``, every download through a closed port."""
    proxy = f"http://127.0.0.1:{closed_port()}"
    return (f"TORCH_HOME={torch_home} https_proxy={proxy} HTTPS_PROXY={proxy} http_proxy={proxy} "
            f"HTTP_PROXY={proxy} no_proxy= NO_PROXY=")


def randomised(model):
    """A state dict of ``model`` whose every float tensor is random, so a loaded tensor is recognisable."""
    return {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in model.state_dict().items()}


def old_densenet_names(state):
    """torchvision's published DenseNet files predate ``num_batches_tracked`` and name ``norm1``
    ``norm.1`` (torchvision's loader renames them)."""
    return {re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", k): v for k, v in state.items()
            if not k.endswith("num_batches_tracked")}


@pytest.mark.parametrize("name, rename, conv, head", [
    pytest.param("resnet18", None, "conv1", "fc", id="resnet18"),
    pytest.param("densenet121", old_densenet_names, "features.conv0", "classifier", id="densenet121-old-names"),
])
def test_imagenet_weights_come_from_the_cache_and_touch_no_network(tmp_path, monkeypatch, name, rename, conv, head):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("downloaded"))
    path, url = imagenet.source(name)
    assert os.path.dirname(path) == str(tmp_path / "hub" / "checkpoints")
    assert os.path.basename(path) == os.path.basename(url) and url.startswith("https://download.pytorch.org/")
    weights = randomised(torchvision.models.get_model(name))
    os.makedirs(os.path.dirname(path))
    saved = rename(weights) if rename else weights
    torch.save(saved, path)
    said = []
    model = build_model(name, 1, 2, 32, weights="imagenet", log=said.append)
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in weights.items() if not k.startswith(head) and k != f"{conv}.weight"
               and not (rename and k.endswith("num_batches_tracked")))
    assert torch.allclose(state[f"{conv}.weight"], weights[f"{conv}.weight"].sum(1, keepdim=True))
    loaded = sum(not k.startswith(head) for k in saved)         # the old files have no num_batches_tracked
    assert said == [(f"{path}: {loaded} of {name}'s {len(state)} tensors from torchvision's ImageNet weights; "
                    f"{conv}.weight adapted from 3 input channels to 1; the head ({head}) is new (2 outputs; "
                    "the file's has 1000 outputs)")]


def test_offline_imagenet_is_one_line_naming_the_file_its_url_and_where_to_put_it(manifests, tmp_path):
    """Offline, the error says which file to put where; put there, the same command trains from it."""
    needs_commands()
    command = (f"{offline_env(tmp_path / 'th')} xr-train {manifests[0]} --model resnet18 --weights imagenet "
               f"--epochs 1 --max-steps 1 --run-dir {tmp_path / 'run'}")
    result = sh(command)
    cache = tmp_path / "th" / "hub" / "checkpoints"
    url = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    assert result.exit_code == 1, result.stderr
    assert result.stderr.splitlines()[-1] == (
        "xr-train: error: ImageNet weights for resnet18 are not in the torch cache and could not be downloaded "
        f"([Errno 111] Connection refused): put resnet18-f37072fd.pth (from {url}) at "
        f"{cache / 'resnet18-f37072fd.pth'}, or pass --weights PATH")
    assert os.listdir(cache) == [] and not (tmp_path / "run").exists()      # no partial file, no run
    torch.save(torchvision.models.resnet18().state_dict(), cache / "resnet18-f37072fd.pth")
    result = sh(command)
    assert result.exit_code == 0, result.stderr
    assert f"{cache / 'resnet18-f37072fd.pth'}: 120 of resnet18's 122 tensors from torchvision's ImageNet " \
           "weights" in result.stderr and "downloading" not in result.stderr


@pytest.mark.parametrize("model, message", [
    ("resnet9000", "unknown model 'resnet9000'; torchvision has alexnet"),
    ("txv-densenet121", ("--weights imagenet: txv-densenet121 starts from torchxrayvision's weights (--weights FILE); "
                        "ImageNet's are densenet121's")),
    ("vgg5", "--weights imagenet: vgg5 is xr's own network and has no ImageNet weights"),
])
def test_imagenet_weights_of_no_torchvision_model_are_a_usage_error(cli, manifests, tmp_path, monkeypatch, model,
                                                                    message):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("downloaded"))
    result = cli(train, manifests[0], "--model", model, "--weights", "imagenet", "--run-dir", tmp_path / "run")
    assert result.exit_code == 2 and result.stderr.startswith(f"xr-train: error: {message}"), result.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "th").exists()


class _Server(http.server.BaseHTTPRequestHandler):
    """Serves ``body`` at any path: whole, cut short after half its declared length, or 404."""
    body, how = b"", "whole"

    def do_GET(self):
        if self.how == "missing":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body[: len(self.body) // 2] if self.how == "cut" else self.body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("how, served, message", [
    pytest.param("whole", "weights", None, id="whole-and-checked"),
    pytest.param("whole", "other", "invalid hash value", id="other-bytes-than-its-name-says"),
    pytest.param("cut", "weights", "could not be downloaded", id="cut-short"),
    pytest.param("missing", "weights", "HTTP 404 Not Found", id="not-found"),
])
def test_a_download_is_checked_and_only_a_whole_file_is_put_in_the_cache(tmp_path, monkeypatch, how, served, message):
    weights = tmp_path / "w.pth"
    torch.save(randomised(torchvision.models.resnet18()), weights)
    body = weights.read_bytes()
    path = tmp_path / "hub" / "checkpoints" / f"resnet18-{hashlib.sha256(body).hexdigest()[:8]}.pth"
    handler = type("Handler", (_Server,), {"body": body if served == "weights" else body[::-1], "how": how})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{path.name}"
    monkeypatch.setattr(imagenet, "source", lambda name: (str(path), url))
    monkeypatch.setenv("no_proxy", "*")
    said = []
    try:
        if message is None:
            assert imagenet.imagenet_file("resnet18", said.append) == str(path)
            assert path.read_bytes() == body and os.listdir(path.parent) == [path.name]
            assert said == [f"downloading {url} to {path}"]
        else:
            with pytest.raises(XRError, match=message) as refused:
                imagenet.imagenet_file("resnet18", said.append)
            assert str(refused.value).endswith(f"put {path.name} (from {url}) at {path}, or pass --weights PATH")
            assert "\n" not in str(refused.value) and os.listdir(path.parent) == []
    finally:
        server.shutdown()


_TXV = '''
"""A torchxrayvision stand-in: its DenseNet's module layout and names, and code that must never run."""
import pathlib
from collections import OrderedDict

import torch
from torch import nn

pathlib.Path(__file__).with_name("imported").touch()


class _DenseLayer(nn.Sequential):
    def __init__(self, features, growth, bn_size):
        super().__init__()
        self.add_module("norm1", nn.BatchNorm2d(features))
        self.add_module("relu1", nn.ReLU(inplace=True))
        self.add_module("conv1", nn.Conv2d(features, bn_size * growth, 1, bias=False))
        self.add_module("norm2", nn.BatchNorm2d(bn_size * growth))
        self.add_module("relu2", nn.ReLU(inplace=True))
        self.add_module("conv2", nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False))
        self.drop_rate = 0

    def __setstate__(self, state):
        pathlib.Path(__file__).with_name("ran").touch()
        super().__setstate__(state)


class _DenseBlock(nn.Sequential):
    def __init__(self, layers, features, bn_size, growth):
        super().__init__()
        for i in range(layers):
            self.add_module("denselayer%d" % (i + 1), _DenseLayer(features + i * growth, growth, bn_size))


class _Transition(nn.Sequential):
    def __init__(self, features, out):
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(features))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", nn.Conv2d(features, out, 1, bias=False))
        self.add_module("pool", nn.AvgPool2d(2, 2))


class DenseNet(nn.Module):
    def __init__(self, growth=32, blocks=(6, 12, 24, 16), init=64, bn_size=4, classes=18, in_channels=1):
        super().__init__()
        self.apply_sigmoid, self.weights = False, None
        self.pathologies = ["Atelectasis"] * classes
        self.features = nn.Sequential(OrderedDict([
            ("conv0", nn.Conv2d(in_channels, init, 7, 2, 3, bias=False)), ("norm0", nn.BatchNorm2d(init)),
            ("relu0", nn.ReLU(inplace=True)), ("pool0", nn.MaxPool2d(3, 2, 1))]))
        features = init
        for i, layers in enumerate(blocks):
            self.features.add_module("denseblock%d" % (i + 1), _DenseBlock(layers, features, bn_size, growth))
            features += layers * growth
            if i != len(blocks) - 1:
                self.features.add_module("transition%d" % (i + 1), _Transition(features, features // 2))
                features //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(features))
        self.classifier = nn.Linear(features, classes)
        self.register_buffer("op_threshs", torch.rand(classes))
'''


@pytest.fixture(scope="module")
def txv_files(tmp_path_factory):
    """torchxrayvision's DenseNet-121 pickled whole, as its release files are: the legacy format of the
    torch that wrote them and today's zip format; the state dict it holds. Made in another process, so
    the stand-in package is never importable here."""
    tmp = tmp_path_factory.mktemp("txv")
    (tmp / "pkg" / "torchxrayvision").mkdir(parents=True)
    (tmp / "pkg" / "torchxrayvision" / "__init__.py").write_text("")
    (tmp / "pkg" / "torchxrayvision" / "models.py").write_text(_TXV)
    subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import torch, warnings
        from torchxrayvision.models import DenseNet
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        model = DenseNet()
        for p in model.parameters():
            torch.nn.init.normal_(p)
        torch.save(model, "{tmp}/legacy.pt", _use_new_zipfile_serialization=False)
        torch.save(model, "{tmp}/zip.pt")
        torch.save(model.state_dict(), "{tmp}/state.pt")
        """)], env={**os.environ, "PYTHONPATH": str(tmp / "pkg")}, check=True)
    (tmp / "pkg" / "torchxrayvision" / "imported").unlink()
    return tmp, torch.load(tmp / "state.pt", weights_only=True)


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
@pytest.mark.parametrize("name, channels", [("txv-densenet121", 1), ("densenet121", 3)])
def test_torchxrayvision_densenets_load_without_running_their_code(txv_files, fmt, name, channels):
    tmp, original = txv_files
    said = []
    model = build_model(name, channels, 2, 32, weights=str(tmp / f"{fmt}.pt"), log=said.append)
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in original.items() if k.startswith("features.")
               and k != "features.conv0.weight")
    conv0 = original["features.conv0.weight"]
    assert torch.allclose(state["features.conv0.weight"], conv0.repeat(1, channels, 1, 1) / channels)
    adapted = "" if channels == 1 else "; features.conv0.weight adapted from 1 input channels to 3"
    assert said == [(f"{tmp / fmt}.pt: {len(state) - 2} of {name}'s {len(state)} tensors from a pickled "
                    f"torchxrayvision.models.DenseNet{adapted}; the head (classifier) is new (2 outputs; "
                    "the file's has 18 outputs)")]
    assert not (tmp / "pkg" / "torchxrayvision" / "imported").exists()      # nothing imported
    assert not (tmp / "pkg" / "torchxrayvision" / "ran").exists()           # nor its __setstate__ run


def test_xr_train_fine_tunes_a_torchxrayvision_densenet(cli, manifests, txv_files, tmp_path):
    tmp, _ = txv_files
    result = cli(train, manifests[0], "--model", "txv-densenet121", "--weights", tmp / "zip.pt", "--epochs", "1",
                 "--max-steps", "1", "--batch-size", "8", "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.stderr
    assert "from a pickled torchxrayvision.models.DenseNet; the head (classifier) is new (1 output; the " \
           "file's has 18 outputs)" in result.stderr
    assert result.stdout.strip() == str(tmp_path / "run" / "best.pt")


class _Boom:
    def __reduce__(self):
        return (os.system, (f"touch {_Boom.marker}",))


class _BoomModule(torch.nn.Module):
    """A module that pickles as one whose rebuilding runs a shell command."""

    def __reduce_ex__(self, protocol):
        return (os.system, (f"touch {_Boom.marker}",))


@pytest.mark.parametrize("obj", [
    pytest.param(lambda: {"model": _Boom()}, id="code-in-a-dict"),
    pytest.param(lambda: _BoomModule(), id="code-as-a-module"),
])
@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_pickled_code_never_runs_in_either_reader(tmp_path, obj, zip_format):
    _Boom.marker = tmp_path / "pwned"
    torch.save(obj(), tmp_path / "evil.pt", _use_new_zipfile_serialization=zip_format)
    with pytest.raises(XRError, match="not a loadable weights file"):
        build_model("resnet18", 1, 2, 32, weights=str(tmp_path / "evil.pt"))
    assert not _Boom.marker.exists()


def test_a_torchscript_archive_is_never_loaded(tmp_path, monkeypatch):
    """torch.load hands TorchScript to torch.jit.load, which runs the archive's code: not here."""
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / "script.pt")
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: pytest.fail("torch.jit.load ran"))
    with pytest.raises(XRError, match=f"^{tmp_path / 'script.pt'}: not a loadable weights file"), \
            warnings.catch_warnings():
        warnings.simplefilter("error")      # torch's two-line warning of the archive is not the user's to read
        build_model("resnet18", 1, 2, 32, weights=str(tmp_path / "script.pt"))


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory, manifests):
    """An xr checkpoint of a one-channel binary resnet18 (xr-train, one short epoch)."""
    run = tmp_path_factory.mktemp("resnet") / "run"
    checked(train, str(manifests[0]), "--model", "resnet18", "--epochs", "1", "--max-steps", "2", "--run-dir",
            str(run), "-q")
    return run / "best.pt"


@pytest.mark.parametrize("channels, outputs, adapted, head", [
    pytest.param(1, 1, None, None, id="same-input-same-classes-everything-loads"),
    pytest.param(3, 1, "conv1.weight adapted from 1 input channels to 3", None, id="three-channels"),
    pytest.param(1, 4, None, "the head (fc) is new (4 outputs; the file's has 1 output)", id="other-classes"),
])
def test_an_xr_checkpoint_of_a_torchvision_model(resnet_run, channels, outputs, adapted, head):
    """The cron case: yesterday's checkpoint, all of it (the first convolution and the head too), or a
    new head, said as a warning, when the classes changed."""
    parent = torch.load(resnet_run, weights_only=True)["model"]
    logged, warned = [], []
    state = build_model("resnet18", channels, outputs, 32, weights=str(resnet_run), log=logged.append,
                        warn=warned.append).state_dict()
    assert all(torch.equal(state[k], v) for k, v in parent.items() if k != "conv1.weight" and k[:3] != "fc.")
    assert torch.allclose(state["conv1.weight"], parent["conv1.weight"].repeat(1, channels, 1, 1) / channels)
    assert torch.equal(state["fc.1.weight"], parent["fc.1.weight"]) == (head is None)
    loaded = len(state) - (2 if head else 0)
    said = "; ".join([(f"{resnet_run}: {loaded} of resnet18's {len(state)} tensors from an xr checkpoint of "
                      "resnet18 (epoch 1)")] + [s for s in (adapted, head) if s])
    assert (logged, warned) == (([], [said]) if head else ([said], []))


def test_xr_train_fine_tunes_yesterdays_own_model(cli, trained, tmp_path):
    """vgg5 and the other own networks take --weights FILE: an xr checkpoint of the same network."""
    parent = torch.load(trained["ckpt"], weights_only=True)
    result = cli(train, trained["h5"], "--model", "vgg5", "--weights", trained["ckpt"], "--epochs", "1",
                 "--lr", "1e-9", "--batch-size", "16", "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.stderr
    count = len(parent["model"])
    assert (f"{trained['ckpt']}: {count} of vgg5's {count} tensors from an xr checkpoint of vgg5 (epoch "
            f"{parent['epoch'] + 1})") in result.stderr
    child = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    drift = max((child[k] - v).abs().max().item() for k, v in parent["model"].items() if v.is_floating_point()
                and "running" not in k)
    assert drift < 1e-4                 # trained at lr 1e-9 from the parent's weights, not from scratch
    child = build_model("vgg5", 1, 1, 32, weights=str(trained["ckpt"]), log=lambda m: None).state_dict()
    assert all(torch.equal(child[k], v) for k, v in parent["model"].items())
    warned = []                 # other classes: the head's last layer is new, its hidden layer kept
    child = build_model("vgg5", 1, 3, 32, weights=str(trained["ckpt"]), warn=warned.append).state_dict()
    assert warned == [(f"{trained['ckpt']}: {count - 2} of vgg5's {count} tensors from an xr checkpoint of vgg5 "
                      f"(epoch {parent['epoch'] + 1}); head.5 of the head (head) is new (3 outputs; the file's has "
                      "1 output)")]
    assert torch.equal(child["head.2.weight"], parent["model"]["head.2.weight"])


@pytest.mark.parametrize("model, weights, arch, message", [
    pytest.param("resnet18", "resnet34", [], "a state dict for another architecture than resnet18: 96 tensors "
                 "differ, first the file has layer1.2.conv1.weight, which resnet18 has not", id="resnet34-into-18"),
    pytest.param("densenet121", "resnet18", [], "a state dict with nothing that fits densenet121 (its tensors "
                 "are named like conv1.weight, densenet121's like features.conv0.weight)", id="resnet-into-densenet"),
    pytest.param("resnet18", "vgg5", [], "an xr checkpoint of vgg5 (epoch {epoch}), not of resnet18",
                 id="xr-checkpoint-of-another-model"),
    pytest.param("vgg5", "vgg5", ["--arch", "widths=8,16,32,64,128"], "an xr checkpoint of vgg5 (epoch {epoch}) "
                 "for another architecture than vgg5: 30 tensors differ, first features.0.weight is (16, 1, 3, 3) "
                 "in the file, (8, 1, 3, 3) in vgg5", id="xr-checkpoint-with-another-arch"),
])
def test_weights_of_another_architecture_are_one_line_and_nothing_is_written(cli, trained, tmp_path, model,
                                                                            weights, arch, message):
    path = tmp_path / f"{weights}.pt"
    if weights == "vgg5":
        path = trained["ckpt"]
    else:
        torch.save(torchvision.models.get_model(weights).state_dict(), path)
    epoch = torch.load(trained["ckpt"], weights_only=True)["epoch"] + 1
    result = cli(train, trained["h5"], "--model", model, *arch, "--weights", path, "--epochs", "1",
                 "--run-dir", tmp_path / "run")
    assert (result.exit_code, result.stderr) == (1, f"xr-train: error: {path}: {message.format(epoch=epoch)}\n")
    assert not (tmp_path / "run").exists()


def test_weights_holding_nan_are_refused_before_training(cli, trained, tmp_path):
    state = torch.load(trained["ckpt"], weights_only=True)
    first = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][first] = torch.full_like(state["model"][first], float("nan"))
    path = tmp_path / "nan.pt"
    torch.save(state, path)
    result = cli(train, trained["h5"], "--model", "vgg5", "--weights", path, "--epochs", "1",
                 "--run-dir", tmp_path / "run")
    assert (result.exit_code, result.stderr) == (1, f"xr-train: error: {path}: {first} holds NaN or infinite weights\n")
    assert not (tmp_path / "run").exists()
