"""xr-split quality and speed on the CheXpert manifest: 14 labels, by patient, 80/10/10.

Baseline, measured in the same run: a random patient-grouped split with the same
fractions (what GroupShuffleSplit gives). Prints the largest gap between a label's
positive rate in a split and overall, for both, and the ratio.
"""

import json
import sys
import tempfile
import time

import numpy as np
from common import SHARED, run


def gaps(labels, names, split_of):
    y = np.array([[lab.get(n) == 1 for n in names] for lab in labels], float)
    overall = y.mean(0)
    return max(np.abs(y[split_of == s].mean(0) - overall).max() for s in np.unique(split_of))


def main():
    table = SHARED / "CheXpert-v1.0-small" / "train.csv"
    if not table.exists():
        sys.exit("bench_split needs ../shared/data/CheXpert-v1.0-small/train.csv")
    with tempfile.TemporaryDirectory() as tmp:
        manifest, split = f"{tmp}/m.jsonl", f"{tmp}/s.jsonl"
        with open(manifest, "w") as out:
            run(["xr-index", "-q", str(table)], stdout=out)
        seconds, mem = run(["xr-split", "-q", "--val", "0.1", "--test", "0.1", "--resplit", manifest, "-o", split])
        with open(split) as f:
            records = [json.loads(line) for line in f]
    names = sorted({n for r in records for n in r["labels"]})
    labels = [r["labels"] for r in records]
    ours = gaps(labels, names, np.array([r["split"] for r in records]))

    start = time.perf_counter()
    patients = sorted({r["patient"] for r in records})
    rng = np.random.default_rng(0)
    chosen = dict(zip(patients, rng.choice(["train", "val", "test"], size=len(patients), p=[0.8, 0.1, 0.1])))
    random_split = np.array([chosen[r["patient"]] for r in records])
    random_seconds = time.perf_counter() - start
    chance = gaps(labels, names, random_split)
    leaks = len({r["patient"] for r in records if r["split"] != "train"} &
                {r["patient"] for r in records if r["split"] == "train"})
    print(f"xr-split, {len(records):,} records, {len(patients):,} patients, {len(names)} labels: "
          f"{seconds:.1f} s (target <= 30 s), peak {mem:.0f} MB, patients in two splits: {leaks}")
    print(f"largest label-rate gap: xr-split {100 * ours:.2f} pp (target < 1 pp); random grouped split "
          f"{100 * chance:.2f} pp ({random_seconds:.1f} s); ratio xr/random = {ours / chance:.2f}")


if __name__ == "__main__":
    main()
