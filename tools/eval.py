"""xr-eval: the field's metrics, tables and plots from prediction records; or a leaderboard of runs."""

import json
import os

import click
from xrtools.cli import command, open_input, output_option, seed_option
from xrtools.console import report

from libxr.atomic import atomic_output
from libxr.errors import UsageError, XRError
from libxr.records.manifest import SPLITS


@command("xr-eval", example="""
xr-predict -m runs/r1/best.pt cx.jsonl | xr-eval --threshold youden --bootstrap 1000 --plots plots/
xr-eval scored.jsonl --split test --by group --aggregate study      # MURA: per body part, per study
xr-eval scored.jsonl --threshold sens=0.95 --format md > report.md   # tuned on val, applied to test
xr-eval scored.jsonl --run runs/r1 --json runs/r1/eval.json
xr-eval --leaderboard runs/*/eval.json --rank-by kappa > leaderboard.csv
""")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--threshold", default="0.5", show_default=True,
              help="Binary / multi-label decisions: a probability, youden, sens=0.95 or spec=0.9 "
                   "(rules are chosen on the --tune-on split and applied to every split).")
@click.option("--tune-on", default="val", show_default=True, type=click.Choice(SPLITS),
              help="The split whose records choose a threshold rule.")
@click.option("--split", "splits", multiple=True, metavar="NAME",
              help="Report only this split (repeatable); default every split present.")
@click.option("--by", multiple=True, metavar="FIELD", help="Also per value of this field: group, view, sex, ...")
@click.option("--aggregate", metavar="FIELD",
              help="One prediction per FIELD value (mean probability), e.g. study for MURA.")
@click.option("--positive", help="Binary: the positive class (default: the one not named normal/negative).")
@click.option("--bootstrap", type=click.IntRange(0), default=0, show_default=True, metavar="N",
              help="95 % intervals from N resamples of patients.")
@click.option("--format", "fmt", type=click.Choice(("table", "md", "json")), default="table", show_default=True,
              help="table: rich tables on stderr; md or json: the report on stdout.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Also write the report as JSON (for --leaderboard).")
@click.option("--plots", type=click.Path(file_okay=False), metavar="DIR",
              help="Write ROC, precision-recall, confusion and reliability (calibration) PNGs per split here.")
@click.option("--run", type=click.Path(file_okay=False, exists=True), metavar="DIR",
              help="The xr-train run directory: names the report and adds its training curves to --plots.")
@click.option("--name", help="The report's name in a leaderboard (default: the --run folder or the file).")
@click.option("--strict", is_flag=True,
              help="Exit 1, writing nothing, when records or labels are left out of the metrics (records with an "
                   "`error`, truth without scores, scores without truth).")
@click.option("--leaderboard", is_flag=True, help="FILES are xr-eval JSON reports: rank them, CSV to stdout.")
@click.option("--rank-by", metavar="METRIC", help="Leaderboard metric (default auc, or auc_macro).")
@output_option
@seed_option
def main(files, threshold, tune_on, splits, by, aggregate, positive, bootstrap, fmt, json_path, plots, run, name,
         strict, leaderboard, rank_by, output, seed, quiet, verbose):
    """Score prediction records (truth in `label`/`labels`, probabilities in `scores`).

    Reports accuracy, balanced accuracy, sensitivity, specificity, precision, NPV,
    F1 (per class; macro, micro, weighted; samples), Cohen's kappa, ROC-AUC and
    PR-AUC (per class, macro, micro), log loss, Brier score, calibration error
    (before and after calibration when records carry xr-predict's `temperature`
    and `shift`)
    and confusion matrices — one column per split.
    """
    if leaderboard:
        return _leaderboard(files, splits, rank_by, output)
    if fmt == "table" and output != "-":
        raise UsageError("-o writes the md or json report: give --format md or --format json (tables go to stderr)")
    from libxr.judging.evaluation import EvalOptions, evaluate, read_predictions
    from libxr.judging.evaluation import aggregate as per_field
    from libxr.judging.thresholds import parse
    from libxr.records.manifest import read_records

    parse(threshold)
    preds, seen, left_out = None, {}, []

    def leave_out(message):
        left_out.append(message)
        report.warn(message)

    for path in files or ("-",):
        stream, source = open_input(path)
        with stream:
            part = read_predictions(read_records(stream, source, numbered=True, unique=True), source, positive,
                                    report.warn, seen, None if preds is None else preds.task, leave_out)
        preds = part if preds is None else preds.join(part)
    if strict and left_out:
        raise XRError(f"--strict: {left_out[0]}")
    if positive is not None and preds.task.kind != "binary":
        raise UsageError(f"--positive is for binary tasks; these scores are {preds.task.kind}")
    if aggregate:
        preds = per_field(preds, aggregate)
    opts = EvalOptions(threshold=threshold, tune_on=tune_on, by=by, aggregate=aggregate, bootstrap=bootstrap,
                       seed=seed, splits=splits)
    with report.bar("bootstrap", unit="resamples") as tick:
        result = evaluate(preds, opts, report.warn, tick)
    result["name"] = name or (os.path.basename(os.path.normpath(run)) if run else ", ".join(files or ("<stdin>",)))
    if plots:       # before --json: a run whose history is bad fails with no report written that make trusts
        from libxr.judging.plots import report_plots

        report.info(f"wrote {len(report_plots(preds, result, plots, _history(run)))} plots to {plots}")
    if json_path:
        with atomic_output(json_path) as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    if fmt == "table":
        from libxr.judging.tables import rich_tables

        for table in rich_tables(result):
            report.table(table)
    else:
        from libxr.judging.tables import markdown

        with atomic_output(output) as out:
            out.write(markdown(result) if fmt == "md" else json.dumps(result, indent=1) + "\n")


def _history(run):
    """The --run's metrics.jsonl rows, for the training-curve plot (None without one)."""
    path = os.path.join(run, "metrics.jsonl") if run else None
    if path is None or not os.path.exists(path):
        return None
    from libxr.learning.history import read_history

    return read_history(path, report.warn)


def _leaderboard(files, splits, rank_by, output):
    from libxr.judging.leaderboard import load, rank, write_csv

    if not files:
        raise UsageError("--leaderboard needs the JSON reports to rank (xr-eval --json FILE wrote them)")
    if len(splits) > 1:
        raise UsageError("--leaderboard ranks one split: give --split once")
    rows = load(files, splits[0] if splits else None)
    metric = rank_by or ("auc" if rows[0]["task"] == "binary" else "auc_macro")
    ranked = rank(rows, metric)
    with atomic_output(output) as out:
        write_csv(ranked, out)
    if not report.quiet:
        from rich.table import Table

        table = Table(title=f"leaderboard by {metric} ({ranked[0]['split']})", title_justify="left")
        for column in ("rank", "run", "n", metric):
            table.add_column(column, justify="left" if column == "run" else "right")
        for row in ranked:
            value = row.get(metric)
            table.add_row(str(row["rank"] or "—"), str(row["run"]), str(row["n"]),
                          "—" if value is None else f"{value:.4f}")
        report.table(table)
