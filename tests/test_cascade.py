"""xr-cascade: every combination mode on hand-made predictions with known answers, the cascade's
probability composition, deriving stage manifests, matching by id and the bad inputs."""

import json

import numpy as np
import pytest
from conftest import needs_commands, sh, write_jsonl
from xrtools.cascade import main

NAMES = ["Normal", "Covid", "Viral Pneumonia"]


def preds(tmp_path, name, rows, names=("NORMAL", "PNEUMONIA"), **extra):
    """rows: (id, label, probabilities, pred) -> a prediction file."""
    recs = [{"id": i, "label": label, "scores": dict(zip(names, p)), "pred": pred, **extra}
            for i, label, p, pred in rows]
    return write_jsonl(tmp_path / f"{name}.jsonl", recs)


def run(cli, *args):
    result = cli(main, *args)
    assert result.exit_code == 0, result.stderr
    return {r["id"]: r for r in result.records}


def test_vote_by_hand(cli, tmp_path):
    # three models, three records: 2-1 majority, unanimous, and a 3-way split across 3 classes
    a = preds(tmp_path, "a", [("r1", "Covid", [0.1, 0.8, 0.1], "Covid"), ("r2", "Normal", [0.9, 0.05, 0.05], "Normal"),
                              ("r3", "Normal", [0.5, 0.3, 0.2], "Normal")], NAMES)
    b = preds(tmp_path, "b", [("r1", "Covid", [0.2, 0.6, 0.2], "Covid"), ("r2", "Normal", [0.8, 0.1, 0.1], "Normal"),
                              ("r3", "Normal", [0.2, 0.7, 0.1], "Covid")], NAMES)
    c = preds(tmp_path, "c", [("r1", "Covid", [0.1, 0.2, 0.7], "Viral Pneumonia"),
                              ("r2", "Normal", [0.7, 0.2, 0.1], "Normal"),
                              ("r3", "Normal", [0.1, 0.05, 0.85], "Viral Pneumonia")], NAMES)
    out = run(cli, "vote", a, b, c)
    assert out["r1"]["pred"] == "Covid" and out["r1"]["scores"] == pytest.approx(
        {"Normal": 0, "Covid": 2 / 3, "Viral Pneumonia": 1 / 3}, abs=1e-6)
    assert out["r2"]["pred"] == "Normal" and out["r2"]["scores"]["Normal"] == 1.0
    # r3: one vote each; the tie goes to the highest mean probability: Viral 0.383 > Covid 0.35 > Normal 0.267
    assert out["r3"]["pred"] == "Viral Pneumonia"
    weighted = run(cli, "vote", a, b, c, "--weights", "1,1,3")
    assert weighted["r1"]["pred"] == "Viral Pneumonia" and weighted["r3"]["pred"] == "Viral Pneumonia"
    assert out["r1"]["label"] == "Covid"            # the record's other fields are kept


def test_mean_by_hand(cli, tmp_path):
    a = preds(tmp_path, "a", [("r1", "PNEUMONIA", [0.6, 0.4], "NORMAL"), ("r2", "NORMAL", [0.9, 0.1], "NORMAL")])
    b = preds(tmp_path, "b", [("r2", "NORMAL", [0.5, 0.5], "PNEUMONIA"), ("r1", "PNEUMONIA", [0.2, 0.8], "PNEUMONIA")])
    out = run(cli, "mean", a, b)
    assert out["r1"]["scores"] == pytest.approx({"NORMAL": 0.4, "PNEUMONIA": 0.6}) and out["r1"]["pred"] == "PNEUMONIA"
    assert out["r2"]["scores"]["PNEUMONIA"] == pytest.approx(0.3) and out["r2"]["pred"] == "NORMAL"
    weighted = run(cli, "mean", a, b, "--weights", "3,1", "--threshold", "0.45")
    assert weighted["r1"]["scores"]["PNEUMONIA"] == pytest.approx(0.5) and weighted["r1"]["pred"] == "PNEUMONIA"
    assert [r["id"] for r in cli(main, "mean", a, b).records] == ["r1", "r2"]   # first file's order


