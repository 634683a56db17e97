"""libxr.combining.ensemble: mean, vote, route and stack on a few hand-made records with answers worked out
by hand — weights, ties, unscored records, mismatched files — and the stacking meta-model's
arithmetic, fitting and file."""

import io
import json
import math
import re

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from libxr.combining.aligned import Scored
from libxr.combining.ensemble import Stacker, _records, mean, route, stack, vote
from libxr.errors import UsageError, XRError
from libxr.records.tasks import Task

BINARY = Task("binary", ["NORMAL", "PNEUMONIA"])
THREE = Task("multiclass", ["Covid", "Normal", "Viral"])
LABELS = Task("multilabel", ["Edema", "Effusion"])


def scored(name, records):
    return Scored(io.BytesIO("".join(json.dumps(r) + "\n" for r in records).encode()), name)


def binary(name, rows, **extra):
    """rows: (id, label, P(PNEUMONIA)[, pred]); pred defaults to the 0.5 decision."""
    recs = []
    for i, label, p, *pred in rows:
        recs.append({"id": i, "label": label, **extra, "scores": {"NORMAL": round(1 - p, 6), "PNEUMONIA": p},
                     "pred": pred[0] if pred else ("PNEUMONIA" if p >= 0.5 else "NORMAL")})
    return scored(name, recs)


def three(name, rows):
    """rows: (id, [P(Covid), P(Normal), P(Viral)], pred)."""
    return scored(name, [{"id": i, "scores": dict(zip(THREE.names, p)), "pred": pred} for i, p, pred in rows])


def labels(name, rows):
    """rows: (id, [P(Edema), P(Effusion)], pred list)."""
    return scored(name, [{"id": i, "scores": dict(zip(LABELS.names, p)), "pred": pred}
                         for i, p, pred in rows])


def by_id(records):
    return {r["id"]: r for r in records}


def positive(records):
    return {r["id"]: r["scores"]["PNEUMONIA"] for r in records}


# ---------------------------------------------------------------- mean

def mean_files():
    a = binary("a.jsonl", [("r1", "PNEUMONIA", 0.4), ("r2", "NORMAL", 0.1), ("r3", "PNEUMONIA", 0.8)],
               split="test")
    b = binary("b.jsonl", [("r3", "PNEUMONIA", 0.6), ("r1", "PNEUMONIA", 0.8), ("r2", "NORMAL", 0.5)],
               model="b")
    return a, b


@pytest.mark.parametrize("weights, threshold, expected, preds", [
    pytest.param(None, 0.5, {"r1": 0.6, "r2": 0.3, "r3": 0.7}, ["PNEUMONIA", "NORMAL", "PNEUMONIA"],
                 id="equal"),
    pytest.param([3, 1], 0.5, {"r1": 0.5, "r2": 0.2, "r3": 0.75}, ["PNEUMONIA", "NORMAL", "PNEUMONIA"],
                 id="weighted-at-threshold-is-positive"),
    pytest.param([0.75, 0.25], 0.55, {"r1": 0.5, "r2": 0.2, "r3": 0.75}, ["NORMAL", "NORMAL", "PNEUMONIA"],
                 id="weighted-threshold"),
    pytest.param([1, 0], 0.5, {"r1": 0.4, "r2": 0.1, "r3": 0.8}, ["NORMAL", "NORMAL", "PNEUMONIA"],
                 id="zero-weight-is-the-first-file"),
    pytest.param([2, 2], 0.25, {"r1": 0.6, "r2": 0.3, "r3": 0.7}, ["PNEUMONIA", "PNEUMONIA", "PNEUMONIA"],
                 id="weights-normalised"),
    pytest.param([1e308, 1e308], 0.5, {"r1": 0.6, "r2": 0.3, "r3": 0.7}, ["PNEUMONIA", "NORMAL", "PNEUMONIA"],
                 id="huge-weights-whose-sum-overflows"),
])
def test_mean_binary_by_hand(weights, threshold, expected, preds):
    out = list(mean(list(mean_files()), weights, threshold))
    assert [r["id"] for r in out] == ["r1", "r2", "r3"]              # the first file's order
    assert positive(out) == pytest.approx(expected)
    assert [r["pred"] for r in out] == preds
    for r in out:
        assert r["scores"]["NORMAL"] == pytest.approx(1 - r["scores"]["PNEUMONIA"])


def test_mean_keeps_the_first_files_fields_only():
    out = by_id(mean(list(mean_files())))
    assert set(out["r1"]) == {"id", "label", "split", "scores", "pred"}
    assert out["r1"]["label"] == "PNEUMONIA" and out["r1"]["split"] == "test"
    swapped = by_id(mean(list(reversed(mean_files()))))
    assert swapped["r1"]["model"] == "b" and "split" not in swapped["r1"]
    assert positive(swapped.values()) == pytest.approx({"r1": 0.6, "r2": 0.3, "r3": 0.7})


