"""xr-index speed and memory on CheXpert's train.csv (223,414 rows).

Baseline, measured in the same run: a bare Python loop that parses the same CSV and
writes every row as a JSON object (no labels, policies, paths or checks) — the floor
for any Python indexer. Prints both times, the ratio, and peak memory at 1x and 4x
the input (flat memory means a ratio near 1).
"""

import csv
import pathlib
import sys
import tempfile

from common import SHARED, best_of, run

BARE = r"""
import csv, json, sys
enc = json.JSONEncoder(separators=(",", ":")).encode
with open(sys.argv[1], newline="") as f:
    rows = csv.reader(f)
    header = next(rows)
    out = sys.stdout
    for row in rows:
        out.write(enc(dict(zip(header, row))) + "\n")
"""


def table(tmp):
    real = SHARED / "CheXpert-v1.0-small" / "train.csv"
    if real.exists():
        return real
    print("../shared/data is absent: using a synthetic table of the same size", file=sys.stderr)
    folder = pathlib.Path(tmp) / "CheXpert-v1.0-small"
    folder.mkdir()
    path = folder / "train.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", "No Finding", "Edema", "Cardiomegaly"])
        for i in range(223414):
            w.writerow([f"CheXpert-v1.0-small/train/patient{i // 3:05d}/study1/view{i % 3}_frontal.jpg",
                        "Female", 50, "Frontal", "AP", "", "1.0", "-1.0"])
    return path


def repeated(path, times, tmp):
    """The same table with every row repeated `times` times under new patient ids."""
    out = pathlib.Path(tmp) / path.parent.name / f"x{times}.csv"
    out.parent.mkdir(exist_ok=True)
    with out.open("w", newline="") as g:
        w = csv.writer(g)
        for k in range(times):  # streamed: a big benchmark process would inflate the child's RSS
            with path.open(newline="") as f:
                rows = csv.reader(f)
                header = next(rows)
                if k == 0:
                    w.writerow(header)
                for row in rows:
                    w.writerow([row[0].replace("/patient", f"/patient{k}")] + row[1:])
    return out


def main():
    with tempfile.TemporaryDirectory() as tmp:
        path = table(tmp)
        xr, xr_mem = best_of(3, ["xr-index", "-q", str(path)])
        bare, _ = best_of(3, [sys.executable, "-c", BARE, str(path)])
        print(f"xr-index {path}: {xr:.2f} s (target <= 5 s); bare csv->json loop: {bare:.2f} s; "
              f"ratio xr/bare = {xr / bare:.2f}")
        big = repeated(path, 4, tmp)
        _, big_mem = run(["xr-index", "-q", str(big)])
        print(f"peak memory: {xr_mem:.0f} MB at 1x, {big_mem:.0f} MB at 4x the rows; "
              f"ratio 4x/1x = {big_mem / xr_mem:.2f} (flat = 1)")


if __name__ == "__main__":
    main()
