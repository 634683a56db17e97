"""xr-train's epoch against the bare eager PyTorch loop the reports train with.

Both train the same model (VGG-5 and ResNet-18 at 128 px, built with the same
seed), batch 32, Adam, same threads, over the same 512 synthetic images. The
bare loop holds the normalised images in memory as one float tensor, NCHW, and
does nothing else; xr-train reads uint8 rows from HDF5, normalises per batch,
keeps what it needs for the epoch's metrics, and trains channels_last. Prints
both epoch times and the speed-up (target >= 1.25), and how far the bare loop's
losses move when it too runs channels_last (float noise, not another result).
On a CPU with bfloat16 in hardware (AMX, AVX512-BF16) it also times xr-train
--precision bf16, with no target: its numbers are bfloat16's, not float32's.
"""

import json
import os
import tempfile
import time

import numpy as np
import torch
from common import run, synthetic_h5

from libxr.precision import native_bf16

MODELS, SIZE, BATCH, EPOCHS, COUNT = ("vgg5", "resnet18"), 128, 32, 2, 640


def bare_epochs(model_name, x, y, seed, memory_format=torch.contiguous_format):
    """(fastest epoch's seconds, mean loss per epoch)."""
    from libxr.models import build_model

    torch.manual_seed(seed)
    model = build_model(model_name, 1, 1, SIZE).to(memory_format=memory_format).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    times, losses = [], []
    for _ in range(EPOCHS):
        order = torch.randperm(len(x))
        start, total = time.perf_counter(), 0.0
        for i in range(0, len(x), BATCH):
            idx = order[i:i + BATCH]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]).reshape(-1), y[idx])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        times.append(time.perf_counter() - start)
        losses.append(total / len(x))
    return min(times), losses


def main():
    with tempfile.TemporaryDirectory() as tmp:
        manifest = synthetic_h5(tmp, COUNT, SIZE)
        with open(manifest) as f:
            train = [r for r in map(json.loads, f) if r["split"] == "train"]
        import h5py

        with h5py.File(os.path.join(tmp, "d.h5")) as f:
            pixels = f["images"][sorted(r["row"] for r in train)]
            mean, std = float(f.attrs["mean"][0]), float(f.attrs["std"][0])
        x = (torch.from_numpy(pixels).float() / 255 - mean) / std
        y = torch.from_numpy(np.array([r["label"] == "PNEUMONIA" for r in sorted(train, key=lambda r: r["row"])],
                                      np.float32))
        bf16 = native_bf16(torch.device("cpu"))
        for model in MODELS:
            ours, loss = xr_train(manifest, tmp, model, "fp32")
            bare, _ = bare_epochs(model, x, y, 0)
            last, _ = bare_epochs(model, x, y, 0, torch.channels_last)
            print(f"{model} at {SIZE} px, {len(train)} training images, batch {BATCH}, {torch.get_num_threads()} "
                  f"threads: bare NCHW loop {bare:.2f} s/epoch, xr-train {ours:.2f} s/epoch; speed-up = "
                  f"{bare / ours:.2f}x (target >= 1.25); a bare channels_last loop {last:.2f} s/epoch "
                  f"(xr-train {ours / last:.2f}x its time); channels_last logits differ by {_noise(model, x):.1e} "
                  "(relative)", flush=True)
            if bf16:
                fast, fast_loss = xr_train(manifest, tmp, model, "bf16")
                print(f"  xr-train --precision bf16 {fast:.2f} s/epoch: {bare / fast:.2f}x the bare NCHW loop, "
                      f"{ours / fast:.2f}x xr-train's float32 (no target: bfloat16's numbers); last train loss "
                      f"{fast_loss:.4f} against float32's {loss:.4f}", flush=True)
            else:
                print("  xr-train --precision bf16: not timed, this CPU has no AMX or AVX512-BF16", flush=True)


def xr_train(manifest, tmp, model, precision):
    """(fastest epoch's seconds, last epoch's train loss) of xr-train."""
    run_dir = os.path.join(tmp, f"run-{model}-{precision}")
    run(["xr-train", manifest, "--model", model, "--epochs", str(EPOCHS), "--batch-size", str(BATCH),
         "--precision", precision, "--run-dir", run_dir, "-q"])
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return min(r["train_seconds"] for r in rows), rows[-1]["train_loss"]


def _noise(model_name, x):
    """The largest relative difference between one model's logits NCHW and channels_last: float noise."""
    from libxr.models import build_model

    torch.manual_seed(0)
    model = build_model(model_name, 1, 1, SIZE).eval()
    with torch.no_grad():
        a = model(x[:BATCH])
        b = model.to(memory_format=torch.channels_last)(x[:BATCH])
    return float((a - b).abs().max() / a.abs().max())


if __name__ == "__main__":
    main()
