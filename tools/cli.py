"""What every xr command shares: its click class, common options, streams, exit codes.

A command module declares ``@command("xr-x", example=...)`` plus its own options
and calls libxr; everything below is done once, here:

* ``--help`` ends with an ``Example:`` block; ``--version``, ``--quiet``, ``--verbose``;
* errors are one line, ``xr-x: error: ...``: usage errors exit 2, runtime and data
  errors exit 1 (the traceback only with ``--verbose``), Ctrl-C exits 130;
* a closed stdout ends the command quietly with status 0, so ``xr-index big/ | head``
  is not an error, even under ``set -o pipefail``; SIGTERM (a scheduler's stop)
  unwinds like Ctrl-C, removing temporary outputs;
* ``-``/no input reads stdin; ``-o FILE`` is written atomically (libxr.atomic).
"""

import contextlib
import io
import os
import signal
import sys
import threading
import traceback

import click
from xrtools.console import report

from libxr import __version__
from libxr.errors import XRError
from libxr.precision import PRECISIONS


class _XRBehaviour:
    """Error reporting, exit codes and signals, for commands and command groups alike."""

    def main(self, args=None, prog_name=None, **extra):
        if threading.current_thread() is threading.main_thread():
            # Batch schedulers stop jobs with SIGTERM: unwind like Ctrl-C, so that
            # temporary outputs are removed and nothing half-written remains.
            signal.signal(signal.SIGTERM, _terminated)
        with contextlib.suppress(AttributeError, ValueError):
            sys.stdout.reconfigure(encoding="utf-8")  # records are UTF-8 whatever the locale
        try:
            code = super().main(args, prog_name=self.name, standalone_mode=False, **extra)
        except click.ClickException as exc:
            ctx = getattr(exc, "ctx", None)      # a subcommand's usage error names the subcommand
            name = ctx.command_path if ctx is not None else self.name
            hint = f" (see '{name} --help')" if isinstance(exc, click.UsageError) else ""
            print(f"{name}: error: {exc.format_message()}{hint}", file=sys.stderr)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            print(f"{self.name}: interrupted", file=sys.stderr)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx):
        report.prog = ctx.command_path
        report.quiet = bool(ctx.params.get("quiet"))
        try:
            return super().invoke(ctx)
        except XRError as exc:
            return self._fail(ctx, exc, exc.exit_code)
        except BrokenPipeError:
            # The reader went away (`xr-index big/ | head`): not an error, and nothing
            # more to say. Point stdout at /dev/null so the final flush stays quiet.
            with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        except (OSError, MemoryError) as exc:
            return self._fail(ctx, exc, 1)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, never a screen of traceback
            return self._fail(ctx, exc, 1, bug=True)

    def _fail(self, ctx, exc, code, bug=False):
        if ctx.params.get("verbose"):
            traceback.print_exc()
        message = str(exc)
        if isinstance(exc, OSError) and exc.filename is not None:
            message = f"{exc.filename}: {exc.strerror}"
        if bug and type(exc).__name__ == "OutOfMemoryError":       # torch.cuda's: the machine's, not a bug
            message = "out of GPU memory: lower --batch-size (or --size)"
        elif bug:   # what xr did not foresee: say what it was, and how to see where
            said = " ".join(message.split())
            message = (f"{type(exc).__name__}{': ' + said if said else ''} (unexpected: --verbose shows the "
                       "traceback; please report it)")
        print(f"{ctx.command_path}: error: {message}", file=sys.stderr)
        return code


class XRCommand(_XRBehaviour, click.Command):
    """A click command that reports errors in one line with the documented exit codes."""


class XRGroup(_XRBehaviour, click.Group):
    """A command with subcommands (xr-cascade chain|vote|...), each an XRCommand."""

    command_class = XRCommand


def _terminated(signum, frame):
    raise SystemExit(128 + signum)


def _epilog(example):
    lines = ["\b", "Example:"] + ["  " + line for line in example.strip("\n").splitlines()]
    return "\n".join(lines)


def _common(fn, name):
    fn = click.option("-v", "--verbose", is_flag=True, help="Show the traceback of an error.")(fn)
    fn = click.option("-q", "--quiet", is_flag=True,
                      help="No progress, tables or information on stderr (warnings stay).")(fn)
    return click.version_option(__version__, "--version", prog_name=name, message="%(prog)s %(version)s")(fn)


SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def command(name, example):
    """Declare an xr command; ``example`` is shell text shown verbatim under ``Example:``."""

    def decorate(fn):
        return click.command(name, cls=XRCommand, epilog=_epilog(example),
                             context_settings=SETTINGS)(_common(fn, name))

    return decorate


def group(name, example):
    """Declare an xr command with subcommands; add them with :func:`subcommand`."""

    def decorate(fn):
        return click.group(name, cls=XRGroup, epilog=_epilog(example), context_settings=SETTINGS)(
            click.version_option(__version__, "--version", prog_name=name, message="%(prog)s %(version)s")(fn))

    return decorate


def subcommand(parent, name, example):
    """Declare a subcommand of ``parent`` (an XRGroup), with the options every command has."""

    def decorate(fn):
        return parent.command(name, epilog=_epilog(example), context_settings=SETTINGS)(
            _common(fn, f"{parent.name} {name}"))

    return decorate


def manifest_input(fn):
    """The ``[MANIFEST]`` argument: a JSON Lines file, or ``-``/nothing for stdin."""
    return click.argument("manifest", default="-", metavar="[MANIFEST]",
                          type=click.Path(dir_okay=False, allow_dash=True))(fn)


def output_option(fn):
    return click.option("-o", "--output", default="-", metavar="FILE",
                        type=click.Path(dir_okay=False, writable=True, allow_dash=True),
                        help="Write records here (atomically) instead of stdout.")(fn)


def device_option(fn):
    return click.option("--device", default="auto", show_default=True,
                        help="auto (CUDA when present), cpu, cuda or cuda:N.")(fn)


def precision_option(fn):
    return click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
                        help="Forward pass arithmetic. auto: float16 autocast on CUDA, float32 on the CPU; bf16: "
                             "bfloat16 autocast (training at 128 px: 1.7-2x faster on CPUs with AMX or AVX512-BF16; "
                             "not float32's numbers within noise); fp32: no autocast, CUDA included.")(fn)


def workers_option(fn):
    return click.option("--workers", type=click.IntRange(0), default=0, show_default=True,
                        help="Processes decoding images alongside (DataLoader workers).")(fn)


def seed_option(fn):
    return click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2 ** 63 - 1),
                        help="Random seed: the same inputs and seed give the same output.")(fn)


def open_input(path):
    """A binary stream and its display name for a path, ``-`` meaning stdin."""
    if path in (None, "-"):
        if sys.stdin.isatty():
            report.info("reading records from stdin (Ctrl-D to end)")
        return sys.stdin.buffer, "<stdin>"
    return open(path, "rb"), path
