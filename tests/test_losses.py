"""libxr.learning.losses against torch's own losses and by hand (label smoothing, mixed targets), and the
masking of unstated labels."""

import math

import pytest
import torch
import torch.nn.functional as F

from libxr.learning.losses import make_loss
from libxr.records.tasks import Task

torch.manual_seed(0)
LOGITS3, Y3 = torch.randn(8, 3), torch.randint(0, 3, (8,))
LOGITS1, Y1 = torch.randn(8), torch.randint(0, 2, (8,)).float()


def test_multiclass_is_cross_entropy_and_weighted_like_keras():
    task = Task("multiclass", ["a", "b", "c"])
    assert make_loss(task)(LOGITS3, Y3) == pytest.approx(F.cross_entropy(LOGITS3, Y3).item())
    w = torch.tensor([0.5, 2.0, 1.0])
    expected = (F.cross_entropy(LOGITS3, Y3, reduction="none") * w[Y3]).mean()
    assert make_loss(task, w)(LOGITS3, Y3) == pytest.approx(expected.item())


def test_binary_is_bce_with_class_weights():
    task = Task("binary", ["n", "p"])
    assert make_loss(task)(LOGITS1[:, None], Y1) == pytest.approx(
        F.binary_cross_entropy_with_logits(LOGITS1, Y1).item())
    w = torch.tensor([0.8, 1.2])
    expected = (F.binary_cross_entropy_with_logits(LOGITS1, Y1, reduction="none") * torch.where(Y1 > 0, 1.2, 0.8)).mean()
    assert make_loss(task, w)(LOGITS1, Y1) == pytest.approx(expected.item())


def test_focal_loss_down_weights_easy_examples():
    task = Task("multiclass", ["a", "b"])
    easy = torch.tensor([[5.0, -5.0]]), torch.tensor([0])
    hard = torch.tensor([[0.0, 0.2]]), torch.tensor([0])
    ratio_easy = make_loss(task, focal_gamma=2)(*easy) / make_loss(task)(*easy)
    ratio_hard = make_loss(task, focal_gamma=2)(*hard) / make_loss(task)(*hard)
    assert ratio_easy < 1e-3 and 0.2 < ratio_hard < 0.4


def test_multilabel_masks_unstated_labels_and_weights_positives():
    task = Task("multilabel", ["x", "y"])
    logits = torch.tensor([[0.3, -1.0], [2.0, 0.5]])
    y = torch.tensor([[1.0, float("nan")], [0.0, 1.0]])
    stated = torch.tensor([True, False, True, True])
    expected = F.binary_cross_entropy_with_logits(logits.flatten()[stated], torch.tensor([1.0, 0.0, 1.0]))
    assert make_loss(task)(logits, y) == pytest.approx(expected.item())
    pw = torch.tensor([3.0, 1.0])
    weighted = F.binary_cross_entropy_with_logits(logits, torch.nan_to_num(y), pos_weight=pw, reduction="none")
    assert make_loss(task, pw)(logits, y) == pytest.approx(weighted.flatten()[stated].mean().item())
    assert torch.isfinite(make_loss(task)(logits, torch.full((2, 2), float("nan"))))


def test_multiclass_label_smoothing_is_torchs():
    task = Task("multiclass", ["a", "b", "c"])
    assert make_loss(task, smoothing=0.1)(LOGITS3, Y3) == pytest.approx(
        F.cross_entropy(LOGITS3, Y3, label_smoothing=0.1).item())


@pytest.mark.parametrize("kind, logits, y, weights, expected", [
    # by hand: targets smoothed toward uniform, each class's -log p weighted by its weight and target mass
    pytest.param("multiclass", [[2.0, 0.0, -1.0]], [0], [1.0, 3.0, 2.0],
                 lambda p: -(1.0 * (0.9 + 0.1 / 3) * math.log(p[0]) + 3.0 * (0.1 / 3) * math.log(p[1])
                             + 2.0 * (0.1 / 3) * math.log(p[2])), id="multiclass-weighted"),
    pytest.param("binary", [0.7, -1.2], [1.0, 0.0], [0.5, 2.0],
                 lambda p: (-(2.0 * 0.95 * math.log(p[0]) + 0.5 * 0.05 * math.log(1 - p[0]))
                            - (2.0 * 0.05 * math.log(p[1]) + 0.5 * 0.95 * math.log(1 - p[1]))) / 2,
                 id="binary-weighted"),
    pytest.param("multilabel", [[0.7, -1.2]], [[1.0, float("nan")]], [3.0, 1.0],
                 lambda p: -(3.0 * 0.95 * math.log(p[0]) + 0.05 * math.log(1 - p[0])), id="multilabel-masked"),
])
def test_label_smoothing_by_hand(kind, logits, y, weights, expected):
    task = Task(kind, ["a", "b", "c"] if kind == "multiclass" else ["n", "p"] if kind == "binary" else ["x", "y"])
    logits, y = torch.tensor(logits), torch.tensor(y)
    p = (torch.softmax(logits, 1)[0] if kind == "multiclass" else torch.sigmoid(logits.flatten())).tolist()
    assert make_loss(task, torch.tensor(weights), smoothing=0.1)(logits, y).item() == pytest.approx(expected(p))


@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel"])
@pytest.mark.parametrize("gamma", [0.0, 2.0], ids=["ce", "focal"])
def test_a_mixed_target_costs_the_mix_of_the_two_weighted_losses(kind, gamma):
    """Mixup's loss: lam L(y1) + (1 - lam) L(y2), class weights and focal loss included."""
    torch.manual_seed(1)
    lam = 0.3
    if kind == "multiclass":
        task, logits, weights = Task(kind, ["a", "b", "c"]), torch.randn(6, 3), torch.tensor([0.5, 2.0, 1.0])
        y1, y2 = torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor([1, 1, 0, 2, 2, 0])
        soft = lam * F.one_hot(y1, 3).float() + (1 - lam) * F.one_hot(y2, 3).float()
    else:
        shape = (6,) if kind == "binary" else (6, 2)
        task = Task(kind, ["n", "p"] if kind == "binary" else ["x", "y"])
        logits, weights = torch.randn(*shape), torch.tensor([0.5, 2.0])
        y1, y2 = torch.randint(0, 2, shape).float(), torch.randint(0, 2, shape).float()
        soft = lam * y1 + (1 - lam) * y2
    loss = make_loss(task, weights, gamma)
    assert loss(logits, soft).item() == pytest.approx(lam * loss(logits, y1).item() + (1 - lam) * loss(logits, y2).item())
