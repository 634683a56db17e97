"""xr-train: one training run, from manifest records to a run directory.

The loop is torchvision's reference recipe cut to what the reports need:
``train_one_epoch`` / ``evaluate`` separated, a checkpoint dict of model,
optimiser, scheduler, epoch, configuration and RNG states, ``--resume``.
Inputs come from libxr.loader (HDF5 rows or raw images) as uint8 batches and
are normalised and augmented on the training device (libxr.augment).
"""

import dataclasses
import json
import math
import os
import platform
import signal
import time

import numpy as np
import torch

from libxr import __version__, checkpoint, thresholds
from libxr.augment import AugmentOptions, BatchTransform
from libxr.distributed import World
from libxr.errors import UsageError, XRError
from libxr.loader import H5Batches, ImageBatches, batches
from libxr.losses import make_loss
from libxr.metrics import epoch_metrics, scores_from_logits
from libxr.models import build_model
from libxr.plots import plot_curves
from libxr.sampling import epoch_order
from libxr.tasks import check_training_targets, class_weights, infer_task, targets

STOPPED = 75
"""Exit status after a SIGTERM/SIGUSR1 stop: the last checkpoint is saved; requeue and --resume."""
METRICS = ("val_auc", "val_kappa", "val_f1", "val_accuracy", "val_loss")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULERS = ("none", "step", "cosine", "plateau", "cyclic", "onecycle")


@dataclasses.dataclass
class TrainOptions:
    model: str = "resnet18"
    arch: dict = dataclasses.field(default_factory=dict)
    weights: str = "none"
    head: str = "linear"
    dropout: float = 0.0
    freeze: str = None
    task: str = None
    positive: str = None
    uncertain: str = "ignore"
    size: int = 224
    fit: str = "pad"
    channels: tuple = ("gray",)
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    momentum: float = 0.9
    scheduler: str = "none"
    warmup: int = 0
    class_weights: object = "none"
    sampling: str = "none"
    focal_gamma: float = 0.0
    augment: bool = False
    early_stop: str = None
    patience: int = 5
    min_delta: float = 0.0
    device: str = "auto"
    workers: int = 0
    seed: int = 0
    group: str = None
    max_steps: int = None            # per epoch; for smoke runs


def run_name(opts, size):
    """Report 000's scheme: model, augmentation, size, trainable, batch size, target."""
    trainable = 0 if opts.freeze == "backbone" else 1
    return f"{opts.model}_da{int(opts.augment)}_ts{size}_t{trainable}_bs{opts.batch_size}_{opts.group or 'all'}"


class Data:
    """The train and validation records, their datasets and targets."""

    def __init__(self, records, opts):
        if opts.group:
            records = [r for r in records if r.get("group") == opts.group]
            if not records:
                raise XRError(f"no record has group {opts.group!r}")
        usable = [r for r in records if "error" not in r]
        self.task = infer_task(usable, opts.task, opts.positive)
        self.train = [r for r in usable if r.get("split") == "train"]
        self.val = [r for r in usable if r.get("split") == "val"]
        if not self.train:
            raise XRError("no record has split 'train' (xr-split makes one)")
        if not self.val:
            raise XRError("no record has split 'val': early stopping and checkpoints need one (xr-split --val)")
        self.y_train = targets(self.train, self.task, opts.uncertain)
        self.y_val = targets(self.val, self.task, opts.uncertain)
        check_training_targets(self.y_train, self.task)
        h5 = {r.get("h5") for r in self.train + self.val}
        if len(h5) == 1 and None not in h5:
            from libxr.h5store import describe, open_store

            path = h5.pop()
            with open_store(path) as f:
                info = describe(f)
                shape = f["images"].shape[1:]
            self.preprocess = {**info["params"], "h5": path}
            self.in_channels, self.size = shape[0], shape[1]
            self.mean, self.std = info["mean"].tolist(), info["std"].tolist()
            self.train_set = H5Batches(path, [r["row"] for r in self.train], self.y_train)
            self.val_set = H5Batches(path, [r["row"] for r in self.val], self.y_val)
        elif None in h5 and len(h5) == 1:
            self.preprocess = {"size": opts.size, "fit": opts.fit, "channels": list(opts.channels)}
            self.in_channels, self.size = len(opts.channels), opts.size
            self.train_set = ImageBatches([r["path"] for r in self.train], self.y_train, opts.size, opts.fit,
                                          opts.channels)
            self.val_set = ImageBatches([r["path"] for r in self.val], self.y_val, opts.size, opts.fit,
                                        opts.channels)
            self.mean, self.std = _sample_stats(self.train_set)
        else:
            raise XRError("records point at several HDF5 files, or some at none: preprocess them together")


