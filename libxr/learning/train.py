"""xr-train: one training run, from manifest records to a run directory.

The loop is torchvision's reference recipe cut to what the reports need, one
concern per module beside this one: the data (``data``), an epoch and a
validation pass (``loop``), optimiser and schedule registries (``optim``), early
stopping (``stopping``), the run directory (``rundir``), stop signals
(``signals``). A checkpoint holds model, optimiser, schedule, early-stopping and
RNG states, so ``--resume`` continues exactly where a run stopped.
"""

import math
import os
import platform
import time

import numpy as np
import torch

from libxr import __version__, precision
from libxr.errors import UsageError, XRError
from libxr.judging import calibration, thresholds
from libxr.learning import ema, learned
from libxr.learning.data import Data
from libxr.learning.distributed import World
from libxr.learning.epoch_metrics import EPOCH, calibration_metrics, epoch_metrics
from libxr.learning.finetune import Unfreezing, param_groups
from libxr.learning.loop import Learner, train_one_epoch, validate
from libxr.learning.losses import make_loss
from libxr.learning.mixing import Mixing
from libxr.learning.optim import Schedule, make_optimizer
from libxr.learning.options import run_name
from libxr.learning.rundir import RunDir, plain
from libxr.learning.sampling import epoch_order, without_lone_tail
from libxr.learning.signals import STOPPED, StopSignals
from libxr.learning.stopping import EarlyStopping
from libxr.models import OWN, build_model, check_arch
from libxr.models.transfer import load_pretrained
from libxr.pixels.augment import AugmentOptions, BatchTransform
from libxr.pixels.resizing import check_sizes, progressive_size
from libxr.pixels.sources import changed_sources
from libxr.records.tasks import class_weights, guessed_positive


def _quiet(*args, **kwargs):
    pass


def train(records, opts, run_dir, manifest_sha256=None, argv=None, resume=False, log=print, warn=print,
          tick=_quiet, force=False, lines=None):
    """Train; returns (best checkpoint path — None on ranks other than 0 —, exit status: 0, or
    STOPPED after a signal).

    ``run_dir`` None: ``runs/`` + report 000's name for the run. A run directory that holds a
    run is continued (``resume``, refused when the manifest or model differ) or refused, unless
    ``force``. Under torchrun every process calls this; only rank 0 logs and writes. ``lines``:
    (the manifest's name, {id: line}), so that an error about one record names its FILE:LINE.
    """
    opts.check()
    arch = check_arch(opts.model, opts.arch)
    torch.manual_seed(opts.seed)
    np.random.seed(opts.seed)
    data = Data(records, opts, lines)
    run_dir = run_dir or os.path.join("runs", run_name(opts, data.size))
    world = World(opts.device)
    if not world.main:
        log = warn = tick = _quiet
    for note in data.notes:
        warn(note)
    if note := guessed_positive(data.task, opts.positive):
        warn(note)
    try:
        for note in changed_sources(data.train + data.val):
            warn(note)
        learner, meta = _prepare(data, opts, arch, world, {"argv": argv or [], "manifest_sha256": manifest_sha256},
                                 warn)
        run = RunDir(run_dir, writes=world.main)
        resume, force = _nothing_to_resume(run, resume, force, log, warn)    # before any weights are fetched
        monitor = EarlyStopping(opts.early_stop, opts.patience, opts.min_delta)
        weights = arch.get("weights", opts.weights)
        if weights != "none" and not resume:     # before writing; a resumed run has its own
            load_pretrained(learner.core, opts.model, weights, log, warn)
        with run.locked(warn) as busy:      # from the first write: a second xr-train here is refused
            if world.any(busy)[0]:          # by every process of a torchrun job, not only the one that writes
                raise XRError(f"{run.path} is in use by another xr-train: wait for it to end, or give another "
                              "--run-dir")
            start = _start(run, learner, monitor, meta, resume, force, log, warn)
            status = _epochs(data, opts, learner, monitor, run, meta, start, log, warn, tick)
            if status == 0 and world.main:
                alarming, said = learned.verdict(run.rows, monitor.best)
                if said:
                    (warn if alarming else log)(said)
            run.finish()
        world.barrier()
        return (run.best if world.main else None), status
    finally:
        world.close()


