"""Helpers for the benchmarks: run a command, time it, read its peak memory."""

import os
import pathlib
import resource
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
BIN = pathlib.Path(sys.executable).parent


def run(argv, stdout=subprocess.DEVNULL, stdin=None):
    """Run argv; returns (seconds, peak RSS of the child in MB)."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(argv, stdout=stdout, stdin=stdin, stderr=subprocess.DEVNULL, check=True, env=env)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(peak, before) / 1024


def best_of(n, argv, **kw):
    runs = [run(argv, **kw) for _ in range(n)]
    return min(r[0] for r in runs), max(r[1] for r in runs)
