"""xr-train: train a classifier on a manifest's train split; print the best checkpoint's path."""

import hashlib
import os
import sys

import click
from xrtools.cli import (
    command,
    device_option,
    manifest_input,
    open_input,
    precision_option,
    seed_option,
    workers_option,
)
from xrtools.console import report
from xrtools.params import CommaList, KeyValue, WordOr, max_pixels_option, pixel_options, tta_option, typed

from libxr.errors import UsageError
from libxr.learning.options import (
    CALIBRATIONS,
    EARLY_STOP,
    KINDS,
    OPTIMIZERS,
    SAMPLINGS,
    SCHEDULERS,
    UNCERTAIN,
    TrainOptions,
)
from libxr.records.manifest import read_records


@command("xr-train", example="""
xr-train manifest.jsonl --model resnet18 --epochs 10 --augment > best.txt
xr-train m.jsonl --model cnn --arch layers=5 --arch kernel_growth=funnel_in --class-weights balanced
xr-train m.jsonl --model densenet121 --weights imagenet --freeze backbone --head mlp:1024,512
xr-train m.jsonl --model txv-densenet121 --weights nih-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt
xr-train today.jsonl --model vgg5 --weights runs/yesterday/best.pt     # fine-tune yesterday's model
xr-train m.jsonl --run-dir runs/r1 --resume          # continue after a stop (exit 75)
xr-train m.jsonl --model resnet18 --ema 0.999 --label-smoothing 0.1 --mixup 0.2 --cutmix 1 --progressive 96
xr-train m.jsonl --model resnet18 --precision bf16    # ~2x faster on a CPU with AMX (Xeon 4th gen and later)
torchrun --nproc_per_node=4 --no-python xr-train m.jsonl --batch-size 16   # DDP: 16 per process
""")
@manifest_input
@click.option("--model", default="resnet18", show_default=True,
              help="cnn, vgg5, resnet10, dense, or any torchvision classifier (resnet50, densenet121, ...).")
@click.option("--arch", multiple=True, type=KeyValue(typed), metavar="KEY=VALUE",
              help="Model option, repeatable: cnn layers/kernel_growth/filter_growth/local_pool/global_pool/"
                   "spatial_dropout/dropout/batch_norm/pool_stride, ...")
@click.option("--weights", default="none", show_default=True,
              help="none; imagenet (torchvision's, from the torch cache or downloaded); or a FILE: a state dict, an "
                   "xr checkpoint (any model), a torchxrayvision DenseNet.")
@click.option("--head", default="linear", show_default=True, help="torchvision models: linear or mlp:1024,512.")
@click.option("--dropout", type=float, default=0.0, show_default=True, help="Dropout in the new head.")
@click.option("--freeze", help="backbone, or N: freeze the first N blocks.")
@click.option("--unfreeze-every", type=click.IntRange(1), metavar="N",
              help="Gradual unfreezing: one more frozen block, from the top, trains every N epochs.")
@click.option("--backbone-lr", type=click.FloatRange(0), metavar="LR",
              help="Discriminative rates: the head trains at --lr, the rest of the model at this.")
@click.option("--task", type=click.Choice(KINDS), help="Override the task inferred from the records.")
@click.option("--positive", help="Binary tasks: the positive class.")
@click.option("--uncertain", type=click.Choice(tuple(UNCERTAIN)), default="ignore", show_default=True,
              help="Multi-label: what a remaining -1 label becomes (ignore masks it).")
