"""xr-train on a CUDA device (issue 16 §5): ResNet-18 at 224 px from HDF5, AMP and channels_last.

Prints the training rate of the fastest epoch after the first (images/s, target >= 2,500 on one
H100) and how busy the GPU was during the second epoch's training steps (nvidia-smi, sampled every
200 ms, target > 90 %), then trains once more under torchrun with one process per GPU (NCCL from two GPUs up; a
single process forms no process group, which the line says). Without CUDA it says so and exits 0.
XR_BENCH_GPU=cpu runs the same steps small on the CPU, to check this script where no GPU is.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import torch
from common import shell, synthetic_h5

DRY = os.environ.get("XR_BENCH_GPU") == "cpu"
COUNT, SIZE, BATCH, EPOCHS, WORKERS = (96, 64, 16, 2, 2) if DRY else (12288, 224, 256, 3, 8)
DEVICE = "cpu" if DRY else "cuda"


class Busy:
    """nvidia-smi's GPU busy %, every 200 ms, with the time and how many epoch rows ``metrics`` holds,
    for as long as the block runs (nvidia-smi is stopped however the block ends)."""

    def __init__(self, metrics):
        self.metrics, self.samples, self.smi = metrics, [], None

    def __enter__(self):
        if not DRY and shutil.which("nvidia-smi"):
            self.smi = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                         "-i", "0", "-lms", "200"], stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)
            threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self):
        for line in self.smi.stdout:
            if line.strip().isdigit():
                self.samples.append((time.monotonic(), int(line), self._rows()))

    def _rows(self):
        if not os.path.exists(self.metrics):
            return 0
        with open(self.metrics) as f:
            return sum(1 for _ in f)

    def __exit__(self, *exc):
        if self.smi:
            self.smi.terminate()
            self.smi.wait()

    def during_training_of(self, row):
        """(mean busy %, samples) over epoch ``row``'s training steps: they end ``seconds -
        train_seconds`` before its row appears (validation and checkpoints come after)."""
        written = next((t for t, _, rows in self.samples if rows >= row["epoch"]), None)
        if written is None:
            return float("nan"), 0
        begin = written - row["seconds"]
        inside = [busy for t, busy, _ in self.samples if begin <= t <= begin + row["train_seconds"]]
        return (sum(inside) / len(inside) if inside else float("nan")), len(inside)


def main():
    if not DRY and not torch.cuda.is_available():
        print("no CUDA device here: bench_gpu skipped (XR_BENCH_GPU=cpu checks this script on the CPU)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        manifest = synthetic_h5(tmp, COUNT, SIZE, val=0.1)
        with open(manifest) as f:
            train = sum(json.loads(line)["split"] == "train" for line in f)
        run_dir = f"{tmp}/run"
        args = f"--model resnet18 --batch-size {BATCH} --workers {WORKERS} --device {DEVICE} --force -q"
        with Busy(f"{run_dir}/metrics.jsonl") as busy:
            shell(f"xr-train {manifest} {args} --epochs {EPOCHS} --run-dir {run_dir}", stdout=subprocess.DEVNULL)
        with open(f"{run_dir}/metrics.jsonl") as f:
            rows = [json.loads(line) for line in f]
        seconds = min(r["train_seconds"] for r in rows[1:])
        where = "CPU dry run" if DRY else f"{torch.cuda.get_device_name(0)}, AMP + channels_last"
        print(f"resnet18 at {SIZE} px from HDF5, batch {BATCH}, {WORKERS} loader workers, {where}: "
              f"{train / seconds:,.0f} images/s (target >= 2,500 on one H100)", flush=True)
        if busy.smi is None:
            print("GPU busy: not measured (no nvidia-smi, or the CPU dry run)")
        else:
            mean, n = busy.during_training_of(rows[1])
            print(f"GPU busy during epoch 2's training steps: {mean:.0f} % mean of {n} samples (target > 90 %)")
        gpus = 1 if DRY else torch.cuda.device_count()
        start = time.perf_counter()
        result = shell(f"OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node={min(gpus, 2)} --no-python "
                       f"xr-train {manifest} {args} --epochs 1 --max-steps 20 --run-dir {tmp}/ddp",
                       capture_output=True, text=True, check=False)
        how = ("NCCL, 2 processes" if gpus > 1 else
               "1 process: WORLD_SIZE 1 forms no process group, so NCCL is not exercised")
        status = "finished" if result.returncode == 0 else f"FAILED (exit {result.returncode}): {result.stderr[-300:]}"
        print(f"torchrun, {how}: {status} in {time.perf_counter() - start:.0f} s")
        if result.returncode:
            sys.exit(1)


if __name__ == "__main__":
    main()
