"""libxr.judging.metrics and libxr.judging.thresholds: every metric equals scikit-learn's on the same numbers,
degenerate inputs give None rather than a crash, threshold rules pick the documented point."""

import numpy as np
import pytest
from sklearn import metrics as m

from libxr.errors import UsageError
from libxr.judging import thresholds
from libxr.judging.metrics import expected_calibration_error, metrics
from libxr.records.tasks import Task

BINARY = Task("binary", ["NORMAL", "PNEUMONIA"])
THREE = Task("multiclass", ["COVID", "NORMAL", "Viral Pneumonia"])
LABELS = Task("multilabel", ["Edema", "Effusion", "Cardiomegaly"])

rng = np.random.default_rng(7)
Y2 = rng.integers(0, 2, 200)
P2 = np.clip(Y2 * 0.35 + rng.random(200) * 0.65, 0, 1)
Y3 = rng.integers(0, 3, 150)
P3 = rng.dirichlet(np.ones(3), 150) + np.eye(3)[Y3] * 0.6
P3 /= P3.sum(1, keepdims=True)
YL = rng.integers(0, 2, (120, 3)).astype(float)
PL = np.clip(YL * 0.4 + rng.random((120, 3)) * 0.6, 0, 1)


@pytest.mark.parametrize("key, expected", [
    pytest.param("accuracy", lambda y, p, d: m.accuracy_score(y, d), id="accuracy"),
    pytest.param("balanced_accuracy", lambda y, p, d: m.balanced_accuracy_score(y, d),
                 id="balanced-accuracy"),
    pytest.param("sensitivity", lambda y, p, d: m.recall_score(y, d), id="sensitivity"),
    pytest.param("specificity", lambda y, p, d: m.recall_score(y, d, pos_label=0), id="specificity"),
    pytest.param("precision", lambda y, p, d: m.precision_score(y, d), id="precision"),
    pytest.param("npv", lambda y, p, d: m.precision_score(y, d, pos_label=0), id="npv"),
    pytest.param("f1", lambda y, p, d: m.f1_score(y, d), id="f1"),
    pytest.param("kappa", lambda y, p, d: m.cohen_kappa_score(y, d), id="kappa"),
    pytest.param("auc", lambda y, p, d: m.roc_auc_score(y, p), id="auc"),
    pytest.param("pr_auc", lambda y, p, d: m.average_precision_score(y, p), id="pr-auc"),
    pytest.param("log_loss", lambda y, p, d: m.log_loss(y, p), id="log-loss"),
    pytest.param("brier", lambda y, p, d: m.brier_score_loss(y, p), id="brier"),
])
@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_binary_metrics_equal_sklearn(key, expected, threshold):
    got = metrics(BINARY, Y2, P2, threshold)
    assert got[key] == pytest.approx(expected(Y2, P2, (P2 >= threshold).astype(int)))
    tn, fp, fn, tp = m.confusion_matrix(Y2, P2 >= threshold).ravel()
    assert got["confusion"]["matrix"] == [[tn, fp], [fn, tp]]


@pytest.mark.parametrize("key, expected", [
    pytest.param("accuracy", lambda y, p, d: m.accuracy_score(y, d), id="accuracy"),
    pytest.param("balanced_accuracy", lambda y, p, d: m.balanced_accuracy_score(y, d),
                 id="balanced-accuracy"),
    pytest.param("kappa", lambda y, p, d: m.cohen_kappa_score(y, d), id="kappa"),
    pytest.param("f1_macro", lambda y, p, d: m.f1_score(y, d, average="macro"), id="f1-macro"),
    pytest.param("f1_micro", lambda y, p, d: m.f1_score(y, d, average="micro"), id="f1-micro"),
    pytest.param("f1_weighted", lambda y, p, d: m.f1_score(y, d, average="weighted"), id="f1-weighted"),
    pytest.param("precision_macro", lambda y, p, d: m.precision_score(y, d, average="macro"),
                 id="precision-macro"),
    pytest.param("recall_weighted", lambda y, p, d: m.recall_score(y, d, average="weighted"),
                 id="recall-weighted"),
    pytest.param("auc_macro", lambda y, p, d: m.roc_auc_score(y, p, multi_class="ovr"), id="auc-macro"),
    pytest.param("auc_micro", lambda y, p, d: m.roc_auc_score(np.eye(3)[y], p, average="micro"),
                 id="auc-micro"),
    pytest.param("pr_auc_macro", lambda y, p, d: m.average_precision_score(np.eye(3)[y], p),
                 id="pr-auc-macro"),
    pytest.param("log_loss", lambda y, p, d: m.log_loss(y, p), id="log-loss"),
    pytest.param("brier", lambda y, p, d: np.mean(np.sum((p - np.eye(3)[y]) ** 2, 1)), id="brier"),
])
def test_multiclass_metrics_equal_sklearn(key, expected):
    got = metrics(THREE, Y3, P3)
    assert got[key] == pytest.approx(expected(Y3, P3, P3.argmax(1)))
    assert got["confusion"]["matrix"] == m.confusion_matrix(Y3, P3.argmax(1)).tolist()
    covid = got["per_class"]["COVID"]
    assert covid["sensitivity"] == pytest.approx(m.recall_score(Y3 == 0, P3.argmax(1) == 0))
    assert covid["auc"] == pytest.approx(m.roc_auc_score(Y3 == 0, P3[:, 0]))