def test_route_to_experts_by_group(cli, tmp_path):
    wrist = preds(tmp_path, "wrist", [("w1", "abnormal", [0.2, 0.8], "abnormal"), ("h1", "normal", [0.9, 0.1], "normal")],
                  ("normal", "abnormal"))
    hand = preds(tmp_path, "hand", [("h1", "normal", [0.3, 0.7], "abnormal")], ("normal", "abnormal"))
    for path, group in ((wrist, None), (hand, None)):
        recs = [json.loads(line) for line in path.read_text().splitlines()]
        for r in recs:
            r["group"] = "XR_WRIST" if r["id"].startswith("w") else "XR_HAND"
        write_jsonl(path, recs)
    out = run(cli, "route", "--expert", f"XR_WRIST={wrist}", "--expert", f"XR_HAND={hand}")
    assert out["w1"]["scores"]["abnormal"] == 0.8 and out["h1"]["scores"]["abnormal"] == 0.7
    assert out["h1"]["expert"] == str(hand)
    missing = cli(main, "route", "--expert", f"XR_WRIST={wrist}")
    assert missing.exit_code == 1 and "no expert for it (give --expert XR_HAND=FILE)" in missing.stderr


def test_stack_fits_on_val_and_equals_sklearn(cli, tmp_path):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    split = np.where(np.arange(200) < 100, "val", "test")
    probs = [np.clip(y * s + rng.random(200) * (1 - s), 0.001, 0.999) for s in (0.5, 0.2, 0.05)]
    files = []
    for k, p in enumerate(probs):
        rows = [(f"r{i}", ["NORMAL", "PNEUMONIA"][y[i]], [1 - p[i], p[i]], "") for i in range(200)]
        files.append(preds(tmp_path, f"m{k}", rows))
        recs = [dict(json.loads(line), split=str(split[i])) for i, line in enumerate(files[-1].read_text().splitlines())]
        write_jsonl(files[-1], recs)
    out = run(cli, "stack", *files, "--save", tmp_path / "meta.json")
    x = np.stack(probs, 1)
    model = LogisticRegression(max_iter=1000, random_state=0).fit(x[:100], y[:100])
    expected = model.predict_proba(x)[:, 1]
    got = np.array([out[f"r{i}"]["scores"]["PNEUMONIA"] for i in range(200)])
    assert got == pytest.approx(expected, abs=1e-5)
    assert model.coef_[0][0] > model.coef_[0][2]              # the informative model weighs most
    reloaded = run(cli, "stack", *files, "--load", tmp_path / "meta.json")
    assert reloaded == out
    assert json.loads((tmp_path / "meta.json").read_text())["format"] == "xr-stacker-1"


def test_chain_composes_probabilities_and_decides_through_the_gate(cli, tmp_path):
    s1 = preds(tmp_path, "s1", [("a", "Covid", [0.2, 0.8], "infected"), ("b", "Normal", [0.9, 0.1], "Normal")],
               ("Normal", "infected"))
    s2 = preds(tmp_path, "s2", [("b", "Normal", [0.7, 0.3], "Covid"), ("a", "Covid", [0.75, 0.25], "Covid")],
               ("Covid", "Viral Pneumonia"))
    out = run(cli, "chain", "--stage", s1, "--stage", s2, "--gate", "infected")
    assert out["a"]["scores"] == pytest.approx({"Normal": 0.2, "Covid": 0.6, "Viral Pneumonia": 0.2})
    assert out["a"]["pred"] == "Covid"
    # b never passes the gate: stage 2's decision does not count, its probabilities still compose
    assert out["b"]["pred"] == "Normal" and out["b"]["scores"]["Covid"] == pytest.approx(0.07)
    assert sum(out["b"]["scores"].values()) == pytest.approx(1)
    assert [s["pred"] for s in out["a"]["stages"]] == ["infected", "Covid"]
    assert list(out["a"]["scores"]) == ["Normal", "Covid", "Viral Pneumonia"]


