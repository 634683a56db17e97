"""Mixup and cutmix (``--mixup ALPHA``, ``--cutmix ALPHA``), timm's per-batch mode.

With probability ``prob`` a batch is mixed with itself reversed (image i with image B-1-i): by
cutmix when only it is asked for, or with probability ``switch`` when both are, else by mixup.
The share lam of the batch's own images is drawn from Beta(ALPHA, ALPHA); mixup blends the pixels
(lam x + (1 - lam) x reversed), cutmix pastes a box of the reversed batch of area about 1 - lam
and then takes lam from the box as clipped by the borders (timm's ``correct_lam``). Targets
become soft and are mixed with the same lam: class probabilities, the positive-class
probability, or each label's (a label not stated in either image stays NaN, masked by the loss).

Every draw comes from the generator passed in — the augmentation's, which checkpoints hold — so
a run is the same for a --seed and continues exactly after --resume.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F


class Mixing:
    def __init__(self, task, mixup=0.0, cutmix=0.0, prob=1.0, switch=0.5):
        self.task, self.mixup, self.cutmix, self.prob, self.switch = task, mixup, cutmix, prob, switch

    def __call__(self, x, y, generator):
        """(images, soft targets) for a normalised float batch ``x`` and its targets ``y``."""
        soft = self.soft(y)
        if _uniform(generator) >= self.prob:
            return x, soft
        cut = self.cutmix > 0 and (self.mixup == 0 or _uniform(generator) < self.switch)
        alpha = self.cutmix if cut else self.mixup
        seed = int(torch.randint(2 ** 62, (1,), generator=generator, device=generator.device))
        lam = float(np.random.default_rng(seed).beta(alpha, alpha))
        other = x.flip(0)
        if cut:
            top, bottom, left, right = _box(x.shape[-2], x.shape[-1], lam, generator)
            x = x.clone()
            x[..., top:bottom, left:right] = other[..., top:bottom, left:right]
            lam = 1 - (bottom - top) * (right - left) / (x.shape[-2] * x.shape[-1])
        else:
            x = x * lam + other * (1 - lam)
        return x, mix(soft, soft.flip(0), lam)

    def soft(self, y):
        """Targets as probabilities: one-hot rows for classes, floats otherwise."""
        if self.task.kind == "multiclass":
            return F.one_hot(y.long(), self.task.outputs).float()
        return y.float()


def mix(a, b, lam):
    """lam a + (1 - lam) b, a side of weight 0 left out (its NaN must not mask the other's label)."""
    if lam >= 1:
        return a
    if lam <= 0:
        return b
    return a * lam + b * (1 - lam)


def _uniform(generator):
    return float(torch.rand(1, generator=generator, device=generator.device))


def _box(height, width, lam, generator):
    """timm's cutmix box: sides sqrt(1 - lam) of the image's, centred anywhere, clipped to it."""
    ratio = math.sqrt(1 - lam)
    half_h, half_w = int(height * ratio) // 2, int(width * ratio) // 2
    cy, cx = (int(torch.randint(n, (1,), generator=generator, device=generator.device)) for n in (height, width))
    return (max(cy - half_h, 0), min(cy + half_h, height), max(cx - half_w, 0), min(cx + half_w, width))
