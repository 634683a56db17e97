"""libxr.combining.aligned: prediction files read from JSONL, the task their scores imply, matching by id
(never by line order) and the errors that name the file and line."""

import io
import json
import re

import numpy as np
import pytest

from libxr.combining.aligned import Scored, align, base, same_ids, same_task
from libxr.errors import ManifestError, XRError
from libxr.records.tasks import Task


def jsonl(*records):
    """A binary stream of JSONL; a None record is a blank line (counted, skipped)."""
    return io.BytesIO("".join("\n" if r is None else json.dumps(r) + "\n" for r in records).encode())


def scored(name, *records):
    return Scored(jsonl(*records), name)


def rec(i, scores, pred=None, **extra):
    return {"id": i, "scores": scores, "pred": pred, **extra}


def two(i, p, **extra):
    """A binary record: P(PNEUMONIA) = p."""
    return rec(i, {"NORMAL": round(1 - p, 6), "PNEUMONIA": p}, "PNEUMONIA" if p >= 0.5 else "NORMAL", **extra)


@pytest.mark.parametrize("records, kind, names", [
    pytest.param([two("r1", 0.7)], "binary", ["NORMAL", "PNEUMONIA"], id="binary"),
    pytest.param([rec("r1", {"PNEUMONIA": 0.7, "NORMAL": 0.3}, "PNEUMONIA")], "binary",
                 ["NORMAL", "PNEUMONIA"], id="binary-negative-first-whatever-the-key-order"),
    pytest.param([rec("r1", {"normal": 0.2, "abnormal": 0.8}, "abnormal")], "binary", ["normal", "abnormal"],
                 id="binary-mura-abnormal-positive"),
    pytest.param([rec("r1", {"cat": 0.2, "dog": 0.8}, "dog")], "binary", ["cat", "dog"],
                 id="binary-no-negative-name-keeps-key-order"),
    pytest.param([rec("r1", {"Covid": 0.1, "Normal": 0.7, "Viral": 0.2}, "Normal")], "multiclass",
                 ["Covid", "Normal", "Viral"], id="multiclass-key-order"),
    pytest.param([rec("r1", {"Edema": 0.9, "Effusion": 0.2}, ["Edema"])], "multilabel", ["Edema", "Effusion"],
                 id="multilabel-two-labels-pred-list"),
    pytest.param([rec("r1", {"Edema": 0.1, "Effusion": 0.2, "Mass": 0.3}, [])], "multilabel",
                 ["Edema", "Effusion", "Mass"], id="multilabel-empty-pred"),
    pytest.param([{"id": "r0", "error": "x.png: truncated"}, two("r1", 0.4)], "binary",
                 ["NORMAL", "PNEUMONIA"], id="error-record-first"),
    pytest.param([{"id": "r1", "scores": {"Edema": 0.9, "Effusion": 0.2}}], "binary", ["Edema", "Effusion"],
                 id="no-pred-is-single-label"),
    pytest.param([rec("r1", {"A": 0.1, "B": 0.9}, "B"), rec("r2", {"A": 0.8, "B": 0.2}, ["A"])], "binary",
                 ["A", "B"], id="the-first-scored-record-decides"),
    # the truth decides before `pred`, as in xr-eval: three labels without a pred were taken as multiclass
    pytest.param([{"id": "r1", "labels": {"Edema": 1, "Effusion": 1, "Mass": 0},
                   "scores": {"Edema": 0.9, "Effusion": 0.8, "Mass": 0.1}}], "multilabel",
                 ["Edema", "Effusion", "Mass"], id="labels-without-pred-three"),
    pytest.param([{"id": "r1", "labels": {"Edema": 1}, "scores": {"Edema": 0.9, "Effusion": 0.8}}], "multilabel",
                 ["Edema", "Effusion"], id="labels-without-pred-two"),
    pytest.param([rec("r1", {"Edema": 0.9, "Effusion": 0.8}, "Edema", labels={"Edema": 1})], "multilabel",
                 ["Edema", "Effusion"], id="labels-before-a-pred-string"),
    pytest.param([rec("r1", {"A": 0.1, "B": 0.2, "C": 0.7}, ["C"], label="C")], "multiclass", ["A", "B", "C"],
                 id="label-before-a-pred-list"),
    pytest.param([rec("r1", {"A": 0.1, "B": 0.2, "C": 0.7}, ["C"], labels=None)], "multilabel", ["A", "B", "C"],
                 id="null-labels-then-pred-list"),
    pytest.param([{"id": "r0", "error": "x", "labels": {"A": 1}},
                  {"id": "r1", "scores": {"A": 0.1, "B": 0.2, "C": 0.7}},
                  {"id": "r2", "labels": {"A": 0}, "scores": {"A": 0.1, "B": 0.2, "C": 0.7}}], "multilabel",
                 ["A", "B", "C"], id="the-first-scored-record-that-tells-decides"),
])
def test_task_is_inferred_from_the_scores(records, kind, names):
    f = scored("a.jsonl", *records)
    assert f.task == Task(kind, names)
    assert list(f.records) == [r["id"] for r in records] and f.name == "a.jsonl"