@pixel_options("Raw images (no HDF5): ")
@max_pixels_option("Raw images (no HDF5): ")
@click.option("--epochs", type=click.IntRange(1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=1e-3, show_default=True)
@click.option("--weight-decay", type=click.FloatRange(0), default=0.0, show_default=True)
@click.option("--optimizer", type=click.Choice(tuple(OPTIMIZERS)), default="adam", show_default=True)
@click.option("--momentum", type=float, default=0.9, show_default=True, help="SGD / RMSprop momentum.")
@click.option("--scheduler", type=click.Choice(tuple(SCHEDULERS)), default="none", show_default=True)
@click.option("--warmup", type=click.IntRange(0), default=0, show_default=True, help="Warm-up epochs.")
@click.option("--class-weights", type=WordOr(("balanced", "none"), CommaList(float)), default="none",
              show_default=True,
              help="balanced (from the data; multi-label: CheXNet positive weights), none, or 1,3.")
@click.option("--sampling", type=click.Choice(SAMPLINGS), default="none", show_default=True,
              help="What an epoch draws: balanced (classes equally likely, with replacement), over (repeat "
                   "minority records up to the majority count), under (a fresh subset down to the minority).")
@click.option("--focal-gamma", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Focal loss exponent (0: plain cross-entropy).")
@click.option("--augment", is_flag=True, help="Rotation ±10°, flip, random resized crop, jitter (report 004).")
@click.option("--label-smoothing", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              metavar="EPS", help="Targets toward uniform: 1/K per class, 0.5 per binary label.")
@click.option("--mixup", type=click.FloatRange(0), default=0.0, show_default=True, metavar="ALPHA",
              help="Blend each batch with itself reversed, share ~ Beta(ALPHA, ALPHA); targets mixed alike.")
@click.option("--cutmix", type=click.FloatRange(0), default=0.0, show_default=True, metavar="ALPHA",
              help="Paste a box of the reversed batch, area ~ Beta(ALPHA, ALPHA); targets mixed by area.")
@click.option("--mix-prob", type=click.FloatRange(0, 1), default=1.0, show_default=True,
              help="Probability that a batch is mixed at all.")
@click.option("--mix-switch", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="With both --mixup and --cutmix: probability of cutmix for a mixed batch.")
@click.option("--ema", type=click.FloatRange(0, 1, min_open=True, max_open=True), metavar="DECAY",
              help="Validate and keep an exponential moving average of the weights (0.999, 0.9998).")
@click.option("--ema-warmup", is_flag=True, help="Ramp the EMA decay up over the first steps (timm's warm-up).")
@click.option("--progressive", type=click.IntRange(8), metavar="START",
              help="Train at START px in the first epoch, rising to the data's size (progressive resizing).")
@click.option("--progressive-until", type=click.FloatRange(0, 1, min_open=True), default=0.5, show_default=True,
              help="Fraction of --epochs by which --progressive reaches the data's size.")
@tta_option("none", "Validate (metrics, threshold, best.pt) with test-time augmentation, as xr-predict scores "
                    "with it: hflip averages each image's and its mirror's probabilities.")
@click.option("--calibration", type=click.Choice(CALIBRATIONS), default="temperature", show_default=True,
              help="Fitted on val after each epoch, applied by xr-predict: temperature scales the logits; "
                   "platt also shifts them (binary, multi-label), undoing the prior shift of --class-weights, "
                   "--sampling or --label-smoothing.")
@click.option("--early-stop", type=click.Choice(EARLY_STOP),
              help="Stop when this metric stops improving; the best checkpoint is kept.")
@click.option("--patience", type=click.IntRange(1), default=5, show_default=True)
@click.option("--min-delta", type=click.FloatRange(0), default=0.0, show_default=True)
@click.option("--group", help="Train only on records of this group (a MURA body part).")
@click.option("--run-dir", type=click.Path(file_okay=False),
              help="Run directory (default runs/ + report 000's name, e.g. resnet18_da1_ts224_t1_bs32_all).")
@click.option("--resume", is_flag=True, help="Continue the run in --run-dir from its last checkpoint.")
@click.option("--force", is_flag=True,
              help="Start over in a --run-dir that holds a run, or --resume one trained on another manifest "
                   "or model.")
@device_option
@precision_option
@workers_option
@click.option("--max-steps", type=click.IntRange(1), help="At most this many batches per epoch.")
@seed_option
def main(manifest, run_dir, resume, force, arch, quiet, verbose, **options):
    """Train a classifier on the records of MANIFEST whose split is train, validating on val.

    Writes a run directory (config.json, metrics.jsonl, curves.png, best.pt,
    last.pt) and prints the best checkpoint's path on stdout.
    """
    from libxr.learning.train import train
    from libxr.models.imagenet import imagenet_file

    if resume and not run_dir:
        raise UsageError("--resume needs the --run-dir to continue")
    stream, name = open_input(manifest)
    digest = hashlib.sha256()
    with stream:
        numbered = list(read_records(_hashing(stream, digest), name, require=("id",), numbered=True, unique=True))
    opts = TrainOptions(arch={key.replace("-", "_"): value for key, value in arch}, **options)
    source = click.get_current_context().get_parameter_source
    opts.check(given={name for name in options if source(name) is click.core.ParameterSource.COMMANDLINE})
    if opts.weights == "imagenet" and not resume and os.environ.get("LOCAL_RANK", "0") == "0":
        # fetched before the training bar, so that a download draws its own; other processes of
        # a torchrun job meet local rank 0 at the process group's rendezvous, after it
        imagenet_file(opts.model, report.info, progress=report.interactive)
    lines = name, {record["id"]: line for line, record in numbered}
    with report.bar("training", unit="images") as tick:
        best, status = train([record for _, record in numbered], opts, run_dir, digest.hexdigest(), sys.argv,
                             resume, report.info, report.warn, tick, force, lines)
    if best and os.path.exists(best):
        print(best)
    return status


def _hashing(stream, digest):
    for line in stream:
        digest.update(line)
        yield line