@pytest.mark.parametrize("key, expected", [
    pytest.param("f1_micro", lambda y, d: m.f1_score(y, d, average="micro"), id="f1-micro"),
    pytest.param("f1_macro", lambda y, d: m.f1_score(y, d, average="macro"), id="f1-macro"),
    pytest.param("f1_samples", lambda y, d: m.f1_score(y, d, average="samples", zero_division=0),
                 id="f1-samples"),
    pytest.param("precision_micro", lambda y, d: m.precision_score(y, d, average="micro"),
                 id="precision-micro"),
    pytest.param("recall_micro", lambda y, d: m.recall_score(y, d, average="micro"), id="recall-micro"),
    pytest.param("auc_macro", lambda y, d: m.roc_auc_score(y, PL, average="macro"), id="auc-macro"),
    pytest.param("auc_micro", lambda y, d: m.roc_auc_score(y, PL, average="micro"), id="auc-micro"),
    pytest.param("pr_auc_macro", lambda y, d: m.average_precision_score(y, PL, average="macro"),
                 id="pr-auc-macro"),
])
def test_multilabel_metrics_equal_sklearn(key, expected):
    got = metrics(LABELS, YL, PL)
    assert got[key] == pytest.approx(expected(YL.astype(int), (PL >= 0.5).astype(int)))
    edema = got["per_label"]["Edema"]
    assert edema["kappa"] == pytest.approx(m.cohen_kappa_score(YL[:, 0], PL[:, 0] >= 0.5))


def test_multilabel_unstated_labels_are_left_out_per_label():
    y = YL.copy()
    y[:40, 1] = np.nan
    got = metrics(LABELS, y, PL)
    assert got["per_label"]["Effusion"]["n"] == 80
    assert got["per_label"]["Effusion"]["auc"] == pytest.approx(m.roc_auc_score(YL[40:, 1], PL[40:, 1]))
    assert got["per_label"]["Edema"]["auc"] == pytest.approx(m.roc_auc_score(YL[:, 0], PL[:, 0]))
    # samples-F1 only over records that state every label
    assert got["f1_samples"] == pytest.approx(m.f1_score(YL[40:].astype(int), (PL[40:] >= 0.5).astype(int),
                                                         average="samples", zero_division=0))


@pytest.mark.parametrize("y, p, undefined", [
    pytest.param(np.ones(10), np.linspace(0, 1, 10), {"auc", "specificity", "balanced_accuracy", "kappa"},
                 id="only-positives"),
    pytest.param(np.zeros(10), np.linspace(0, 1, 10),
                 {"auc", "sensitivity", "pr_auc", "balanced_accuracy", "kappa"}, id="only-negatives"),
    pytest.param(np.zeros(10), np.full(10, 0.2),
                 {"auc", "sensitivity", "pr_auc", "balanced_accuracy", "kappa", "precision", "f1"},
                 id="only-negatives-none-called-positive"),
    pytest.param(np.array([0, 1] * 5), np.full(10, 0.2), {"precision"},   # nothing called positive (kappa 0)
                 id="none-called-positive"),
])
def test_degenerate_binary_inputs_give_none_not_a_crash(y, p, undefined):
    got = metrics(BINARY, y, p)
    assert {k for k, v in got.items() if v is None} == undefined
    assert got["accuracy"] == pytest.approx(m.accuracy_score(y, p >= 0.5))


