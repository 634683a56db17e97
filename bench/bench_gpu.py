"""xr-train on a CUDA device (issue 16 §5): ResNet-18 at 224 px from HDF5, AMP and channels_last.

Prints the training rate of the fastest epoch after the first (images/s, target >= 2,500 on one
H100) and how busy the GPU was during the second epoch (nvidia-smi, sampled every 200 ms, target
> 90 %), then trains once more under torchrun with one process per GPU (NCCL from two GPUs up; a
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
from common import BIN

DRY = os.environ.get("XR_BENCH_GPU") == "cpu"
COUNT, SIZE, BATCH, EPOCHS, WORKERS = (96, 64, 16, 2, 2) if DRY else (12288, 224, 256, 3, 8)
DEVICE = "cpu" if DRY else "cuda"
ENV = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")


def sh(command, **kw):
    return subprocess.run(command, shell=True, check=True, env=ENV, **kw)


def utilisation(metrics, stop):
    """GPU busy % samples taken while ``metrics`` holds exactly one epoch's line (the second epoch)."""
    if DRY or not shutil.which("nvidia-smi"):
        return None
    smi = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                            "-i", "0", "-lms", "200"], stdout=subprocess.PIPE, text=True)
    samples = []

    def epochs_done():
        if not os.path.exists(metrics):
            return 0
        with open(metrics) as f:
            return sum(1 for _ in f)

    def read():
        for line in smi.stdout:
            if line.strip().isdigit() and epochs_done() == 1:
                samples.append(int(line))
            if stop.is_set():
                break

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return smi, samples


def main():
    if not DRY and not torch.cuda.is_available():
        print("no CUDA device here: bench_gpu skipped (XR_BENCH_GPU=cpu checks this script on the CPU)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        sh(f"xr-synth {tmp}/ds -n {COUNT} --size {SIZE} --splits '' -q")
        sh(f"xr-index {tmp}/ds -q | xr-split --val 0.1 -q | xr-preprocess -o {tmp}/d.h5 --size {SIZE} -q "
           f"> {tmp}/m.jsonl")
        with open(f"{tmp}/m.jsonl") as f:
            train = sum(json.loads(line)["split"] == "train" for line in f)
        run_dir, stop = f"{tmp}/run", threading.Event()
        args = f"--model resnet18 --batch-size {BATCH} --workers {WORKERS} --device {DEVICE} --force -q"
        sampler = utilisation(f"{run_dir}/metrics.jsonl", stop)
        sh(f"xr-train {tmp}/m.jsonl {args} --epochs {EPOCHS} --run-dir {run_dir}", stdout=subprocess.DEVNULL)
        stop.set()
        with open(f"{run_dir}/metrics.jsonl") as f:
            seconds = min(json.loads(line)["train_seconds"] for line in list(f)[1:])
        where = "CPU dry run" if DRY else f"{torch.cuda.get_device_name(0)}, AMP + channels_last"
        print(f"resnet18 at {SIZE} px from HDF5, batch {BATCH}, {WORKERS} loader workers, {where}: "
              f"{train / seconds:,.0f} images/s (target >= 2,500 on one H100)", flush=True)
        if sampler is None:
            print("GPU busy: not measured (no nvidia-smi, or the CPU dry run)")
        else:
            smi, samples = sampler
            smi.terminate()
            busy = sum(samples) / len(samples) if samples else float("nan")
            print(f"GPU busy during epoch 2: {busy:.0f} % mean of {len(samples)} samples (target > 90 %)")
        gpus = 1 if DRY else torch.cuda.device_count()
        start = time.perf_counter()
        result = subprocess.run(f"torchrun --standalone --nproc_per_node={min(gpus, 2)} --no-python xr-train "
                                f"{tmp}/m.jsonl {args} --epochs 1 --max-steps 20 --run-dir {tmp}/ddp",
                                shell=True, env={**ENV, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                                check=False)
        how = ("NCCL, 2 processes" if gpus > 1 else
               "1 process: WORLD_SIZE 1 forms no process group, so NCCL is not exercised")
        status = "finished" if result.returncode == 0 else f"FAILED (exit {result.returncode}): {result.stderr[-300:]}"
        print(f"torchrun, {how}: {status} in {time.perf_counter() - start:.0f} s")
        if result.returncode:
            sys.exit(1)


if __name__ == "__main__":
    main()
