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
ENV = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
"""The environment the benchmarks run xr's commands in: this interpreter's scripts first on PATH."""


def run(argv, stdout=subprocess.DEVNULL, stdin=None):
    """Run argv; returns (seconds, peak RSS of the child in MB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(argv, stdout=stdout, stdin=stdin, stderr=subprocess.DEVNULL, check=True, env=ENV)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(peak, before) / 1024


def best_of(n, argv, **kw):
    runs = [run(argv, **kw) for _ in range(n)]
    return min(r[0] for r in runs), max(r[1] for r in runs)


def shell(command, check=True, **kw):
    """Run a shell pipeline of xr commands."""
    return subprocess.run(command, shell=True, check=check, env=ENV, **kw)


def synthetic_h5(tmp, count, size, val=0.2):
    """``count`` synthetic films at ``size`` px under ``tmp``, split by patient and preprocessed to
    ``tmp``/d.h5: the HDF5 manifest's path."""
    manifest = os.path.join(tmp, "m.jsonl")
    run(["xr-synth", os.path.join(tmp, "ds"), "-n", str(count), "--size", str(size), "--splits", "", "-q"])
    shell(f"xr-index {tmp}/ds -q | xr-split --val {val} -q | xr-preprocess -o {tmp}/d.h5 --size {size} -q "
          f"> {manifest}")
    return manifest