def test_derive_stage_manifests(cli, tmp_path):
    recs = [{"id": str(i), "label": NAMES[i % 3], "path": f"{i}.png"} for i in range(9)]
    manifest = write_jsonl(tmp_path / "m.jsonl", recs)
    result = cli(main, "derive", manifest, "--merge", "infected=Covid,Viral Pneumonia", "--out-dir", tmp_path / "st")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split() == [str(tmp_path / "st" / "stage1.jsonl"), str(tmp_path / "st" / "infected.jsonl")]
    stage1 = [json.loads(line) for line in (tmp_path / "st" / "stage1.jsonl").read_text().splitlines()]
    stage2 = [json.loads(line) for line in (tmp_path / "st" / "infected.jsonl").read_text().splitlines()]
    assert [r["label"] for r in stage1] == ["Normal", "infected", "infected"] * 3
    assert [r["label"] for r in stage2] == ["Covid", "Viral Pneumonia"] * 3 and stage2[0]["path"] == "1.png"


@pytest.mark.parametrize("args, code, message", [
    pytest.param(["mean", "A", "B3"], 1, "scores NORMAL, PNEUMONIA, X", id="file-scoring-other-classes"),
    pytest.param(["mean", "A", "Bmissing"], 1, "is not in", id="record-missing-from-a-file"),
    pytest.param(["mean", "A", "Bdup"], 1, "again (first on line 1)", id="duplicate-id"),
    pytest.param(["mean", "A", "B", "--weights", "1"], 2, "one per file", id="too-few-weights"),
    pytest.param(["mean", "A", "B", "--weights", "nan,1"], 2, "non-negative finite numbers", id="nan-weight"),
    pytest.param(["vote", "A", "B", "--weights", "inf,1"], 2, "non-negative finite numbers", id="infinite-weight"),
    pytest.param(["chain", "--stage", "A", "--stage", "B"], 2, "need 1 --gate", id="chain-without-gate"),
    pytest.param(["chain", "--stage", "A"], 2, "two or more --stage", id="chain-of-one-stage"),
    pytest.param(["chain", "--stage", "A", "--stage", "B", "--gate", "COVID"], 1,
                 "is not one of the classes so far", id="gate-on-unknown-class"),
    pytest.param(["stack", "A", "B"], 1, "no records of split 'val'", id="stack-without-val-records"),
    pytest.param(["derive", "M", "--merge", "x=NORMAL,Ghost", "--out-dir", "D"], 1, "'Ghost' has no records",
                 id="merge-of-absent-class"),
    pytest.param(["derive", "M", "--merge", "x=NORMAL,PNEUMONIA", "--out-dir", "D"], 1, "one class only",
                 id="merge-leaving-one-class"),
    pytest.param(["derive", "M", "--merge", "stage1=NORMAL,PNEUMONIA", "--out-dir", "D"], 2,
                 "--merge: 'stage1' is stage 1's manifest", id="merge-named-stage1"),
    pytest.param(["derive", "M", "--merge", "../x=NORMAL,PNEUMONIA", "--out-dir", "D"], 2,
                 "--merge: '../x' cannot name a stage manifest in --out-dir (no /, no leading dot)",
                 id="merge-name-leaving-the-folder"),
    pytest.param(["derive", "M", "--merge", "x=A,B", "--merge", "x=C,D", "--out-dir", "D"], 2, "--merge: 'x' is given twice",
                 id="merge-name-twice"),
])
def test_bad_inputs(cli, tmp_path, args, code, message):
    rows = [("r1", "NORMAL", [0.6, 0.4], "NORMAL"), ("r2", "PNEUMONIA", [0.3, 0.7], "PNEUMONIA")]
    files = {"A": preds(tmp_path, "A", rows), "B": preds(tmp_path, "B", rows),
             "B3": preds(tmp_path, "B3", [(i, l, p + [0.0], d) for i, l, p, d in rows], ("NORMAL", "PNEUMONIA", "X")),
             "Bmissing": preds(tmp_path, "Bm", rows[:1]), "Bdup": preds(tmp_path, "Bd", [rows[0], rows[0], rows[1]]),
             "M": preds(tmp_path, "M", rows), "D": tmp_path / "out"}
    result = cli(main, *[files.get(a, a) for a in args])
    assert result.exit_code == code and message in result.stderr, result.stderr


