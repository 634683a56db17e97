"""What xr-train can be asked, without torch: the options and every choice list.

xr-train's command line takes its choices from here, so ``--help`` starts
without torch and a new optimiser, schedule or early-stop metric (one registry
entry where it lives) reaches the command line by itself.
"""

import dataclasses

from libxr.judging.calibration import METHODS as CALIBRATIONS
from libxr.learning.epoch_metrics import EPOCH
from libxr.learning.optim import OPTIMIZERS, SCHEDULERS
from libxr.learning.sampling import SAMPLINGS
from libxr.learning.tta import TTA
from libxr.pixels.files import MAX_PIXELS
from libxr.pixels.fit import FITS
from libxr.precision import PRECISIONS
from libxr.records.tasks import KINDS, UNCERTAIN

EARLY_STOP = tuple(f"val_{name}" for name in EPOCH) + ("val_loss",)
OWN_MODELS = ("cnn", "vgg5", "resnet10", "dense")
"""xr's own networks (libxr.models.OWN), named here so the command line needs no torch."""

__all__ = ["EARLY_STOP", "FITS", "KINDS", "OPTIMIZERS", "PRECISIONS", "SAMPLINGS", "SCHEDULERS", "TTA", "UNCERTAIN",
           "TrainOptions", "run_name"]


@dataclasses.dataclass
class TrainOptions:
    model: str = "resnet18"
    arch: dict = dataclasses.field(default_factory=dict)
    weights: str = "none"
    head: str = "linear"
    dropout: float = 0.0
    freeze: str = None
    unfreeze_every: int = None       # epochs; gradual unfreezing of what freeze froze
    backbone_lr: float = None        # discriminative rates: the head at lr, the rest at this
    task: str = None
    positive: str = None
    uncertain: str = "ignore"
    size: int = 224
    fit: str = "pad"
    channels: tuple = ("gray",)
    max_pixels: int = MAX_PIXELS     # raw images: larger ones are unreadable, never decoded
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
    label_smoothing: float = 0.0
    mixup: float = 0.0               # Beta(alpha, alpha); 0: off
    cutmix: float = 0.0
    mix_prob: float = 1.0            # of mixing a batch at all
    mix_switch: float = 0.5          # of cutmix rather than mixup, when both are on
    ema: float = None                # the decay of the weight average; None: off
    ema_warmup: bool = False
    progressive: int = None          # the first epoch's training size; None: the data's throughout
    progressive_until: float = 0.5   # the fraction of the run by which the data's size is reached
    tta: str = "none"                # validation's test-time augmentation
    calibration: str = "temperature"  # fitted on each epoch's val logits (libxr.judging.calibration)
    early_stop: str = None
    patience: int = 5
    min_delta: float = 0.0
    device: str = "auto"
    precision: str = "auto"          # of the forward pass (libxr.precision)
    workers: int = 0
    seed: int = 0
    group: str = None
    max_steps: int = None            # per epoch; for smoke runs

    def check(self, given=()):
        """Usage errors for choices made outside the command line (Python callers). ``given``: the
        options the command line set (``mix_prob``), so that one set to its default value is seen too."""
        from libxr.errors import UsageError

        for name, value, allowed in (("--optimizer", self.optimizer, OPTIMIZERS),
                                     ("--scheduler", self.scheduler, SCHEDULERS),
                                     ("--early-stop", self.early_stop, EARLY_STOP + (None,)),
                                     ("--tta", self.tta, TTA),
                                     ("--calibration", self.calibration, CALIBRATIONS),
                                     ("--precision", self.precision, PRECISIONS)):
            if value not in allowed:
                raise UsageError(f"{name} {value!r}: use {', '.join(a for a in allowed if a)}")
        if not 0 <= self.label_smoothing < 1:
            raise UsageError(f"--label-smoothing {self.label_smoothing}: from 0 to below 1")
        if self.ema is not None and not 0 < self.ema < 1:
            raise UsageError(f"--ema {self.ema}: a decay between 0 and 1 (0.999, 0.9998)")
        for option, default, needs, needed in (
                ("--mix-prob", 1.0, "--mixup or --cutmix", self.mixup or self.cutmix),
                ("--mix-switch", 0.5, "both --mixup and --cutmix", self.mixup and self.cutmix),
                ("--ema-warmup", False, "--ema", self.ema),
                ("--progressive-until", 0.5, "--progressive", self.progressive)):
            field = option[2:].replace("-", "_")
            if (getattr(self, field) != default or field in given) and not needed:
                raise UsageError(f"{option} takes effect only with {needs}")
        if self.unfreeze_every and self.freeze is None:
            raise UsageError("--unfreeze-every unfreezes what --freeze froze: add --freeze backbone or --freeze N")
        if self.model in OWN_MODELS:     # options of torchvision models, never silently ignored
            if self.weights == "imagenet":
                raise UsageError(f"--weights imagenet: {self.model} is xr's own network and has no ImageNet weights; "
                                 f"--weights FILE starts it from an xr checkpoint of {self.model} (fine-tuning)")
            given = [f"--{name}" for name, default in (("head", "linear"), ("dropout", 0.0), ("freeze", None))
                     if getattr(self, name) != default]
            if given:
                raise UsageError(f"{', '.join(given)}: for torchvision models; {self.model} takes its own options "
                                 "with --arch")


def run_name(opts, size):
    """Report 000's scheme: model, augmentation, size, trainable, batch size, target."""
    trainable = 0 if opts.freeze == "backbone" else 1
    return f"{opts.model}_da{int(opts.augment)}_ts{size}_t{trainable}_bs{opts.batch_size}_{opts.group or 'all'}"