def test_mean_multiclass_is_the_argmax_of_the_mean():
    a = three("a.jsonl", [("r1", [0.5, 0.3, 0.2], "Covid"), ("r2", [0.2, 0.2, 0.6], "Viral")])
    b = three("b.jsonl", [("r1", [0.1, 0.6, 0.3], "Normal"), ("r2", [0.4, 0.4, 0.2], "Covid")])
    out = by_id(mean([a, b]))
    assert out["r1"]["scores"] == pytest.approx({"Covid": 0.3, "Normal": 0.45, "Viral": 0.25})
    assert out["r1"]["pred"] == "Normal"
    assert out["r2"]["scores"] == pytest.approx({"Covid": 0.3, "Normal": 0.3, "Viral": 0.4})
    assert out["r2"]["pred"] == "Viral"
    assert list(out["r1"]["scores"]) == THREE.names
    weighted = by_id(mean([a, b], [3, 1]))
    assert weighted["r1"]["scores"] == pytest.approx({"Covid": 0.4, "Normal": 0.375, "Viral": 0.225})
    assert weighted["r1"]["pred"] == "Covid"


@pytest.mark.parametrize("threshold, pred", [
    pytest.param(0.5, ["Edema", "Effusion"], id="0.5"),
    pytest.param(0.6, ["Edema"], id="0.6"),
    pytest.param([0.7, 0.5], ["Effusion"], id="one-per-label"),
    pytest.param(0.65, [], id="none"),
])
def test_mean_multilabel_thresholds(threshold, pred):
    files = [labels("a.jsonl", [("r1", [0.9, 0.2], ["Edema"])]),
             labels("b.jsonl", [("r1", [0.3, 0.6], ["Effusion"])]),
             labels("c.jsonl", [("r1", [0.7, 0.7], ["Edema", "Effusion"])])]
    (out,) = mean(files, threshold=threshold)
    assert out["scores"] == pytest.approx({"Edema": 0.633333, "Effusion": 0.5})
    assert out["pred"] == pred


# ---------------------------------------------------------------- vote

def vote_files():
    a = three("a.jsonl", [("r1", [0.1, 0.1, 0.8], "Viral"), ("r2", [0.6, 0.3, 0.1], "Covid"),
                          ("r3", [0.1, 0.7, 0.2], "Normal"), ("r4", [0.35, 0.05, 0.6], "Covid"),
                          ("r5", [0.5, 0.4, 0.1], "Covid")])
    b = three("b.jsonl", [("r1", [0.2, 0.2, 0.6], "Viral"), ("r2", [0.3, 0.6, 0.1], "Normal"),
                          ("r3", [0.45, 0.35, 0.2], "Covid"), ("r4", [0.1, 0.3, 0.6], "Normal"),
                          ("r5", [0.2, 0.7, 0.1], "Normal")])
    c = three("c.jsonl", [("r1", [0.5, 0.3, 0.2], "Covid"), ("r2", [0.4, 0.5, 0.1], "Normal"),
                          ("r3", [0.3, 0.3, 0.4], "Viral"), ("r4", [0.3, 0.3, 0.4], "Viral"),
                          ("r5", [0.6, 0.3, 0.1], "Covid")])
    return a, b, c


def test_vote_multiclass_by_hand():
    out = by_id(vote(list(vote_files())))
    assert list(out) == ["r1", "r2", "r3", "r4", "r5"]
    assert out["r1"]["scores"] == {"Covid": 0.333333, "Normal": 0.0, "Viral": 0.666667}
    assert out["r1"]["pred"] == "Viral"                       # 2-1, though c is the most confident
    assert out["r2"]["pred"] == "Normal"
    # r3: one vote each; the tie goes to the highest mean probability: Normal 0.45 > Covid 0.283 > Viral 0.267
    assert out["r3"]["scores"] == {"Covid": 0.333333, "Normal": 0.333333, "Viral": 0.333333}
    assert out["r3"]["pred"] == "Normal"
    assert out["r5"]["pred"] == "Covid"


def test_a_tie_goes_to_the_tied_class_with_the_highest_mean_probability():
    a, b, _ = vote_files()
    out = by_id(vote([a, b]))
    # r4: Covid 1, Normal 1; Viral has the highest mean (0.6) but no votes: Covid 0.225 > Normal 0.175
    assert out["r4"]["scores"] == {"Covid": 0.5, "Normal": 0.5, "Viral": 0.0}
    assert out["r4"]["pred"] == "Covid"
    # r5: Covid (a) 0.35 mean vs Normal (b) 0.55
    assert out["r5"]["pred"] == "Normal"


@pytest.mark.parametrize("weights, preds, r1_scores", [
    pytest.param([1, 1, 3], ["Covid", "Normal", "Viral", "Viral", "Covid"],
                 {"Covid": 0.6, "Normal": 0.0, "Viral": 0.4}, id="third-file-outweighs"),
    pytest.param([3, 1, 1], ["Viral", "Covid", "Normal", "Covid", "Covid"],
                 {"Covid": 0.2, "Normal": 0.0, "Viral": 0.8}, id="first-file-outweighs"),
    # weights 1/6, 1/2, 1/3: r5 Covid 1/6 + 1/3 = Normal 1/2, a tie though the sums differ in the last bit;
    # the weighted mean decides it: Covid 0.383 < Normal 0.517
    pytest.param([0.1, 0.3, 0.2], ["Viral", "Normal", "Covid", "Normal", "Normal"],
                 {"Covid": 1 / 3, "Normal": 0.0, "Viral": 2 / 3}, id="inexact-weights-still-tie"),
])
def test_weighted_vote(weights, preds, r1_scores):
    out = list(vote(list(vote_files()), weights))
    assert [r["pred"] for r in out] == preds
    assert out[0]["scores"] == pytest.approx(r1_scores, abs=1e-6)