@pytest.mark.parametrize("mode", ["mean", "vote", "stack"])
def test_unscored_records_stay_unscored(cli, tmp_path, mode):
    rows = [("r1", "NORMAL", [0.6, 0.4], "NORMAL"), ("r2", "NORMAL", [0.7, 0.3], "NORMAL"),
            ("r3", "PNEUMONIA", [0.2, 0.8], "PNEUMONIA"), ("r4", "NORMAL", [0.8, 0.2], "NORMAL"),
            ("r5", "PNEUMONIA", [0.4, 0.6], "PNEUMONIA")]
    a = preds(tmp_path, "a", rows, split="val")           # stack fits on the val records b could score
    unscored = {"id": "r1", "label": "NORMAL", "split": "val", "error": "x.png: truncated"}
    b = write_jsonl(tmp_path / "b.jsonl", [unscored] + [
        {"id": i, "label": label, "split": "val", "scores": dict(zip(("NORMAL", "PNEUMONIA"), p)), "pred": pred}
        for i, label, p, pred in rows[1:]])
    out = run(cli, mode, a, b)
    assert list(out) == ["r1", "r2", "r3", "r4", "r5"]
    assert out["r1"] == {"id": "r1", "label": "NORMAL", "split": "val", "error": f"not scored in {b}"}
    for i in ("r2", "r3", "r4", "r5"):
        assert "error" not in out[i] and set(out[i]["scores"]) == {"NORMAL", "PNEUMONIA"}
        assert out[i]["pred"] in ("NORMAL", "PNEUMONIA")


@pytest.mark.parametrize("mode", ["mean", "vote", "stack", "chain", "route"])
def test_combined_scores_drop_the_models_temperature_and_a_routed_record_keeps_its_experts(cli, tmp_path, mode):
    """xr-eval undoes a record's `temperature`: combined scores are no longer one model's, so they carry none."""
    rows = [("r1", "NORMAL", [0.6, 0.4], "NORMAL"), ("r2", "PNEUMONIA", [0.2, 0.8], "PNEUMONIA"),
            ("r3", "NORMAL", [0.8, 0.2], "NORMAL"), ("r4", "PNEUMONIA", [0.4, 0.6], "PNEUMONIA")]
    a = preds(tmp_path, "a", rows, split="val", group="XR_HAND", temperature=1.5)
    if mode == "chain":                    # stage 2 refines PNEUMONIA into two kinds
        b = preds(tmp_path, "b", [(i, label, [0.3, 0.7], "virus") for i, label, _, _ in rows], ("bacteria", "virus"),
                  temperature=0.7)
    else:
        b = preds(tmp_path, "b", rows[::-1], split="val", group="XR_HAND", temperature=0.7)
    args = {"chain": ["--stage", a, "--stage", b, "--gate", "PNEUMONIA"],
            "route": ["--expert", f"XR_HAND={b}"]}.get(mode, [a, b])
    out = run(cli, mode, *args)
    assert len(out) == 4 and all("scores" in r for r in out.values())
    assert [r.get("temperature") for r in out.values()] == [0.7 if mode == "route" else None] * 4


def test_a_cascade_through_pipes(tmp_path):
    needs_commands()
    s1 = preds(tmp_path, "s1", [("a", "Covid", [0.2, 0.8], "infected")], ("Normal", "infected"))
    s2 = preds(tmp_path, "s2", [("a", "Covid", [0.75, 0.25], "Covid")], ("Covid", "Viral Pneumonia"))
    result = sh(f"xr-cascade chain --stage {s1} --stage {s2} --gate infected | xr-eval --format json -q")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["task"]["names"] == ["Normal", "Covid", "Viral Pneumonia"]