def _sample_stats(dataset, limit=256):
    """Mean/std per channel from up to ``limit`` training images (raw-image runs)."""
    positions = np.linspace(0, len(dataset) - 1, min(limit, len(dataset))).astype(int)
    x = dataset[positions][0].double() / 255
    return x.mean((0, 2, 3)).tolist(), x.std((0, 2, 3)).tolist()


def _optimizer(opts, params):
    if opts.optimizer == "adam":
        return torch.optim.Adam(params, lr=opts.lr, weight_decay=opts.weight_decay)
    if opts.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=opts.lr, weight_decay=opts.weight_decay)
    if opts.optimizer == "sgd":
        return torch.optim.SGD(params, lr=opts.lr, momentum=opts.momentum, weight_decay=opts.weight_decay)
    if opts.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=opts.lr, momentum=opts.momentum, weight_decay=opts.weight_decay)
    raise UsageError(f"--optimizer {opts.optimizer!r}: use {', '.join(OPTIMIZERS)}")


def _scheduler(opts, optimizer, steps_per_epoch):
    """(scheduler, steps per batch?) — cyclic and one-cycle step every batch, the rest every epoch."""
    s = torch.optim.lr_scheduler
    total = max(1, opts.epochs * steps_per_epoch)
    if opts.scheduler == "none":
        main, per_batch = None, False
    elif opts.scheduler == "step":
        main, per_batch = s.StepLR(optimizer, step_size=max(1, opts.epochs // 3), gamma=0.1), False
    elif opts.scheduler == "cosine":
        main, per_batch = s.CosineAnnealingLR(optimizer, T_max=max(1, opts.epochs - opts.warmup)), False
    elif opts.scheduler == "plateau":
        main, per_batch = s.ReduceLROnPlateau(optimizer, mode="max", factor=0.1, patience=2), False
    elif opts.scheduler == "cyclic":   # report 003's triangular cyclic learning rate
        main = s.CyclicLR(optimizer, base_lr=opts.lr / 10, max_lr=opts.lr, step_size_up=max(1, steps_per_epoch * 2),
                          mode="triangular", cycle_momentum=opts.optimizer in ("sgd", "rmsprop"))
        per_batch = True
    elif opts.scheduler == "onecycle":
        main, per_batch = s.OneCycleLR(optimizer, max_lr=opts.lr, total_steps=total), True
    else:
        raise UsageError(f"--scheduler {opts.scheduler!r}: use {', '.join(SCHEDULERS)}")
    return main, per_batch


class _StopSignals:
    """SIGTERM / SIGUSR1 (SLURM's warning before the time limit) end the run after the
    current batch instead of killing it; ``last.pt`` then holds the last whole epoch, so
    a resumed run is the same as one never stopped."""

    def __init__(self):
        self.received = None
        self.previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, getattr(signal, "SIGUSR1", None)):
            if sig is not None:
                self.previous[sig] = signal.signal(sig, self._note)
        return self

    def _note(self, signum, frame):
        self.received = signum

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        return False


def train(records, opts, run_dir, manifest_sha256=None, argv=None, resume=False, log=print, warn=print,
          tick=lambda n, total=None: None):
    """Train; returns (best checkpoint path — None on ranks other than 0 —, exit status: 0, or
    STOPPED after a signal).

    ``run_dir`` None: ``runs/`` + report 000's name for the run. Under torchrun
    every process calls this; only rank 0 logs and writes.
    """
    if opts.early_stop and opts.early_stop not in METRICS:
        raise UsageError(f"--early-stop {opts.early_stop!r}: use {', '.join(METRICS)}")
    torch.manual_seed(opts.seed)
    np.random.seed(opts.seed)
    data = Data(records, opts)
    run_dir = run_dir or os.path.join("runs", run_name(opts, data.size))
    world = World(opts.device)
    if not world.main:
        log = warn = lambda *a, **k: None
        tick = lambda n, total=None: None
    try:
        return _run(data, opts, world, run_dir, manifest_sha256, argv, resume, log, warn, tick)
    finally:
        world.close()


def _run(data, opts, world, run_dir, manifest_sha256, argv, resume, log, warn, tick):
    device, task = world.device, data.task
    arch = dict(opts.arch)
    if opts.model not in ("cnn", "vgg5", "resnet10", "dense"):
        arch = {"weights": opts.weights, "head": opts.head, "dropout": opts.dropout, "freeze": opts.freeze, **arch}
    model = build_model(opts.model, data.in_channels, task.outputs, data.size, **arch).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    core, model = model, world.wrap(model)
    weights = class_weights(data.y_train, task, opts.class_weights)
    loss_fn = make_loss(task, weights, opts.focal_gamma)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = _optimizer(opts, params)
    steps = math.ceil(len(epoch_order(data.y_train, opts.seed, 0, opts.sampling, task, world.rank, world.size))
                      / opts.batch_size)
    steps = min(steps, opts.max_steps) if opts.max_steps else steps
    scheduler, per_batch = _scheduler(opts, optimizer, steps)
    augment = AugmentOptions.reference() if opts.augment else AugmentOptions()
    transform = BatchTransform(data.mean, data.std, augment, seed=opts.seed + 7919 * world.rank)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    config = {"options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(opts).items()},
              "argv": argv or [], "manifest_sha256": manifest_sha256, "xr_version": __version__,
              "torch": torch.__version__, "python": platform.python_version(), "device": str(device),
              "processes": world.size, "task": task.to_dict(), "train_records": len(data.train),
              "val_records": len(data.val), "class_weights": None if weights is None else [float(w) for w in weights]}
    paths = {n: os.path.join(run_dir, n) for n in ("best.pt", "last.pt", "metrics.jsonl", "config.json")}
    start, best = 0, {"epoch": None, "value": None}
    if resume and not os.path.exists(paths["last.pt"]):
        log(f"{run_dir} has no finished epoch to resume; starting it")
        resume = False
    if resume:
        state = checkpoint.load(paths["last.pt"])
        core.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler"):
            scheduler.load_state_dict(state["scheduler"])
        rng = state["rng"]["ranks"][world.rank] if world.size == len(state["rng"]["ranks"]) else None
        if rng is None:
            warn(f"{paths['last.pt']} was written by {len(state['rng']['ranks'])} processes, this run has "
                 f"{world.size}: augmentation and dropout draw fresh random numbers")
        else:
            torch.set_rng_state(rng["torch"])
            transform._generator(device).set_state(rng["augment"])
        start, best = state["epoch"] + 1, state["best"]
        log(f"resuming {run_dir} at epoch {start + 1}")
    elif world.main:
        os.makedirs(run_dir, exist_ok=True)
        _write_json(paths["config.json"], config)
        with open(paths["metrics.jsonl"], "w", encoding="utf-8"):
            pass
    meta = {"task": task.to_dict(), "normalization": {"mean": data.mean, "std": data.std},
            "preprocess": data.preprocess, "model_name": opts.model, "arch": _plain(arch),
            "in_channels": data.in_channels, "size": data.size, "config": _plain(config)}
    status = 0
    stale = 0
    with _StopSignals() as signals:
        for epoch in range(start, opts.epochs):
            _warmup(optimizer, opts, epoch)
            began = time.perf_counter()
            order = epoch_order(data.y_train, opts.seed, epoch, opts.sampling, task, world.rank, world.size)
            outcome = _train_epoch(model, data, order, opts, world, transform, loss_fn, optimizer, scaler,
                                   scheduler if per_batch else None, steps, signals, tick)
            if outcome == "stopped":
                warn(f"stopped by signal during epoch {epoch + 1}; it is discarded and "
                     f"{'last.pt holds epoch ' + str(epoch) if epoch else 'no epoch was finished'} "
                     f"(exit {STOPPED}); --resume continues")
                status = STOPPED
                break
            if outcome == "nonfinite":
                raise XRError(f"the loss became NaN or infinite in epoch {epoch + 1}; the last good checkpoint "
                              f"is {paths['last.pt'] if epoch else 'not written yet'} (lower --lr)")
            train_loss, y_seen, logits_seen = outcome
            row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": train_loss,
                   "train_seconds": round(time.perf_counter() - began, 3)}
            row.update({f"train_{k}": v for k, v in epoch_metrics(
                task, y_seen, scores_from_logits(logits_seen, task)).items()})
            val_loss, val_scores = evaluate(core, data.val_set, opts, device, transform, loss_fn, task)
            row["val_loss"] = val_loss
            row.update({f"val_{k}": v for k, v in epoch_metrics(task, data.y_val, val_scores).items()})
            row["seconds"] = round(time.perf_counter() - began, 3)   # training and validation
            if scheduler is not None and not per_batch:
                if opts.scheduler == "plateau":
                    scheduler.step(row.get("val_auc") or -row["val_loss"])
                elif epoch >= opts.warmup:
                    scheduler.step()
            monitor = opts.early_stop or "val_loss"
            value = row.get(monitor)
            improved = _improved(value, best["value"], monitor, opts.min_delta)
            if improved:
                best = {"epoch": epoch + 1, "value": value, "metric": monitor}
            rng = world.gather({"torch": torch.get_rng_state(), "augment": transform._generator(device).get_state()})
            if world.main:
                state = {**meta, "model": core.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict() if scheduler is not None else None,
                         "epoch": epoch, "best": best, "metrics": _plain(row), "rng": {"ranks": rng},
                         # xr-predict's default operating point: Youden's on validation
                         "threshold": thresholds.for_task("youden", task, data.y_val, val_scores)}
                checkpoint.save(state, paths["last.pt"])
                if improved:
                    checkpoint.save(state, paths["best.pt"])
                with open(paths["metrics.jsonl"], "a", encoding="utf-8") as f:
                    f.write(json.dumps(_plain(row)) + "\n")
            log(_describe(row))
            stale = 0 if improved else stale + 1
            if world.any(signals.received is not None)[0]:
                warn(f"stopped by signal after epoch {epoch + 1} (checkpoint saved; exit {STOPPED}); "
                     "--resume continues")
                status = STOPPED
                break
            if opts.early_stop and stale >= opts.patience:
                log(f"early stop: {monitor} did not improve for {opts.patience} epochs (best {best['value']:.4f} "
                    f"at epoch {best['epoch']})")
                break
    if world.main:
        plot_curves(paths["metrics.jsonl"], os.path.join(run_dir, "curves.png"))
    world.barrier()
    return (paths["best.pt"] if world.main else None), status


