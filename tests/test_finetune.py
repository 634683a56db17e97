"""libxr.learning.finetune through xr-train: --backbone-lr parameter groups under every kind of
schedule, gradual unfreezing (--unfreeze-every) over epochs and across --resume."""

import itertools
import json

import pytest
import torch
import torchvision
from xrtools.train import main as train

from libxr.learning.finetune import param_groups
from libxr.models import build_model

SHORT = ["--epochs", "2", "--max-steps", "2", "--batch-size", "16"]


@pytest.mark.parametrize("name, head", [("resnet18", "fc"), ("efficientnet_b0", "classifier"), ("vgg5", "head")])
def test_backbone_lr_groups_the_head_apart(name, head):
    model = build_model(name, 1, 2, 32)
    groups = param_groups(model, 1e-3, 1e-4)
    named = dict(model.named_parameters())
    assert [g["lr"] for g in groups] == [1e-3, 1e-4]
    assert {id(p) for p in groups[0]["params"]} == {id(p) for n, p in named.items() if n.startswith(head + ".")}
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(named)
    assert param_groups(model, 1e-3) == [{"params": list(model.parameters())}]     # one group without it


@pytest.mark.parametrize("schedule", [
    pytest.param([], id="constant"),
    pytest.param(["--scheduler", "cosine", "--warmup", "1"], id="cosine-with-warmup"),
    pytest.param(["--scheduler", "step"], id="step"),
    pytest.param(["--scheduler", "onecycle"], id="onecycle"),
    pytest.param(["--scheduler", "cyclic"], id="cyclic"),
])
def test_backbone_lr_keeps_its_ratio_to_lr_under_every_schedule(cli, manifests, tmp_path, schedule):
    result = cli(train, manifests[0], "--model", "vgg5", "--lr", "1e-3", "--backbone-lr", "1e-4", *schedule, *SHORT,
                 "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.stderr
    groups = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["optimizer"]["param_groups"]
    assert [len(g["params"]) for g in groups] == [4, 20]        # head: two linear layers; the rest
    for key in ("lr", "initial_lr", "max_lr"):                 # what each schedule keeps per group
        assert [key in g for g in groups] in ([True, True], [False, False])
        assert key not in groups[0] or groups[0][key] == pytest.approx(10 * groups[1][key])
    assert [g.get("max_lr", g.get("initial_lr", g["lr"])) for g in groups] == (
        [1e-4, 1e-5] if "cyclic" in schedule else [1e-3, 1e-4])       # cyclic starts from --lr / 10


def parameters(state, names):
    return {n: state[n] for n in names}


def test_unfreezing_goes_block_by_block_and_resumes_exactly(cli, manifests, tmp_path):
    """From --freeze backbone, resnet18 trains its head in epoch 1, layer4 too from epoch 2, layer3
    too from epoch 3 — with --backbone-lr and a warm-up; stopped after each epoch and resumed, it
    gives the same metrics, weights and optimiser state."""
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "init.pt")
    args = ["--model", "resnet18", "--weights", tmp_path / "init.pt", "--freeze", "backbone", "--unfreeze-every", "1",
            "--backbone-lr", "1e-4", "--warmup", "2", "--max-steps", "2",
            "--batch-size", "16"]
    straight = cli(train, manifests[0], *args, "--epochs", "3", "--run-dir", tmp_path / "a")
    assert straight.exit_code == 0, straight.stderr
    lines = [line for line in straight.stderr.splitlines() if "stay frozen" in line]
    assert lines == ["xr-train: epoch 2: layer4 trains; 5 blocks stay frozen (conv1 .. layer3)",
                     "xr-train: epoch 3: layer3, layer4 train; 4 blocks stay frozen (conv1 .. layer2)"]
    start = build_model("resnet18", 1, 1, 32, weights=str(tmp_path / "init.pt"), log=lambda m: None)
    names = [n for n, _ in start.named_parameters() if not n.startswith("fc.")]
    states = [parameters(start.state_dict(), names)]
    for epochs in (1, 2, 3):
        result = cli(train, manifests[0], *args, "--epochs", epochs, "--run-dir", tmp_path / "b",
                     *(["--resume"] if epochs > 1 else []))
        assert result.exit_code == 0, result.stderr
        states.append(parameters(torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"], names))
    assert "epoch 3: layer3, layer4 train" in result.stderr         # restored on resume, and said
    changed = [{n.split(".")[0] for n in names if not torch.equal(before[n], after[n])}
               for before, after in itertools.pairwise(states)]
    assert changed == [set(), {"layer4"}, {"layer3", "layer4"}]
    rows = [[{k: v for k, v in json.loads(line).items() if "seconds" not in k}
             for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()] for run in ("a", "b")]
    assert rows[0] == rows[1] and len(rows[0]) == 3
    final = [torch.load(tmp_path / run / "last.pt", weights_only=True) for run in ("a", "b")]
    assert all(torch.equal(final[0]["model"][k], final[1]["model"][k]) for k in final[0]["model"])
    assert final[0]["optimizer"]["param_groups"] == final[1]["optimizer"]["param_groups"]


def test_unfreeze_every_needs_something_frozen(cli, manifests, tmp_path):
    result = cli(train, manifests[0], "--model", "resnet18", "--unfreeze-every", "2", "--run-dir", tmp_path / "run")
    assert result.exit_code == 2 and "--unfreeze-every unfreezes what --freeze froze: add --freeze backbone" \
        in result.stderr
    assert not (tmp_path / "run").exists()