def _prepare(data, opts, arch, world, provenance, warn):
    """The model and its optimisation (a Learner), and what every checkpoint says about the run."""
    device, task = world.device, data.task
    if opts.model not in OWN:
        arch = {"weights": opts.weights, "head": opts.head, "dropout": opts.dropout, "freeze": opts.freeze, **arch}
    options = {k: v for k, v in arch.items() if k != "weights"}       # loaded once the run is known fresh
    core = build_model(opts.model, data.in_channels, task.outputs, data.size, **options).to(device)
    # channels_last weights: each step 1.2-1.6x faster on a CPU too (VGG-5, ResNet-18 at 128 px), same results
    core = core.to(memory_format=torch.channels_last)
    if opts.progressive:
        check_sizes(core, data.in_channels, opts.progressive, data.size, opts.model)
    weights = class_weights(data.y_train, task, opts.class_weights)
    optimizer = make_optimizer(opts, param_groups(core, opts.lr, opts.backbone_lr))
    model = world.wrap(core)
    order = _order(data, opts, task, world, 0, trims=False)
    kept = without_lone_tail(order, opts.batch_size)
    trims = (len(kept) < len(order) and not (opts.max_steps and opts.max_steps < math.ceil(len(order) / opts.batch_size))
             and _one_image_fails(core, data.in_channels, opts.progressive or data.size, device))
    if trims:
        warn(f"each epoch's last batch would hold one image, which {opts.model}'s batch norm cannot train on (its "
             f"maps are 1 x 1): that image is left out of the epoch (another each epoch; --batch-size "
             f"{opts.batch_size} leaves one over{' on each process' if world.size > 1 else ''})")
    steps = math.ceil(len(kept if trims else order) / opts.batch_size)
    steps = min(steps, opts.max_steps) if opts.max_steps else steps
    schedule = Schedule(optimizer, opts, steps, warn)
    augment = AugmentOptions.reference() if opts.augment else AugmentOptions()
    transform = BatchTransform(data.mean, data.std, augment, seed=opts.seed + 7919 * world.rank)
    precision.check(device, opts.precision, warn)
    scaler = torch.amp.GradScaler("cuda", enabled=precision.needs_scaler(device, opts.precision))
    loss_fn = make_loss(task, weights, opts.focal_gamma, opts.label_smoothing)
    average = ema.weight_average(core, opts.ema, opts.ema_warmup) if opts.ema else None
    mixing = Mixing(task, opts.mixup, opts.cutmix, opts.mix_prob, opts.mix_switch) if opts.mixup or opts.cutmix else None
    learner = Learner(model, core, transform, loss_fn, make_loss(task, weights, opts.focal_gamma), optimizer, schedule,
                      scaler, world, steps, average, mixing, trims)
    config = {"options": vars(opts), **provenance, "xr_version": __version__, "torch": torch.__version__,
              "python": platform.python_version(), "device": str(device), "processes": world.size,
              "task": task.to_dict(), "train_records": len(data.train), "val_records": len(data.val),
              "class_weights": None if weights is None else [float(w) for w in weights]}
    meta = {"task": task.to_dict(), "normalization": {"mean": data.mean, "std": data.std},
            "preprocess": data.preprocess, "model_name": opts.model, "arch": plain(arch),
            "in_channels": data.in_channels, "size": data.size, "tta": opts.tta, "config": plain(config)}
    return learner, meta


def _nothing_to_resume(run, resume, force, log, warn):
    """(resume, force) as the run directory allows: ``--resume`` without a ``last.pt`` starts the
    run — a job's first submission, or a run whose first epoch never finished (a full disk) — but a
    directory with more of a run than that is refused unless ``force``."""
    if not resume or run.resumable():
        return resume, force
    if not run.holds_a_run():
        log(f"{run.path} has no finished epoch to resume; starting it")
    elif run.unfinished() or force:
        warn(f"--resume: {run.path} has no finished epoch to resume; starting it afresh")
    else:
        raise UsageError(f"--resume: {run.path} holds a run but no {os.path.basename(run.last)} to continue "
                         "from; --force starts it over")
    return False, True