def test_binary_vote_counts_decisions_not_probabilities():
    # r3: both files decided PNEUMONIA at a low threshold of their own
    a = binary("a.jsonl", [("r1", "PNEUMONIA", 0.6), ("r2", "NORMAL", 0.4),
                           ("r3", "PNEUMONIA", 0.3, "PNEUMONIA")])
    b = binary("b.jsonl", [("r1", "PNEUMONIA", 0.45), ("r2", "NORMAL", 0.55),
                           ("r3", "PNEUMONIA", 0.2, "PNEUMONIA")])
    out = by_id(vote([a, b]))
    assert out["r1"]["scores"] == {"NORMAL": 0.5, "PNEUMONIA": 0.5}
    assert out["r1"]["pred"] == "PNEUMONIA"                 # tie, mean P 0.525
    assert out["r2"]["pred"] == "NORMAL"                    # tie, mean P 0.475
    assert out["r3"]["pred"] == "PNEUMONIA" and out["r3"]["scores"]["PNEUMONIA"] == 1.0   # both said so
    assert out["r3"]["label"] == "PNEUMONIA"


@pytest.mark.parametrize("files, weights, pred, shares", [
    pytest.param("abc", None, ["Edema", "Effusion"], [2 / 3, 2 / 3], id="two-of-three"),
    pytest.param("ab", None, [], [0.5, 0.5], id="half-is-no-majority"),
    pytest.param("abc", [2, 1, 1], ["Edema"], [0.75, 0.5], id="weighted"),
    pytest.param("c", None, ["Edema", "Effusion"], [1, 1], id="one-file"),
])
def test_multilabel_vote(files, weights, pred, shares):
    every = {"a": labels("a.jsonl", [("r1", [0.9, 0.2], ["Edema"])]),
             "b": labels("b.jsonl", [("r1", [0.3, 0.6], ["Effusion"])]),
             "c": labels("c.jsonl", [("r1", [0.7, 0.7], ["Edema", "Effusion"])])}
    (out,) = vote([every[k] for k in files], weights)
    assert out["pred"] == pred
    assert [out["scores"]["Edema"], out["scores"]["Effusion"]] == pytest.approx(shares, abs=1e-6)


@pytest.mark.parametrize("pred, shown", [
    pytest.param("Pneumonia", "'Pneumonia'", id="unknown-class"),
    pytest.param(None, "None", id="no-pred"),
])
def test_vote_refuses_a_pred_that_is_not_a_class(pred, shown):
    a = binary("a.jsonl", [("r1", "NORMAL", 0.2), ("r2", "NORMAL", 0.3)])
    b = binary("b.jsonl", [("r1", "NORMAL", 0.2), ("r2", "NORMAL", 0.7, pred)])
    message = f"b.jsonl:2: pred {shown} is not one of NORMAL, PNEUMONIA"
    with pytest.raises(XRError, match=f"^{re.escape(message)}$"):
        list(vote([a, b]))


# ---------------------------------------------------------------- bad weights, other tasks, unscored

@pytest.mark.parametrize("combine", [mean, vote], ids=["mean", "vote"])
@pytest.mark.parametrize("weights", [
    pytest.param([1], id="too-few"), pytest.param([1, 2, 3], id="too-many"),
    pytest.param([1, -1], id="negative-summing-to-zero"), pytest.param([2, -1], id="negative"),
    pytest.param([0, 0], id="all-zero"),
    pytest.param([math.nan, 1], id="nan"), pytest.param([math.inf, 1], id="infinite"),
    pytest.param([-math.inf, 1], id="minus-infinite"),
])
def test_bad_weights_are_usage_errors(combine, weights):
    """NaN and infinity used to pass, and end in StopIteration (NaN rows taken for unscored records)."""
    message = "--weights: give 2 non-negative finite numbers, not all zero (one per file)"
    with pytest.raises(UsageError, match=f"^{re.escape(message)}$"):
        list(combine(list(mean_files()), weights))


@pytest.mark.parametrize("combine", [
    pytest.param(lambda files: mean(files), id="mean"),
    pytest.param(lambda files: vote(files), id="vote"),
    pytest.param(lambda files: stack(files, log=lambda m: None), id="stack"),
    pytest.param(lambda files: route(files, {"x": files[0]}, "group"), id="route"),
])
def test_files_scoring_other_classes_are_refused(combine):
    a, _ = mean_files()
    other = scored("c.jsonl", [{"id": i, "split": "val", "group": "x", "label": "NORMAL",
                                "scores": {"NORMAL": 0.5, "PNEUMONIA": 0.3, "X": 0.2}, "pred": "NORMAL"}
                               for i in ("r1", "r2", "r3")])
    with pytest.raises(XRError, match=r"^c\.jsonl scores NORMAL, PNEUMONIA, X; "
                                      r"a\.jsonl scores NORMAL, PNEUMONIA$"):
        list(combine([a, other]))


