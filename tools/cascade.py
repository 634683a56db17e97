"""xr-cascade: chain classifiers in cascade, or combine several models' predictions."""

import os

import click
from xrtools.cli import group, open_input, output_option, seed_option, subcommand
from xrtools.console import report
from xrtools.params import CommaList, KeyValue, file_name, once

from libxr.atomic import atomic_output
from libxr.errors import UsageError, XRError
from libxr.records.manifest import read_records, write_records


@group("xr-cascade", example="""
xr-cascade derive m.jsonl --merge infected=Covid,'Viral Pneumonia' --out-dir stages/
xr-cascade chain --stage s1.jsonl --stage s2.jsonl --gate infected | xr-eval
xr-cascade vote a.jsonl b.jsonl c.jsonl | xr-eval
xr-cascade mean a.jsonl b.jsonl --weights 2,1
xr-cascade route --by group --expert XR_WRIST=wrist.jsonl --expert XR_HAND=hand.jsonl
xr-cascade stack a.jsonl b.jsonl c.jsonl --fit-on val --save meta.json
""")
def main():
    """Cascades and ensembles over prediction records (xr-predict's output), matched by id.

    Every subcommand writes ordinary prediction records (`scores`, `pred`) over the
    final classes, so xr-eval scores the combination like a single model.
    """


def _scored(paths):
    from libxr.combining.aligned import Scored

    files = []
    for path in paths:
        stream, name = open_input(path)
        with stream:
            files.append(Scored(stream, name))
    return files


def _write(records, output):
    with atomic_output(output) as out:
        n = write_records(records, out)
    report.info(f"wrote {n} records")


threshold_option = click.option("--threshold", type=click.FloatRange(0, 1), default=0.5, show_default=True,
                                help="Binary and multi-label decisions on the combined probabilities.")
weights_option = click.option("--weights", type=CommaList(float), metavar="W1,W2,...",
                              help="One weight per file (default equal).")
files_argument = click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, allow_dash=True))


@subcommand(main, "derive", example="""
xr-cascade derive covid.jsonl --merge infected=Covid,'Viral Pneumonia' --out-dir stages/
#  stages/stage1.jsonl: Normal vs infected;  stages/infected.jsonl: Covid vs Viral Pneumonia
""")
@click.argument("manifest", default="-", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--merge", "merges", multiple=True, required=True, metavar="NEW=A,B",
              type=KeyValue(CommaList(), "NEW=A,B"),
              help="Classes A, B, ... become NEW for stage 1, and NEW's records form a stage-2 manifest.")
@click.option("--out-dir", required=True, type=click.Path(file_okay=False),
              help="Write stage1.jsonl and NEW.jsonl here.")
@click.option("--strict", is_flag=True, help="Exit 1, writing nothing, if a record has no label.")
def derive_cmd(manifest, merges, out_dir, strict, quiet, verbose):
    """The training manifests of a cascade's stages from one multiclass manifest."""
    from libxr.combining.cascade import derive

    once("--merge", [new for new, _ in merges])
    for new, _ in merges:
        file_name("--merge", new, "a stage manifest in --out-dir")
        if new == "stage1":
            raise UsageError("--merge: 'stage1' is stage 1's manifest: name the merged class otherwise")
    stream, name = open_input(manifest)
    with stream:
        stages, unlabelled = derive(read_records(stream, name, numbered=True, unique=True), name,
                                    {new: list(old) for new, old in merges})
    if unlabelled:
        problem = (f"{len(unlabelled):,} × record with no label, left out of every stage "
                   f"(first {name}:{unlabelled[0]})")
        if strict:
            raise XRError(f"--strict: {problem}")
        report.warn(problem)
    os.makedirs(out_dir, exist_ok=True)
    for stage, records in stages.items():
        path = os.path.join(out_dir, f"{stage}.jsonl")
        with atomic_output(path) as out:
            write_records(records, out)
        labels = sorted({str(r["label"]) for r in records})
        report.info(f"{path}: {len(records)} records, classes {', '.join(labels)}")
        print(path)


