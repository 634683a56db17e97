"""xr-preprocess: decode every image once into an HDF5 file; records to stdout."""

import os
import time

import click
from xrtools.cli import command, open_input
from xrtools.console import report
from xrtools.params import Shard, max_pixels_option, pixel_options

from libxr.atomic import atomic_output
from libxr.errors import UsageError
from libxr.pixels.preprocess import PreprocessOptions, merge_shards, preprocess


@command("xr-preprocess", example="""
xr-index data/ | xr-split --val 0.1 | xr-preprocess -o data.h5 > manifest.jsonl
xr-preprocess all.jsonl -o data.h5 --size 320 --fit crop --channels gray,clahe,equalize
# SLURM array task I of 8, then one merge (no pixel copied):
xr-preprocess all.jsonl --shard $SLURM_ARRAY_TASK_ID/8 -o part$SLURM_ARRAY_TASK_ID.h5 > part$SLURM_ARRAY_TASK_ID.jsonl
xr-preprocess --merge -o data.h5 part*.jsonl > manifest.jsonl
# nightly: decode only new or changed images, copy the others' rows from last night's file
xr-preprocess all.jsonl -o data.h5 --update data.h5 > manifest.jsonl
""")
@click.argument("manifests", nargs=-1, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("-o", "--output", "h5", required=True, type=click.Path(dir_okay=False),
              help="The HDF5 file to write (atomically).")
@pixel_options()
@max_pixels_option()
@click.option("--compression", type=click.Choice(("none", "gzip", "lzf")), default="none", show_default=True,
              help="HDF5 compression of the pixels (none reads fastest).")
@click.option("--exact-resize", is_flag=True,
              help="Decode at full size and resample in one bilinear step, as a plain Pillow loop does; "
                   "slower on large images (default: JPEG DCT scaling and integer reduction to twice "
                   "the size first, within about a grey level).")
@click.option("--workers", type=click.IntRange(1), default=os.cpu_count() or 1, show_default="cores",
              help="Processes decoding images.")
@click.option("--shard", type=Shard(), metavar="I/N", help="Process only slice I of N of the manifest.")
@click.option("--merge", is_flag=True, help="Join shard manifests and their files into -o (virtual dataset).")
@click.option("--root", type=click.Path(file_okay=False), help="Folder relative image paths are under.")
@click.option("--manifest", "records_out", default="-", type=click.Path(dir_okay=False, allow_dash=True),
              help="Write the records here (atomically) instead of stdout.")
@click.option("--strict", is_flag=True,
              help="Exit 1 if any image could not be read, writing neither the HDF5 file nor records.")
@click.option("--update", metavar="OLD.h5", type=click.Path(dir_okay=False),
              help="Copy the rows of images unchanged since OLD.h5 was written (same id, size and mtime) "
                   "instead of decoding them; OLD.h5 may be -o itself, and need not exist yet.")
def main(manifests, h5, size, fit, channels, max_pixels, compression, exact_resize, workers, shard, merge,
         root, records_out, strict, update, quiet, verbose):
    """Decode the images of MANIFEST once into one HDF5 file (-o) of uint8 (N, C, H, W) pixels.

    Records go to stdout with `h5` and `row` added once the file is complete; an
    image that cannot be read gets an `error` field instead and no row.
    """
    if merge:
        if update:
            raise UsageError("--update re-uses decoded rows; --merge decodes nothing")
        return _merge(manifests, h5, records_out)
    if len(manifests) > 1:
        raise UsageError("one manifest at a time (several only with --merge)")
    if manifests and manifests[0] != "-" and os.path.exists(h5) and os.path.samefile(manifests[0], h5):
        raise UsageError(f"-o {h5} is the manifest being read: name the HDF5 file another way")
    if shard and (not manifests or manifests[0] == "-"):
        raise UsageError("--shard needs the manifest as a file, so every task reads the same records")
    opts = PreprocessOptions(size=size, fit=fit, channels=channels, max_pixels=max_pixels, workers=workers,
                             shard=shard, root=root, compression=None if compression == "none" else compression,
                             strict=strict, update=update, exact_resize=exact_resize)
    stream, name = open_input(manifests[0] if manifests else "-")
    started = time.perf_counter()
    with stream, atomic_output(records_out) as out, report.bar("decoding", unit="images") as tick:
        outcome = preprocess(stream, name, h5, opts, out, tick, records_first=records_out != "-")
    seconds = time.perf_counter() - started
    for image_id, path, reason in outcome.failed[:20]:
        report.warn(f"skipped {path} ({image_id}): {reason}")
    if len(outcome.failed) > 20:
        report.warn(f"... and {len(outcome.failed) - 20:,} more unreadable images")
    copied = (f" ({outcome.copied:,} copied from {update}, {outcome.written - outcome.copied:,} decoded)"
              if update else "")
    report.info(f"wrote {outcome.written:,} images{copied} to {h5} in {seconds:.1f} s "
                f"({outcome.written / max(seconds, 1e-9):,.0f} images/s); {len(outcome.failed):,} skipped")


def _merge(manifests, h5, records_out):
    if not manifests:
        raise UsageError("--merge takes the shard manifests as arguments")
    streams = [open_input(m) for m in manifests]
    try:
        with atomic_output(records_out) as out:
            shards = merge_shards(streams, h5, out)
    finally:
        for stream, _ in streams:
            stream.close()
    report.info(f"merged {shards} shard files into {h5}")