def test_files_with_other_ids_are_refused():
    a, _ = mean_files()
    b = binary("b.jsonl", [("r1", "PNEUMONIA", 0.8), ("r2", "NORMAL", 0.5)])
    with pytest.raises(XRError, match=r"^a\.jsonl:3: id 'r3' is not in b\.jsonl \(1 ids differ\)$"):
        list(vote([a, b]))


UNSCORED_ROWS = [("r1", "NORMAL", 0.4), ("r2", "NORMAL", 0.3), ("r3", "PNEUMONIA", 0.8),
                 ("r4", "NORMAL", 0.2), ("r5", "PNEUMONIA", 0.6), ("r6", "PNEUMONIA", 0.7)]


def unscored_files(errors):
    """a, b, c over UNSCORED_ROWS (split val); ``errors``: {file: ids that file could not score}."""
    files = []
    for name in "abc":
        recs = json.loads(json.dumps([{"id": i, "label": label, "split": "val", "path": f"{i}.png",
                                       "scores": {"NORMAL": round(1 - p, 6), "PNEUMONIA": p},
                                       "pred": "PNEUMONIA" if p >= 0.5 else "NORMAL"}
                                      for i, label, p in UNSCORED_ROWS]))
        for r in recs:
            if r["id"] in errors.get(name, ()):
                del r["scores"], r["pred"]
                r["error"] = f"{r['path']}: truncated"
        files.append(scored(f"{name}.jsonl", recs))
    return files


@pytest.mark.parametrize("combine", [
    pytest.param(lambda files: mean(files), id="mean"),
    pytest.param(lambda files: vote(files), id="vote"),
    pytest.param(lambda files: stack(files, log=lambda m: None), id="stack"),
])
@pytest.mark.parametrize("errors, unscored", [
    pytest.param({"b": ["r1"]}, {"r1": "b.jsonl"}, id="second-file"),
    pytest.param({"a": ["r2"]}, {"r2": "a.jsonl"}, id="first-file"),
    pytest.param({"b": ["r1"], "c": ["r1", "r4"]}, {"r1": "b.jsonl", "r4": "c.jsonl"},
                 id="names-the-first-that-failed"),
])
def test_unscored_records_stay_unscored(combine, errors, unscored):
    out = list(combine(unscored_files(errors)))
    assert [r["id"] for r in out] == [row[0] for row in UNSCORED_ROWS]
    for r in out:
        if r["id"] in unscored:
            label = next(label for i, label, _ in UNSCORED_ROWS if i == r["id"])
            assert r == {"id": r["id"], "label": label, "split": "val", "path": f"{r['id']}.png",
                         "error": f"not scored in {unscored[r['id']]}"}
        else:
            assert "error" not in r and set(r["scores"]) == {"NORMAL", "PNEUMONIA"}
            assert r["pred"] in r["scores"]


def test_nan_from_a_combination_of_scored_records_is_an_error_not_an_unscored_record():
    """A meta-model whose scores overflow (inf - inf) gives NaN though every file scored the record:
    an error naming it, where `_unscored` used to raise StopIteration."""
    stacker = Stacker(THREE, np.full((3, 3), 1e308), [1e308, 0, 0], 1)
    f = three("a.jsonl", [("r1", [0.2, 0.3, 0.5], "Viral")])
    with np.errstate(over="ignore", invalid="ignore"):
        p = stacker.probabilities([f], ["r1"])
        assert np.isnan(p).any()
        message = "record 'r1': the combined probabilities are not numbers, though every file scored it"
        with pytest.raises(XRError, match=f"^{re.escape(message)}$"):
            list(_records([f], ["r1"], p, 0.5))


def test_unscored_records_do_not_change_the_others():
    clean = by_id(mean(unscored_files({})))
    broken = by_id(mean(unscored_files({"b": ["r1"]})))
    assert {i: r for i, r in broken.items() if i != "r1"} == {i: r for i, r in clean.items() if i != "r1"}


# ---------------------------------------------------------------- route

def experts():
    wrist = scored("wrist.jsonl", [
        {"id": "w1", "group": "XR_WRIST", "scores": {"normal": 0.2, "abnormal": 0.8}, "pred": "abnormal"},
        {"id": "h1", "group": "XR_HAND", "scores": {"normal": 0.9, "abnormal": 0.1}, "pred": "normal"}])
    hand = scored("hand.jsonl", [
        {"id": "h1", "group": "XR_HAND", "scores": {"normal": 0.3, "abnormal": 0.7}, "pred": "abnormal",
         "by": "h"},
        {"id": "h2", "group": "XR_HAND", "scores": {"normal": 0.6, "abnormal": 0.4}, "pred": "normal"}])
    return wrist, hand


def test_route_takes_each_records_prediction_from_its_expert():
    wrist, hand = experts()
    out = list(route([wrist, hand], {"XR_WRIST": wrist, "XR_HAND": hand}, "group"))
    assert [r["id"] for r in out] == ["w1", "h1", "h2"]       # first seen, over the files in order
    assert out[0] == {**wrist.records["w1"], "expert": "wrist.jsonl"}
    assert out[1] == {**hand.records["h1"], "expert": "hand.jsonl"}   # not wrist's h1, though listed first
    assert out[2]["scores"] == {"normal": 0.6, "abnormal": 0.4} and out[2]["expert"] == "hand.jsonl"