def test_records_and_lines_by_id_in_file_order():
    f = scored("a.jsonl", two("r2", 0.1), None, two("r1", 0.8, label="PNEUMONIA"), None, None,
               {"id": "r3", "error": "gone"})
    assert list(f.records) == ["r2", "r1", "r3"]
    assert f.lines == {"r2": 1, "r1": 3, "r3": 6}          # file lines, blank ones counted
    assert f.records["r1"] == two("r1", 0.8, label="PNEUMONIA")


def test_probabilities_in_task_order_with_nan_rows_for_errors():
    f = scored("a.jsonl", rec("r1", {"PNEUMONIA": 0.8, "NORMAL": 0.2}, "PNEUMONIA"),
               {"id": "r2", "error": "x"}, rec("r3", {"NORMAL": 0.6, "PNEUMONIA": 0.4}, "NORMAL"))
    p = f.probabilities(["r3", "r2", "r1"])
    assert p.shape == (3, 2)
    assert p[0].tolist() == [0.6, 0.4] and p[2].tolist() == [0.2, 0.8]
    assert np.isnan(p[1]).all()


@pytest.mark.parametrize("records, message", [
    pytest.param([two("r1", 0.2), two("r2", 0.3), two("r1", 0.4)],
                 "a.jsonl:3: id 'r1' again (first on line 1)", id="duplicate"),
    pytest.param([None, two("r1", 0.2), None, two("r2", 0.3), {"id": "r2", "error": "x"}],
                 "a.jsonl:5: id 'r2' again (first on line 4)",
                 id="duplicate-error-record-blank-lines-counted"),
    pytest.param([two("r1", 0.2), {"id": "r2", "pred": "NORMAL"}],
                 "a.jsonl:2: record has no `scores` object (run xr-predict first)", id="no-scores"),
    pytest.param([{"id": "r1", "scores": {}}], "a.jsonl:1: record has no `scores` object (run xr-predict first)",
                 id="empty-scores"),
    pytest.param([{"id": "r1", "scores": [0.3, 0.7]}],
                 "a.jsonl:1: record has no `scores` object (run xr-predict first)", id="scores-not-an-object"),
    pytest.param([two("r1", 0.2), rec("r2", {"NORMAL": 0.5, "X": 0.5})],
                 "a.jsonl:2: scores for NORMAL, X, earlier records had NORMAL, PNEUMONIA",
                 id="other-classes"),
    pytest.param([two("r1", 0.2), None, rec("r2", {"NORMAL": 0.5, "PNEUMONIA": 0.3, "X": 0.2})],
                 "a.jsonl:3: scores for NORMAL, PNEUMONIA, X, earlier records had NORMAL, PNEUMONIA",
                 id="an-extra-class"),
    pytest.param([two("r1", 0.2), {"scores": {"NORMAL": 1.0}}], "a.jsonl:2: record has no 'id' string",
                 id="no-id"),
])
def test_bad_files_name_file_and_line(records, message):
    with pytest.raises(ManifestError, match=f"^{re.escape(message)}$"):
        scored("a.jsonl", *records)


def test_the_same_classes_in_another_key_order_are_accepted():
    f = scored("a.jsonl", rec("r1", {"A": 0.2, "B": 0.3, "C": 0.5}, "C"),
               rec("r2", {"C": 0.1, "A": 0.6, "B": 0.3}, "A"))
    assert f.task == Task("multiclass", ["A", "B", "C"])
    assert f.probabilities(["r2"]).tolist() == [[0.6, 0.3, 0.1]]


@pytest.mark.parametrize("records", [
    pytest.param([], id="empty"),
    pytest.param([None, None], id="blank-lines"),
    pytest.param([{"id": "r1", "error": "x"}, {"id": "r2", "error": "y"}], id="errors-only"),
])
def test_a_file_without_scored_records(records):
    with pytest.raises(XRError, match=r"^a\.jsonl: no scored records$"):
        scored("a.jsonl", *records)


def test_align_matches_by_id_not_by_line_order():
    a = scored("a.jsonl", two("r1", 0.1), two("r2", 0.2), two("r3", 0.3))
    b = scored("b.jsonl", two("r3", 0.9), two("r1", 0.7), two("r2", 0.8))
    ids = align([a, b])
    assert ids == ["r1", "r2", "r3"]
    assert b.probabilities(ids)[:, 1].tolist() == [0.7, 0.8, 0.9]
    assert align([b, a]) == ["r3", "r1", "r2"]               # the first file's order


