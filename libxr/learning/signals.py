"""Stopping a run cleanly when the scheduler says so.

SIGTERM and SIGUSR1 (SLURM's warning before the time limit) end the run after
the current batch instead of killing it; ``last.pt`` then holds the last whole
epoch, so a resumed run is the same as one never stopped.
"""

import signal

STOPPED = 75
"""Exit status after a SIGTERM/SIGUSR1 stop: the last checkpoint is saved; requeue and --resume."""


class StopSignals:
    def __init__(self):
        self.received = None
        self.previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, getattr(signal, "SIGUSR1", None)):
            if sig is not None:
                self.previous[sig] = signal.signal(sig, self._note)
        return self

    def _note(self, signum, frame):
        self.received = signum

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        return False