@pytest.mark.parametrize("which, message", [
    pytest.param({"XR_WRIST": "wrist"},
                 "wrist.jsonl:2: group 'XR_HAND': no expert for it (give --expert XR_HAND=FILE)",
                 id="no-expert"),
    pytest.param({"XR_WRIST": "wrist", "XR_HAND": "wrist"},
                 "wrist.jsonl: no record 'h2', which its group 'XR_HAND' sends there",
                 id="expert-lacks-record"),
])
def test_route_errors(which, message):
    wrist, hand = experts()
    files = {"wrist": wrist, "hand": hand}
    with pytest.raises(XRError, match=f"^{re.escape(message)}$"):
        list(route([wrist, hand], {k: files[v] for k, v in which.items()}, "group"))


def test_route_needs_the_field_and_matches_values_as_text():
    views = scored("v.jsonl", [{"id": "x1", "view": 1, "scores": {"a": 0.5, "b": 0.5}, "pred": "a"},
                               {"id": "x2", "view": 2, "scores": {"a": 0.5, "b": 0.5}, "pred": "a"}])
    assert [r["id"] for r in route([views], {"1": views, "2": views}, "view")] == ["x1", "x2"]
    message = "v.jsonl:2: view 2: no expert for it (give --expert 2=FILE)"
    with pytest.raises(XRError, match=f"^{re.escape(message)}$"):
        list(route([views], {"1": views}, "view"))
    with pytest.raises(XRError, match=r"^v.jsonl:1: record has no `group` to route it by$"):
        list(route([views], {"1": views}, "group"))


# ---------------------------------------------------------------- Stacker: arithmetic, fitting, file

def test_stacker_features():
    a = binary("a.jsonl", [("r1", "NORMAL", 0.75), ("r2", "NORMAL", 0.25)])
    b = binary("b.jsonl", [("r2", "NORMAL", 0.1), ("r1", "NORMAL", 0.5)])
    assert Stacker.features([a, b], ["r1", "r2"], BINARY).tolist() == [[0.75, 0.5], [0.25, 0.1]]
    c = three("c.jsonl", [("r1", [0.1, 0.2, 0.7], "Viral")])
    d = three("d.jsonl", [("r1", [0.3, 0.6, 0.1], "Normal")])
    assert Stacker.features([c, d], ["r1"], THREE).tolist() == [[0.1, 0.2, 0.7, 0.3, 0.6, 0.1]]


def test_stacker_binary_probabilities_by_hand():
    # z = 2 p_a - p_b - 0.5: r1 0.5, r2 -0.5, r3 0
    stacker = Stacker(BINARY, [[2.0, -1.0]], [-0.5], 2)
    a = binary("a.jsonl", [("r1", "NORMAL", 0.75), ("r2", "NORMAL", 0.25), ("r3", "NORMAL", 0.5)])
    b = binary("b.jsonl", [("r1", "NORMAL", 0.5), ("r2", "NORMAL", 0.5), ("r3", "NORMAL", 0.5)])
    p = stacker.probabilities([a, b], ["r1", "r2", "r3"])
    sig = 1 / (1 + math.exp(-0.5))
    assert p == pytest.approx(np.array([[1 - sig, sig], [sig, 1 - sig], [0.5, 0.5]]))
    with pytest.raises(UsageError, match=r"^the meta-model was fitted on 2 files, not 1$"):
        stacker.probabilities([a], ["r1"])


def test_stacker_multiclass_probabilities_by_hand():
    # z_Covid = ln3 * a.Covid, z_Normal = ln2 * b.Normal, z_Viral = ln2
    coef = np.zeros((3, 6))
    coef[0, 0], coef[1, 4] = math.log(3), math.log(2)
    stacker = Stacker(THREE, coef, [0, 0, math.log(2)], 2)
    a = three("a.jsonl", [("r1", [1, 0, 0], "Covid"), ("r2", [0, 0, 1], "Viral"),
                          ("r3", [0.5, 0.5, 0], "Covid")])
    b = three("b.jsonl", [("r1", [0, 1, 0], "Normal"), ("r2", [1, 0, 0], "Covid"),
                          ("r3", [0, 0.5, 0.5], "Normal")])
    p = stacker.probabilities([a, b], ["r1", "r2", "r3"])
    r3 = np.array([3 ** 0.5, 2 ** 0.5, 2])
    assert p == pytest.approx(np.array([[3 / 7, 2 / 7, 2 / 7], [0.25, 0.25, 0.5], r3 / r3.sum()]))


def test_stacker_multiclass_softmax_is_stable_for_large_scores():
    stacker = Stacker(THREE, np.zeros((3, 3)), [1000, 999, 0], 1)
    p = stacker.probabilities([three("a.jsonl", [("r1", [0.2, 0.3, 0.5], "Viral")])], ["r1"])
    e = math.e
    assert p == pytest.approx(np.array([[e / (1 + e), 1 / (1 + e), 0]]))


def test_stacker_multilabel_probabilities_by_hand():
    stacker = Stacker(LABELS, [[2, 0], [0, 0]], [-1, math.log(3)], 1)
    f = labels("a.jsonl", [("r1", [0.5, 0.9], ["Edema"]), ("r2", [1.0, 0.1], [])])
    sig1 = 1 / (1 + math.exp(-1))
    assert stacker.probabilities([f], ["r1", "r2"]) == pytest.approx(np.array([[0.5, 0.75], [sig1, 0.75]]))