def test_multilabel_mean_and_vote(cli, tmp_path):
    names = ("Edema", "Effusion")
    a = preds(tmp_path, "a", [("r1", None, [0.9, 0.2], ["Edema"])], names)
    b = preds(tmp_path, "b", [("r1", None, [0.3, 0.6], ["Effusion"])], names)
    c = preds(tmp_path, "c", [("r1", None, [0.7, 0.7], ["Edema", "Effusion"])], names)
    mean = run(cli, "mean", a, b, c)["r1"]
    assert mean["scores"] == pytest.approx({"Edema": 0.633333, "Effusion": 0.5}) and mean["pred"] == ["Edema",
                                                                                                   "Effusion"]
    vote = run(cli, "vote", a, b, c)["r1"]
    assert vote["scores"] == pytest.approx({"Edema": 2 / 3, "Effusion": 2 / 3}, abs=1e-6)
    assert vote["pred"] == ["Edema", "Effusion"]
    assert run(cli, "vote", a, b)["r1"]["pred"] == []          # 1 of 2 is not a majority


@pytest.mark.parametrize("names", [("Edema", "Effusion"), ("Edema", "Effusion", "Mass")], ids=["two", "three"])
def test_multilabel_records_without_pred_stay_multilabel(cli, tmp_path, names):
    """Their `labels` make them multi-label, as for xr-eval: Edema became 1 - P(Effusion) and pred a string."""
    scores = dict(zip(names, (0.9, 0.8, 0.1)))
    a = write_jsonl(tmp_path / "a.jsonl", [{"id": "a", "labels": {n: 1 for n in names}, "scores": scores}])
    out = run(cli, "mean", a, a)["a"]
    assert out["scores"] == scores and out["pred"] == ["Edema", "Effusion"]


@pytest.mark.parametrize("value, message", [
    pytest.param(1.18, "the score of 'PNEUMONIA' is not a probability from 0 to 1 (1.18)", id="above-1"),
    pytest.param(float("nan"), "the score of 'PNEUMONIA' is not a probability from 0 to 1 (nan)", id="nan"),
    pytest.param("0.7", "the score of 'PNEUMONIA' is not a number ('0.7')", id="string"),
    pytest.param(True, "the score of 'PNEUMONIA' is not a number (True)", id="boolean"),
])
@pytest.mark.parametrize("mode", ["vote", "mean", "chain"])
def test_scores_that_are_not_probabilities_are_errors_at_their_line(cli, tmp_path, value, message, mode):
    """They used to pass through (a mean of P = 1.18) or end in a traceback."""
    good = preds(tmp_path, "a", [("r1", "NORMAL", (0.8, 0.2), "NORMAL"), ("r2", "PNEUMONIA", (0.1, 0.9), "PNEUMONIA")])
    rows = [json.loads(line) for line in good.read_text().splitlines()]
    rows[1]["scores"]["PNEUMONIA"] = value
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    args = ["--stage", good, "--stage", bad, "--gate", "PNEUMONIA"] if mode == "chain" else [good, bad]
    result = cli(main, mode, *args)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.strip() == f"xr-cascade {mode}: error: {bad}:2: {message}"


def test_a_subcommand_usage_error_names_the_subcommand(cli, tmp_path):
    result = cli(main, "derive", tmp_path / "m.jsonl", "--merge", "x", "--out-dir", tmp_path / "o")
    assert result.exit_code == 2
    assert result.stderr.strip() == ("xr-cascade derive: error: Invalid value for '--merge': 'x' is not NEW=A,B "
                                     "(see 'xr-cascade derive --help')")


def stage_files(tmp_path, s1=None, s2=None):
    """Two stages over records a, b (Normal vs infected, then Covid vs Viral Pneumonia); ``s1``/``s2``:
    {(record index, field): value} changes, a value of None removing the field."""
    stages = [[{"id": i, "label": "Covid", "scores": {"Normal": 0.2, "infected": 0.8}, "pred": "infected"}
               for i in "ab"],
              [{"id": i, "label": "Covid", "scores": {"Covid": 0.75, "Viral Pneumonia": 0.25}, "pred": "Covid"}
               for i in "ab"]]
    paths = []
    for k, (recs, changes) in enumerate(zip(stages, (s1, s2)), 1):
        for (row, field), value in (changes or {}).items():
            if value is None:
                del recs[row][field]
            else:
                recs[row][field] = value
        paths.append(write_jsonl(tmp_path / f"s{k}.jsonl", recs))
    return paths


