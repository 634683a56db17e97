"""libxr.judging.thresholds: each rule parsed (bad ones as usage errors), chosen on small hand-made data
whose ROC points are worked out below, and applied per task kind."""

import numpy as np
import pytest

from libxr.errors import UsageError
from libxr.judging.thresholds import choose, for_task, parse
from libxr.records.tasks import Task

# Sorted by probability, high to low: 0.9 (1), 0.8 (1), 0.4 (0), 0.35 (0), 0.3 (1), 0.1 (0).
# cut   sensitivity  specificity  Youden
# 0.9   1/3          1            1/3
# 0.8   2/3          1            2/3
# 0.4   2/3          2/3          1/3
# 0.35  2/3          1/3          0
# 0.3   1            1/3          1/3
# 0.1   1            0            0
Y = np.array([0, 0, 0, 1, 1, 1])
P = np.array([0.1, 0.4, 0.35, 0.8, 0.3, 0.9])


@pytest.mark.parametrize("rule, expected", [
    pytest.param("0.5", 0.5, id="number"),
    pytest.param("0", 0.0, id="zero"),
    pytest.param("1", 1.0, id="one"),
    pytest.param("1e-1", 0.1, id="exponent"),
    pytest.param(0.25, 0.25, id="a-float-as-given"),
    pytest.param("youden", "youden", id="youden"),
    pytest.param("sens=0.95", ("sens", 0.95), id="sens"),
    pytest.param("spec=0.9", ("spec", 0.9), id="spec"),
    pytest.param("sens=1", ("sens", 1.0), id="sens-1"),
    pytest.param("spec=0", ("spec", 0.0), id="spec-0"),
])
def test_parse(rule, expected):
    got = parse(rule)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("rule", [
    pytest.param("1.5", id="above-1"), pytest.param("-0.1", id="negative"), pytest.param("nan", id="nan"),
    pytest.param("inf", id="inf"), pytest.param("", id="empty"), pytest.param("best", id="word"),
    pytest.param("Youden", id="youden-capitalised"), pytest.param("youden=0.5", id="youden-with-value"),
    pytest.param("sens", id="sens-no-value"), pytest.param("sens=", id="sens-empty"),
    pytest.param("sens=1.01", id="sens-above-1"), pytest.param("spec=-0.5", id="spec-negative"),
    pytest.param("spec=x", id="spec-word"), pytest.param("f1=0.5", id="other-rule"),
    pytest.param("=0.5", id="no-rule-name"), pytest.param("sens =0.9", id="space"),
])
def test_bad_rules_are_usage_errors(rule):
    message = f"threshold {rule!r}: use a probability (0.5), youden, sens=0.95 or spec=0.9"
    with pytest.raises(UsageError, match=f"^{message.replace('(', '[(]').replace(')', '[)]')}$"):
        parse(rule)


@pytest.mark.parametrize("rule, expected", [
    pytest.param("0.33", 0.33, id="number-as-given"),
    pytest.param("youden", 0.8, id="youden"),
    pytest.param("sens=1", 0.3, id="sens-1-highest-cut-finding-all"),
    pytest.param("sens=0.6", 0.8, id="sens-0.6"),
    pytest.param("sens=0.67", 0.3, id="sens-0.67-is-more-than-2-of-3"),
    pytest.param("sens=0", 1.0, id="sens-0-nothing-positive"),
    pytest.param("spec=1", 0.8, id="spec-1-lowest-cut-without-false-alarm"),
    pytest.param("spec=0.6", 0.4, id="spec-0.6"),
    pytest.param("spec=0.7", 0.8, id="spec-0.7"),
    pytest.param("spec=0", 0.1, id="spec-0-everything-positive"),
])
def test_choose_by_hand(rule, expected):
    cut = choose(parse(rule), Y, P)
    assert cut == pytest.approx(expected) and isinstance(cut, float)
    pred = P >= cut
    if rule.startswith("sens="):
        assert pred[Y == 1].mean() >= float(rule[5:])
    if rule.startswith("spec="):
        assert (~pred[Y == 0]).mean() >= float(rule[5:])