def test_stacker_fit_equals_sklearn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 40)
    pa = np.round(np.clip(0.3 * y + 0.7 * rng.random(40), 0, 1), 4)
    pb = np.round(rng.random(40), 4)
    a = binary("a.jsonl", [(f"r{i}", "NORMAL", float(pa[i])) for i in range(40)])
    b = binary("b.jsonl", [(f"r{i}", "NORMAL", float(pb[i])) for i in range(40)])
    ids = [f"r{i}" for i in range(40)]
    got = Stacker.fit([a, b], ids, y, BINARY)
    model = LogisticRegression(max_iter=1000, random_state=0).fit(np.stack([pa, pb], 1), y)
    assert got.coef == pytest.approx(model.coef_)
    assert got.intercept == pytest.approx(model.intercept_)
    assert got.files == 2 and got.task == BINARY
    assert got.coef[0, 0] > abs(got.coef[0, 1])                 # the informative file weighs most


def test_stacker_multilabel_fit_leaves_unstated_labels_out():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, (30, 2)).astype(float)
    p = np.round(np.clip(0.4 * y + 0.6 * rng.random((30, 2)), 0, 1), 4)
    y[:10, 1] = np.nan
    f = labels("a.jsonl", [(f"r{i}", p[i].tolist(), []) for i in range(30)])
    got = Stacker.fit([f], [f"r{i}" for i in range(30)], y, LABELS)
    edema = LogisticRegression(max_iter=1000, random_state=0).fit(p, y[:, 0])
    effusion = LogisticRegression(max_iter=1000, random_state=0).fit(p[10:], y[10:, 1])
    assert got.coef == pytest.approx(np.stack([edema.coef_[0], effusion.coef_[0]]))
    assert got.intercept == pytest.approx(np.array([edema.intercept_[0], effusion.intercept_[0]]))


@pytest.mark.parametrize("task, y, message", [
    pytest.param(BINARY, np.array([1, 1, 1, 1]), "the fitting records do not have every class; cannot stack",
                 id="binary-one-class"),
    pytest.param(THREE, np.array([0, 1, 1, 0]), "the fitting records do not have every class; cannot stack",
                 id="multiclass-missing-class"),
    pytest.param(LABELS, np.array([[1, 0], [0, 0], [1, np.nan], [0, 0]]),
                 "label Effusion: one class only in the fitting records; cannot stack",
                 id="multilabel-one-class"),
    pytest.param(LABELS, np.array([[1, 1], [0, np.nan], [1, np.nan], [0, 1]]),
                 "label Effusion: one class only in the fitting records; cannot stack",
                 id="multilabel-one-class-among-stated"),
])
def test_stacker_fit_needs_every_class(task, y, message):
    rows = [[0.2, 0.3, 0.5], [0.5, 0.3, 0.2], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]]
    if task.kind == "multiclass":
        files = [three("a.jsonl", [(f"r{i}", p, "Covid") for i, p in enumerate(rows)])]
    elif task.kind == "binary":
        files = [binary("a.jsonl", [(f"r{i}", "NORMAL", p[0]) for i, p in enumerate(rows)])]
    else:
        files = [labels("a.jsonl", [(f"r{i}", p[:2], []) for i, p in enumerate(rows)])]
    with pytest.raises(XRError, match=f"^{re.escape(message)}$"):
        Stacker.fit(files, [f"r{i}" for i in range(4)], y, task)