@pytest.mark.parametrize("s1, s2, where, message", [
    pytest.param(None, {(1, "pred"): None}, "s2.jsonl:2", "record has no `pred` (run xr-predict first)",
                 id="stage-2-without-pred"),
    pytest.param({(0, "pred"): None}, None, "s1.jsonl:1", "record has no `pred` (run xr-predict first)",
                 id="stage-1-without-pred"),
    pytest.param(None, {(0, "pred"): "Bacteria"}, "s2.jsonl:1",
                 "pred 'Bacteria' is not one of the stage's classes (Covid, Viral Pneumonia)", id="pred-not-a-class"),
    pytest.param({(1, "pred"): ["infected"]}, None, "s1.jsonl:2",
                 "pred ['infected'] is not one of the stage's classes (Normal, infected)", id="pred-a-list"),
    pytest.param(None, {(0, "scores"): {"Covid": 0.35, "Viral Pneumonia": 0.25}}, "s2.jsonl:1",
                 "the class scores sum to 0.6, not 1", id="stage-2-scores-short-of-1"),
    pytest.param({(1, "scores"): {"Normal": 0.5, "infected": 0.8}}, None, "s1.jsonl:2",
                 "the class scores sum to 1.3, not 1", id="stage-1-scores-past-1"),
])
def test_chain_refuses_bad_stage_records_at_their_line(cli, tmp_path, s1, s2, where, message):
    """A missing pred was a KeyError traceback; a pred of another class was copied out; scores summing
    to 0.6 composed into output scores summing to 0.904, with exit 0."""
    p1, p2 = stage_files(tmp_path, s1, s2)
    result = cli(main, "chain", "--stage", p1, "--stage", p2, "--gate", "infected")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.strip() == f"xr-cascade chain: error: {tmp_path / where}: {message}"


def test_chain_rescales_stage_scores_within_xr_evals_tolerance(cli, tmp_path):
    p1, p2 = stage_files(tmp_path, {(0, "scores"): {"Normal": 0.2, "infected": 0.795}},
                         {(0, "scores"): {"Covid": 0.75, "Viral Pneumonia": 0.255}})
    out = run(cli, "chain", "--stage", p1, "--stage", p2, "--gate", "infected")
    assert sum(out["a"]["scores"].values()) == pytest.approx(1, abs=2e-6)
    assert out["a"]["scores"]["Normal"] == round(0.2 / 0.995, 6)
    assert out["a"]["stages"][1]["scores"] == {"Covid": 0.75, "Viral Pneumonia": 0.255}    # kept as given
    assert out["b"]["scores"] == {"Normal": 0.2, "Covid": 0.6, "Viral Pneumonia": 0.2}


def test_chain_refuses_a_multilabel_stage(cli, tmp_path):
    p1, p2 = stage_files(tmp_path, None, {(0, "labels"): {"Covid": 1}, (1, "labels"): {"Covid": 1}})
    result = cli(main, "chain", "--stage", p1, "--stage", p2, "--gate", "infected")
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"xr-cascade chain: error: {p2}: a cascade stage decides one class per "
                                     "record; these records are multi-label")


def test_route_refuses_an_expert_value_given_twice(cli, tmp_path):
    """The last file used to win in silence."""
    rows = [("r1", "NORMAL", [0.6, 0.4], "NORMAL")]
    a, b = preds(tmp_path, "a", rows, group="G1"), preds(tmp_path, "b", rows, group="G1")
    result = cli(main, "route", "--expert", f"G1={a}", "--expert", f"G1={b}")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.strip() == "xr-cascade route: error: --expert: 'G1' is given twice"


