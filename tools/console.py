"""Everything a command says goes to stderr, through one reporter.

Warnings always print; information, tables and progress bars are dropped with
``--quiet``, and progress bars also when stderr is not a terminal (logs of cron
jobs and batch schedulers stay readable).
"""

import contextlib
import sys


class Reporter:
    def __init__(self, prog="xr", quiet=False):
        self.prog = prog
        self.quiet = quiet

    @property
    def interactive(self):
        return not self.quiet and sys.stderr.isatty()

    def _console(self):
        from rich.console import Console

        # Logs of batch jobs are read in wide windows: do not wrap tables at 80 columns.
        width = None if sys.stderr.isatty() else 120
        return Console(file=sys.stderr, highlight=False, width=width)

    def info(self, message):
        if not self.quiet:
            print(f"{self.prog}: {message}", file=sys.stderr)

    def warn(self, message):
        print(f"{self.prog}: warning: {message}", file=sys.stderr)

    def table(self, table):
        """Print a rich Table (built by the caller) unless quiet."""
        if not self.quiet:
            self._console().print(table)

    def progress(self, iterable, total=None, description="working", unit="items"):
        """Wrap an iterable in a progress bar with rate and ETA when interactive."""
        with self.bar(description, unit, total) as advance:
            for item in iterable:
                yield item
                advance(1)

    @contextlib.contextmanager
    def bar(self, description="working", unit="items", total=None):
        """A progress bar (rate, ETA) when interactive; yields ``advance(n, total=None)``."""
        if not self.interactive:
            yield lambda n, total=None: None
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        class Rate(ProgressColumn):
            def render(self, task):
                return f"{task.speed or 0:,.0f} {unit}/s"

        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   Rate(), TimeRemainingColumn()]
        with Progress(*columns, console=self._console(), transient=True) as progress:
            task = progress.add_task(description, total=total)

            def advance(n, total=None):
                if total is not None:
                    progress.update(task, total=total)
                progress.advance(task, n)

            yield advance


report = Reporter()
"""The reporter of the running command; :mod:`xrtools.cli` configures it."""
