"""libxr.learning.ema: the weight average against one computed by hand, its decay warm-up, and its
checkpoint fields."""

import pytest
import torch
from torch import nn

from libxr.learning import ema


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))


def _steps(model, average, n):
    """``n`` SGD steps on random batches, the average updated after each; the raw states seen."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    seen = []
    for _ in range(n):
        loss = model(torch.randn(8, 3)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        average.update_parameters(model)
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
    return seen


@pytest.mark.parametrize("warmup", [False, True], ids=["constant-decay", "warmup"])
def test_the_average_equals_one_computed_by_hand(warmup):
    model, decay = _model(), 0.8
    average = ema.weight_average(model, decay, warmup)
    seen = _steps(model, average, 6)
    expected = dict(seen[0])                          # the first update copies
    for k, state in enumerate(seen[1:], start=1):     # update k + 1 follows k earlier ones
        d = min(decay, 1 - (1 + k) ** (-2 / 3)) if warmup else decay
        expected = {name: d * expected[name] + (1 - d) * value if value.is_floating_point() else value
                    for name, value in state.items()}
    got = average.module.state_dict()
    assert got.keys() == expected.keys()
    for name, value in expected.items():             # weights and batch-norm statistics averaged
        assert torch.allclose(got[name].float(), value.float(), atol=1e-6), name
    assert int(got["1.num_batches_tracked"]) == 6     # a count is copied, not averaged
    assert not torch.allclose(got["0.weight"], seen[-1]["0.weight"])
    assert int(average.n_averaged) == 6


@pytest.mark.parametrize("updates, decay, warmup, expected", [
    (0, 0.999, True, 0.0),
    (1, 0.999, True, 1 - 2 ** (-2 / 3)),
    (10 ** 6, 0.999, True, 0.999),
    (0, 0.9, False, 0.9),
])
def test_decay_warms_up_as_timm_does(updates, decay, warmup, expected):
    assert ema.decay_at(updates, decay, warmup) == pytest.approx(expected)


def test_a_checkpoint_keeps_the_average_as_model_and_the_raw_weights_to_resume():
    model = _model()
    average = ema.weight_average(model, 0.8)
    _steps(model, average, 3)
    state = ema.saved(model, average)
    assert state["ema"]["updates"] == 3
    for name, value in average.module.state_dict().items():
        assert torch.equal(state["model"][name], value)
        assert torch.equal(state["ema"]["raw"][name], model.state_dict()[name])
    fresh = _model()
    again = ema.weight_average(fresh, 0.8)
    ema.restore(fresh, again, state)
    assert int(again.n_averaged) == 3
    for name in state["model"]:
        assert torch.equal(fresh.state_dict()[name], state["ema"]["raw"][name])
        assert torch.equal(again.module.state_dict()[name], state["model"][name])


def test_without_an_average_the_checkpoint_is_as_before_and_a_forced_average_starts_from_it():
    model = _model()
    state = ema.saved(model, None)
    assert state.keys() == {"model"}
    fresh = _model()
    with torch.no_grad():
        fresh[0].weight.add_(1)
    average = ema.weight_average(fresh, 0.8)
    ema.restore(fresh, average, state)                # --force: --ema on a run trained without
    assert torch.equal(fresh[0].weight, model[0].weight) and int(average.n_averaged) == 0
    average.update_parameters(fresh)
    assert torch.equal(average.module[0].weight, model[0].weight)
