"""Training input pipeline: xr (HDF5 + batch transforms) against torchvision ImageFolder.

Both read ../shared/data/chest_xray/train at 224 px, shuffled, batch 64, with the
same number of DataLoader workers, and yield normalised 3 x 224 x 224 float
batches. The baseline is what the reports did: ImageFolder + PIL transforms +
DataLoader. xr reads uint8 rows from the HDF5 file (xr-preprocess, one gray
channel) and normalises — and, with augmentation, rotates (±10°), flips,
crops (random resized, 0.8-1.0) and jitters brightness/contrast — whole
batches with torch ops. Prints both rates and the ratio for each case; on a GPU
also the device augmentation rate.
"""

import json
import os
import sys
import tempfile
import time

import numpy as np
import torch
from common import SHARED, run

BATCH, SIZE, EPOCH_LIMIT = 64, 224, None


def rate(loader, transform=None, train=False, device="cpu"):
    n = 0
    start = time.perf_counter()
    for batch in loader:        # a DataLoader's [images, labels], or xr's Batch: pixels first either way
        x = batch[0]
        if transform is not None:
            # .contiguous(): a real tensor, never a lazy view
            x = transform(x.to(device, non_blocking=True), train=train).contiguous()
        n += len(x)
    if device != "cpu":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def baseline(root, augment, workers):
    import torchvision.transforms as T
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    norm = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    if augment:
        tf = T.Compose([T.RandomResizedCrop(SIZE, scale=(0.8, 1.0)), T.RandomRotation(10), T.RandomHorizontalFlip(),
                        T.ColorJitter(0.1, 0.1), T.ToTensor(), norm])
    else:
        tf = T.Compose([T.Resize((SIZE, SIZE)), T.ToTensor(), norm])
    loader = DataLoader(ImageFolder(root, transform=tf), batch_size=BATCH, shuffle=True, num_workers=workers)
    return rate(loader)


def main():
    from libxr.learning.sampling import epoch_order
    from libxr.pixels.augment import AugmentOptions, BatchTransform
    from libxr.pixels.datasets import H5Batches, batches
    from libxr.pixels.h5store import describe, open_store

    root = SHARED / "chest_xray" / "train"
    if not root.exists():
        sys.exit(f"{root} is absent")
    workers = int(os.environ.get("XR_BENCH_WORKERS", os.cpu_count() or 1))
    with tempfile.TemporaryDirectory() as tmp:
        manifest, h5, out = (os.path.join(tmp, n) for n in ("m.jsonl", "x.h5", "p.jsonl"))
        with open(manifest, "w") as f:
            run(["xr-index", "-q", str(root)], stdout=f)
        run(["xr-preprocess", "-q", manifest, "-o", h5, "--size", str(SIZE), "--manifest", out])
        with open(out) as f:
            rows = [json.loads(line)["row"] for line in f]
        with open_store(h5) as f:
            info = describe(f)
        dataset = H5Batches(h5, rows, np.zeros(len(rows), np.int64))
        rate(batches(dataset, BATCH, epoch_order(range(len(dataset)), 0, 0), workers=0))  # warm the page cache
        for augment in (False, True):
            options = AugmentOptions.reference() if augment else AugmentOptions()
            base = baseline(root, augment, workers)
            label = "with augmentation" if augment else "resize + normalise"
            target = 2 if augment else 10
            print(f"{label}: ImageFolder+PIL {base:,.0f} images/s (3 x {SIZE}^2 float, {workers} workers; "
                  f"target xr >= {target}x)")
            # 1 channel: what xr models take (a pretrained first conv has its RGB weights
            # summed, the same function for gray input); 3: the baseline's tensor, copied out.
            for channels in (1, 3):
                transform = BatchTransform(info["mean"], info["std"], options, out_channels=channels, seed=0)
                ours = max(rate(batches(dataset, BATCH, epoch_order(range(len(dataset)), 0, 0), workers=w), transform, train=augment)
                           for w in sorted({0, workers}))
                print(f"  xr, {channels} x {SIZE}^2 float: {ours:,.0f} images/s; ratio = {ours / base:.1f}x")
        if torch.cuda.is_available():
            transform = BatchTransform(info["mean"], info["std"], AugmentOptions.reference(), out_channels=3)
            x = dataset[np.arange(256) % len(dataset)][0].cuda()
            transform(x, train=True)
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(50):
                transform(x, train=True)
            torch.cuda.synchronize()
            print(f"GPU augmentation at {SIZE} px: {50 * 256 / (time.perf_counter() - start):,.0f} images/s "
                  f"(target >= 20,000)")


if __name__ == "__main__":
    main()
