"""xr-split and libxr.records.split: grouping, stratification, kept splits, folds, checks."""

import collections
import json

import numpy as np
import pytest
from conftest import shared, write_jsonl
from xrtools.split import main

from libxr.records.split import stratify_groups


def records(n=400, classes=("a", "b", "c"), weights=(0.6, 0.3, 0.1), per_patient=3, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        patient = i // per_patient
        label = classes[int(rng.choice(len(classes), p=weights))]
        out.append({"id": f"img{i}", "path": f"{i}.png", "label": label, "patient": f"p{patient}"})
    return out


def by_split(recs):
    out = collections.defaultdict(list)
    for r in recs:
        out[r["split"]].append(r)
    return out


def test_no_patient_in_two_splits_and_fractions_hold(cli, tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", records())
    result = cli(main, path, "--val", "0.2", "--test", "0.1", "--seed", "3")
    assert result.exit_code == 0, result.stderr
    out = result.records
    assert [r["id"] for r in out] == [f"img{i}" for i in range(400)]  # order kept
    where = collections.defaultdict(set)
    for r in out:
        where[r["patient"]].add(r["split"])
    assert all(len(s) == 1 for s in where.values())
    sizes = {k: len(v) for k, v in by_split(out).items()}
    assert abs(sizes["val"] - 80) <= 6 and abs(sizes["test"] - 40) <= 6


def test_classes_keep_their_rates(cli, tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", records(n=3000))
    out = cli(main, path, "--val", "0.1", "--test", "0.1").records
    overall = collections.Counter(r["label"] for r in out)
    for split, recs in by_split(out).items():
        rates = collections.Counter(r["label"] for r in recs)
        for cls in overall:
            assert abs(rates[cls] / len(recs) - overall[cls] / len(out)) < 0.01, (split, cls)


def test_same_seed_same_bytes_other_seed_other_split(cli, tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", records())
    a = cli(main, path, "--val", "0.2", "--seed", "1").stdout
    b = cli(main, path, "--val", "0.2", "--seed", "1").stdout
    c = cli(main, path, "--val", "0.2", "--seed", "2").stdout
    assert a == b and a != c


def test_existing_splits_are_kept_and_val_is_carved_from_train(cli, tmp_path):
    recs = records()
    for r in recs[:90]:
        r["split"] = "test"
    for r in recs[90:]:
        r["split"] = "train"
    path = write_jsonl(tmp_path / "m.jsonl", recs)
    out = cli(main, path, "--val", "0.1").records
    assert [r["split"] for r in out[:90]] == ["test"] * 90
    assert 25 <= sum(r["split"] == "val" for r in out[90:]) <= 37   # 10 % of the 310 train records
    resplit = cli(main, path, "--val", "0.1", "--test", "0.1", "--resplit").records
    assert sum(r["split"] == "test" for r in resplit) < 60


def test_unsplit_records_join_the_val_or_test_split_their_patient_already_has(cli, tmp_path):
    recs = records(n=60)
    for r in recs:      # one record of each of the first 8 patients already in val or test
        if r["patient"] in {f"p{k}" for k in range(8)} and r["id"] in {f"img{3 * k}" for k in range(8)}:
            r["split"] = "val" if r["patient"] < "p4" else "test"
    result = cli(main, write_jsonl(tmp_path / "m.jsonl", recs), "--val", "0.2")
    assert result.exit_code == 0, result.stderr
    where = collections.defaultdict(set)
    for r in result.records:
        where[r["patient"]].add(r["split"])
    assert all(len(s) == 1 for s in where.values()), where
    assert [where[f"p{k}"] for k in range(8)] == [{"val"}] * 4 + [{"test"}] * 4
    assert "16 unsplit records joined the val/test split their patient already had" in result.stderr
    assert "span splits" not in result.stderr
    for r in recs:                      # an official split's train records are the user's: kept in train/val
        r.setdefault("split", "train")
    official = cli(main, write_jsonl(tmp_path / "o.jsonl", recs), "--val", "0.2")
    assert official.exit_code == 0 and "joined" not in official.stderr
    assert sum(r["split"] == "test" for r in official.records) == 4      # the official test records only
    assert "span splits the input already had" in official.stderr


def test_split_field_goes_before_source(cli, tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [{"id": f"{i}", "label": "ab"[i % 2], "source": {"x": 1},
                                               "extra": [1, 2]} for i in range(10)])
    out = cli(main, path, "--val", "0.2").stdout.splitlines()
    assert all(list(json.loads(line)) == ["id", "label", "extra", "split", "source"] for line in out)


def test_folds_partition_the_records(cli, tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", records(n=300))
    val_ids = []
    for fold in range(3):
        out = cli(main, path, "--folds", "3", "--fold", fold).records
        assert {r["split"] for r in out} == {"train", "val"}
        val_ids.append({r["id"] for r in out if r["split"] == "val"})
    assert set.union(*val_ids) == {f"img{i}" for i in range(300)}
    assert sum(len(v) for v in val_ids) == 300


def test_out_dir_writes_one_file_per_split(cli, tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", records())
    result = cli(main, path, "--val", "0.2", "--test", "0.2", "--out-dir", tmp_path / "out")
    assert result.exit_code == 0 and result.stdout == ""
    files = {p.name: [json.loads(line) for line in p.read_text().splitlines()] for p in (tmp_path / "out").iterdir()}
    assert sorted(files) == ["test.jsonl", "train.jsonl", "val.jsonl"]
    assert sum(map(len, files.values())) == 400
    assert all(r["split"] == name.split(".")[0] for name, recs in files.items() for r in recs)


def test_out_dir_removes_split_files_of_an_earlier_run(cli, tmp_path):
    """Records of yesterday's test.jsonl may be in today's train.jsonl: the stale file must go."""
    path = write_jsonl(tmp_path / "m.jsonl", records())
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.jsonl").write_text("mine\n")
    assert cli(main, path, "--val", "0.2", "--test", "0.2", "--out-dir", out).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["notes.jsonl", "test.jsonl", "train.jsonl", "val.jsonl"]
    again = cli(main, path, "--val", "0.2", "--out-dir", out)
    assert again.exit_code == 0 and f"removed {out / 'test.jsonl'} of an earlier run" in again.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.jsonl", "train.jsonl", "val.jsonl"]
    ids = [json.loads(line)["id"] for name in ("train", "val") for line in (out / f"{name}.jsonl").open()]
    assert sorted(ids) == sorted(r["id"] for r in records())


def test_a_failed_out_dir_write_leaves_the_earlier_split_files_whole(cli, tmp_path, monkeypatch):
    """A full disk on one split file must not leave the others of the new run beside the old ones:
    their records would be in two splits."""
    import contextlib
    import errno

    import xrtools.split

    path = write_jsonl(tmp_path / "m.jsonl", records())
    out = tmp_path / "out"
    assert cli(main, path, "--val", "0.2", "--test", "0.2", "--seed", "1", "--out-dir", out).exit_code == 0
    before = {p.name: p.read_text() for p in out.iterdir()}
    real = xrtools.split.atomic_output

    @contextlib.contextmanager
    def full_on_train(target, mode="w"):
        with real(target, mode) as stream:
            if str(target).endswith("train.jsonl"):
                def flush():
                    raise OSError(errno.ENOSPC, "No space left on device")
                stream.flush = flush
            yield stream

    monkeypatch.setattr(xrtools.split, "atomic_output", full_on_train)
    result = cli(main, path, "--val", "0.2", "--test", "0.2", "--seed", "2", "--out-dir", out)
    assert result.exit_code == 1 and "No space left on device" in result.stderr
    assert {p.name: p.read_text() for p in out.iterdir()} == before


def test_a_numeric_patient_id_is_the_same_patient_as_its_digits(cli, tmp_path):
    recs = [{"id": f"r{i}", "label": "ab"[i % 2], "patient": (i // 2) if i % 2 else str(i // 2)} for i in range(80)]
    result = cli(main, write_jsonl(tmp_path / "m.jsonl", recs), "--val", "0.5")
    assert result.exit_code == 0
    split_of = {}
    for r in result.records:
        split_of.setdefault(str(r["patient"]), set()).add(r["split"])
    assert len(split_of) == 40 and all(len(s) == 1 for s in split_of.values())


def test_check_finds_leaking_patients(cli, tmp_path):
    recs = [{"id": "1", "patient": "p1", "split": "train"}, {"id": "2", "patient": "p1", "split": "test"},
            {"id": "3", "patient": "p2", "split": "train"}]
    result = cli(main, write_jsonl(tmp_path / "m.jsonl", recs), "--check")
    assert result.exit_code == 1 and "p1: test, train" in result.stderr and result.stdout == ""
    clean = cli(main, write_jsonl(tmp_path / "ok.jsonl", recs[1:]), "--check")
    assert clean.exit_code == 0
    typo = cli(main, write_jsonl(tmp_path / "m.jsonl", recs), "--check", "--group-by", "patient_id")
    assert typo.exit_code == 1 and "no record has a 'patient_id' field: nothing to check" in typo.stderr


def test_group_by_other_field_and_none(cli, tmp_path):
    recs = [{"id": str(i), "study": f"s{i // 4}", "label": "ab"[i % 2]} for i in range(80)]
    path = write_jsonl(tmp_path / "m.jsonl", recs)
    out = cli(main, path, "--val", "0.25", "--group-by", "study").records
    where = collections.defaultdict(set)
    for r in out:
        where[r["study"]].add(r["split"])
    assert all(len(s) == 1 for s in where.values())
    assert cli(main, path, "--val", "0.25", "--group-by", "none").exit_code == 0


@pytest.mark.parametrize("args, code, message", [
    pytest.param(["--val", "0.6", "--test", "0.5"], 2, "leave nothing for train", id="val-and-test-over-1"),
    pytest.param([], 2, "nothing to do", id="no-options"),
    pytest.param(["--val", "1.5"], 2, "--val", id="val-above-1"),
    pytest.param(["--folds", "3", "--fold", "3"], 2, "--fold 3 is not in 0..2", id="fold-out-of-range"),
    pytest.param(["--folds", "1"], 2, "--folds", id="one-fold"),
    pytest.param(["--folds", "3", "--val", "0.2"], 2, "it takes no --val or --test", id="folds-and-val"),
    pytest.param(["--fold", "1", "--val", "0.2"], 2, "--fold needs --folds K", id="fold-without-folds"),
    pytest.param(["--val", "0.2", "-o", "x.jsonl", "--out-dir", "d"], 2, "two destinations", id="o-and-out-dir"),
])
def test_bad_arguments(cli, tmp_path, args, code, message):
    result = cli(main, write_jsonl(tmp_path / "m.jsonl", records(n=30)), *args)
    assert result.exit_code == code and message in result.stderr


@pytest.mark.parametrize("lines, message", [
    pytest.param(['{"id": "a"}', '{"id": "a"}'], "m.jsonl:2: id 'a' again (first on line 1)", id="duplicate-id"),
    pytest.param(['{"id": "a", "patient": true}'], "m.jsonl:1: patient true is not an id (a non-empty string or "
                 "a whole number)", id="boolean-patient"),
    pytest.param(['{"id": "a", "patient": ""}'], 'm.jsonl:1: patient "" is not an id', id="empty-patient"),
    pytest.param(['{"id": "a", "study": ["s"]}'], 'm.jsonl:1: study ["s"] is not an id', id="list-study"),
    pytest.param(['{"id": "a"}', '[1, 2]'], ":2: expected a JSON object, got list", id="list-not-object"),
    pytest.param(['{"path": "x.png"}'], ":1: record has no 'id' string", id="no-id"),
    pytest.param([], "m.jsonl: no records to split (the manifest is empty)", id="empty"),
    pytest.param(['{"id": "a", "label": "x"}', '{"id": "b", "label": 1}'],
                 "m.jsonl:2: label 1 is not a class name", id="number-label"),
    pytest.param(['{"id": "a", "label": ["x"]}'], 'm.jsonl:1: label ["x"] is not a class name', id="list-label"),
    pytest.param(['{"id": "a", "labels": ["x"]}'], "m.jsonl:1: labels is a list", id="labels-a-list"),
    pytest.param(['{"id": "a", "split": "../x"}'], 'm.jsonl:1: split "../x" is not train, val or test',
                 id="split-that-is-a-path"),
    pytest.param(['{"id": "a", "x": ' + "[" * 5000 + "]" * 5000 + "}"], "m.jsonl:1: not a record: JSON nested",
                 id="nested-5000-deep"),
])
def test_bad_manifests(cli, tmp_path, lines, message):
    path = tmp_path / "m.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    for args in (["--val", "0.5"], ["--check"], ["--val", "0.5", "--out-dir", tmp_path / "out"]):
        result = cli(main, path, *args)
        assert result.exit_code == 1 and message in result.stderr and len(result.stderr.splitlines()) == 1
        assert result.stdout == "" and not (tmp_path / "out").exists()


def test_nothing_left_to_split_is_an_error(cli, tmp_path):
    result = cli(main, write_jsonl(tmp_path / "m.jsonl", [{"id": "a", "split": "val"}]), "--val", "0.5")
    assert result.exit_code == 1 and "no records to split: every record already has a val/test split" in result.stderr


def test_empty_split_is_an_error(cli, tmp_path):
    recs = [{"id": str(i), "patient": "only-one", "label": "a"} for i in range(5)]
    result = cli(main, write_jsonl(tmp_path / "m.jsonl", recs), "--val", "0.2")
    assert result.exit_code == 1 and "split is empty" in result.stderr


def test_class_missing_from_a_split_is_warned(cli, tmp_path):
    recs = [{"id": str(i), "label": "rare" if i == 0 else "common"} for i in range(50)]
    result = cli(main, write_jsonl(tmp_path / "m.jsonl", recs), "--val", "0.2")
    assert result.exit_code == 0 and "'rare' has no examples in the val split" in result.stderr


def test_stratify_groups_beats_chance_on_fourteen_labels():
    rng = np.random.default_rng(0)
    n, labels, shares = 6000, 14, [0.8, 0.1, 0.1]
    group_of = np.repeat(np.arange(n // 3), 3)
    y = (rng.random((n, labels)) < np.linspace(0.02, 0.5, labels)).astype(np.float32)

    def worst_gap(part):
        return max(np.abs(y[part == p].mean(0) - y.mean(0)).max() for p in range(3))

    part = stratify_groups(group_of, y, shares, np.random.default_rng(1))[group_of]
    for p, share in enumerate(shares):
        assert abs((part == p).mean() - share) < 0.005
    chance = np.random.default_rng(2).choice(3, size=n // 3, p=shares)[group_of]
    assert worst_gap(part) < 0.5 * worst_gap(chance)
    assert worst_gap(part) < 0.025


def test_multilabel_synthetic_chexpert_split(cli, synth):
    from xrtools.index import main as index

    manifest = cli(index, synth("chexpert", count=400)).stdout
    out = cli(main, "--val", "0.2", "--test", "0.2", "--resplit", input=manifest)
    assert out.exit_code == 0 and "percentage points" in out.stderr
    assert {r["split"] for r in out.records} == {"train", "val", "test"}


def test_real_chexpert_split_quality(cli, tmp_path):
    """The issue's guarantee: 14 labels, by patient, 80/10/10, every rate within 1 point."""
    from xrtools.index import main as index

    manifest = tmp_path / "chexpert.jsonl"
    assert cli(index, shared("CheXpert-v1.0-small", "train.csv"), "-o", manifest).exit_code == 0
    out = tmp_path / "split.jsonl"
    result = cli(main, manifest, "--val", "0.1", "--test", "0.1", "--resplit", "-o", out)
    assert result.exit_code == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    names = sorted({n for r in recs for n in r["labels"]})
    assert len(names) == 14
    where = collections.defaultdict(set)
    for r in recs:
        where[r["patient"]].add(r["split"])
    assert all(len(s) == 1 for s in where.values())

    def rates(rs):
        return np.array([sum(r["labels"].get(n) == 1 for r in rs) / len(rs) for n in names])

    overall = rates(recs)
    for split, rs in by_split(recs).items():
        assert np.abs(rates(rs) - overall).max() < 0.01, split


def test_an_out_dir_holding_the_manifest_read_is_refused(cli, tmp_path):
    """Splitting DIR/train.jsonl into DIR would remove DIR/test.jsonl, whose records it never read."""
    path = write_jsonl(tmp_path / "m.jsonl", records(n=60))
    assert cli(main, path, "--val", "0.2", "--test", "0.2", "--out-dir", tmp_path / "sd").exit_code == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "sd").iterdir()}
    result = cli(main, tmp_path / "sd" / "train.jsonl", "--val", "0.2", "--out-dir", tmp_path / "sd")
    assert result.exit_code == 2 and "is a split file of --out-dir" in result.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / "sd").iterdir()} == before
    beside = write_jsonl(tmp_path / "sd" / "all.jsonl", records(n=60))     # another file there is fine
    assert cli(main, beside, "--val", "0.2", "--out-dir", tmp_path / "sd").exit_code == 0
