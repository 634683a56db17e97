"""xr-index: index a labelled X-ray collection into a JSON Lines manifest."""

import click
from xrtools.cli import command, output_option
from xrtools.console import report
from xrtools.params import CommaList, Condition, Delimiter, KeyValue, max_pixels_option

from libxr.atomic import atomic_output
from libxr.errors import UsageError, XRError
from libxr.index import LAYOUTS, IndexOptions, index, nothing_indexed, problem_lines, problems
from libxr.index.chexpert import UNCERTAIN_POLICIES
from libxr.index.paths import Tally
from libxr.pixels.files import check_headers, with_sha256
from libxr.records.manifest import write_records
from libxr.records.summary import LabelCounts

RESERVED = ("id", "path", "label", "labels", "split", "h5", "row", "scores", "pred", "error", "source")


@command("xr-index", example="""
xr-index data/chest_xray --patient-regex '(person\\d+|IM-\\d+)' --summary > all.jsonl
xr-index data/chest_xray --field kind='_(bacteria|virus)_'     # a field to group metrics by
xr-index CheXpert-v1.0-small/train.csv --uncertain ones --propagate --frontal-only
xr-index labels.csv --layout csv --path-col file --label-col finding --encoding cp1252
xr-index metadata.csv --where modality=X-ray --map COVID-19=covid --map '*=other' --root images
xr-index /mnt/train.csv --strip-prefix /data/CheXpert/ --root CheXpert-v1.0  # absolute paths rebased
xr-index chestmnist_224.npz --extract chestmnist/ > chest.jsonl   # MedMNIST arrays as PNG files
""")
@click.argument("source", type=click.Path(exists=True, allow_dash=True))
@click.option("--layout", type=click.Choice(LAYOUTS), help="Force a layout instead of detecting it.")
@click.option("--root", type=click.Path(file_okay=False),
              help="Folder the table's image paths are relative to (default: found from the table).")
@click.option("--strip-prefix", metavar="PREFIX",
              help="Remove PREFIX from the start of the table's paths (e.g. /data/CheXpert/) before "
                   "--root: absolute paths become relative ids.")
@click.option("--where", multiple=True, type=Condition(), metavar="COL=A,B",
              help="Keep only table rows whose column COL is A or B; COL!=A,B: neither (repeatable: all hold).")
@click.option("--map", "mapping", multiple=True, type=KeyValue(str, "FROM=TO"), metavar="FROM=TO",
              help="Rename label FROM to TO (repeatable; '*=other' renames every other label), "
                   "e.g. Effusion='Pleural Effusion'.")
@click.option("--patient-regex", metavar="REGEX",
              help="Patient id from file names: group 1 of REGEX, or the whole match.")
@click.option("--field", "fields", multiple=True, type=KeyValue(str, "NAME=REGEX", reserved=RESERVED),
              metavar="NAME=REGEX",
              help="Add field NAME from file names: group 1 of REGEX or the whole match (repeatable), "
                   "e.g. kind='_(bacteria|virus)_' for per-group metrics.")
@click.option("--labels", type=CommaList(), default="", metavar="A,B,...",
              help="chexpert/nih: keep only these labels.")
@click.option("--uncertain", type=click.Choice(tuple(UNCERTAIN_POLICIES)), default="keep",
              show_default=True, help="chexpert: what an uncertain (-1) label becomes.")
@click.option("--blank", type=click.Choice(("unknown", "zero")), default="unknown", show_default=True,
              help="chexpert: a blank cell is not stated, or negative.")
@click.option("--frontal-only", is_flag=True, help="chexpert: keep frontal views only.")
@click.option("--propagate", is_flag=True,
              help="chexpert: positive/uncertain children lift their parent labels.")
@click.option("--path-col", help="csv: the image path column.")
@click.option("--label-col", help="csv: the class column (single-label).")
@click.option("--label-cols", type=CommaList(), default="", metavar="A,B,...",
              help="csv: 1/0/-1/blank columns (multi-label).")
