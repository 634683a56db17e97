"""xr-featmap: feature maps, Grad-CAM overlays and prediction sheets, as PNGs and one HTML page."""

import os

import click
from xrtools.cli import command, device_option, open_input
from xrtools.console import report
from xrtools.params import max_pixels_option

from libxr.errors import UsageError, XRError
from libxr.records.manifest import read_records


@command("xr-featmap", example="""
xr-featmap -m runs/r1/best.pt scored.jsonl --out-dir look/      # maps, Grad-CAM, sheet; look/index.html
xr-featmap -m best.pt chest.png --cam --class PNEUMONIA --out-dir look/
xr-featmap scored.jsonl --sheet --errors --by group --out-dir errors/   # no model needed
""")
@click.argument("inputs", nargs=-1, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("-m", "--model", "checkpoint", type=click.Path(dir_okay=False),
              help="The checkpoint to look inside (needed for --maps and --cam).")
@click.option("--out-dir", required=True, type=click.Path(file_okay=False), help="Where the PNGs and index.html go.")
@click.option("--maps", is_flag=True, help="Activation grids: strongest channels of chosen layers.")
@click.option("--cam", is_flag=True, help="Grad-CAM and Grad-CAM++ overlays.")
@click.option("--sheet", is_flag=True, help="A contact sheet of prediction records (scores, pred, label).")
@click.option("-n", "--count", type=click.IntRange(1), default=8, show_default=True,
              help="Images for --maps and --cam (the first ones; with --errors the first wrong ones).")
@click.option("--sheet-size", type=click.IntRange(1), default=36, show_default=True, help="Images per sheet.")
@click.option("--layers", metavar="NAME,NAME", help="--maps: these layers (default every --every-th convolution).")
@click.option("--every", type=click.IntRange(1), default=2, show_default=True,
              help="--maps: every Nth convolution (report 001 showed every second).")
@click.option("--layer", help="--cam: the layer to explain (default the last convolution).")
@click.option("--class", "class_name", help="--cam: explain this class (default the predicted one).")
@click.option("--errors", is_flag=True, help="Only records whose prediction is wrong.")
@click.option("--by", metavar="FIELD", help="--sheet: one sheet per value of FIELD (group, view, ...).")
@max_pixels_option()
@device_option
def main(inputs, checkpoint, out_dir, maps, cam, sheet, count, sheet_size, layers, every, layer, class_name, errors,
         by, max_pixels, device, quiet, verbose):
    """Look inside a model and at its predictions.

    INPUTS are manifests (JSON Lines; `-` for stdin) or image files. Without
    --maps/--cam/--sheet, does every one that applies: maps and Grad-CAM when a
    checkpoint is given, a sheet when the records carry predictions. Writes
    PNGs and OUT_DIR/index.html (self-contained); prints the written paths.
    """
    from libxr.looking import featmap
    from libxr.looking.gallery import write_page

    records, origins = _records(inputs or ("-",))
    scored = any("scores" in r for r in records)
    if not (maps or cam or sheet):
        maps = cam = checkpoint is not None
        sheet = scored
    if (maps or cam) and checkpoint is None:
        raise UsageError("--maps and --cam look inside a model: give its checkpoint with -m")
    if sheet and not scored:
        raise UsageError("--sheet needs prediction records (xr-predict's output)")
    if not (maps or cam or sheet):
        raise UsageError("nothing to do: give -m CHECKPOINT, or prediction records for a sheet")
    os.makedirs(out_dir, exist_ok=True)
    chosen = [r for r in records if featmap.is_wrong(r)] if errors else records
    chosen = chosen[:count]
    skipped = {}        # per record, the first reason: one maps, Grad-CAM and a sheet all skip is one image
    sections = []

    def skip(rec, reason):
        where = origins.get(id(rec))
        skipped.setdefault(id(rec), f"{where}: {reason}" if where else reason)

    if maps or cam:
        from libxr.pixels.sources import changed_sources
        from libxr.predicting.classifier import Classifier

        clf = Classifier(checkpoint, device, log=report.info)
        for note in changed_sources(chosen):
            report.warn(note)
        if maps:
            names = [n.strip() for n in layers.split(",") if n.strip()] if layers else None
            sections.append(("Feature maps", featmap.feature_maps(clf, chosen, out_dir, names, every,
                                                                  skip=skip, max_pixels=max_pixels)))
        if cam:
            sections.append(("Grad-CAM", featmap.cam_overlays(clf, chosen, out_dir, class_name, layer,
                                                         skip=skip, max_pixels=max_pixels)))
    if sheet:
        sections.append(("Predictions", featmap.sheets(records, out_dir, count=sheet_size, errors=errors, by=by,
                                                       skip=skip, max_pixels=max_pixels)))
    skipped = list(skipped.values())
    if skipped:
        report.warn(f"{len(skipped)} images could not be shown; the first: {skipped[0]}")
        if not any(pngs for _, pngs in sections):
            raise XRError(f"no image could be shown ({skipped[0]})")
    page = os.path.join(out_dir, "index.html")
    write_page(page, f"xr-featmap: {checkpoint or ', '.join(inputs or ['<stdin>'])}", sections)
    for _, pngs in sections:
        for png in pngs:
            print(png)
    print(page)
    report.info(f"wrote {sum(len(p) for _, p in sections)} PNGs and {page}")


def _records(inputs):
    """The records of ``inputs`` and where each came from (by ``id()`` of the record): FILE:LINE
    of a manifest's, for reporting the ones skipped; an image argument's reasons name its path."""
    from libxr.pixels.files import is_image_file

    images = [p for p in inputs if p != "-" and is_image_file(p)]
    ids = _image_ids(images)
    records, origins = [], {}
    for path in inputs:
        if path in ids:
            if not os.path.isfile(path):
                raise XRError(f"{path}: no such image file")
            records.append({"id": ids[path], "path": path})
            continue
        stream, name = open_input(path)
        with stream:
            for line, rec in read_records(stream, name, numbered=True):
                origins[id(rec)] = f"{name}:{line}"
                records.append(rec)
    if not records:
        raise XRError("no records or images to look at (the input is empty)")
    return records, origins


def _image_ids(paths):
    """Each image argument's id: its file name, with as many of its folders as tell it from the
    other arguments' (`d1/chest.png`, `d2/chest.png`), so that titles and file names differ."""
    parts = {p: os.path.normpath(p).split(os.sep) for p in paths}
    ids = {}
    for p, mine in parts.items():
        others = [o for o in parts.values() if o != mine]
        depth = 1
        while depth < len(mine) and any(o[-depth:] == mine[-depth:] for o in others):
            depth += 1
        ids[p] = "/".join(mine[-depth:])
    return ids