def _warmup(optimizer, opts, epoch):
    if opts.warmup and epoch < opts.warmup and opts.scheduler not in ("cyclic", "onecycle"):
        for group in optimizer.param_groups:
            group["lr"] = opts.lr * (epoch + 1) / (opts.warmup + 1)


def _train_epoch(model, data, order, opts, world, transform, loss_fn, optimizer, scaler, batch_scheduler, steps,
                 signals, tick):
    """(mean loss, targets, logits) over every process's batches, or "stopped" / "nonfinite"."""
    device = world.device
    model.train()
    tick(0, min(len(order), steps * opts.batch_size))
    losses, ys, outs = [], [], []
    for step, (x, y) in enumerate(batches(data.train_set, opts.batch_size, order, workers=opts.workers)):
        if step >= steps:
            break
        x, y = transform(x.to(device, non_blocking=True), train=True), y.to(device, non_blocking=True)
        with torch.autocast(device.type, enabled=device.type == "cuda"):
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        # one small all-reduce a batch tells every process of a stop signal or a NaN anywhere
        stopped, nonfinite = world.any(signals.received is not None, not torch.isfinite(loss))
        if stopped:
            return "stopped"
        if nonfinite:
            return "nonfinite"
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if batch_scheduler is not None:
            batch_scheduler.step()
        losses.append(loss.item() * len(x))
        ys.append(y.cpu().numpy())
        outs.append(logits.detach().float().cpu().numpy())
        tick(len(x))
    total, n = world.sum(sum(losses), sum(len(y) for y in ys))
    return total / max(n, 1), world.concat(np.concatenate(ys)), world.concat(np.concatenate(outs))


