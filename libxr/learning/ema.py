"""Weight EMA (``--ema DECAY``): an exponential moving average of the weights, updated after every
optimiser step, is the model validation scores and checkpoints keep.

torch's AveragedModel with an EMA update (timm's ModelEmaV3, torchvision's reference
ExponentialMovingAverage). Batch-norm running statistics are averaged like the weights, as both
do: the averaged weights see activations near the average of the statistics, and recomputing
them exactly would cost a pass over the training set each epoch. Integer buffers (batch norm's
batch count) are copied. ``warmup`` ramps the decay as timm does — update k uses
min(DECAY, 1 - k^(-2/3)) — so a short run's average is not dominated by its first weights.

A checkpoint keeps the average as ``model`` (what xr-predict and fine-tuning load) and the raw
weights beside it with the number of updates, so ``--resume`` continues both exactly.
"""

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

WARMUP_POWER = 2 / 3      # timm's ModelEmaV3 default


def weight_average(model, decay, warmup=False):
    """An AveragedModel of ``model``; ``update_parameters(model)`` after each step (the first copies)."""
    return AveragedModel(model, multi_avg_fn=_update(decay, warmup), use_buffers=True)


def decay_at(updates, decay, warmup):
    """The decay of the update that follows ``updates`` earlier ones."""
    return min(decay, 1 - (1 + updates) ** -WARMUP_POWER) if warmup else decay


def _update(decay, warmup):
    @torch.no_grad()
    def update(averaged, current, updates):
        if averaged[0].is_floating_point():
            get_ema_multi_avg_fn(decay_at(int(updates), decay, warmup))(averaged, current, updates)
        else:
            torch._foreach_copy_(averaged, current)
    return update


def saved(core, ema):
    """The checkpoint's weights: ``model`` (the average under --ema) and, under --ema, ``ema``."""
    if ema is None:
        return {"model": core.state_dict()}
    return {"model": ema.module.state_dict(), "ema": {"raw": core.state_dict(), "updates": int(ema.n_averaged)}}


def restore(core, ema, state):
    """Load :func:`saved`'s fields. An average the checkpoint lacks (--ema forced onto a run trained
    without) starts at the next step, whose update copies the weights."""
    core.load_state_dict(state["ema"]["raw"] if "ema" in state else state["model"])
    if ema is not None and "ema" in state:
        ema.module.load_state_dict(state["model"])
        ema.n_averaged.fill_(state["ema"]["updates"])
