"""A run directory: config.json, metrics.jsonl (one row per epoch), last.pt and best.pt, curves.png.

Only the main process writes (rank 0 under torchrun). Every file is written atomically — a
killed run, or one whose disk filled, leaves its last whole epoch in last.pt.
"""

import contextlib
import json
import os

import numpy as np

from libxr.atomic import atomic_output
from libxr.errors import XRError
from libxr.judging.plots import plot_curves
from libxr.learning import checkpoint
from libxr.learning.history import read_history, write_history


class RunDir:
    def __init__(self, path, writes=True):
        self.path, self.writes = path, writes
        self.rows = []              # metrics.jsonl's, kept by the main process
        self.best, self.last, self.metrics, self.config = (
            os.path.join(path, name) for name in ("best.pt", "last.pt", "metrics.jsonl", "config.json"))

    @contextlib.contextmanager
    def locked(self, warn=print):
        """Lock ``.lock`` in the directory while the run writes there, so that another xr-train started
        on it (a job submitted twice, a scheduler's double start) is refused instead of mixing two runs'
        files. Yields whether another process holds it (the caller refuses the run: under torchrun
        every process must). A POSIX record lock (lockf): NFS has it, a killed process holds none, and
        forked workers never hold it; a file system without it is said, and the run goes on unlocked."""
        if not self.writes:
            yield False
            return
        import errno
        import fcntl

        os.makedirs(self.path, exist_ok=True)
        fd = os.open(os.path.join(self.path, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                busy = False
            except OSError as exc:
                busy = exc.errno in (errno.EACCES, errno.EAGAIN)
                if not busy:
                    warn(f"{self.path}: its file system cannot lock ({exc.strerror}): a second xr-train on "
                         "this directory would not be refused")
            yield busy
        finally:
            os.close(fd)

    def resumable(self):
        return os.path.exists(self.last)

    def holds_a_run(self):
        """Whether starting here would replace a run's checkpoints or metrics."""
        return self.resumable() or os.path.exists(self.best) or (
            os.path.exists(self.metrics) and os.path.getsize(self.metrics) > 0)

    def unfinished(self):
        """Whether this is a run whose first epoch never finished: no checkpoint, one metrics row at most."""
        if self.resumable() or os.path.exists(self.best):
            return False
        if not os.path.exists(self.metrics):
            return True
        with open(self.metrics, "rb") as f:
            return sum(1 for line in f if line.strip()) <= 1

    def start(self, config):
        """A fresh run: its configuration, and no metrics yet."""
        if not self.writes:
            return
        os.makedirs(self.path, exist_ok=True)
        with atomic_output(self.config) as f:
            json.dump(plain(config), f, indent=2)
            f.write("\n")
        write_history(self.rows, self.metrics)

    def resume(self, state, warn):
        """Continue after checkpoint ``state`` (last.pt's): metrics.jsonl keeps the rows of its epochs.

        A row of a later epoch (written before a checkpoint that failed) goes; the row of its own
        epoch, when missing (an older xr stopped between the two), comes from the checkpoint.
        """
        if not self.writes:
            return
        epochs = state["epoch"] + 1
        self.rows = read_history(self.metrics, warn)
        if len(self.rows) > epochs:
            warn(f"{self.metrics}: rows after epoch {epochs} are left out: {self.last} holds epoch {epochs} "
                 "(the checkpoint after them was not written)")
            del self.rows[epochs:]
        elif len(self.rows) == epochs - 1:
            warn(f"{self.metrics}: epoch {epochs}'s row is taken from {self.last} (without its timings)")
            self.rows.append(dict(state["metrics"]))
        elif len(self.rows) < epochs:
            raise XRError(f"{self.metrics}: {len(self.rows)} epochs, but {self.last} holds epoch {epochs}: "
                          "the run's history is lost (--force starts the run over)")

    def record(self, state, row, best):
        """An epoch: its metrics row, then best.pt and last.pt. last.pt goes last: when a write fails
        (a full disk) it still holds the epoch before, which --resume continues."""
        if not self.writes:
            return
        self.rows.append(plain(row))
        try:
            write_history(self.rows, self.metrics)
            if best:
                checkpoint.save(state, self.best)
            checkpoint.save(state, self.last)
        except OSError as exc:
            kept = (f"{self.last} holds epoch {state['epoch']}, which --resume continues" if state["epoch"]
                    else "no epoch is saved")
            raise XRError(f"{exc.filename or self.path}: {exc.strerror or exc}; {kept}") from exc

    def finish(self):
        if self.writes:
            plot_curves(self.rows, os.path.join(self.path, "curves.png"))


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