def test_stack_load_of_a_malformed_meta_model_is_one_line(cli, tmp_path):
    rows = [("r1", "NORMAL", [0.6, 0.4], "NORMAL"), ("r2", "PNEUMONIA", [0.3, 0.7], "PNEUMONIA")]
    a, b = preds(tmp_path, "a", rows), preds(tmp_path, "b", rows)
    path = tmp_path / "meta.json"
    path.write_text(json.dumps({"format": "xr-stacker-1", "task": {"kind": "binary", "names": ["NORMAL", "PNEUMONIA"]},
                                "files": 2, "coef": [[1, "x"]], "intercept": [0]}))
    result = cli(main, "stack", a, b, "--load", path)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.strip() == (f"xr-cascade stack: error: {path}: not an xr-cascade stack meta-model "
                                     "(coef holds 'x', not a number)")


FOUR = [{"id": f"r{i}", "label": "ABCD"[i % 4], "path": f"{i}.png"} for i in range(8)]


@pytest.mark.parametrize("records, merges, code, message", [
    pytest.param(FOUR, ["A=B,C"], 2, "--merge A: 'A' is a class already: name the merged class otherwise",
                 id="new-name-is-another-class"),
    pytest.param(FOUR, ["A=A,B"], 2, "--merge A: 'A' is a class already: name the merged class otherwise",
                 id="new-name-is-a-merged-class"),
    pytest.param(FOUR[:3] + [FOUR[0]], ["x=B,C"], 1, "M.jsonl:4: id 'r0' again (first on line 1)",
                 id="duplicate-id"),
    pytest.param(FOUR[:2] + [{"id": "m", "labels": {"A": 1}}], ["x=A,B"], 1,
                 "M.jsonl:3: cascades split single-label manifests; this record carries multi-label `labels`",
                 id="multilabel-record"),
])
def test_derive_refuses(cli, tmp_path, records, merges, code, message):
    """A new name equal to a class mixed the two in stage 1 in silence; duplicate ids passed."""
    manifest = write_jsonl(tmp_path / "M.jsonl", records)
    args = [a for m in merges for a in ("--merge", m)]
    result = cli(main, "derive", manifest, *args, "--out-dir", tmp_path / "st")
    assert result.exit_code == code and result.stdout == ""
    assert result.stderr.strip().startswith(f"xr-cascade derive: error: {message.replace('M.jsonl', str(manifest))}")
    assert not (tmp_path / "st").exists()


@pytest.mark.parametrize("strict", [False, True], ids=["counted", "strict"])
def test_derive_leaves_unlabelled_records_out_and_reports_them(cli, tmp_path, strict):
    """They were written with "label": null into stage 1, and logged as a class "None"."""
    records = FOUR[:4] + [{"id": "u1", "path": "u1.png"}, FOUR[4], {"id": "u2", "label": None}]
    manifest = write_jsonl(tmp_path / "M.jsonl", records)
    result = cli(main, "derive", manifest, "--merge", "x=B,C", "--out-dir", tmp_path / "st",
                 *(["--strict"] if strict else []))
    problem = f"2 × record with no label, left out of every stage (first {manifest}:5)"
    if strict:
        assert result.exit_code == 1 and result.stdout == "" and not (tmp_path / "st").exists()
        assert result.stderr.strip() == f"xr-cascade derive: error: --strict: {problem}"
        return
    assert result.exit_code == 0, result.stderr
    assert f"xr-cascade derive: warning: {problem}" in result.stderr and "None" not in result.stderr
    stage1 = [json.loads(line) for line in (tmp_path / "st" / "stage1.jsonl").read_text().splitlines()]
    stage2 = [json.loads(line) for line in (tmp_path / "st" / "x.jsonl").read_text().splitlines()]
    assert [(r["id"], r["label"]) for r in stage1] == [("r0", "A"), ("r1", "x"), ("r2", "x"), ("r3", "D"),
                                                       ("r4", "A")]
    assert [r["id"] for r in stage2] == ["r1", "r2"]
