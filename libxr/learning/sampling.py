"""Which training records an epoch visits, in what order, on which process.

Class imbalance is handled either in the loss (--class-weights) or here, by
what the epoch draws: ``balanced`` draws with replacement so every class is
equally likely, ``over`` repeats minority-class records up to the majority
count, ``under`` takes a fresh random subset of each class down to the
minority count. Orders are a function of (seed, epoch) only, so runs repeat
and resumed epochs match. Under DDP each process takes every world-th index
of the same order — per-process batches of b then form exactly the global
batches of b × world a single process would see.
"""

import numpy as np

from libxr.errors import UsageError

SAMPLINGS = ("none", "balanced", "over", "under")


def epoch_order(y, seed, epoch, sampling="none", task=None, rank=0, world=1):
    """Indices into the training set (targets ``y``) for this process in this epoch."""
    rng = np.random.default_rng([seed, epoch])
    n = len(y)
    if sampling not in SAMPLINGS:
        raise UsageError(f"--sampling {sampling!r}: use {', '.join(SAMPLINGS)}")
    if sampling == "none":
        order = rng.permutation(n)
    else:
        if task is None or task.kind == "multilabel":
            raise UsageError(f"--sampling {sampling}: needs one class per record; for multi-label data use "
                             "--class-weights")
        labels = np.asarray(y).astype(int).reshape(n)
        members = [np.flatnonzero(labels == c) for c in np.unique(labels)]
        if sampling == "balanced":
            weights = np.zeros(n)
            for idx in members:
                weights[idx] = 1.0 / (len(members) * len(idx))
            order = rng.choice(n, size=n, replace=True, p=weights)
        elif sampling == "over":
            top = max(len(idx) for idx in members)
            order = rng.permutation(np.concatenate(
                [np.concatenate([idx, rng.choice(idx, top - len(idx), replace=True)]) for idx in members]))
        else:
            low = min(len(idx) for idx in members)
            order = rng.permutation(np.concatenate([rng.choice(idx, low, replace=False) for idx in members]))
    if world > 1:
        # Equal shares, or the processes' step counts (and their collectives) would differ.
        share = -(-len(order) // world)
        order = np.concatenate([order, order[: share * world - len(order)]])[rank::world]
    return order.tolist()


def without_lone_tail(order, batch_size):
    """``order`` less its last index when that would be a batch of one: batch norm cannot train
    on one image (its variance is undefined), and it would end the epoch with an error. Every
    process's order has the same length, so all of them agree."""
    return order[:-1] if len(order) > 1 and len(order) % batch_size == 1 else order