def _start(run, learner, monitor, meta, resume, force, log, warn):
    """The first epoch to run: 0 for a fresh run, or the one after ``last.pt``'s when resuming."""
    if not resume:
        if run.holds_a_run() and not force:
            raise UsageError(f"{run.path} holds a run already: --resume continues it, --force starts it over "
                             "(its checkpoints and metrics are replaced)")
        run.start(meta["config"])
        return 0
    from libxr.learning import checkpoint

    state, world = checkpoint.load(run.last), learner.world
    differences = checkpoint.differences(state, meta)
    if differences and not force:
        raise UsageError(f"--resume: {run.last} was trained with {'; '.join(differences)} "
                         "(--force continues anyway, a new --run-dir starts afresh)")
    if differences:
        warn(f"--force: continuing {run.last} although it was trained with {'; '.join(differences)}")
    was, now = checkpoint.trained_precision(state), meta["config"]["options"]["precision"]
    if was != now:      # legitimate (another machine), but config.json keeps the first
        warn(f"--resume: {run.last} was trained with --precision {was} up to epoch {state.get('epoch', -1) + 1}; "
             f"the run goes on with --precision {now}")
    try:
        ema.restore(learner.core, learner.ema, state)
        learner.optimizer.load_state_dict(state["optimizer"])
        learner.schedule.load_state_dict(state["schedule"])
        monitor.load_state_dict(state["stopping"])
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise XRError(f"{run.last}: its states do not fit this run ({str(exc).splitlines()[0] or exc!r})") from None
    ranks = state["rng"]["ranks"]
    if world.size == len(ranks):
        torch.set_rng_state(ranks[world.rank]["torch"])
        learner.transform.generator(world.device).set_state(ranks[world.rank]["augment"])
    else:
        warn(f"{run.last} was written by {len(ranks)} processes, this run has {world.size}: "
             "augmentation and dropout draw fresh random numbers")
    run.resume(state, warn)
    if not monitor.should_stop:      # else _epochs says the run was over
        log(f"resuming {run.path} at epoch {state['epoch'] + 2}")
    return state["epoch"] + 1


def _epochs(data, opts, learner, monitor, run, meta, start, log, warn, tick):
    """Epochs ``start`` .. ``opts.epochs`` - 1, each validated and checkpointed; the exit status."""
    task, world = data.task, learner.world
    freeze = meta["arch"].get("freeze", opts.freeze)
    unfreezing = Unfreezing(learner.core, freeze, opts.unfreeze_every) if opts.unfreeze_every else None
    if monitor.should_stop:         # resumed after early stopping had ended it (a requeued job): it is done
        log(f"{monitor.describe()}: the run was over; nothing to resume")
        return 0
    with StopSignals() as signals:
        for epoch in range(start, opts.epochs):
            if unfreezing and (change := unfreezing.apply(epoch)):
                log(change)
            began = time.perf_counter()
            order = _order(data, opts, task, world, epoch, learner.trims)
            size = progressive_size(epoch, opts.epochs, opts.progressive, data.size, opts.progressive_until)
            outcome = train_one_epoch(learner, data.train_set, order, opts, signals, tick, size)
            if outcome == "stopped":
                warn(f"stopped by signal during epoch {epoch + 1}; it is discarded and "
                     f"{'last.pt holds epoch ' + str(epoch) if epoch else 'no epoch was finished'} "
                     f"(exit {STOPPED}); --resume continues")
                return STOPPED
            if outcome == "nonfinite":
                raise _diverged("training", epoch, run)
            train_loss, y_seen, logits_seen = outcome
            row = {"epoch": epoch + 1, "lr": learner.optimizer.param_groups[0]["lr"], "train_loss": train_loss,
                   "train_seconds": round(time.perf_counter() - began, 3)}
            # mixed images have no one label to score against: null, not a number that looks right
            seen = dict.fromkeys(EPOCH) if learner.mixing else epoch_metrics(task, y_seen,
                                                                              task.probabilities(logits_seen))
            row.update({f"train_{k}": v for k, v in seen.items()})
            if opts.progressive:
                row["train_size"] = size
            val_loss, val_logits = validate(learner, data.val_set, opts, task)
            if not math.isfinite(val_loss):      # the epoch's last steps broke the weights
                raise _diverged("validation", epoch, run)
            row["val_loss"] = val_loss
            raw, scores, operating = _calibrate(task, data.y_val, val_logits, opts.calibration,
                                              warn if epoch == start else _quiet)
            row.update({f"val_{k}": v for k, v in epoch_metrics(task, data.y_val, raw).items()})
            row.update({f"val_{k}": v for k, v in calibration_metrics(task, data.y_val, raw, scores).items()})
            if task.kind != "multilabel":       # metrics.jsonl holds numbers; per-label ones are in the checkpoint
                row["temperature"] = operating["temperature"]
                if "shift" in operating:
                    row["shift"] = operating["shift"]
                row["val_predicted_classes"] = learned.predicted_classes(task, scores, operating["threshold"])
            row["seconds"] = round(time.perf_counter() - began, 3)   # training and validation
            learner.schedule.after_epoch(row)
            best = monitor.update(epoch + 1, row)
            rng = world.gather({"torch": torch.get_rng_state(),
                                "augment": learner.transform.generator(world.device).get_state()})
            state = {**meta, **ema.saved(learner.core, learner.ema), "optimizer": learner.optimizer.state_dict(),
                     "schedule": learner.schedule.state_dict(), "stopping": monitor.state_dict(),
                     "epoch": epoch, "best": monitor.best, "rng": {"ranks": rng},
                     # timings stay in metrics.jsonl: the same inputs give the same checkpoint bytes
                     "metrics": plain({k: v for k, v in row.items() if not k.endswith("seconds")}),
                     **operating}
            run.record(state, row, best)
            log(_describe(row))
            if note := learned.stuck(run.rows, opts.patience):
                warn(note)
            if monitor.should_stop:     # before a signal's exit: the run is over either way
                log(monitor.describe())
                break
            if world.any(signals.received is not None)[0]:
                warn(f"stopped by signal after epoch {epoch + 1} (checkpoint saved; exit {STOPPED}); "
                     "--resume continues")
                return STOPPED
    return 0


