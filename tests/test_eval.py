"""xr-eval: sections per split, thresholds tuned on val, --by, --aggregate, bootstrap, formats,
plots, leaderboard, and the bad inputs — on hand-made prediction records and a real model's."""

import csv
import io
import json

import numpy as np
import pytest
from conftest import write_jsonl
from sklearn import metrics as m
from xrtools.eval import main

rng = np.random.default_rng(3)


def binary_records(n=120, splits=("val", "test"), **extra):
    out = []
    for i in range(n):
        y = int(rng.random() < 0.4)
        p = float(np.clip(0.3 * y + 0.7 * rng.random(), 0, 1))
        out.append({"id": f"r{i}", "label": "PNEUMONIA" if y else "NORMAL", "patient": f"p{i // 2}",
                    "split": splits[i % len(splits)], "group": ["XR_WRIST", "XR_HAND"][i % 3 == 0],
                    "study": f"s{i // 3}", "scores": {"NORMAL": round(1 - p, 6), "PNEUMONIA": round(p, 6)},
                    **extra})
    return out


def truth_and_prob(records, split):
    part = [r for r in records if r["split"] == split]
    return (np.array([r["label"] == "PNEUMONIA" for r in part], int),
            np.array([r["scores"]["PNEUMONIA"] for r in part]))


def evaluate(cli, tmp_path, records, *args):
    result = cli(main, write_jsonl(tmp_path / "p.jsonl", records), "--format", "json", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout), result.stderr


def test_a_section_per_split_with_sklearns_numbers(cli, tmp_path):
    recs = binary_records()
    report, _ = evaluate(cli, tmp_path, recs)
    assert list(report["sections"]) == ["val", "test"]
    y, p = truth_and_prob(recs, "test")
    test = report["sections"]["test"]
    assert test["n"] == len(y) and test["auc"] == pytest.approx(m.roc_auc_score(y, p))
    assert test["kappa"] == pytest.approx(m.cohen_kappa_score(y, p >= 0.5))
    assert test["confusion"]["labels"] == ["NORMAL", "PNEUMONIA"]


@pytest.mark.parametrize("rule", ["youden", "sens=0.95", "spec=0.8"])
def test_threshold_rules_are_chosen_on_val_and_applied_to_test(cli, tmp_path, rule):
    from libxr.judging.thresholds import choose, parse

    recs = binary_records()
    report, _ = evaluate(cli, tmp_path, recs, "--threshold", rule)
    yv, pv = truth_and_prob(recs, "val")
    cut = choose(parse(rule), yv, pv)
    assert report["threshold"] == pytest.approx(cut) and report["tuned_on"] == "val"
    yt, pt = truth_and_prob(recs, "test")
    assert report["sections"]["test"]["sensitivity"] == pytest.approx(m.recall_score(yt, pt >= cut))
    if rule == "sens=0.95":
        assert report["sections"]["val"]["sensitivity"] >= 0.95


def test_a_rule_without_a_val_split_warns_that_it_flatters(cli, tmp_path):
    report, err = evaluate(cli, tmp_path, binary_records(splits=("test",)), "--threshold", "youden")
    assert report["tuned_on"] == "all" and "flatters" in err


def test_by_group_and_study_aggregation(cli, tmp_path):
    recs = binary_records()
    for r in recs:      # a study shares its truth
        r["label"] = "PNEUMONIA" if int(r["study"][1:]) % 2 else "NORMAL"
    report, _ = evaluate(cli, tmp_path, recs, "--by", "group", "--split", "test")
    groups = report["sections"]["test"]["by"]["group"]
    wrist = [r for r in recs if r["split"] == "test" and r["group"] == "XR_WRIST"]
    assert groups["XR_WRIST"]["n"] == len(wrist)
    assert groups["XR_WRIST"]["auc"] == pytest.approx(m.roc_auc_score(
        [r["label"] == "PNEUMONIA" for r in wrist], [r["scores"]["PNEUMONIA"] for r in wrist]))
    report, _ = evaluate(cli, tmp_path, [dict(r, split="test") for r in recs], "--aggregate", "study")
    studies = {}
    for r in recs:
        studies.setdefault(r["study"], []).append(r)
    y = [s[0]["label"] == "PNEUMONIA" for s in studies.values()]
    p = [np.mean([r["scores"]["PNEUMONIA"] for r in s]) for s in studies.values()]
    assert report["sections"]["test"]["n"] == len(studies) == 40
    assert report["sections"]["test"]["auc"] == pytest.approx(m.roc_auc_score(y, p), abs=1e-9)


