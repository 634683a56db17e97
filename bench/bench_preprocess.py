"""xr-preprocess against the bare floor, side by side in one run.

The floor: a program whose process pool (same number of processes) only opens,
converts to grayscale and resizes the same files with Pillow, and throws the
pixels away.
xr-preprocess also fits (keeping the aspect ratio), writes HDF5, computes the
train mean/std and writes the manifest — timed end to end, start-up included.

Data: chest_xray (small files), covid19-3class (640 px), and large radiographs —
the COVID images upscaled to 2,048 px on the long side, as 8-bit gray JPEG and
PNG, each file listed REPEAT times (both programs read them from the page cache).
Prints each ratio xr/floor with its target, the pixel difference between the
default (reduced first) and --exact-resize paths on the large images, and
xr-preprocess's peak memory at two N.
"""

import json
import multiprocessing
import os
import subprocess
import sys
import tempfile

import numpy as np
from common import BIN, SHARED, run

SIZE = 224
ROUNDS = 5
LARGE, LONG_SIDE, REPEAT = 48, 2048, 10


FLOOR = r"""
import json, multiprocessing, sys
from PIL import Image

def one(path):
    with Image.open(path) as image:
        image.convert("L").resize((SIZE, SIZE), Image.Resampling.BILINEAR)

with open(sys.argv[1]) as f:
    paths = [json.loads(line)["path"] for line in f]
with multiprocessing.get_context("fork").Pool(int(sys.argv[2])) as pool:
    pool.map(one, paths, chunksize=16)
""".replace("SIZE", str(SIZE))

PEAK = r"""
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def ours(manifest, tmp, workers, i, *extra):
    """xr-preprocess of ``manifest``: (seconds, peak MB). New names each run: replacing a file makes
    ext4 flush it first (auto_da_alloc), a cost of re-runs that says nothing about decoding speed."""
    h5 = os.path.join(tmp, f"x{i}.h5")
    result = run(["xr-preprocess", "-q", manifest, "-o", h5, "--size", str(SIZE), "--workers", str(workers),
                  "--manifest", os.path.join(tmp, f"out{i}.jsonl"), *extra])
    os.unlink(h5)
    return result


def compare(manifest, tmp, workers, rounds=ROUNDS):
    """Best seconds of the floor and of xr-preprocess, taking turns so that both see the same
    machine (shared hosts drift by 20 % in a minute)."""
    floor, xr = [], []
    for i in range(rounds):
        floor.append(run([sys.executable, "-c", FLOOR, manifest, str(workers)])[0])
        xr.append(ours(manifest, tmp, workers, i)[0])
    return min(floor), min(xr)


def peak_mb(manifest, tmp, workers):
    """The largest resident set of xr-preprocess or any of its workers, in MB, in a run of its own."""
    h5 = os.path.join(tmp, "peak.h5")
    out = subprocess.run([sys.executable, "-c", PEAK, str(BIN / "xr-preprocess"), "-q", manifest, "-o", h5,
                          "--size", str(SIZE), "--workers", str(workers), "--manifest", os.devnull],
                         check=True, capture_output=True, text=True).stdout
    os.unlink(h5)
    return int(out) / 1024


def index(root, manifest):
    with open(manifest, "w") as out:
        run(["xr-index", "-q", str(root)], stdout=out)
    with open(manifest) as f:
        return sum(1 for _ in f)


def _upscale(job):
    source, stem = job
    from PIL import Image

    with Image.open(source) as image:
        gray = image.convert("L")
    scale = LONG_SIDE / max(gray.size)
    big = gray.resize((round(gray.width * scale), round(gray.height * scale)), Image.Resampling.BICUBIC)
    big.save(stem + ".jpg", quality=90)
    big.save(stem + ".png")


def large_set(tmp, workers):
    """LARGE COVID images upscaled to LONG_SIDE px, as JPEG and PNG: {suffix: the files}."""
    sources = sorted(os.path.join(d, f) for d, _, files in os.walk(SHARED / "covid19-3class") for f in files
                     if f.lower().endswith((".jpg", ".jpeg", ".png")))
    sources = sources[::max(1, len(sources) // LARGE)][:LARGE]
    stems = [os.path.join(tmp, f"film{i:03d}") for i in range(len(sources))]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pool.map(_upscale, zip(sources, stems))
    return {suffix: [stem + suffix for stem in stems] for suffix in (".jpg", ".png")}


def write_manifest(path, files, repeat):
    with open(path, "w") as out:
        out.writelines(json.dumps({"id": f"{k}/{i}", "path": file, "split": "train"}) + "\n"
                       for k in range(repeat) for i, file in enumerate(files))
    return len(files) * repeat


def tolerance(files):
    """(mean, largest) absolute difference, in grey levels, of the default pixels from --exact-resize's."""
    from libxr.pixels.prepare import prepare_array

    diffs = [np.abs(prepare_array(f, SIZE, "pad", ("gray",)).astype(int)
                    - prepare_array(f, SIZE, "pad", ("gray",), exact=True)) for f in files]
    return float(np.mean([d.mean() for d in diffs])), int(max(d.max() for d in diffs))


def report(name, n, workers, bare, xr, target):
    print(f"{name}: {n} images, {workers} processes: floor {n / bare:,.0f} images/s, "
          f"xr-preprocess {n / xr:,.0f} images/s; ratio xr/floor = {bare / xr:.2f} ({target})", flush=True)


def main():
    workers = int(os.environ.get("XR_BENCH_WORKERS", os.cpu_count() or 1))
    for name, target in (("chest_xray", "target >= 1.0"), ("covid19-3class", "no target")):
        root = SHARED / name
        if not root.exists():
            print(f"{root} is absent: skipped")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            manifest = os.path.join(tmp, "m.jsonl")
            n = index(root, manifest)
            report(f"{name} (small files)" if name == "chest_xray" else name, n, workers,
                   *compare(manifest, tmp, workers), target)
    if not (SHARED / "covid19-3class").exists():
        return
    with tempfile.TemporaryDirectory() as tmp:
        files = large_set(tmp, workers)
        what = f"{len(files['.jpg'])} COVID images upscaled to {LONG_SIDE:,} px, each {REPEAT} times"
        for suffix, label in ((".jpg", "JPEG"), (".png", "PNG")):
            manifest = os.path.join(tmp, f"large{suffix}.jsonl")
            n = write_manifest(manifest, files[suffix], REPEAT)
            report(f"large {label} ({what})", n, workers, *compare(manifest, tmp, workers, rounds=3), "target >= 2")
        for suffix, label in ((".jpg", "JPEG"), (".png", "PNG")):
            mean, largest = tolerance(files[suffix][:16])
            print(f"pixels, default against --exact-resize, 16 large {label}: mean |difference| {mean:.2f} grey "
                  f"levels (tolerance <= 1), largest {largest} (tolerance <= 16)", flush=True)
        peaks = []
        for repeat in (1, REPEAT):
            manifest = os.path.join(tmp, f"memory{repeat}.jsonl")
            peaks.append((write_manifest(manifest, files[".jpg"], repeat), peak_mb(manifest, tmp, workers)))
        print("peak memory of xr-preprocess (any one process), large JPEG: "
              + ", ".join(f"{mb:.0f} MB at N = {n}" for n, mb in peaks) + " (target: flat in N)")


if __name__ == "__main__":
    sys.exit(main())
