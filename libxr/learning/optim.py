"""Optimisers and learning-rate schedules by name: a new one is one registry entry.

Entries receive ``torch.optim`` (or its ``lr_scheduler``) when they are called,
so this module — and the choice lists xr-train's options take from it — loads
without torch. Warm-up is torch's LinearLR chained before the schedule with
SequentialLR (timm's scheduler factory does the same); when a schedule steps
(every batch, every epoch, or on a validation metric) is part of its entry, and
:class:`Schedule` is the one object the training loop steps.
"""

OPTIMIZERS = {
    "adam": lambda optim, params, o: optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay),
    "adamw": lambda optim, params, o: optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay),
    "sgd": lambda optim, params, o: optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay),
    "rmsprop": lambda optim, params, o: optim.RMSprop(params, lr=o.lr, momentum=o.momentum,
                                                     weight_decay=o.weight_decay),
}

# name: (build(lr_scheduler, optimizer, options, batches per epoch) or None, when it steps)
SCHEDULERS = {
    "none": (None, "epoch"),
    "step": (lambda s, opt, o, steps: s.StepLR(opt, step_size=max(1, o.epochs // 3), gamma=0.1), "epoch"),
    "cosine": (lambda s, opt, o, steps: s.CosineAnnealingLR(opt, T_max=max(1, o.epochs - o.warmup)), "epoch"),
    "plateau": (lambda s, opt, o, steps: s.ReduceLROnPlateau(opt, mode="max", factor=0.1, patience=2), "metric"),
    # report 003's triangular cyclic learning rate
    "cyclic": (lambda s, opt, o, steps: s.CyclicLR(opt, base_lr=[r / 10 for r in _rates(opt)], max_lr=_rates(opt),
                                                   step_size_up=max(1, steps * 2), mode="triangular",
                                                   cycle_momentum=o.optimizer in ("sgd", "rmsprop")),
               "batch"),
    "onecycle": (lambda s, opt, o, steps: s.OneCycleLR(opt, max_lr=_rates(opt), total_steps=max(1, o.epochs * steps)),
                 "batch"),
}


def _rates(optimizer):
    """Each parameter group's own rate (--lr, or --backbone-lr), which the schedules that set rates scale."""
    return [group["lr"] for group in optimizer.param_groups]


def make_optimizer(opts, params):
    import torch

    return OPTIMIZERS[opts.optimizer](torch.optim, params, opts)


class Schedule:
    """The learning rate over a run: ``opts.scheduler`` after ``opts.warmup`` epochs of linear warm-up.

    Warm-up rises from lr / (warmup + 1) to lr over the first epochs, then the schedule
    starts from lr. Schedules that step every batch (cyclic, onecycle) shape their own start.
    """

    def __init__(self, optimizer, opts, steps_per_epoch, warn=print):
        from torch.optim import lr_scheduler as s

        build, self.steps = SCHEDULERS[opts.scheduler]
        main = build(s, optimizer, opts, steps_per_epoch) if build else None
        warmup = opts.warmup
        if warmup and self.steps == "batch":
            warn(f"--warmup {warmup} is ignored: the {opts.scheduler} schedule shapes its own start")
            warmup = 0
        warm = s.LinearLR(optimizer, 1 / (warmup + 1), 1.0, total_iters=warmup) if warmup else None
        self.warm, self.warmup = warm, warmup
        if warm is not None and main is not None and self.steps == "epoch":
            self.parts = [s.SequentialLR(optimizer, [warm, main], milestones=[warmup])]
        else:
            self.parts = [p for p in (warm, main) if p is not None]

    def after_batch(self):
        if self.steps == "batch":
            self.parts[0].step()

    def after_epoch(self, row):
        """Step epoch schedules; a metric schedule follows val AUC (or, without it, the negated val loss)."""
        if self.steps == "batch" or not self.parts:
            return
        if self.steps == "metric" and (self.warm is None or self.warm.last_epoch >= self.warmup):
            self.parts[-1].step(row.get("val_auc") or -row["val_loss"])
        else:           # an epoch schedule, or the warm-up of a metric one
            self.parts[0].step()

    def state_dict(self):
        return {"parts": [p.state_dict() for p in self.parts]}

    def load_state_dict(self, state):
        for part, saved in zip(self.parts, state["parts"]):
            part.load_state_dict(saved)
