"""xr-predict's speed: images/s against a bare batched forward loop.

Both score the same 2,000 synthetic films at 128 px with the same checkpoint
(VGG-5), batch 64, same threads. The bare loop holds the normalised images in
memory as one float tensor and only runs the model; xr-predict reads uint8
rows from the HDF5 file, normalises each batch, and builds every output record
with `scores` and `pred`. Prints both rates and the ratio (target >= 0.9), for
the library call and for the whole command (process start and model load
included).
"""

import os
import subprocess
import tempfile
import time

import torch
from common import BIN, run

SIZE, BATCH, COUNT, REPEATS = 128, 64, 2000, 3


def bare_rate(model, x):
    best = float("inf")
    with torch.no_grad():
        for _ in range(REPEATS):
            start = time.perf_counter()
            for i in range(0, len(x), BATCH):
                torch.sigmoid(model(x[i:i + BATCH]))
            best = min(best, time.perf_counter() - start)
    return len(x) / best


def main():
    from libxr.predicting.classifier import Classifier
    from libxr.predicting.predict import predict
    from libxr.records.manifest import read_records

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
        run(["xr-synth", os.path.join(tmp, "ds"), "-n", str(COUNT), "--size", str(SIZE), "--splits", "", "-q"])
        manifest = os.path.join(tmp, "m.jsonl")
        subprocess.run(f"xr-index {tmp}/ds -q | xr-split --val 0.2 -q | xr-preprocess -o {tmp}/d.h5 --size {SIZE} -q > {manifest}",
                       shell=True, check=True, env=env)
        run(["xr-train", manifest, "--model", "vgg5", "--epochs", "1", "--max-steps", "2", "--run-dir",
             os.path.join(tmp, "run"), "-q"])
        ckpt = os.path.join(tmp, "run", "best.pt")
        with open(manifest, "rb") as f:
            records = list(read_records(f))
        clf = Classifier(ckpt, "cpu")
        ours = 0.0
        for _ in range(REPEATS):
            start = time.perf_counter()
            n = sum(1 for _ in predict(records, clf, BATCH))
            ours = max(ours, n / (time.perf_counter() - start))
        command = min(run(["xr-predict", "-m", ckpt, manifest, "--batch-size", str(BATCH), "-q"])[0]
                      for _ in range(REPEATS))
        import h5py

        with h5py.File(os.path.join(tmp, "d.h5")) as f:
            pixels = torch.from_numpy(f["images"][:])
        x = clf.transform(pixels)
        bare = bare_rate(clf.model, x)
    print(f"vgg5 at {SIZE} px, {len(records)} images, batch {BATCH}, {torch.get_num_threads()} threads: "
          f"bare forward loop {bare:,.0f} images/s, xr-predict (library) {ours:,.0f} images/s, ratio = "
          f"{ours / bare:.2f} (target >= 0.9); the whole command {len(records) / command:,.0f} images/s "
          f"({command:.1f} s with start-up and model load), ratio = {len(records) / command / bare:.2f}")


if __name__ == "__main__":
    main()
