"""One epoch of training, and one pass over the validation records (torchvision's
``train_one_epoch`` / ``evaluate``)."""

import dataclasses

import numpy as np
import torch

from libxr.learning.tta import mean_logits, views
from libxr.pixels.datasets import batches
from libxr.pixels.resizing import resize
from libxr.precision import autocast


@dataclasses.dataclass
class Learner:
    """A model and everything one optimisation step needs."""
    model: object        # DDP-wrapped when there are several processes
    core: object         # the bare model the optimiser steps
    transform: object    # uint8 batches to normalised (augmented) floats, on the device
    loss_fn: object
    val_loss_fn: object  # the same loss unsmoothed: val_loss compares across --label-smoothing
    optimizer: object
    schedule: object
    scaler: object
    world: object
    steps: int           # batches per epoch
    ema: object = None   # --ema: the weight average (libxr.learning.ema)
    mixing: object = None  # --mixup/--cutmix (libxr.learning.mixing)
    trims: bool = False  # each epoch leaves out a last batch of one image, which the model cannot train on

    @property
    def evaluated(self):
        """The weights validation scores and checkpoints keep as ``model``: the average under --ema."""
        return self.core if self.ema is None else self.ema.module


def train_one_epoch(learner, dataset, order, opts, signals, tick, size=None):
    """(mean loss, targets, logits) over every process's batches, or "stopped" / "nonfinite".
    ``size``: the epoch's training image size (progressive resizing); the loss is on mixed
    targets under mixup/cutmix, the targets returned are the batches' own."""
    model, world, device, steps = learner.model, learner.world, learner.world.device, learner.steps
    model.train()
    tick(0, min(len(order), steps * opts.batch_size))
    losses, ys, outs = [], [], []
    for step, batch in enumerate(batches(dataset, opts.batch_size, order, workers=opts.workers)):
        if step >= steps:
            break
        x = learner.transform(batch.pixels.to(device, non_blocking=True), train=True)
        y = batch.targets.to(device, non_blocking=True)
        x, fit = resize(x, size or x.shape[-1]), y
        if learner.mixing is not None:
            x, fit = learner.mixing(x, y, learner.transform.generator(device))
        with autocast(device, opts.precision):
            logits = model(x)
        loss = learner.loss_fn(logits.float(), fit)
        # one small all-reduce a batch tells every process of a stop signal or a NaN anywhere
        stopped, nonfinite = world.any(signals.received is not None, not torch.isfinite(loss))
        if stopped:
            return "stopped"
        if nonfinite:
            return "nonfinite"
        learner.optimizer.zero_grad(set_to_none=True)
        learner.scaler.scale(loss).backward()
        learner.scaler.step(learner.optimizer)
        learner.scaler.update()
        learner.schedule.after_batch()
        if learner.ema is not None:
            learner.ema.update_parameters(learner.core)
        losses.append(loss.item() * len(x))
        ys.append(y.cpu().numpy())
        outs.append(logits.detach().float().cpu().numpy())
        tick(len(x))
    total, n = world.sum(sum(losses), sum(len(y) for y in ys))
    return total / max(n, 1), world.concat(np.concatenate(ys)), world.concat(np.concatenate(outs))


@torch.no_grad()
def validate(learner, dataset, opts, task):
    """(mean loss, logits) over ``dataset``, in order, without augmentation but ``opts.tta``'s, on this
    process, with the weights checkpoints keep — logits, not probabilities, so that a temperature can be
    fitted on them (libxr.judging.calibration)."""
    model, device = learner.evaluated, learner.world.device
    model.eval()
    losses, outs, n = 0.0, [], 0
    for batch in batches(dataset, opts.batch_size, workers=opts.workers):
        x, y = learner.transform(batch.pixels.to(device)), batch.targets.to(device)
        with autocast(device, opts.precision):
            logits = mean_logits(task, torch.stack([model(v).float() for v in views(x, opts.tta)]))
        losses += learner.val_loss_fn(logits, y).item() * len(x)
        n += len(x)
        outs.append(logits.cpu().numpy())
    return losses / max(n, 1), np.concatenate(outs)