@pytest.mark.parametrize("b_records, message", [
    pytest.param([two("r1", 0.1), two("r3", 0.3)], "a.jsonl:2: id 'r2' is not in b.jsonl (1 ids differ)",
                 id="missing-names-first-file-line"),
    pytest.param([two("r3", 0.3)], "a.jsonl:1: id 'r1' is not in b.jsonl (2 ids differ)", id="two-missing"),
    pytest.param([two("r1", 0.1), two("r2", 0.2), two("r3", 0.3), None, two("r9", 0.9)],
                 "b.jsonl:5: id 'r9' is not in a.jsonl (1 ids differ)", id="extra-names-other-file-line"),
    pytest.param([two("r1", 0.1), two("r3", 0.3), two("r9", 0.9)],
                 "a.jsonl:2: id 'r2' is not in b.jsonl (2 ids differ)", id="missing-and-extra"),
])
def test_same_ids_errors_name_file_and_line(b_records, message):
    a = scored("a.jsonl", two("r1", 0.1), two("r2", 0.2), two("r3", 0.3))
    b = scored("b.jsonl", *b_records)
    for check in (same_ids, align):
        with pytest.raises(ManifestError, match=f"^{re.escape(message)}$"):
            check([a, b])


def test_same_ids_checks_the_third_file_too():
    a, b = scored("a.jsonl", two("r1", 0.1)), scored("b.jsonl", two("r1", 0.2))
    c = scored("c.jsonl", two("r1", 0.3), two("r2", 0.4))
    with pytest.raises(ManifestError, match=r"^c\.jsonl:2: id 'r2' is not in a\.jsonl \(1 ids differ\)$"):
        same_ids([a, b, c])


def test_same_ids_whatever_the_files_score_but_align_needs_one_task():
    a = scored("a.jsonl", two("r1", 0.1), two("r2", 0.2))
    b = scored("b.jsonl", rec("r2", {"Covid": 0.2, "Normal": 0.8}, "Normal"),
               rec("r1", {"Covid": 0.6, "Normal": 0.4}, "Covid"))
    assert same_ids([a, b]) == ["r1", "r2"]
    with pytest.raises(XRError, match=r"^b\.jsonl scores Normal, Covid; a\.jsonl scores NORMAL, PNEUMONIA$"):
        align([a, b])
    with pytest.raises(XRError, match=r"^b\.jsonl scores Normal, Covid; a\.jsonl scores NORMAL, PNEUMONIA$"):
        same_task([a, b])


def test_same_task_names_the_first_file_that_differs():
    a, b = scored("a.jsonl", two("r1", 0.1)), scored("b.jsonl", two("r1", 0.2))
    c = scored("c.jsonl", rec("r1", {"NORMAL": 0.5, "PNEUMONIA": 0.3, "X": 0.2}, "NORMAL"))
    assert same_task([a, b]) == Task("binary", ["NORMAL", "PNEUMONIA"])
    with pytest.raises(XRError, match=r"^c\.jsonl scores NORMAL, PNEUMONIA, X; "
                                      r"a\.jsonl scores NORMAL, PNEUMONIA$"):
        same_task([a, b, c])
    multilabel = scored("m.jsonl", rec("r1", {"NORMAL": 0.5, "PNEUMONIA": 0.3}, ["NORMAL"]))
    with pytest.raises(XRError, match=r"^m\.jsonl scores NORMAL, PNEUMONIA; "
                                      r"a\.jsonl scores NORMAL, PNEUMONIA$"):
        same_task([a, multilabel])                # same names, multi-label: another task


def test_files_scoring_the_same_classes_in_another_order_align():
    a = scored("a.jsonl", rec("r1", {"A": 0.2, "B": 0.3, "C": 0.5}, "C"))
    b = scored("b.jsonl", rec("r1", {"B": 0.1, "A": 0.6, "C": 0.3}, "C"))
    assert align([a, b]) == ["r1"]
    assert b.task.names == ["A", "B", "C"] and b.probabilities(["r1"]).tolist() == [[0.6, 0.1, 0.3]]


@pytest.mark.parametrize("record, expected", [
    pytest.param(two("r1", 0.8, label="PNEUMONIA", split="test"),
                 {"id": "r1", "label": "PNEUMONIA", "split": "test"}, id="scored"),
    pytest.param({"id": "r1", "path": "x.png", "error": "x.png: truncated"}, {"id": "r1", "path": "x.png"},
                 id="error"),
    pytest.param({"id": "r1", "scores": {}, "pred": "a", "stages": [{}], "group": "XR_HAND", "row": 3},
                 {"id": "r1", "group": "XR_HAND", "row": 3}, id="stages"),
])
def test_base_drops_what_a_combination_replaces(record, expected):
    before = json.dumps(record)
    assert base(record) == expected
    assert json.dumps(record) == before                  # the record itself is left alone
