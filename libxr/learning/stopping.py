"""Early stopping: the monitored metric's best epoch, and how long since it improved.

The monitor also picks the best checkpoint when no early stop is asked for
(validation loss). Its whole state goes into every checkpoint, so a resumed
run stops at the same epoch as one never interrupted.
"""

from libxr.judging.direction import improved


class EarlyStopping:
    def __init__(self, metric=None, patience=5, min_delta=0.0):
        self.stops = metric is not None          # without a metric: only track the best val loss
        self.metric = metric or "val_loss"
        self.patience, self.min_delta = patience, min_delta
        self.best = {"epoch": None, "value": None}
        self.stale = 0

    def update(self, epoch, row):
        """Note epoch ``epoch`` (1-based) and its metrics; whether it is the best so far."""
        value = row.get(self.metric)
        better = improved(value, self.best["value"], self.metric, self.min_delta)
        if better:
            self.best = {"epoch": epoch, "value": value, "metric": self.metric}
        self.stale = 0 if better else self.stale + 1
        return better

    @property
    def should_stop(self):
        return self.stops and self.stale >= self.patience

    def describe(self):
        return (f"early stop: {self.metric} did not improve for {self.patience} epochs "
                f"(best {self.best['value']:.4f} at epoch {self.best['epoch']})")

    def state_dict(self):
        return {"best": dict(self.best), "stale": self.stale}

    def load_state_dict(self, state):
        self.best, self.stale = dict(state["best"]), state["stale"]