def _order(data, opts, task, world, epoch, trims):
    """This process's training order for ``epoch``; ``trims``: less a last batch of one image."""
    order = epoch_order(data.y_train, opts.seed, epoch, opts.sampling, task, world.rank, world.size)
    return without_lone_tail(order, opts.batch_size) if trims else order


def _one_image_fails(core, channels, size, device):
    """Whether a training step on one image fails (batch norm over 1 x 1 maps has no variance): a
    forward pass of a copy at the smallest training size, so the model's own state is untouched."""
    import copy

    if not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in core.modules()):
        return False
    probe = copy.deepcopy(core).train()
    try:
        with torch.no_grad():
            probe(torch.zeros(1, channels, size, size, device=device).to(memory_format=torch.channels_last))
    except ValueError:
        return True
    return False


def _calibrate(task, y, logits, method, warn):
    """Validation's raw and calibrated scores, and xr-predict's operating point: the temperature
    (and, under ``platt``, the shift) fitted on ``logits``, Youden's threshold on the calibrated
    scores (the default) and on the raw ones (``xr-predict --no-calibrate``)."""
    raw = task.probabilities(logits)
    temperature, shift = calibration.fit(task, logits, y, method, warn)
    scores = calibration.calibrated(task, logits, temperature, shift)
    point = {"temperature": temperature, "threshold": thresholds.for_task("youden", task, y, scores),
             "threshold_raw": thresholds.for_task("youden", task, y, raw)}
    return raw, scores, point if shift is None else {**point, "shift": shift}


def _diverged(which, epoch, run):
    """The error for a NaN or infinite loss in 0-based ``epoch``: which checkpoint is the last good one."""
    kept = f"the last good checkpoint is {run.last} (epoch {epoch})" if epoch else "no checkpoint was written"
    return XRError(f"the {which} loss became NaN or infinite in epoch {epoch + 1}; {kept} (lower --lr)")


def _describe(row):
    parts = [f"epoch {row['epoch']}"] + [f"{k} {v:.4f}" for k, v in row.items()
                                         if k not in ("epoch", "seconds", "train_seconds", "lr")
                                         and isinstance(v, float)]
    return ", ".join(parts) + f" ({row['seconds']:.1f} s)"
