"""The losses of the reports — weighted cross-entropy, CheXNet's weighted BCE, focal loss — with
label smoothing, over hard targets or the soft ones mixup and cutmix make.

``make_loss(task, weights, focal_gamma, smoothing)`` returns ``loss(logits, targets)``. Targets
are hard (a class index; 0/1; 0/1/NaN per label) or soft (class probabilities, (B, K); the
probability of the positive class or of each label). One rule composes every option: each class
(each side of a binary label) contributes its loss times its target mass times its class weight.
A hard target gives Keras's class_weight exactly (report 000), and a mixed one the mix of the two
examples' weighted losses, as mixup's authors mix them. Multi-label weights are per-label positive
weights (CheXNet). Label smoothing moves targets toward uniform: 1/K per class (torch's
cross_entropy ``label_smoothing``), 0.5 per binary label (timm's BCE smoothing). NaN targets —
not stated, uncertain under ``ignore``, or mixed with either — are masked out of the mean.
"""

import torch
import torch.nn.functional as F


def make_loss(task, weights=None, focal_gamma=0.0, smoothing=0.0):
    weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)
    if task.kind == "multiclass":
        return lambda logits, y: _multiclass(logits, y, weights, focal_gamma, smoothing)
    if task.kind == "binary":
        sides = (None, None) if weights is None else (weights[1], weights[0])     # positive, negative
        return lambda logits, y: _two_sided(logits.reshape(-1), y.float(), *sides, focal_gamma, smoothing).mean()
    return lambda logits, y: _multilabel(logits, y.float(), weights, focal_gamma, smoothing)


def _multiclass(logits, y, weights, gamma, smoothing):
    logp = F.log_softmax(logits.float(), dim=1)
    k = logp.shape[1]
    q = y.float() if y.dim() == 2 else F.one_hot(y.long(), k).float()
    if smoothing:
        q = q * (1 - smoothing) + smoothing / k
    loss = -logp * q
    if gamma:
        loss = loss * (1 - logp.exp()).clamp(min=0) ** gamma
    if weights is not None:
        loss = loss * weights.to(logits.device)
    return loss.sum(1).mean()


def _two_sided(logits, t, w_pos, w_neg, gamma, smoothing):
    """Per-element BCE for target probability ``t``: each side's loss (focal: times one minus the
    probability it gives that side) weighted by its class weight and its share of the target."""
    logits = logits.float()
    if smoothing:
        t = t * (1 - smoothing) + smoothing / 2
    total = 0
    for side, mass, weight in ((1.0, t, w_pos), (0.0, 1 - t, w_neg)):
        loss = F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, side), reduction="none")
        if gamma:
            loss = loss * (1 - torch.exp(-loss)).clamp(min=0) ** gamma
        if weight is not None:
            loss = loss * weight.to(logits.device)
        total = total + mass * loss
    return total


def _multilabel(logits, y, pos_weight, gamma, smoothing):
    mask = ~torch.isnan(y)
    loss = _two_sided(logits, torch.nan_to_num(y, nan=0.0), pos_weight, None, gamma, smoothing)
    return (loss * mask).sum() / mask.sum().clamp(min=1)