@subcommand(main, "chain", example="""
xr-predict -m s1.pt m.jsonl > s1.jsonl; xr-predict -m s2.pt m.jsonl > s2.jsonl
xr-cascade chain --stage s1.jsonl --stage s2.jsonl --gate infected > cascade.jsonl
""")
@click.option("--stage", "stages", multiple=True, required=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="A stage's prediction records, in order (xr-predict over the same records).")
@click.option("--gate", "gates", multiple=True, metavar="CLASS",
              help="The class of the previous stage that the next stage refines (one per later stage).")
@output_option
def chain_cmd(stages, gates, output, quiet, verbose):
    """Compose stages: P(class of stage k) = P(gate) x P(class | gate), decisions through the gates."""
    from libxr.combining.aligned import same_ids
    from libxr.combining.cascade import chain

    files = _scored(stages)
    _write(chain(files, same_ids(files), list(gates)), output)


@subcommand(main, "vote", example="""
xr-cascade vote a.jsonl b.jsonl c.jsonl | xr-eval
""")
@files_argument
@weights_option
@output_option
def vote_cmd(files, weights, output, quiet, verbose):
    """Majority vote of the files' decisions; scores are the vote shares (ties: the higher mean probability)."""
    from libxr.combining.ensemble import vote

    _write(vote(_scored(files), weights), output)


@subcommand(main, "mean", example="""
xr-cascade mean a.jsonl b.jsonl --weights 2,1 --threshold 0.4 | xr-eval
""")
@files_argument
@weights_option
@threshold_option
@output_option
def mean_cmd(files, weights, threshold, output, quiet, verbose):
    """The (weighted) mean of the files' probabilities."""
    from libxr.combining.ensemble import mean

    _write(mean(_scored(files), weights, threshold), output)


@subcommand(main, "route", example="""
xr-cascade route --by group --expert XR_WRIST=wrist.jsonl --expert XR_HAND=hand.jsonl | xr-eval --by group
""")
@click.option("--by", "field", default="group", show_default=True, help="The record field that picks the expert.")
@click.option("--expert", "experts", multiple=True, required=True, metavar="VALUE=FILE",
              type=KeyValue(str, "VALUE=FILE"),
              help="The predictions of the expert for records whose field is VALUE (repeatable).")
@output_option
def route_cmd(field, experts, output, quiet, verbose):
    """Mixture of experts: each record takes its group's expert's prediction."""
    from libxr.combining.ensemble import route

    once("--expert", [value for value, _ in experts])
    files = _scored([path for _, path in experts])
    _write(route(files, {value: f for (value, _), f in zip(experts, files)}, field), output)


@subcommand(main, "stack", example="""
xr-cascade stack a.jsonl b.jsonl c.jsonl --fit-on val --save meta.json > stacked.jsonl
xr-cascade stack a2.jsonl b2.jsonl c2.jsonl --load meta.json | xr-eval
""")
@files_argument
@click.option("--fit-on", default="val", show_default=True, metavar="SPLIT",
              help="Fit the meta-model on the records of this split (validation: never the test set).")
@click.option("--save", type=click.Path(dir_okay=False), help="Save the fitted meta-model (JSON) for reuse.")
@click.option("--load", type=click.Path(dir_okay=False, exists=True), help="Apply a saved meta-model; no fitting.")
@threshold_option
@output_option
@seed_option
def stack_cmd(files, fit_on, save, load, threshold, output, seed, quiet, verbose):
    """Stacking: a logistic-regression meta-model on the files' probabilities."""
    from libxr.combining.ensemble import stack

    if save and load:
        raise UsageError("--save and --load: fit and save, or load and apply, not both")
    _write(stack(_scored(files), fit_on, load, save, threshold, seed, report.info), output)