@pytest.mark.parametrize("y, pred", [
    pytest.param(Y3, P3.argmax(1), id="every-class-true-and-predicted"),
    pytest.param(np.array([0, 1, 2, 0, 1, 2]), np.array([0, 0, 0, 0, 0, 0]),  # two classes never predicted
                 id="two-classes-never-predicted"),
    pytest.param(np.array([0, 0, 1, 1, 0, 1]), np.array([0, 2, 1, 2, 0, 0]),  # a class predicted, never true
                 id="class-predicted-never-true"),
    pytest.param(np.array([2, 2, 2, 2]), np.array([2, 2, 1, 0]),  # one true class
                 id="one-true-class"),
    pytest.param(np.array([1, 1, 1]), np.array([1, 1, 1]),  # one class in truth and prediction
                 id="one-class-in-truth-and-prediction"),
])
def test_multiclass_decision_metrics_equal_sklearn_on_any_confusion(y, pred):
    """The decisions come from the confusion counts: every average, with absent classes, as sklearn."""
    p = np.eye(3)[pred] * 0.7 + 0.1
    got = metrics(THREE, y, p)
    labels = {"labels": range(3), "zero_division": 0}
    expected = {"accuracy": m.accuracy_score(y, pred), "balanced_accuracy": m.balanced_accuracy_score(y, pred)}
    for avg in ("macro", "micro", "weighted"):
        expected |= {f"f1_{avg}": m.f1_score(y, pred, average=avg, **labels),
                     f"precision_{avg}": m.precision_score(y, pred, average=avg, **labels),
                     f"recall_{avg}": m.recall_score(y, pred, average=avg, **labels)}
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key
    single = len(np.unique(np.r_[y, pred])) == 1
    assert got["kappa"] is None if single else got["kappa"] == pytest.approx(m.cohen_kappa_score(y, pred))
    assert got["confusion"]["matrix"] == m.confusion_matrix(y, pred, labels=range(3)).tolist()


def test_multiclass_with_a_missing_class_has_no_macro_auc():
    y = np.array([0, 1, 0, 1])
    p = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.3, 0.6, 0.1]])
    got = metrics(THREE, y, p)
    assert got["auc_macro"] is None and got["accuracy"] == 1.0
    assert got["per_class"]["Viral Pneumonia"]["auc"] is None


def test_expected_calibration_error_by_hand():
    # bin 0.1-0.2: two at 0.15, one hit -> |0.5-0.15| * 2/4; bin 0.9-1: two at 0.95, both hit -> 0.05 * 2/4
    assert expected_calibration_error([1, 0, 1, 1], [0.15, 0.15, 0.95, 0.95]) == pytest.approx(0.35 * 0.5 + 0.025)
    assert expected_calibration_error([1, 0], [1.0, 0.0]) == 0.0


Y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
P = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])


@pytest.mark.parametrize("rule, expected", [
    ("0.5", 0.5), ("youden", 0.7), ("sens=1", 0.4), ("sens=0.75", 0.7), ("spec=1", 0.7), ("spec=0.75", 0.4),
])
def test_threshold_rules(rule, expected):
    cut = thresholds.choose(thresholds.parse(rule), Y, P)
    assert cut == pytest.approx(expected)
    pred = P >= cut
    if rule.startswith("sens="):
        assert m.recall_score(Y, pred) >= float(rule[5:])
    if rule.startswith("spec="):
        assert m.recall_score(Y, pred, pos_label=0) >= float(rule[5:])


@pytest.mark.parametrize("rule", ["sens", "sens=2", "spec=x", "f1=0.5", "-0.1", "best"])
def test_bad_threshold_rules_are_usage_errors(rule):
    with pytest.raises(UsageError, match="youden, sens=0.95"):
        thresholds.parse(rule)


def test_a_rule_needs_both_classes():
    assert thresholds.choose("youden", np.ones(4), np.linspace(0, 1, 4)) is None
