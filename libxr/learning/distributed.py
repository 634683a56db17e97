"""One training process among several, as torchrun starts them (DDP).

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them this is the
single process it always was. NCCL joins the processes on GPUs, gloo on CPU.
Only rank 0 writes files and logs. Every collective here is entered by every
rank in the same order, so a stop signal or a NaN seen by one process stops
them all at the same batch instead of leaving the others waiting.
"""

import os

import numpy as np
import torch


class World:
    def __init__(self, device_name="auto"):
        self.size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.main = self.rank == 0
        self.device = pick_device(device_name, self.local_rank if self.size > 1 else None)
        if self.size > 1 and not torch.distributed.is_initialized():
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            torch.distributed.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    def wrap(self, model):
        """The model DDP-wrapped when there are several processes."""
        if self.size == 1:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def any(self, *flags):
        """Per flag: whether any process raised it (one small all-reduce)."""
        if self.size == 1:
            return list(flags)
        t = torch.tensor([float(bool(f)) for f in flags], device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return [bool(v) for v in t.tolist()]

    def sum(self, *values):
        if self.size == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def gather(self, value):
        """Every process's ``value``, in rank order (picklable objects)."""
        if self.size == 1:
            return [value]
        out = [None] * self.size
        torch.distributed.all_gather_object(out, value)
        return out

    def concat(self, array):
        return np.concatenate(self.gather(array)) if self.size > 1 else array

    def barrier(self):
        if self.size > 1:
            torch.distributed.barrier()

    def close(self):
        if self.size > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def pick_device(name, local_rank=None):
    """The torch device --device names ("auto": CUDA when present); a process's own GPU under torchrun."""
    from libxr.errors import UsageError

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:        # torch's message lists twenty device types xr has never run on
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {name!r} is not a device: give auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device here")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UsageError(f"--device {name}: there are {torch.cuda.device_count()} CUDA devices here "
                         f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    if name == "cuda" and local_rank is not None:
        return torch.device("cuda", local_rank)
    return device