@torch.no_grad()
def evaluate(model, dataset, opts, device, transform, loss_fn, task):
    """(mean loss, scores) over ``dataset``, in order, without augmentation."""
    model.eval()
    losses, outs, n = 0.0, [], 0
    for x, y in batches(dataset, opts.batch_size, workers=opts.workers):
        x, y = transform(x.to(device)), y.to(device)
        with torch.autocast(device.type, enabled=device.type == "cuda"):
            logits = model(x).float()
        losses += loss_fn(logits, y).item() * len(x)
        n += len(x)
        outs.append(logits.cpu().numpy())
    return losses / max(n, 1), scores_from_logits(np.concatenate(outs), task)


def _improved(value, best, metric, min_delta):
    if value is None:
        return False
    if best is None:
        return True
    return value < best - min_delta if metric == "val_loss" else value > best + min_delta


def _describe(row):
    parts = [f"epoch {row['epoch']}"] + [f"{k} {v:.4f}" for k, v in row.items()
                                         if k not in ("epoch", "seconds", "train_seconds", "lr")
                                         and isinstance(v, float)]
    return ", ".join(parts) + f" ({row['seconds']:.1f} s)"


def _plain(value):
    """Only what ``torch.load(weights_only=True)`` and JSON accept."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, str):
        return str(value)   # e.g. torch.__version__ is a str subclass weights_only refuses
    return value


def _write_json(path, value):
    from libxr.atomic import atomic_output

    with atomic_output(path) as f:
        json.dump(_plain(value), f, indent=2)
        f.write("\n")
