"""xr-synth: write a synthetic radiograph dataset in any layout xr-index reads."""

import os

import click
from xrtools.cli import command, seed_option
from xrtools.console import report
from xrtools.params import CommaList, Fraction, KeyValue, file_name, once

from libxr.errors import UsageError
from libxr.synth import LAYOUTS, SynthOptions, synthesize

DEFAULT_SPLITS = {"folders": "train=0.8,test=0.2", "csv": "train=0.7,val=0.1,test=0.2",
                  "mura": "train=0.9,val=0.1", "chexpert": "train=0.9,val=0.1",
                  "nih": "train=0.8,test=0.2"}


SPLITS = CommaList(KeyValue(Fraction(), "NAME=FRACTION", keys=("train", "val", "test")))


@command("xr-synth", example="""
xr-synth demo/chest -n 400 --size 128                     # NORMAL / PNEUMONIA folders
xr-synth demo/covid --classes Normal,Covid,"Viral Pneumonia" --weights 2,1,1
xr-synth demo/CheXpert-v1.0-small --layout chexpert -n 1000
xr-index demo/chest --patient-regex 'person(\\d+)_' | xr-split --val 0.1
""")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--layout", type=click.Choice(LAYOUTS), default="folders", show_default=True,
              help="Layout of the dataset written.")
@click.option("-n", "--count", type=click.IntRange(1), default=200, show_default=True, help="Images.")
@click.option("--size", type=click.IntRange(16, 2048), default=128, show_default=True, help="Pixels per side.")
@click.option("--classes", type=CommaList(), default="NORMAL,PNEUMONIA", show_default=True,
              help="folders/csv: class names, the first one normal (no finding).")
@click.option("--weights", type=CommaList(float, positive=True), default="",
              help="folders/csv: relative class frequencies, e.g. 3,1 (default equal).")
@click.option("--prevalence", type=click.FloatRange(0, 1), default=0.2, show_default=True,
              help="chexpert/nih/mura: chance of each finding (mura: half of abnormal studies).")
@click.option("--splits", type=SPLITS, default=None,
              help="Patient fractions per split, e.g. train=0.8,test=0.2 ('' for none); "
                   "defaults per layout.")
@click.option("--workers", type=click.IntRange(1), default=os.cpu_count() or 1, show_default="cores",
              help="Processes drawing images.")
@seed_option
def main(out, layout, splits, quiet, verbose, **options):
    """Write a synthetic dataset to OUT (a new folder) in the chosen layout.

    Images look like radiographs and their labels are learnable: each class or
    finding adds an opacity at its own place; boxes.jsonl gives every finding's
    pixel box under the record id xr-index gives the image.
    """
    if splits is None:
        splits = SPLITS.convert(DEFAULT_SPLITS[layout], None, None)
    once("--classes", options["classes"])
    once("--splits", [name for name, _ in splits])
    if layout == "folders":
        for name in options["classes"]:
            file_name("--classes", name, "a class folder")
    if splits and abs(sum(f for _, f in splits) - 1) > 1e-6:
        raise UsageError(f"--splits: the fractions sum to {sum(f for _, f in splits):g}, not 1")
    opts = SynthOptions(layout=layout, splits=splits or (), **options)
    images = synthesize(out, opts, lambda it, total: report.progress(
        it, total=total, description="drawing", unit="images"))
    report.info(f"wrote {len(images):,} images ({layout} layout) to {out}")

