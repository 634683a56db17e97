"""libxr.learning.tta: the views scored, and logits whose probabilities are the views' mean."""

import numpy as np
import pytest
import torch

from libxr.learning.tta import mean_logits, views
from libxr.records.tasks import Task

KINDS = {"binary": (Task("binary", ["n", "p"]), (2, 5, 1)), "multiclass": (Task("multiclass", ["a", "b", "c"]), (2, 5, 3)),
         "multilabel": (Task("multilabel", ["x", "y"]), (2, 5, 2))}


def test_hflip_adds_the_mirror_image():
    x = torch.arange(6.0).view(1, 1, 2, 3)
    assert len(views(x)) == 1 and views(x)[0] is x
    plain, mirror = views(x, "hflip")
    assert plain is x and mirror.tolist() == [[[[2.0, 1.0, 0.0], [5.0, 4.0, 3.0]]]]


@pytest.mark.parametrize("kind", KINDS)
def test_the_mean_logits_give_the_mean_probability(kind):
    task, shape = KINDS[kind]
    logits = torch.randn(*shape, generator=torch.Generator().manual_seed(3)) * 30   # saturated ones too
    mean = np.mean([task.probabilities(v.numpy()) for v in logits], axis=0)
    combined = mean_logits(task, logits)
    assert torch.isfinite(combined).all()
    assert task.probabilities(combined.numpy()) == pytest.approx(mean, abs=1e-6)
    assert torch.equal(mean_logits(task, logits[:1]), logits[0])
