"""libxr.models: the reports' networks, torchvision by name, safe weights, adaptation, freezing."""

import os
import re

import numpy as np
import pytest
import torch
from torch import nn

from libxr.errors import UsageError, XRError
from libxr.models import OWN, build_model
from libxr.models.cnn import filters, kernels


@pytest.mark.parametrize("name, options", [
    pytest.param("cnn", {}, id="cnn-default"),
    pytest.param("cnn", {"layers": 3, "kernel_growth": "funnel_out", "filter_growth": "funnel_out",
                         "global_pool": "flatten", "local_pool": "max", "batch_norm": True},
                 id="cnn-funnel-out-flatten"),
    pytest.param("cnn", {"layers": 3, "pool_stride": 1, "local_pool": "none", "global_pool": "max"},
                 id="cnn-stride-1-no-local-pool"),
    pytest.param("vgg5", {}, id="vgg5"), pytest.param("resnet10", {}, id="resnet10"),
    pytest.param("dense", {}, id="dense"), pytest.param("resnet18", {}, id="resnet18"),
    pytest.param("densenet121", {"head": "mlp:32,16", "dropout": 0.5}, id="densenet121-mlp-head"),
    pytest.param("efficientnet_b0", {}, id="efficientnet-b0"),
])
@pytest.mark.parametrize("channels", [1, 3])
def test_outputs_for_any_channels(name, options, channels):
    model = build_model(name, channels, 4, 64, **options).eval()
    assert model(torch.randn(2, channels, 64, 64)).shape == (2, 4)


def test_report_000_progressions():
    assert kernels(3, "funnel_in") == [7, 5, 3] and filters(3, "funnel_in") == [128, 64, 32]
    assert kernels(3, "funnel_out") == [3, 5, 7] and filters(3, "funnel_out") == [32, 64, 128]
    assert kernels(5, "constant") == [3] * 5 and filters(5, "constant") == [64] * 5


def test_pool_stride_one_keeps_the_size():
    model = build_model("cnn", 1, 2, 32, layers=3, pool_stride=1, global_pool="flatten", spatial_dropout=0)
    assert model.pool(model.features(torch.zeros(1, 1, 32, 32))).shape[1] == 64 * 32 * 32


@pytest.mark.parametrize("options, message", [
    pytest.param({"kernel_growth": "spiral"}, "kernel_growth", id="unknown-kernel-growth"),
    pytest.param({"local_pool": "min"}, "pooling", id="unknown-local-pool"),
])
def test_bad_cnn_options(options, message):
    with pytest.raises(UsageError, match=message):
        build_model("cnn", 1, 2, 32, **options)


def test_unknown_model_and_head():
    with pytest.raises(UsageError, match="unknown model"):
        build_model("resnet9000", 1, 2, 32)
    with pytest.raises(UsageError, match="--head"):
        build_model("resnet18", 1, 2, 32, head="mlp:")


def test_one_channel_conv_equals_rgb_conv_on_gray_copies(tmp_path):
    reference = build_model("resnet18", 3, 2, 32)
    torch.save(reference.state_dict(), tmp_path / "w.pt")
    gray = build_model("resnet18", 1, 2, 32, weights=str(tmp_path / "w.pt"))
    x = torch.randn(2, 1, 32, 32)
    assert torch.allclose(gray.conv1(x), reference.conv1(x.repeat(1, 3, 1, 1)), atol=1e-5)


def test_xr_checkpoint_fine_tunes_all_but_a_different_head(tmp_path):
    parent = build_model("resnet18", 1, 3, 32)
    torch.save({"model": parent.state_dict(), "epoch": 4, "classes": ["a", "b", "c"]}, tmp_path / "best.pt")
    child = build_model("resnet18", 1, 5, 32, weights=str(tmp_path / "best.pt"))
    assert torch.equal(child.layer4[1].conv2.weight, parent.layer4[1].conv2.weight)
    assert child.fc[-1].out_features == 5


class _Boom:
    def __reduce__(self):
        return (os.system, (f"touch {_Boom.marker}",))


def test_malicious_checkpoint_runs_no_code(tmp_path):
    _Boom.marker = tmp_path / "pwned"
    torch.save({"model": _Boom()}, tmp_path / "evil.pt", _use_new_zipfile_serialization=True)
    with pytest.raises(XRError, match="not a loadable weights file"):
        build_model("resnet18", 1, 2, 32, weights=str(tmp_path / "evil.pt"))
    assert not _Boom.marker.exists()


def test_missing_or_corrupt_weights(tmp_path):
    with pytest.raises(XRError, match="no such weights file"):
        build_model("resnet18", 1, 2, 32, weights=str(tmp_path / "none.pt"))
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(XRError, match="not a loadable weights file"):
        build_model("resnet18", 1, 2, 32, weights=str(tmp_path / "junk.pt"))


def test_freeze_backbone_or_first_blocks():
    model = build_model("resnet18", 1, 2, 32, freeze="backbone")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("fc.") for n in trainable)
    model = build_model("densenet121", 1, 2, 32, freeze=2)
    frozen = {n.split(".")[1] for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"conv0", "norm0"}
    with pytest.raises(UsageError, match="--freeze"):
        build_model("resnet18", 1, 2, 32, freeze="most")


