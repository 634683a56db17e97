"""libxr.learning.losses against torch's own losses, and the masking of unstated labels."""

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
