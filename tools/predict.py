"""xr-predict: score manifest records with a trained checkpoint; records with `scores`/`pred` to stdout."""

import click
from xrtools.cli import (
    command,
    device_option,
    manifest_input,
    open_input,
    output_option,
    precision_option,
    workers_option,
)
from xrtools.console import report
from xrtools.params import max_pixels_option, tta_option

from libxr.atomic import atomic_output
from libxr.errors import UsageError, XRError
from libxr.records.manifest import read_records, write_records


@command("xr-predict", example="""
xr-predict -m runs/r1/best.pt test.jsonl | xr-eval
xr-index incoming/ | xr-predict -m "$(cat best.txt)" --tta hflip > scored.jsonl   # raw images, no HDF5 step
xr-predict -m best.pt m.jsonl --threshold 0.3 --batch-size 128 --workers 4 -o scored.jsonl
""")
@manifest_input
@click.option("-m", "--model", "checkpoint", required=True, type=click.Path(dir_okay=False),
              help="An xr-train checkpoint (best.pt); read without running pickled code.")
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@tta_option(None, "Test-time augmentation: hflip averages the image's and its mirror's probabilities "
                  "(default: the checkpoint's, what its threshold was chosen with; see xr-train --tta).")
@click.option("--threshold", type=click.FloatRange(0, 1),
              help="Binary and multi-label decisions: positive at or above this probability "
                   "(default: the checkpoint's — Youden's on validation — else 0.5).")
@click.option("--no-calibrate", is_flag=True,
              help="Raw scores: without the checkpoint's temperature and shift (and with the threshold chosen "
                   "on raw scores).")
@click.option("--strict", is_flag=True,
              help="Exit 1, scoring nothing more, at the first unreadable image, a record that already has an "
                   "`error` (xr-preprocess's), or a source image changed since it was preprocessed.")
@max_pixels_option("Raw images: ")
@device_option
@precision_option
@workers_option
@output_option
def main(manifest, checkpoint, batch_size, tta, threshold, no_calibrate, strict, max_pixels, device, precision, workers,
         output, quiet, verbose):
    """Add `scores` (per-class probabilities) and `pred` to every record of MANIFEST.

    HDF5-backed records are read from their file (it must have been made with
    the training settings); other records are decoded from `path` with the
    checkpoint's preprocessing. Scores are calibrated with the checkpoint's
    temperature (and shift, xr-train --calibration platt), which each record
    carries in `temperature` (and `shift`). An unreadable image
    gives its record an `error` field and no scores, and the run goes on. Records
    keep their order and fields.
    """
    from libxr.pixels.sources import changed_sources
    from libxr.precision import check as check_precision
    from libxr.predicting.classifier import Classifier
    from libxr.predicting.predict import predict

    clf = Classifier(checkpoint, device, calibrate=not no_calibrate, log=report.info, precision=precision)
    check_precision(clf.device, precision, report.warn)
    if clf.trained_precision == "bf16" and precision != "bf16":
        report.info(f"{checkpoint} was validated in bfloat16 (xr-train --precision bf16); these scores are "
                    "float32's, a little apart from those its threshold was chosen on (--precision bf16 scores alike)")
    if threshold is not None and clf.task.kind == "multiclass":
        raise UsageError(f"--threshold: {checkpoint} is multiclass, decided by the most probable class")
    tta = tta or clf.tta
    if tta != clf.tta and threshold is None and clf.task.kind != "multiclass":
        report.warn(f"--tta {tta}: {checkpoint}'s threshold was chosen on validation scores with --tta {clf.tta}; "
                    "these scores are not those (--threshold sets one)")
    stream, name = open_input(manifest)
    with stream:
        numbered = list(read_records(stream, name, unique=True, numbered=True))
    records = [rec for _, rec in numbered]
    if not records:
        raise XRError(f"{name}: no records to score (the manifest is empty)")
    problems = _inherited_errors(numbered, name) + changed_sources(records)
    if strict and problems:
        raise XRError(f"--strict: {problems[0]}")
    for note in problems:
        report.warn(note)
    failed = []
    with atomic_output(output) as out, report.bar("scoring", unit="images", total=len(records)) as tick:
        scored = predict(records, clf, batch_size, tta, threshold, workers, strict, tick, failed.append, max_pixels)
        n = write_records(scored, out)
    cut = threshold if threshold is not None else clf.threshold
    report.info(f"scored {n - len(failed) - sum('error' in r for r in records)} of {n} records with "
                f"{checkpoint} ({clf.task.kind}: {', '.join(clf.task.names)}"
                f"{'' if clf.task.kind == 'multiclass' else '; threshold ' + _shown(cut)}; "
                f"{'raw scores' if clf.temperature is None else 'temperature ' + _shown(clf.temperature)}"
                f"{'' if clf.shift is None else '; shift ' + _shown(clf.shift)}"
                f"{'' if tta == 'none' else '; tta ' + tta})")
    if failed:
        report.warn(f"{len(failed)} images could not be read and have an `error` field; the first: {failed[0]}")


def _inherited_errors(numbered, name):
    """The line that says how many records came with an `error` (images xr-preprocess could not
    read: they pass through unscored), naming the first by FILE:LINE; [] when none did."""
    failed = [(line, rec) for line, rec in numbered if "error" in rec]
    if not failed:
        return []
    line, rec = failed[0]
    return [f"{len(failed)} records have an `error` and are passed on unscored (first {name}:{line}: {rec['error']})"]


def _shown(value):
    """A number, or one per label, to 3 decimals."""
    return f"{value:.3f}" if isinstance(value, (int, float)) else ", ".join(f"{v:.3f}" for v in value)
