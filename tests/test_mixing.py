"""libxr.learning.mixing: mixup blends pixels and targets by one share, cutmix pastes one box whose
area is the partner's share of the targets, unstated labels stay masked, draws are seeded."""

import math

import pytest
import torch

from libxr.learning.mixing import Mixing, mix
from libxr.records.tasks import Task

B, SIZE = 6, 16
TASKS = {
    "binary": (Task("binary", ["n", "p"]), torch.tensor([0, 1, 1, 0, 1, 0]).float()),
    "multiclass": (Task("multiclass", ["a", "b", "c"]), torch.tensor([0, 1, 2, 2, 0, 1])),
    "multilabel": (Task("multilabel", ["x", "y"]),
                   torch.tensor([[1, 0], [0, 1], [1, float("nan")], [0, 0], [1, 1], [0, 1]]).float()),
}


def _images():
    """Image i is the constant i + 1, so every pixel says which image it came from."""
    return torch.arange(1, B + 1).float().view(B, 1, 1, 1).expand(B, 1, SIZE, SIZE).clone()


def _generator(seed=0):
    return torch.Generator().manual_seed(seed)


def _soft(task, y):
    return Mixing(task).soft(y)


@pytest.mark.parametrize("kind", TASKS)
def test_mixup_blends_pixels_and_targets_by_the_same_share(kind):
    task, y = TASKS[kind]
    x = _images()
    mixed, target = Mixing(task, mixup=0.4)(x.clone(), y, _generator())
    other = x.flip(0)
    lam = float((mixed[0, 0, 0, 0] - other[0, 0, 0, 0]) / (x[0, 0, 0, 0] - other[0, 0, 0, 0]))
    assert 0 < lam < 1
    assert torch.allclose(mixed, lam * x + (1 - lam) * other, atol=1e-5)
    soft = _soft(task, y)
    expected = lam * soft + (1 - lam) * soft.flip(0)
    assert torch.allclose(target, expected, atol=1e-5, equal_nan=True)
    if kind == "multiclass":
        assert torch.allclose(target.sum(1), torch.ones(B))
    if kind == "multilabel":          # a label unstated in either image stays unstated
        assert torch.isnan(target[2, 1]) and torch.isnan(target[B - 1 - 2, 1])
        assert torch.isfinite(target[:, 0]).all()


@pytest.mark.parametrize("kind", TASKS)
def test_cutmix_pastes_one_box_whose_area_is_the_partners_share(kind):
    task, y = TASKS[kind]
    x, areas = _images(), []
    for seed in range(20):
        mixed, target = Mixing(task, cutmix=1.0)(x.clone(), y, _generator(seed))
        pasted = mixed != x                                  # (B, 1, H, W)
        assert torch.equal(pasted.all(0), pasted.any(0))     # the same pixels in every image
        rows, cols = pasted[0, 0].any(1).nonzero().flatten(), pasted[0, 0].any(0).nonzero().flatten()
        area = int(pasted[0, 0].sum())
        areas.append(area)
        if area:                                             # one rectangle, filled
            assert area == len(rows) * len(cols) and int(rows[-1] - rows[0]) + 1 == len(rows)
            assert torch.equal(mixed[pasted], x.flip(0)[pasted])
        lam = 1 - area / SIZE ** 2
        soft = _soft(task, y)
        assert torch.allclose(target, mix(soft, soft.flip(0), lam), equal_nan=True)
        if kind == "multiclass":
            assert torch.allclose(target.sum(1), torch.ones(B))
            share_of_own = target[torch.arange(B), y.long()]
            own_pixels = (mixed == x).float().mean((1, 2, 3))
            distinct = y != y.flip(0)
            assert torch.allclose(share_of_own[distinct], own_pixels[distinct])
    assert len(set(areas)) > 5 and max(areas) > SIZE ** 2 / 4


def test_a_side_of_weight_zero_does_not_mask_the_other():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([float("nan"), 1.0])
    assert torch.equal(mix(a, b, 1.0), a) and torch.equal(mix(b, a, 0.0), a)
    assert torch.isnan(mix(a, b, 0.5)[0]) and mix(a, b, 0.5)[1] == 0.5


@pytest.mark.parametrize("options, mixup_batches, cutmix_batches", [
    ({"mixup": 0.4, "prob": 0.0}, 0, 0),
    ({"mixup": 0.4, "cutmix": 1.0, "switch": 1.0}, 0, 40),
    ({"mixup": 0.4, "cutmix": 1.0, "switch": 0.0}, 40, 0),
    ({"mixup": 0.4, "cutmix": 1.0}, "some", "some"),
    ({"cutmix": 1.0, "prob": 0.5}, 0, "some"),
])
def test_which_batches_are_mixed_and_how(options, mixup_batches, cutmix_batches):
    task, y = TASKS["binary"]
    x, g, kinds = _images(), _generator(), []
    for _ in range(40):
        mixed, target = Mixing(task, **options)(x.clone(), y, g)
        changed = mixed != x
        kinds.append("none" if not changed.any() else "cutmix" if (mixed == x.flip(0))[changed].all() else "mixup")
        if kinds[-1] == "none":
            assert torch.equal(target, y)
    for kind, expected in (("mixup", mixup_batches), ("cutmix", cutmix_batches)):
        n = kinds.count(kind)
        assert (0 < n < 40) if expected == "some" else n == expected, (kind, kinds)


def test_draws_come_from_the_generator_given():
    task, y = TASKS["multiclass"]
    runs = [[Mixing(task, mixup=0.4, cutmix=1.0)(_images(), y, g)[1] for _ in range(5)]
            for g in (_generator(1), _generator(1), _generator(2))]
    assert all(torch.equal(a, b) for a, b in zip(runs[0], runs[1]))
    assert not all(torch.equal(a, b) for a, b in zip(runs[0], runs[2]))


def test_the_share_follows_beta_alpha_alpha():
    """Beta(0.2, 0.2) puts most shares near 0 or 1; Beta(8, 8) near one half."""
    task, y = TASKS["binary"]
    x = _images()

    def shares(alpha):
        g, out = _generator(), []
        for _ in range(200):
            mixed = Mixing(task, mixup=alpha)(x.clone(), y, g)[0]
            out.append(float((mixed[0, 0, 0, 0] - x[-1, 0, 0, 0]) / (x[0, 0, 0, 0] - x[-1, 0, 0, 0])))
        return torch.tensor(out)

    assert (abs(shares(0.2) - 0.5) > 0.4).float().mean() > 0.5
    assert (abs(shares(8.0) - 0.5) < 0.2).float().mean() > 0.8
    assert math.isclose(float(shares(8.0).mean()), 0.5, abs_tol=0.05)
