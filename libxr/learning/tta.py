"""Test-time augmentation, shared by xr-train's validation and xr-predict so both score alike.

``hflip`` scores each image and its mirror and averages the two probabilities. The result is
returned as logits whose probabilities are that mean (log-mean-exp of the views' log
probabilities), so a loss, a threshold or a temperature applies to it as to a single view's.
Mirroring a chest film puts the heart on the other side: it helps a model that saw mirrored
films in training (``--augment`` flips half of them), and is no test-time fix for one that did not.
"""

TTA = ("none", "hflip")


def views(x, tta="none"):
    """The batches a model scores for ``x``: itself, and its mirror under ``hflip``."""
    return [x] + ([x.flip(-1)] if tta == "hflip" else [])


def mean_logits(task, logits):
    """Logits of the mean probability over ``logits`` (views, B, ...); the one view's as they are."""
    import math

    import torch
    import torch.nn.functional as F

    if len(logits) == 1:
        return logits[0]
    if task.kind == "multiclass":
        return torch.logsumexp(F.log_softmax(logits, dim=-1), 0) - math.log(len(logits))
    return torch.logsumexp(F.logsigmoid(logits), 0) - torch.logsumexp(F.logsigmoid(-logits), 0)
