"""Which way is better, per metric: the one table early stopping and leaderboards share."""

LOWER_IS_BETTER = ("loss", "log_loss", "brier", "ece")
"""Bare metric names; a split prefix (``val_loss``, ``test_ece``) is ignored."""


def lower_is_better(metric):
    prefix, _, rest = metric.partition("_")
    return (rest if prefix in ("train", "val", "test") and rest else metric) in LOWER_IS_BETTER


def improved(value, best, metric, min_delta=0.0):
    """Whether ``value`` beats ``best`` by more than ``min_delta`` (None never improves; anything beats None)."""
    if value is None:
        return False
    if best is None:
        return True
    return value < best - min_delta if lower_is_better(metric) else value > best + min_delta