def test_bootstrap_intervals_bracket_the_estimate_and_repeat_with_the_seed(cli, tmp_path):
    recs = binary_records()
    a, _ = evaluate(cli, tmp_path, recs, "--bootstrap", 200, "--seed", 4)
    b, _ = evaluate(cli, tmp_path, recs, "--bootstrap", 200, "--seed", 4)
    c, _ = evaluate(cli, tmp_path, recs, "--bootstrap", 200, "--seed", 5)
    test = a["sections"]["test"]
    for key in ("auc", "accuracy", "sensitivity", "specificity", "kappa", "f1"):
        low, high = test["ci"][key]
        assert low <= test[key] <= high and high - low > 0.01
    assert a == b and a["sections"]["test"]["ci"] != c["sections"]["test"]["ci"]


THREE = ["COVID", "NORMAL", "Viral Pneumonia"]


def three_class_records(n=90, decimals=None):
    recs = []
    for i in range(n):
        p = rng.dirichlet(np.ones(3)) + np.eye(3)[i % 3] * 0.5
        p /= p.sum()
        recs.append({"id": str(i), "label": THREE[i % 3],
                     "scores": dict(zip(THREE, map(float, p if decimals is None else p.round(decimals))))})
    return recs


def test_multiclass_and_multilabel_predictions(cli, tmp_path):
    names = THREE
    recs = three_class_records()
    report, _ = evaluate(cli, tmp_path, recs, "--plots", tmp_path / "mc")
    section = report["sections"]["all"]
    assert len(list((tmp_path / "mc").iterdir())) == 4
    y = [i % 3 for i in range(90)]
    probs = np.array([[r["scores"][n] for n in names] for r in recs])
    assert section["auc_macro"] == pytest.approx(m.roc_auc_score(y, probs, multi_class="ovr"))
    assert len(section["confusion"]["matrix"]) == 3 and set(section["per_class"]) == set(names)
    labels = ["Edema", "Effusion"]
    recs = [{"id": str(i), "labels": {"Edema": i % 2, "Effusion": -1 if i % 5 == 0 else (i // 2) % 2},
             "scores": {"Edema": 0.3 + 0.4 * (i % 2), "Effusion": float(rng.random())}} for i in range(60)]
    report, _ = evaluate(cli, tmp_path, recs, "--plots", tmp_path / "ml", "--threshold", "youden")
    section = report["sections"]["all"]
    assert set(section["per_label"]) == set(labels) and section["per_label"]["Effusion"]["n"] == 48
    assert len(report["threshold"]) == 2 and len(list((tmp_path / "ml").iterdir())) == 4
    assert section["per_label"]["Edema"]["auc"] == 1.0


def test_ece_and_brier_before_and_after_the_records_temperature_by_hand(cli, tmp_path):
    """Scores calibrated with T = 2: the raw ones are p² / (p² + (1 − p)²). ECE in 15 equal-width bins of
    the positive-class probability (10 would put 0.12 and 0.18 together and give 0.252 after)."""
    p, y = [0.12, 0.18, 0.9, 0.9, 0.55], [1, 0, 1, 1, 0]
    recs = [{"id": str(i), "label": ["NORMAL", "PNEUMONIA"][t], "scores": {"NORMAL": 1 - q, "PNEUMONIA": q},
             "temperature": 2} for i, (q, t) in enumerate(zip(p, y))]
    section = evaluate(cli, tmp_path, recs)[0]["sections"]["all"]
    # after: bins 1, 2, 13, 8 — 1/5·|1 − .12| + 1/5·|0 − .18| + 2/5·|1 − .9| + 1/5·|0 − .55|
    assert section["ece"] == pytest.approx(0.176 + 0.036 + 0.04 + 0.11)
    assert section["brier"] == pytest.approx(m.brier_score_loss(y, p)) == pytest.approx(0.22586)
    raw = np.array(p) ** 2 / (np.array(p) ** 2 + (1 - np.array(p)) ** 2)    # .0183 .0460 .9878 .9878 .5990
    # before: bins 0, 0, 14, 8 — 2/5·|½ − (.0183 + .0460)/2| + 2/5·|1 − .9878| + 1/5·|0 − .5990|
    assert section["ece_raw"] == pytest.approx(0.4 * (0.5 - raw[:2].mean()) + 0.4 * (1 - raw[2]) + 0.2 * raw[4])
    assert section["ece_raw"] == pytest.approx(0.311835, abs=1e-6)
    assert section["brier_raw"] == pytest.approx(m.brier_score_loss(y, raw))
    assert section["log_loss_raw"] == pytest.approx(m.log_loss(y, raw))
    assert section["temperature"] == 2
    table = cli(main, tmp_path / "p.jsonl", "--format", "md").stdout
    assert "| ece | 0.362 |" in table and "| ece_raw | 0.312 |" in table and "| temperature | 2.000 |" in table


def test_multilabel_records_are_undone_per_label(cli, tmp_path):
    t = {"Edema": 2.0, "Effusion": 0.5}
    recs = [{"id": str(i), "labels": {"Edema": i % 2, "Effusion": -1 if i % 5 == 0 else (i // 2) % 2},
             "scores": {"Edema": round(0.3 + 0.4 * (i % 2) + 0.01 * (i % 7), 6),
                        "Effusion": round(float(rng.random()), 6)}, "temperature": t} for i in range(60)]
    section = evaluate(cli, tmp_path, recs)[0]["sections"]["all"]
    briers = []
    for label, temperature in t.items():
        stated = [r for r in recs if r["labels"][label] in (0, 1)]
        q = np.array([r["scores"][label] for r in stated])
        raw = q ** temperature / (q ** temperature + (1 - q) ** temperature)
        briers.append(m.brier_score_loss([r["labels"][label] for r in stated], raw))
    assert section["brier_raw"] == pytest.approx(np.mean(briers)) and section["temperature"] == t
    assert section["brier_raw"] != pytest.approx(section["brier"])
    recs[2]["temperature"] = {"Edema": 2.0}
    result = cli(main, write_jsonl(tmp_path / "p.jsonl", recs))
    assert result.exit_code == 1 and "p.jsonl:3: temperature {'Edema': 2.0} is not one positive number per label " \
        "(Edema, Effusion)" in result.stderr


def test_multilabel_records_with_and_without_a_shift_in_one_file_are_undone_each_by_its_own(cli, tmp_path):
    """A platt run's records and a temperature-only run's, concatenated: each record's fields undo
    its own scores (no shift counts as 0)."""
    t, b = {"Edema": 2.0, "Effusion": 0.5}, {"Edema": -0.5, "Effusion": 1.0}
    recs = [{"id": str(i), "labels": {"Edema": i % 2, "Effusion": (i // 2) % 2},
             "scores": {"Edema": round(0.2 + 0.5 * (i % 2) + 0.01 * (i % 7), 6),
                        "Effusion": round(0.1 + 0.8 * float(rng.random()), 6)},
             "temperature": t, **({"shift": b} if i % 2 else {})} for i in range(40)]
    section = evaluate(cli, tmp_path, recs)[0]["sections"]["all"]
    briers = []
    for label, temperature in t.items():
        q = np.array([r["scores"][label] for r in recs])
        shift = np.array([r.get("shift", {}).get(label, 0.0) for r in recs])
        raw = 1 / (1 + np.exp(-temperature * (np.log(q / (1 - q)) - shift)))
        briers.append(m.brier_score_loss([r["labels"][label] for r in recs], raw))
    assert section["brier_raw"] == pytest.approx(np.mean(briers)) and section["shift"] is None


def test_aggregated_records_name_no_shift_their_records_lack(cli, tmp_path):
    recs = [dict(r, split="test", label="PNEUMONIA" if int(r["study"][1:]) % 2 else "NORMAL")
            for r in binary_records(temperature=1.5)]
    section = evaluate(cli, tmp_path, recs, "--aggregate", "study")[0]["sections"]["test"]
    assert section["temperature"] == 1.5 and "shift" not in section
    recs = [dict(r, shift=0.25) for r in recs]
    assert evaluate(cli, tmp_path, recs, "--aggregate", "study")[0]["sections"]["test"]["shift"] == 0.25


def test_a_shift_on_a_multiclass_record_names_the_line(cli, tmp_path):
    recs = [{"id": str(i), "label": "abc"[i % 3], "temperature": 1.2,
             "scores": {c: round(0.6 if c == "abc"[i % 3] else 0.2, 6) for c in "abc"}} for i in range(12)]
    recs[4]["shift"] = 0.5
    path = write_jsonl(tmp_path / "p.jsonl", recs)
    result = cli(main, path)
    assert result.exit_code == 1 and f"{path}:5: shift on a multiclass task" in result.stderr


def test_the_reliability_diagram_draws_before_and_after_with_each_ece(cli, tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    drawn = {}          # each figure's title and the curves on it, when its legend is drawn
    legend = Axes.legend
    monkeypatch.setattr(Axes, "legend", lambda ax, *a, **k: drawn.update(
        {ax.get_title(): [line.get_label() for line in ax.get_lines()]}) or legend(ax, *a, **k))
    report, _ = evaluate(cli, tmp_path, binary_records(temperature=1.7), "--plots", tmp_path / "plots")
    assert (tmp_path / "plots" / "val-calibration.png").read_bytes()[:4] == b"\x89PNG"
    for split, section in report["sections"].items():
        assert drawn[f"Reliability — {split}"] == [f"before calibration (ECE {section['ece_raw']:.3f})",
                                                   f"calibrated (ECE {section['ece']:.3f})", "perfect"]
    report, _ = evaluate(cli, tmp_path, binary_records(), "--plots", tmp_path / "raw")     # raw scores: one curve
    assert drawn["Reliability — val"] == [f"scores (ECE {report['sections']['val']['ece']:.3f})", "perfect"]


def test_rounded_class_scores_are_rescaled_and_wrong_sums_named(cli, tmp_path):
    """Scores rounded in the file (rows sum to 0.9999) are scored as the rescaled probabilities;
    rows that are not one probability per class are an error naming the line."""
    recs = three_class_records(60, decimals=3)
    report, _ = evaluate(cli, tmp_path, recs)
    probs = np.array([[r["scores"][n] for n in THREE] for r in recs])
    probs /= probs.sum(1, keepdims=True)
    y = [THREE.index(r["label"]) for r in recs]
    assert report["sections"]["all"]["auc_macro"] == pytest.approx(m.roc_auc_score(y, probs, multi_class="ovr"))
    recs[7]["scores"] = {"COVID": 0.9, "NORMAL": 0.5, "Viral Pneumonia": 0.1}
    path = write_jsonl(tmp_path / "wrong.jsonl", recs)
    result = cli(main, path)
    assert result.exit_code == 1 and f"{path}:8: the class scores sum to 1.5, not 1" in result.stderr


def test_formats_tables_and_plots(cli, tmp_path):
    recs = binary_records()
    path = write_jsonl(tmp_path / "p.jsonl", recs)
    md = cli(main, path, "--format", "md", "--by", "group")
    assert md.exit_code == 0 and "| metric | val | test |" in md.stdout and "### test: by group" in md.stdout
    table = cli(main, path, "--json", tmp_path / "e.json", "--plots", tmp_path / "plots")
    assert table.exit_code == 0 and table.stdout == ""
    assert "sensitivity" in table.stderr and "confusion" in table.stderr
    assert json.loads((tmp_path / "e.json").read_text())["sections"]["test"]["n"] == 60
    pngs = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert pngs == sorted(f"{s}-{k}.png" for s in ("val", "test") for k in ("roc", "pr", "calibration", "confusion"))
    assert all((tmp_path / "plots" / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)


def test_training_curves_from_a_run_directory(cli, trained, tmp_path):
    from xrtools.predict import main as predict

    scored = cli(predict, "-m", trained["ckpt"], trained["h5"]).stdout
    path = tmp_path / "s.jsonl"
    path.write_text(scored)
    run = trained["ckpt"].parent
    result = cli(main, path, "--run", run, "--plots", tmp_path / "plots", "--json", tmp_path / "e.json")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "plots" / "training.png").exists() and (tmp_path / "plots" / "test-roc.png").exists()
    assert json.loads((tmp_path / "e.json").read_text())["name"] == "run"


def test_leaderboard_ranks_runs(cli, tmp_path):
    reports = []
    for i, noise in enumerate((0.9, 0.3, 0.6)):
        recs = []
        for j in range(80):
            y = j % 2
            p = float(np.clip(0.5 * y + noise * rng.random() + (0.5 - noise) / 2, 0, 1))
            recs.append({"id": str(j), "label": ["NORMAL", "PNEUMONIA"][y], "split": "test",
                         "scores": {"NORMAL": 1 - p, "PNEUMONIA": p}})
        out = tmp_path / f"e{i}.json"
        assert cli(main, write_jsonl(tmp_path / f"p{i}.jsonl", recs), "--json", out, "--name", f"run{i}",
                   "-q").exit_code == 0
        reports.append(out)
    result = cli(main, "--leaderboard", *reports)
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["run"] for r in rows] == ["run1", "run2", "run0"] and [r["rank"] for r in rows] == ["1", "2", "3"]
    assert float(rows[0]["auc"]) >= float(rows[1]["auc"]) >= float(rows[2]["auc"])
    by_loss = list(csv.DictReader(io.StringIO(cli(main, "--leaderboard", *reports, "--rank-by", "log_loss").stdout)))
    assert float(by_loss[0]["log_loss"]) <= float(by_loss[-1]["log_loss"])
    bad = cli(main, "--leaderboard", *reports, "--rank-by", "charm")
    assert bad.exit_code == 2 and "no report has it" in bad.stderr


@pytest.mark.parametrize("edit, line, message", [
    pytest.param(lambda rs: rs[4].pop("scores"), 5, "has no `scores`", id="no-scores"),
    pytest.param(lambda rs: rs[6].pop("label"), 7, "no `label` or `labels`", id="no-label"),
    pytest.param(lambda rs: rs[2].update(label="COVID"), 3, "label 'COVID' is not one of the scored classes",
                 id="label-not-scored"),
    pytest.param(lambda rs: rs[8]["scores"].update(COVID=0.1), 9, "earlier records had",
                 id="extra-class-in-scores"),
    pytest.param(lambda rs: rs[1]["scores"].update(NORMAL="high"), 2,
                 "the score of 'NORMAL' is not a number ('high')", id="score-a-string"),
    pytest.param(lambda rs: rs[3]["scores"].update(PNEUMONIA=1.3), 4,
                 "the score of 'PNEUMONIA' is not a probability", id="score-above-1"),
    pytest.param(lambda rs: rs[5]["scores"].update(PNEUMONIA=float("nan")), 6,
                 "is not a probability from 0 to 1 (nan)", id="score-nan"),
    pytest.param(lambda rs: rs[2]["scores"].update(PNEUMONIA=True), 3,
                 "the score of 'PNEUMONIA' is not a number (True)", id="score-a-boolean"),
    pytest.param(lambda rs: rs[4]["scores"].update(NORMAL=None), 5,
                 "the score of 'NORMAL' is not a number (None)", id="score-null"),
    pytest.param(lambda rs: rs[3].update(temperature=0), 4, "temperature 0 is not a positive number",
                 id="temperature-0"),
    pytest.param(lambda rs: rs[3].update(temperature="2"), 4, "temperature '2' is not a positive number",
                 id="temperature-a-string"),
    pytest.param(lambda rs: rs[3].update(temperature=True), 4, "temperature True is not a positive number",
                 id="temperature-a-boolean"),
    pytest.param(lambda rs: rs[3].update(temperature={"PNEUMONIA": 2}), 4,
                 "temperature {'PNEUMONIA': 2} is not a positive number", id="temperature-per-label-on-binary"),
    pytest.param(lambda rs: rs[3].update(temperature=1.5, shift=float("inf")), 4, "shift inf is not a finite number",
                 id="shift-infinite"),
    pytest.param(lambda rs: rs[3].update(shift=-0.5), 4, "shift without a temperature", id="shift-alone"),
    pytest.param(lambda rs: rs[2]["scores"].update(NORMAL=0.9, PNEUMONIA=0.9), 3, "the class scores sum to 1.8",
                 id="binary-scores-not-summing-to-1"),
    pytest.param(lambda rs: rs[0].update(scores={"NORMAL": 1.0}), 1,
                 "scores for one class only ('NORMAL'): a classifier scores two classes or more", id="one-class"),
])
def test_bad_prediction_records_name_the_line(cli, tmp_path, edit, line, message):
    recs = binary_records(20)
    edit(recs)
    path = write_jsonl(tmp_path / "p.jsonl", recs)
    result = cli(main, path)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"xr-eval: error: {path}:{line}: ") and message in result.stderr


@pytest.mark.parametrize("args, code, message", [
    pytest.param(["--threshold", "best"], 2, "youden, sens=0.95", id="unknown-threshold-rule"),
    pytest.param(["--split", "train"], 1, "no scored records of split train", id="split-without-records"),
    pytest.param(["--by", "hospital"], 1, "no record has a `hospital` field", id="by-absent-field"),
    pytest.param(["--aggregate", "visit"], 1, "has no `visit`", id="aggregate-by-absent-field"),
    pytest.param(["-o", "report.md"], 2, "give --format md or --format json", id="output-of-tables"),
    pytest.param(["--tune-on", "valid"], 2, "'valid' is not one of 'train', 'val', 'test'", id="tune-on-a-split-name-typo"),
])
def test_bad_options(cli, tmp_path, args, code, message):
    result = cli(main, write_jsonl(tmp_path / "p.jsonl", binary_records(20)), *args)
    assert result.exit_code == code and message in result.stderr


def test_one_class_truth_reports_auc_as_undefined(cli, tmp_path):
    recs = [r for r in binary_records(60) if r["label"] == "PNEUMONIA"]
    report, err = evaluate(cli, tmp_path, recs)
    assert report["sections"]["test"]["auc"] is None and "ROC-AUC is undefined" in err
    assert report["sections"]["test"]["sensitivity"] is not None


def test_unreadable_records_are_left_out_and_counted(cli, tmp_path):
    recs = binary_records(20)
    recs[3] = {"id": "bad", "label": "NORMAL", "split": "test", "error": "x.png: truncated"}
    report, err = evaluate(cli, tmp_path, recs)
    assert report["records"] == 19
    strict = cli(main, tmp_path / "p.jsonl", "--strict", "--json", tmp_path / "e.json")
    assert strict.exit_code == 1 and strict.stderr.splitlines()[-1].startswith("xr-eval: error: --strict: 1 records")
    assert not (tmp_path / "e.json").exists()
    assert f"1 records have an `error` (unreadable images) and are left out (first {tmp_path / 'p.jsonl'}:4)" in err


def test_multilabel_truth_and_scores_that_do_not_meet_are_named(cli, tmp_path):
    recs = [{"id": str(i), "split": "test", "labels": {"A": i % 2, "Z": (i // 2) % 2},
             "scores": {"A": 0.2 + 0.6 * (i % 2), "B": 0.5}} for i in range(20)]
    report, stderr = evaluate(cli, tmp_path, recs)
    assert list(report["sections"]["test"]["per_label"]) == ["A"]
    assert f"{tmp_path / 'p.jsonl'}:1: labels with truth but no scores, not evaluated: Z" in stderr
    assert "no record states B (scored, but without truth): left out of the metrics" in stderr
    assert cli(main, tmp_path / "p.jsonl", "--strict").exit_code == 1


def test_a_record_in_two_files_is_an_error(cli, tmp_path):
    recs = binary_records(10)
    a = write_jsonl(tmp_path / "a.jsonl", recs[:6])
    b = write_jsonl(tmp_path / "b.jsonl", recs[5:])
    result = cli(main, a, b)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.strip() == f"xr-eval: error: {b}:1: id 'r5' again (first at {a}:6)"
    twice = cli(main, a, a)             # one file named twice would count its records twice
    assert twice.exit_code == 1 and twice.stderr.strip() == f"xr-eval: error: {a}:1: id 'r0' again (first at {a}:1)"


def test_files_whose_scores_list_the_classes_in_another_order_are_one_task(cli, tmp_path):
    recs = three_class_records(30)
    a = write_jsonl(tmp_path / "a.jsonl", recs[:20])
    b = write_jsonl(tmp_path / "b.jsonl", [{**r, "scores": dict(reversed(r["scores"].items()))} for r in recs[20:]])
    result = cli(main, a, b, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["sections"] == evaluate(cli, tmp_path, recs)[0]["sections"]
    cats = [{"id": str(i), "label": ["cat", "dog"][i % 2], "scores": {"cat": 0.7 - 0.4 * (i % 2), "dog": 0.3 + 0.4 * (i % 2)}}
            for i in range(8)]
    a = write_jsonl(tmp_path / "c1.jsonl", cats[:4])
    b = write_jsonl(tmp_path / "c2.jsonl", [{**r, "scores": {"dog": r["scores"]["dog"], "cat": r["scores"]["cat"]}}
                                           for r in cats[4:]])
    joined = json.loads(cli(main, a, b, "--format", "json", "-q").stdout)
    assert joined["task"]["names"] == ["cat", "dog"] and joined["sections"]["all"]["accuracy"] == 1.0


def test_multiclass_per_class_decisions_are_the_argmax_ones(cli, tmp_path):
    recs = three_class_records(90)
    report, _ = evaluate(cli, tmp_path, recs)
    y = np.array([THREE.index(r["label"]) for r in recs])
    pred = np.array([[r["scores"][n] for n in THREE] for r in recs]).argmax(1)
    for j, name in enumerate(THREE):
        row = report["sections"]["all"]["per_class"][name]
        truth, called = y == j, pred == j
        tn, _, fn, _ = m.confusion_matrix(truth, called).ravel()
        assert row["npv"] == pytest.approx(tn / (tn + fn))
        assert row["kappa"] == pytest.approx(m.cohen_kappa_score(truth, called))
        assert row["balanced_accuracy"] == pytest.approx(m.balanced_accuracy_score(truth, called))


@pytest.mark.parametrize("args", [[], ["--by", "group"], ["--bootstrap", "20"]])
def test_multilabel_splits_and_groups_with_nothing_stated_are_undefined_not_a_crash(cli, tmp_path, args):
    recs = [{"id": str(i), "labels": {"E": i % 2, "A": 1 - i % 2}, "scores": {"E": 0.2 + 0.6 * (i % 2), "A": 0.5},
             "split": "val", "group": "G1"} for i in range(6)]
    recs += [{"id": f"u{i}", "labels": {"E": -1, "A": None}, "scores": {"E": 0.2, "A": 0.3}, "split": "test",
              "group": "G2"} for i in range(3)]
    report, _ = evaluate(cli, tmp_path, recs, *args)
    test = report["sections"]["test"]
    assert test["stated"] == 0 and test["accuracy"] is None and test["f1_micro"] is None
    assert report["sections"]["val"]["accuracy"] == pytest.approx(0.75)     # E all right, A (0.5: yes) half


def test_bootstrap_groups_patient_1_and_its_string_as_one_and_patient_0_as_a_patient(cli, tmp_path):
    recs = binary_records(40, splits=("test",))
    for i, r in enumerate(recs):
        r["patient"] = [0, "0", 1, "1"][i % 4]            # two patients, each spelt two ways
    report, _ = evaluate(cli, tmp_path, recs, "--bootstrap", "50")
    section = report["sections"]["test"]
    assert section["ci_resampled"] == "patients"
    low, high = section["ci"]["accuracy"]
    # two patients: a resample holds patient 0, patient 1, or both: at most three accuracies
    values = set()
    for members in ([0, 1], [2, 3], [0, 1, 2, 3]):
        part = [r for i, r in enumerate(recs) if i % 4 in members]
        values.add(np.mean([(r["scores"]["PNEUMONIA"] >= 0.5) == (r["label"] == "PNEUMONIA") for r in part]))
    assert min(values) <= low <= high <= max(values) and {round(low, 6), round(high, 6)} <= {round(v, 6) for v in values}


def test_aggregated_studies_keep_the_fields_their_images_share_and_refuse_a_study_in_two_splits(cli, tmp_path):
    recs = binary_records(60, splits=("test",), sex="F")
    for i, r in enumerate(recs):                        # studies of two images that share their truth
        r["study"], r["label"] = f"s{i // 2}", recs[i - i % 2]["label"]
    report, _ = evaluate(cli, tmp_path, recs, "--aggregate", "study", "--by", "sex")
    assert list(report["sections"]["test"]["by"]["sex"]) == ["F"]
    recs[1]["split"] = "val"
    result = cli(main, write_jsonl(tmp_path / "two.jsonl", recs), "--aggregate", "study")
    assert result.exit_code == 1 and "study 's0': its records are in more than one split (test, val)" in result.stderr


def test_positive_is_for_binary_tasks(cli, tmp_path):
    result = cli(main, write_jsonl(tmp_path / "p.jsonl", three_class_records(9)), "--positive", "Bogus")
    assert result.exit_code == 2 and "--positive is for binary tasks; these scores are multiclass" in result.stderr


def test_no_json_report_is_left_when_the_run_history_is_bad(cli, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"epoch": 1, "train_loss": 0.5}\n{"epoch": "x"}\n{"epoch": 3}\n')
    out = tmp_path / "e.json"
    result = cli(main, write_jsonl(tmp_path / "p.jsonl", binary_records(20)), "--run", run, "--plots",
                 tmp_path / "plots", "--json", out)
    assert result.exit_code == 1 and not out.exists()


@pytest.mark.parametrize("report, message", [
    pytest.param({"task": {"kind": "binary"}, "sections": {}}, "no sections", id="no-sections"),
    pytest.param({"task": {"kind": "foo"}, "sections": {"test": {"n": 1}}}, "task 'foo'", id="unknown-task"),
    pytest.param({"task": {"kind": "binary"}, "sections": {"test": {}}}, "KeyError: 'n'", id="section-without-n"),
    pytest.param({"task": {"kind": "binary"}, "sections": {"test": {"n": 3, "auc": "high"}}}, "auc is 'high'",
                 id="metric-not-a-number"),
])
def test_malformed_leaderboard_reports_are_one_line_errors(cli, tmp_path, report, message):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report))
    result = cli(main, "--leaderboard", path)
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"xr-eval: error: {path}: not an xr-eval JSON report (") and message in result.stderr


def test_reports_of_two_tasks_are_not_ranked_together(cli, tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"task": {"kind": "binary"}, "sections": {"test": {"n": 3, "auc": 0.9}}}))
    b.write_text(json.dumps({"task": {"kind": "multiclass"}, "sections": {"test": {"n": 3, "auc_macro": 0.8}}}))
    result = cli(main, "--leaderboard", a, b)
    assert result.exit_code == 1 and "reports of different tasks cannot be ranked together" in result.stderr