def test_choose_accepts_lists_and_boolean_truth():
    assert choose("youden", [False, False, False, True, True, True], list(P)) == pytest.approx(0.8)


def test_youden_takes_the_higher_cut_on_a_tie():
    # cuts 0.9 (sens 1/2, spec 1) and 0.5 (sens 1, spec 1/2) both give J = 1/2
    assert choose("youden", [0, 1, 1, 0], [0.5, 0.5, 0.9, 0.2]) == pytest.approx(0.9)


@pytest.mark.parametrize("rule", [pytest.param("youden", id="youden"),
                                  pytest.param(("sens", 0.9), id="sens-0.9"),
                                  pytest.param(("spec", 0.9), id="spec-0.9")])
@pytest.mark.parametrize("truth", [pytest.param(np.ones(4), id="all-positive"),
                                   pytest.param(np.zeros(4), id="all-negative")])
def test_rules_need_both_classes(rule, truth):
    assert choose(rule, truth, [0.2, 0.4, 0.6, 0.8]) is None


def test_a_number_needs_no_data():
    assert choose(0.7, np.ones(3), [0.1, 0.2, 0.3]) == 0.7


@pytest.mark.parametrize("rule, expected", [
    pytest.param(0.3, 0.3, id="number"), pytest.param("youden", 0.8, id="youden"),
    pytest.param(("sens", 1.0), 0.3, id="sens"), pytest.param(("spec", 0.6), 0.4, id="spec"),
])
def test_for_task_binary(rule, expected):
    assert for_task(rule, Task("binary", ["NORMAL", "PNEUMONIA"]), Y, P) == pytest.approx(expected)


def test_for_task_binary_with_one_class_is_undefined():
    task = Task("binary", ["NORMAL", "PNEUMONIA"])
    assert for_task("youden", task, np.ones(4), np.linspace(0, 1, 4)) is None


@pytest.mark.parametrize("rule", [pytest.param(0.3, id="number"), pytest.param("youden", id="youden"),
                                  pytest.param(("sens", 0.9), id="sens-0.9")])
def test_for_task_multiclass_decides_by_argmax(rule):
    warnings = []
    y = np.array([0, 1, 2])
    assert for_task(rule, Task("multiclass", ["a", "b", "c"]), y, np.eye(3), warnings.append) is None
    assert warnings == []


# Multi-label: Edema is Y / P above with two unstated records that would change every answer if counted;
# Effusion states one class only.
YL = np.array([[0, 0], [0, 0], [0, np.nan], [1, 0], [1, 0], [1, 0], [np.nan, 0], [np.nan, np.nan]])
PL = np.array([[0.1, 0.2], [0.4, 0.3], [0.35, 0.9], [0.8, 0.1], [0.3, 0.6], [0.9, 0.5], [0.95, 0.4],
               [0.05, 0.7]])


@pytest.mark.parametrize("rule, expected, warned", [
    pytest.param("youden", [0.8, 0.5], True, id="youden"),
    pytest.param(("sens", 1.0), [0.3, 0.5], True, id="sens"),
    pytest.param(("spec", 0.6), [0.4, 0.5], True, id="spec"),
    pytest.param(0.25, [0.25, 0.25], False, id="number-for-every-label"),
])
def test_for_task_multilabel_one_per_label(rule, expected, warned):
    warnings = []
    got = for_task(rule, Task("multilabel", ["Edema", "Effusion"]), YL, PL, warnings.append)
    assert got == pytest.approx(expected) and len(got) == 2
    assert warnings == (["label Effusion: one class only; its threshold stays 0.5"] if warned else [])


def test_for_task_multilabel_warns_once_per_label():
    warnings = []
    y = np.array([[1, 0, 1], [1, 0, 0]], float)
    p = np.array([[0.5, 0.5, 0.7], [0.5, 0.5, 0.2]])
    assert for_task("youden", Task("multilabel", ["A", "B", "C"]), y, p, warnings.append) == [0.5, 0.5, 0.7]
    assert warnings == ["label A: one class only; its threshold stays 0.5",
                        "label B: one class only; its threshold stays 0.5"]
