"""xr-split: assign train/val/test splits (or folds) without patient leakage."""

import contextlib
import os

import click
from xrtools.cli import command, manifest_input, open_input, output_option, seed_option
from xrtools.console import report

from libxr.atomic import atomic_output
from libxr.errors import UsageError, XRError
from libxr.records.manifest import SPLITS
from libxr.records.split import Pool, SplitOptions, assign, label_counts, leaks, write_split

fraction = click.FloatRange(0, 1, max_open=True)


@command("xr-split", example="""
xr-index data/chest_xray --patient-regex '(person\\d+|IM-\\d+)' | xr-split --val 0.1 > split.jsonl
xr-split --val 0.1 --test 0.1 --resplit all.jsonl --out-dir splits/   # splits/{train,val,test}.jsonl
xr-split --folds 5 --fold 2 all.jsonl > fold2.jsonl
xr-split --check split.jsonl        # exit 1 if a patient is in two splits
""")
@manifest_input
@click.option("--val", type=fraction, default=0.0, help="Share of the pool for validation.")
@click.option("--test", type=fraction, default=0.0, help="Share of the pool for test.")
@click.option("--folds", type=click.IntRange(2), help="K-fold: split the pool into K folds ...")
@click.option("--fold", type=click.IntRange(0),
              help="... and make fold I the val split, the rest train (default 0).")
@click.option("--group-by", metavar="FIELD",
              help="Keep records sharing FIELD in one split (default: patient, when present; "
                   "'none' to not group).")
@click.option("--no-stratify", is_flag=True, help="Do not balance classes/labels across splits.")
@click.option("--resplit", is_flag=True,
              help="Split all records; by default records already in val/test keep their split "
                   "and only train/unsplit records form the pool.")
@click.option("--check", is_flag=True,
              help="Only check: report groups found in more than one split, exit 1 if any.")
@click.option("--out-dir", type=click.Path(file_okay=False),
              help="Write one file per split, DIR/{train,val,test}.jsonl, instead of one stream "
                   "(a split file of an earlier run that this one does not write is removed).")
@output_option
@seed_option
def main(manifest, val, test, folds, fold, group_by, no_stratify, resplit, check, out_dir, output, seed,
         quiet, verbose):
    """Add a leakage-free, stratified `split` field to the records of MANIFEST.

    Groups (patients) never straddle splits; classes, or every label of
    multi-label records, keep their rates in each split (iterative stratification).
    """
    if not check:
        _usage(val, test, folds, fold, out_dir, output)
    if out_dir and manifest not in (None, "-") and _split_file_of(manifest, out_dir):
        raise UsageError(f"{manifest} is a split file of --out-dir {out_dir}, which this run replaces or removes "
                         "(records of the others would be lost): give another --out-dir")
    stream, name = open_input(manifest)
    with stream:
        pool = Pool(stream, name, group_by)
    if check:
        return _check(pool)
    opts = SplitOptions(val=val, test=test, folds=folds or 0, fold=fold or 0,
                        stratify=not no_stratify, resplit=resplit, seed=seed)
    splits, chosen, pinned = assign(pool, opts)
    if out_dir:
        _write_out_dir(out_dir, pool, splits)
    else:
        with atomic_output(output) as out:
            write_split(pool.lines, splits, out)
    _summarise(pool, splits, chosen, pinned)


def _usage(val, test, folds, fold, out_dir, output):
    """Refuse options that would be ignored: a conflict is a usage error, not a silent choice."""
    if not (val or test or folds):
        raise UsageError("nothing to do: give --val, --test or --folds (or --check)")
    if folds and (val or test):
        raise UsageError("--folds makes fold I the val split: it takes no --val or --test")
    if fold is not None and not folds:
        raise UsageError("--fold needs --folds K")
    if out_dir and output not in (None, "-"):
        raise UsageError("-o and --out-dir are two destinations: give one")


def _split_file_of(manifest, out_dir):
    """Whether ``manifest`` is one of the files ``--out-dir`` writes or removes (DIR/train.jsonl, ...)."""
    names = [os.path.join(out_dir, f"{s}.jsonl") for s in (*SPLITS, "unsplit")]
    return any(os.path.exists(n) and os.path.samefile(manifest, n) for n in names)


def _write_out_dir(out_dir, pool, splits):
    """DIR/<split>.jsonl for the splits there are now. A split file of an earlier run that this
    one does not write is removed — its records may be in train now — once every new file is
    written, just before they are renamed into place."""
    os.makedirs(out_dir, exist_ok=True)
    names = {split: f"{split or 'unsplit'}.jsonl" for split in set(splits)}
    with contextlib.ExitStack() as stack:
        for split in sorted(names, key=str):
            lines = [line for line, s in zip(pool.lines, splits) if s == split]
            out = stack.enter_context(atomic_output(os.path.join(out_dir, names[split])))
            write_split(lines, [split] * len(lines), out)
            out.flush()     # a full disk fails here (NFS and quotas: at the fsync), before any file is renamed:
            os.fsync(out.fileno())  # no mix of two runs' splits
        for stale in sorted({f"{s}.jsonl" for s in (*SPLITS, "unsplit")} - set(names.values())):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(out_dir, stale))
                report.info(f"removed {os.path.join(out_dir, stale)} of an earlier run "
                            f"(no {stale[:-len('.jsonl')]} split now)")


def _summarise(pool, splits, chosen, pinned):
    counts = label_counts(pool, splits)
    groups = {}
    for key, split in zip(pool.keys, splits):
        groups.setdefault(split or "-", set()).add(key)
    grouping = f"by {pool.field}" if pool.field != "none" else "ungrouped"
    report.table(counts.table(f"{len(splits):,} records, {grouping}: " + ", ".join(
        f"{s} {len(g):,} groups" for s, g in sorted(groups.items()))))
    gap = label_counts(pool, splits, chosen).max_rate_gap()
    report.info(f"largest gap between a class rate in a new split and in the {len(chosen):,} "
                f"records split: {100 * gap:.2f} percentage points")
    if pinned:
        report.info(f"{pinned:,} unsplit records joined the val/test split their {pool.field} "
                    f"already had")
    spanning = leaks(pool, splits)
    if spanning:
        report.warn(f"{len(spanning):,} {pool.field} values span splits the input already had "
                    f"(kept as given; see xr-split --check)")
    if pool.ungrouped:
        report.warn(f"{pool.ungrouped:,} records have no {pool.field!r}; each is its own group")
    for split in counts.splits():
        for cls in counts.names():
            if counts.classes[(cls, split)] == 0:
                report.warn(f"{cls!r} has no examples in the {split} split")


def _check(pool):
    found = leaks(pool)
    if pool.field == "none":
        report.warn("records have no patient field: nothing to check (use --group-by FIELD)")
        return 0
    if not pool.ungrouped < len(pool.keys):
        raise XRError(f"no record has a {pool.field!r} field: nothing to check")
    if not found:
        report.info(f"no {pool.field} occurs in more than one split ({len(set(pool.keys)):,} checked)")
        return 0
    records = sum(1 for k in pool.keys if k in found)
    report.warn(f"{len(found):,} {pool.field} values occur in more than one split ({records:,} records)")
    for key, splits in list(found.items())[:10]:
        report.warn(f"  {key}: {', '.join(splits)}")
    return 1