def test_stacker_saves_plain_json_and_loads_it_back(tmp_path):
    coef = [[0.5, -1, 0, 0.25, 0, 2], [0, 0, 1, 0, 0, 0], [-0.5, 0, 0, 0, 3, 0]]
    stacker = Stacker(THREE, coef, [0.1, -0.2, 0.3], 2)
    path = tmp_path / "meta.json"
    stacker.save(str(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.json"]         # no temporary file left
    assert json.loads(path.read_text()) == {"format": "xr-stacker-1", "task": {"kind": "multiclass",
                                                                               "names": THREE.names},
                                            "files": 2, "coef": coef,
                                            "intercept": [0.1, -0.2, 0.3]}
    back = Stacker.load(str(path))
    assert back.task == THREE and back.files == 2
    assert back.coef.tolist() == coef and back.intercept.tolist() == [0.1, -0.2, 0.3]


@pytest.mark.parametrize("content, reason", [
    pytest.param(None, "[Errno 2] No such file or directory", id="missing"),
    pytest.param("{not json", "Expecting property name enclosed in double quotes", id="not-json"),
    pytest.param({"format": "xr-stacker-0", "task": {}}, "no xr-stacker-1 format tag", id="other-format"),
    pytest.param({"format": "xr-stacker-1", "task": {"kind": "binary", "names": ["a", "b"]}, "files": 1,
                  "intercept": [0]}, "'coef'", id="no-coef"),
    pytest.param({"format": "xr-stacker-1", "task": {"kind": "binary"}, "coef": [[1]], "intercept": [0],
                  "files": 1}, "missing 1 required positional argument: 'names'", id="bad-task"),
])
def test_stacker_load_refuses_other_files(tmp_path, content, reason):
    path = tmp_path / "meta.json"
    if content is not None:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(XRError, match=f"^{re.escape(str(path))}: not an xr-cascade stack meta-model \\(.*"
                                      f"{re.escape(reason)}.*\\)$"):
        Stacker.load(str(path))


def meta(**changes):
    """A valid binary meta-model over 2 files, with ``changes``."""
    return {"format": "xr-stacker-1", "task": {"kind": "binary", "names": ["NORMAL", "PNEUMONIA"]}, "files": 2,
            "coef": [[1.5, -0.5]], "intercept": [0.25], **changes}


@pytest.mark.parametrize("content, reason", [
    pytest.param(meta(coef=[[1.5, -0.5, 2]]), "coef has shape (1, 3), not (1, 2)", id="coef-of-three-files"),
    pytest.param(meta(coef=[[1.5], [-0.5]]), "coef has shape (2, 1), not (1, 2)", id="coef-transposed"),
    pytest.param(meta(coef=[1.5, -0.5]), "coef has shape (2,), not (1, 2)", id="coef-flat"),
    pytest.param(meta(coef=1.5), "coef has shape (), not (1, 2)", id="coef-a-number"),
    pytest.param(meta(intercept=[0.25, 0]), "intercept has shape (2,), not (1,)", id="intercept-of-two"),
    pytest.param(meta(intercept=0.25), "intercept has shape (), not (1,)", id="intercept-a-number"),
    pytest.param(meta(coef=[["1.5", -0.5]]), "coef holds '1.5', not a number", id="string"),
    pytest.param(meta(coef=[[True, -0.5]]), "coef holds True, not a number", id="boolean"),
    pytest.param(meta(intercept=[None]), "intercept holds None, not a number", id="null"),
    pytest.param(meta(coef=[[1.5, [0]]]), "coef holds [0], not a number", id="nested"),
    pytest.param(meta(coef=[[math.nan, -0.5]]), "coef holds nan, not a finite number", id="nan"),
    pytest.param(meta(intercept=[-math.inf]), "intercept holds -inf, not a finite number", id="infinite"),
    pytest.param(meta(files=0), "files 0 is not a count of files", id="no-files"),
    pytest.param(meta(files="2"), "files '2' is not a count of files", id="files-a-string"),
    pytest.param(meta(files=True), "files True is not a count of files", id="files-boolean"),
    pytest.param(meta(task={"kind": "binary", "names": ["a", "b", "c"]}), "a 'binary' task of 3 classes",
                 id="binary-of-three"),
    pytest.param(meta(task={"kind": "multiclass", "names": ["a", "b"]}), "a 'multiclass' task of 2 classes",
                 id="multiclass-of-two"),
    pytest.param(meta(task={"kind": "other", "names": ["a", "b"]}), "a 'other' task of 2 classes",
                 id="unknown-kind"),
    pytest.param(meta(task={"kind": "binary", "names": ["a", "a"]}), "task names ['a', 'a'] are not distinct",
                 id="names-twice"),
    pytest.param(meta(task={"kind": "binary", "names": ["a", 1]}), "task names ['a', 1] are not distinct",
                 id="name-not-text"),
    pytest.param(meta(task={"kind": "multiclass", "names": ["a", "b", "c"]}, coef=[[1, 2]] * 3, intercept=[0] * 3),
                 "coef has shape (3, 2), not (3, 6)", id="multiclass-coef-of-one-file"),
    pytest.param(meta(task={"kind": "multilabel", "names": ["a", "b"]}, coef=[[1, 2, 3, 4]], intercept=[0, 0]),
                 "coef has shape (1, 4), not (2, 4)", id="multilabel-coef-of-one-label"),
    pytest.param(meta(task={"kind": "multilabel", "names": ["a", "b"]}, coef=[[1, 2, 3, 4], [1, 2]],
                      intercept=[0, 0]), "coef has shape (2,), not (2, 4)", id="ragged"),
])
def test_stacker_load_refuses_a_malformed_meta_model(tmp_path, content, reason):
    """A wrong shape used to broadcast into wrong probabilities (exit 0), a string end in a traceback,
    NaN in StopIteration."""
    path = tmp_path / "meta.json"
    path.write_text(json.dumps(content))
    message = f"{path}: not an xr-cascade stack meta-model ({reason}"
    with pytest.raises(XRError, match=f"^{re.escape(message)}"):
        Stacker.load(str(path))


@pytest.mark.parametrize("task, coef, intercept", [
    pytest.param({"kind": "binary", "names": ["NORMAL", "PNEUMONIA"]}, [[1.5, -0.5]], [0.25], id="binary"),
    pytest.param({"kind": "multiclass", "names": ["a", "b", "c"]}, [[1, 0, 0, 0, 0, 2]] * 3, [0, 1, 2],
                 id="multiclass"),
    pytest.param({"kind": "multilabel", "names": ["a", "b", "c"]}, [[0.5] * 6] * 3, [0, 0, -1], id="multilabel"),
    pytest.param({"kind": "multilabel", "names": ["a"]}, [[1, -1]], [0], id="multilabel-of-one-label"),
])
def test_stacker_load_takes_every_well_formed_shape(tmp_path, task, coef, intercept):
    path = tmp_path / "meta.json"
    path.write_text(json.dumps(meta(task=task, coef=coef, intercept=intercept)))
    back = Stacker.load(str(path))
    assert back.task == Task(**task) and back.files == 2
    assert back.coef.tolist() == coef and back.intercept.tolist() == intercept


def test_stacker_load_refuses_json_that_is_not_an_object(tmp_path):
    path = tmp_path / "meta.json"
    path.write_text("[1, 2]")
    with pytest.raises(XRError, match="not an xr-cascade stack meta-model"):
        Stacker.load(str(path))


# ---------------------------------------------------------------- stack

def stack_files():
    """Two files over 8 val and 3 test records; a separates the classes, b is noise."""
    truth = ["NORMAL", "PNEUMONIA", "NORMAL", "PNEUMONIA", "NORMAL", "PNEUMONIA", "NORMAL", "PNEUMONIA",
             "NORMAL", "PNEUMONIA", "NORMAL"]
    pa = [0.2, 0.7, 0.35, 0.9, 0.1, 0.6, 0.45, 0.8, 0.3, 0.65, 0.55]
    pb = [0.5, 0.4, 0.6, 0.55, 0.3, 0.5, 0.7, 0.45, 0.5, 0.5, 0.5]
    splits = ["val"] * 8 + ["test"] * 3
    files = []
    for name, p in (("a.jsonl", pa), ("b.jsonl", pb)):
        files.append(scored(name, [{"id": f"r{i}", "label": truth[i], "split": splits[i],
                                    "scores": {"NORMAL": round(1 - p[i], 6), "PNEUMONIA": p[i]},
                                    "pred": "PNEUMONIA" if p[i] >= 0.5 else "NORMAL"} for i in range(11)]))
    y = np.array([t == "PNEUMONIA" for t in truth], int)
    return files, np.stack([pa, pb], 1), y


def test_stack_fits_on_the_val_records_and_scores_every_record(tmp_path):
    files, x, y = stack_files()
    messages = []
    out = list(stack(files, save=str(tmp_path / "meta.json"), log=messages.append))
    assert messages == ["meta-model fitted on 8 val records"]
    model = LogisticRegression(max_iter=1000, random_state=0).fit(x[:8], y[:8])
    expected = model.predict_proba(x)[:, 1]
    assert [r["id"] for r in out] == [f"r{i}" for i in range(11)]
    assert [r["scores"]["PNEUMONIA"] for r in out] == pytest.approx(expected.tolist(), abs=1e-6)
    assert [r["pred"] for r in out] == ["PNEUMONIA" if p >= 0.5 else "NORMAL" for p in expected]
    assert out[8]["split"] == "test" and out[8]["label"] == "NORMAL"
    reloaded = list(stack(files, load=str(tmp_path / "meta.json"), log=messages.append))
    assert reloaded == out and len(messages) == 1             # loading fits nothing
    strict = list(stack(files, load=str(tmp_path / "meta.json"), threshold=0.9))
    assert [r["pred"] for r in strict] == ["PNEUMONIA" if p >= 0.9 else "NORMAL" for p in expected]


def test_stack_fits_on_another_split_and_leaves_unscored_records_out_of_the_fit():
    files, x, y = stack_files()
    messages = []
    out = list(stack(files, fit_on="test", log=messages.append))
    assert messages == ["meta-model fitted on 3 test records"]
    model = LogisticRegression(max_iter=1000, random_state=0).fit(x[8:], y[8:])
    expected = model.predict_proba(x)[:, 1].tolist()
    assert [r["scores"]["PNEUMONIA"] for r in out] == pytest.approx(expected, abs=1e-6)
    a = files[0]
    broken = scored("a.jsonl", [{k: v for k, v in r.items() if k not in ("scores", "pred")} | {"error": "x"}
                                if i == "r1" else r for i, r in a.records.items()])
    messages.clear()
    out = list(stack([broken, files[1]], log=messages.append))
    assert messages == ["meta-model fitted on 7 val records"]
    keep = [0, 2, 3, 4, 5, 6, 7]
    model = LogisticRegression(max_iter=1000, random_state=0).fit(x[keep], y[keep])
    assert out[1]["error"] == "not scored in a.jsonl" and "scores" not in out[1]
    assert out[0]["scores"]["PNEUMONIA"] == pytest.approx(model.predict_proba(x[:1])[0, 1], abs=1e-6)


def test_stack_errors(tmp_path):
    files, _, _ = stack_files()
    with pytest.raises(XRError, match=r"^no records of split 'train' to fit the meta-model on \(--fit-on\)$"):
        stack(files, fit_on="train")
    path = str(tmp_path / "meta.json")
    Stacker(THREE, np.zeros((3, 6)), [0, 0, 0], 2).save(path)
    message = f"{path} was fitted on Covid, Normal, Viral, the files score NORMAL, PNEUMONIA"
    with pytest.raises(XRError, match=f"^{re.escape(message)}$"):
        stack(files, load=path)
    Stacker(BINARY, [[1.0, 1.0, 1.0]], [0], 3).save(path)
    with pytest.raises(UsageError, match=f"^{re.escape(path)} was fitted on 3 files, not 2$"):
        stack(files, load=path)