@pytest.mark.parametrize("name, options, steps", [
    pytest.param("cnn", {"layers": 3, "spatial_dropout": 0.1, "dropout": 0.2, "batch_norm": True}, 40,
                 id="cnn-dropout-batch-norm"),
    pytest.param("vgg5", {}, 40, id="vgg5"), pytest.param("resnet10", {}, 40, id="resnet10"),
    pytest.param("dense", {}, 150, id="dense"), pytest.param("resnet18", {}, 15, id="resnet18"),
])
def test_learning_happens_on_synthetic_radiographs(name, options, steps, synth):
    """A few optimiser steps on xr-synth images: the training loss falls by 30 %."""
    from PIL import Image

    root = synth("folders", count=48, size=32)
    paths = sorted(root.rglob("*.png"))
    x = torch.tensor(np.stack([np.asarray(Image.open(p), np.float32) / 255 for p in paths]))[:, None]
    y = torch.tensor([p.parent.name == "PNEUMONIA" for p in paths], dtype=torch.long)
    torch.manual_seed(0)
    model = build_model(name, 1, 2, 32, **options).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    for _ in range(steps):
        optimiser.zero_grad()
        loss = loss_fn(model((x - 0.5) / 0.25), y)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses


def test_a_cnn_too_deep_for_its_input_is_a_usage_error():
    from libxr.errors import UsageError
    from libxr.models import build_model

    with pytest.raises(UsageError, match="need inputs of at least 128 px, not 64"):
        build_model("cnn", 1, 1, 64, layers=7)
    build_model("cnn", 1, 1, 64, layers=7, pool_stride=1)     # same size all the way: fine
    build_model("cnn", 1, 1, 128, layers=7)


@pytest.mark.parametrize("model, args, message", [
    pytest.param("vgg5", ["--weights", "imagenet"], "--weights imagenet: vgg5 is xr's own network and has no "
                 "ImageNet weights; --weights FILE starts it from an xr checkpoint of vgg5", id="imagenet-weights"),
    pytest.param("cnn", ["--freeze", "backbone", "--head", "mlp:8"], "--head, --freeze: for torchvision",
                 id="head-freeze"),
    pytest.param("dense", ["--dropout", "0.3"], "--dropout: for torchvision models", id="dropout"),
    pytest.param("vgg5", ["--size", "16"], "vgg5 halves the image 5 times: 16 px images are below its smallest, 32",
                 id="vgg5-too-small"),
    pytest.param("resnet10", ["--size", "8"], "resnet10 halves the image 4 times: 8 px images", id="resnet10-too-small"),
])
def test_options_an_own_model_cannot_use_are_usage_errors(cli, manifests, tmp_path, model, args, message):
    """Never silently ignored (a --weights PATH used to be, even a missing one; it now fine-tunes an xr
    checkpoint of the same network), never a torch traceback."""
    from xrtools.train import main

    result = cli(main, manifests[1], "--model", model, *args, "--run-dir", tmp_path / "run", "-q")
    assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_the_command_line_knows_the_own_models_by_name():
    """xr-train's options name xr's own networks without importing torch; the names must be the models'."""
    from libxr.learning.options import OWN_MODELS

    assert OWN_MODELS == tuple(OWN)


def test_the_cnn_defaults_are_its_xr_preset_and_report000_is_the_published_network():
    import inspect

    from libxr.models import check_arch
    from libxr.models.cnn import PRESETS, ConfigurableCNN

    defaults = inspect.signature(ConfigurableCNN).parameters
    assert {k: defaults[k].default for k in PRESETS["xr"]} == PRESETS["xr"]
    published = check_arch("cnn", {"preset": "report000"})
    assert {k: published[k] for k in PRESETS["report000"]} == {"batch_norm": False, "spatial_dropout": 0.5,
                                                              "dropout": 0.5, "pool_stride": 1}
    assert check_arch("cnn", {"preset": "report000", "pool_stride": 2})["pool_stride"] == 2   # given keys win
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in build_model("cnn", 1, 2, 32, **published).modules())


@pytest.mark.parametrize("model, preset, message", [
    pytest.param("cnn", "keras", "--arch preset=keras: cnn has the presets xr, report000", id="cnn-unknown"),
    pytest.param("vgg5", "report000", "--arch preset=report000: vgg5 has no presets", id="no-presets"),
])
def test_an_unknown_preset_is_a_usage_error(model, preset, message):
    from libxr.models import check_arch

    with pytest.raises(UsageError, match=f"^{re.escape(message)}$"):
        check_arch(model, {"preset": preset})


def test_a_cnn_checkpoint_from_before_the_presets_rebuilds_without_batch_norm(tmp_path):
    """Such checkpoints stored only the options given, and cnn had no batch norm then."""
    from libxr.learning.checkpoint import load
    from libxr.predicting.classifier import Classifier

    old = build_model("cnn", 1, 1, 32, layers=2, batch_norm=False, spatial_dropout=0.5, dropout=0.5)
    state = {"model": old.state_dict(), "task": {"kind": "binary", "names": ["a", "b"]}, "model_name": "cnn",
             "arch": {"layers": 2}, "normalization": {"mean": [0.5], "std": [0.2]}, "preprocess": {"size": 32},
             "in_channels": 1, "size": 32}
    torch.save(state, tmp_path / "old.pt")
    assert load(str(tmp_path / "old.pt"))["arch"] == {"layers": 2}
    clf = Classifier(str(tmp_path / "old.pt"), "cpu")
    assert clf.scores(torch.zeros(3, 1, 32, 32, dtype=torch.uint8)).shape == (3,)
