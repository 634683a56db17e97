"""Outputs that appear whole or not at all.

Everything is written to a hidden temporary file beside its destination and
renamed into place on success, so a killed or failing command leaves no file
that looks finished (make never takes a half-written output for up to date).
Only ``kill -9`` leaves the temporary behind; the next run to the same path
removes it (:func:`temporary_beside`).
"""

import contextlib
import errno
import functools
import os
import re
import sys
import tempfile

from libxr.errors import XRError
from libxr.processes import alive

_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
"""Write errors of a full disk, an exhausted quota or a file size limit: named by the output they hit."""


@contextlib.contextmanager
def atomic_output(path, mode="w"):
    """Write to ``path`` through a temporary file renamed into place on success.

    A killed or failing command leaves no file that looks finished, so make
    never takes a half-written output for up to date. ``-`` yields stdout.
    """
    if path in (None, "-"):
        stdout = _Stdout(sys.stdout.buffer if "b" in mode else sys.stdout)
        yield stdout
        stdout.flush()
        return
    fd, tmp = temporary_beside(path)
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as stream:
            yield stream
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and (exc.errno in _FULL and exc.filename is None or exc.filename == tmp):
            exc.filename = path     # "[Errno 28] No space left on device" alone, or a hidden name, says nothing
        raise


class _Stdout:
    """stdout, whose full-disk errors name it: "[Errno 28] No space left on device" alone names no
    file, and naming every such error raised while writing to stdout would blame it for another
    file's (xr-preprocess's HDF5 file on the same disk)."""

    def __init__(self, stream):
        self._stream = stream

    def __getattr__(self, name):
        return getattr(self._stream, name)

    def write(self, data):
        return self._named(self._stream.write, data)

    def flush(self):
        return self._named(self._stream.flush)

    @staticmethod
    def _named(call, *args):
        try:
            return call(*args)
        except OSError as exc:
            if exc.errno in _FULL and exc.filename is None:
                exc.filename = "<stdout>"
            raise


def temporary_beside(path):
    """A hidden temporary file in the folder of ``path`` (same file system, so the
    final rename is atomic): (fd, name).

    The name, ``.NAME.HOST.PID.XXXXXXXX.part``, says which process writes it, so the
    leftovers of runs killed by ``kill -9`` — on this host, whose process is gone — are
    removed here, while a concurrent run's (alive, or on another host sharing the
    folder) are left alone.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise XRError(f"{path}: the folder {directory} does not exist")
    prefix = f".{os.path.basename(path)}.{re.sub(r'[^A-Za-z0-9-]', '-', os.uname().nodename)}."
    _remove_stale(directory, prefix)
    return tempfile.mkstemp(dir=directory, prefix=f"{prefix}{os.getpid()}.", suffix=".part")


def _remove_stale(directory, prefix):
    """Remove ``prefix``PID.*.part files in ``directory`` whose process PID is gone."""
    owned = re.compile(re.escape(prefix) + r"(\d+)\.[a-z0-9_]+\.part")
    for name in os.listdir(directory):
        match = owned.fullmatch(name)
        if match and not alive(int(match.group(1))):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, name))


@functools.cache
def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