@click.option("--patient-col", help="csv: the patient id column.")
@click.option("--study-col", help="csv: the study id column.")
@click.option("--group-col", help="csv: the group column (body part, site).")
@click.option("--view-col", help="csv: the view column.")
@click.option("--sex-col", help="csv: the sex column (F/M, female/male, ... become F or M).")
@click.option("--age-col", help="csv: the age column (whole years).")
@click.option("--split-col", help="csv: the train/val/test column.")
@click.option("--delimiter", type=Delimiter(),
              help="Table delimiter: one character or tab (default: tab for .tsv, else sniffed among , ; tab |).")
@click.option("--encoding", default="utf-8", show_default=True,
              help="Table encoding, e.g. cp1252 (a byte-order mark overrides it).")
@click.option("--check", is_flag=True, help="Open every image header (in parallel); report unreadable files.")
@max_pixels_option("--check: ")
@click.option("--hash", "sha256", is_flag=True,
              help="Add `sha256`, the digest of each image file: byte-identical copies share it "
                   "(xr-split --group-by sha256 keeps them in one split).")
@click.option("--workers", type=click.IntRange(1), help="Threads for --check and --hash (default: 4 per core).")
@click.option("--drop-missing", is_flag=True, help="Leave out rows whose image file does not exist.")
@click.option("--drop-unlabelled", is_flag=True, help="Leave out records with no label (counted on stderr).")
@click.option("--extract", type=click.Path(file_okay=False), metavar="DIR",
              help="npz: write the MedMNIST images once as DIR/<split>/<row>.png, which the records name.")
@click.option("--strict", is_flag=True,
              help="Exit 1 if any image is missing or unreadable, a record unlabelled, or a cell could not "
                   "become a record field.")
@click.option("--summary", is_flag=True, help="Print a class x split table on stderr.")
@output_option
def main(source, layout, check, max_pixels, sha256, workers, strict, summary, output, quiet, verbose, **options):
    """Index SOURCE (a dataset folder or label table) into manifest records on stdout.

    Layouts are detected: folders (one folder per class, optionally under
    train/val/test folders), mura (tree or CSVs), chexpert (train.csv/valid.csv),
    nih (Data_Entry_2017*.csv), csv (any table; name its columns), npz
    (MedMNIST arrays, with --extract).
    """
    if source == "-":
        raise UsageError("xr-index reads a folder or a table file, not stdin: it reads a table twice and finds "
                         "its images from the table's folder (save it first: xr-index labels.csv)")
    tally = Tally()
    counts = LabelCounts()
    opts = IndexOptions(**options)
    records = index(source, layout, opts, tally)
    failed = set()      # paths --check found unreadable: said once, not again by --hash
    if check:
        records = _checked(check_headers(records, workers, max_pixels=max_pixels), tally, failed)
    if sha256:
        records = with_sha256(records, workers, unreadable=lambda rec, reason: rec["path"] in failed or
                              tally.unreadable.append(f"{rec['path']}: {reason} (no sha256)"))
    if summary:
        records = map(counts.add, records)
    records = report.progress(records, description="indexing", unit="images")
    with atomic_output(output) as out:
        if not write_records(records, out):
            _report(tally, opts)
            raise XRError(nothing_indexed(source, tally))
    _report(tally, opts)
    if summary:
        report.table(counts.table(f"{source}: {tally.records:,} images"))
    if strict and problems(tally):
        raise XRError(f"--strict: {'; '.join(problems(tally))}")


def _checked(pairs, tally, failed):
    for rec, problem in pairs:
        if problem:
            tally.unreadable.append(f"{rec['path']}: {problem}")
            failed.add(rec["path"])
        yield rec


def _report(tally, opts):
    for note in tally.notes:
        report.info(note)
    for warning in tally.warnings:
        report.warn(warning)
    for why, n in sorted(tally.skipped.items()):
        report.info(f"skipped {n:,} × {why}")
    if tally.missing:
        report.warn(f"{tally.missing:,} listed images or folders do not exist "
                    f"(e.g. {tally.missing_examples[0]}); {tally.missing_hint(opts.root, opts.strip_prefix)}")
    for line in problem_lines(tally):
        report.warn(line)
    for line in tally.unreadable[:20]:
        report.warn(f"unreadable: {line}")
    if len(tally.unreadable) > 20:
        report.warn(f"... {len(tally.unreadable) - 20:,} more unreadable images")
    report.info(f"indexed {tally.records:,} images")
