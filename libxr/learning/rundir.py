"""A run directory: config.json, metrics.jsonl (one row per epoch), last.pt and best.pt, curves.png.

Only the main process writes (rank 0 under torchrun); checkpoints go through
libxr.learning.checkpoint, atomically, so a killed run leaves its last whole epoch.
"""

import json
import os

import numpy as np

from libxr.atomic import atomic_output
from libxr.judging.plots import plot_curves
from libxr.learning import checkpoint


class RunDir:
    def __init__(self, path, writes=True):
        self.path, self.writes = path, writes
        self.best, self.last, self.metrics, self.config = (
            os.path.join(path, name) for name in ("best.pt", "last.pt", "metrics.jsonl", "config.json"))

    def resumable(self):
        return os.path.exists(self.last)

    def holds_a_run(self):
        """Whether starting here would replace a run's checkpoints or metrics."""
        return self.resumable() or os.path.exists(self.best) or (
            os.path.exists(self.metrics) and os.path.getsize(self.metrics) > 0)

    def start(self, config):
        """A fresh run: its configuration, and no metrics yet."""
        if not self.writes:
            return
        os.makedirs(self.path, exist_ok=True)
        with atomic_output(self.config) as f:
            json.dump(plain(config), f, indent=2)
            f.write("\n")
        with open(self.metrics, "w", encoding="utf-8"):
            pass

    def record(self, state, row, best):
        """An epoch's checkpoint as last.pt (and best.pt) and its metrics row."""
        if not self.writes:
            return
        checkpoint.save(state, self.last)
        if best:
            checkpoint.save(state, self.best)
        with open(self.metrics, "a", encoding="utf-8") as f:
            f.write(json.dumps(plain(row)) + "\n")

    def finish(self):
        if self.writes:
            plot_curves(self.metrics, os.path.join(self.path, "curves.png"))


def plain(value):
    """Only what ``torch.load(weights_only=True)`` and JSON accept."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, str):
        return str(value)   # e.g. torch.__version__ is a str subclass weights_only refuses
    return value
