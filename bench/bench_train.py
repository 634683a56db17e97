"""xr-train's overhead: one training epoch against a bare PyTorch loop.

Both train the same model (VGG-5, 64 px, built with the same seed), batch 32,
Adam, same threads, over the same 1,024 synthetic images. The bare loop holds
the normalised images in memory as one float tensor and does nothing else;
xr-train reads uint8 rows from HDF5, normalises per batch, and keeps what it
needs for the epoch's metrics. Prints both epoch times and the ratio (target
<= 1.1).
"""

import json
import os
import subprocess
import tempfile
import time

import numpy as np
import torch
from common import BIN, run

MODEL, SIZE, BATCH, EPOCHS = "vgg5", 64, 32, 3


def bare_epoch(x, y, seed):
    from libxr.models import build_model

    torch.manual_seed(seed)
    model = build_model(MODEL, 1, 1, SIZE).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    times = []
    for _ in range(EPOCHS):
        order = torch.randperm(len(x))
        start = time.perf_counter()
        for i in range(0, len(x), BATCH):
            idx = order[i:i + BATCH]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]).reshape(-1), y[idx])
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        run(["xr-synth", os.path.join(tmp, "ds"), "-n", "1280", "--size", str(SIZE), "--splits", "", "-q"])
        manifest = os.path.join(tmp, "m.jsonl")
        subprocess.run(f"xr-index {tmp}/ds -q | xr-split --val 0.2 -q | xr-preprocess -o {tmp}/d.h5 --size {SIZE} -q > {manifest}",
                       shell=True, check=True, env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})
        run(["xr-train", manifest, "--model", MODEL, "--epochs", str(EPOCHS), "--batch-size", str(BATCH),
             "--run-dir", os.path.join(tmp, "run"), "-q"])
        with open(os.path.join(tmp, "run", "metrics.jsonl")) as f:
            ours = min(json.loads(line)["train_seconds"] for line in f)
        with open(manifest) as f:
            train = [r for r in map(json.loads, f) if r["split"] == "train"]
        import h5py

        with h5py.File(os.path.join(tmp, "d.h5")) as f:
            pixels = f["images"][sorted(r["row"] for r in train)]
            mean, std = float(f.attrs["mean"][0]), float(f.attrs["std"][0])
        x = (torch.from_numpy(pixels).float() / 255 - mean) / std
        y = torch.from_numpy(np.array([r["label"] == "PNEUMONIA" for r in sorted(train, key=lambda r: r["row"])],
                                      np.float32))
        bare = bare_epoch(x, y, 0)
    print(f"{MODEL} at {SIZE} px, {len(train)} training images, batch {BATCH}, {torch.get_num_threads()} threads: "
          f"bare loop {bare:.2f} s/epoch, xr-train {ours:.2f} s/epoch; ratio = {ours / bare:.2f} (target <= 1.1)")


if __name__ == "__main__":
    main()
