"""The losses of the reports: weighted cross-entropy, CheXNet's weighted BCE, focal loss.

``make_loss(task, weights, focal_gamma)`` returns ``loss(logits, targets)``.
Class weights scale each example's loss by its class's weight (Keras's
class_weight, as report 000 used it); multi-label weights are per-label
positive weights, and NaN targets (not stated, or uncertain under ``ignore``)
are masked out of the mean.
"""

import torch
import torch.nn.functional as F


def make_loss(task, weights=None, focal_gamma=0.0):
    weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)
    if task.kind == "multiclass":
        return lambda logits, y: _multiclass(logits, y, weights, focal_gamma)
    if task.kind == "binary":
        return lambda logits, y: _binary(logits.reshape(-1), y.float(), weights, focal_gamma)
    return lambda logits, y: _multilabel(logits, y.float(), weights, focal_gamma)


def _focal(loss, p_true, gamma):
    return loss * (1 - p_true).clamp(min=0) ** gamma if gamma else loss


def _multiclass(logits, y, weights, gamma):
    logp = F.log_softmax(logits.float(), dim=1)
    nll = -logp.gather(1, y.long().view(-1, 1)).squeeze(1)
    loss = _focal(nll, torch.exp(-nll), gamma)
    if weights is not None:
        loss = loss * weights.to(logits.device)[y.long()]
    return loss.mean()


def _binary(logits, y, weights, gamma):
    logits = logits.float()
    loss = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    loss = _focal(loss, torch.exp(-loss), gamma)
    if weights is not None:
        w = weights.to(logits.device)
        loss = loss * torch.where(y > 0.5, w[1], w[0])
    return loss.mean()


def _multilabel(logits, y, pos_weight, gamma):
    logits = logits.float()
    mask = ~torch.isnan(y)
    target = torch.nan_to_num(y, nan=0.0)
    pw = None if pos_weight is None else pos_weight.to(logits.device)
    loss = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw, reduction="none")
    if gamma:
        p = torch.sigmoid(logits)
        loss = loss * (1 - torch.where(target > 0.5, p, 1 - p)) ** gamma
    return (loss * mask).sum() / mask.sum().clamp(min=1)
