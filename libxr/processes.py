"""Whether a process is still running, for what a ``kill -9`` leaves behind: the
temporary files of a killed run (libxr.atomic) and the pool workers of a killed
xr-preprocess (libxr.pixels.preprocess), which must not outlive it."""

import os


def alive(pid):
    """Whether process ``pid`` runs on this host. A zombie (dead, not yet reaped) does not;
    a process of another user does."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] != b"Z"
    except FileNotFoundError:
        return False
    except OSError:                  # no /proc (macOS): signal 0 only asks
        pass
    if os.name != "posix":           # elsewhere os.kill(pid, 0) would terminate the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
