"""libxr.judging.calibration: temperatures (and Platt shifts) fitted on logits, applied, undone —
on models whose miscalibration is made on purpose, so the right temperature and shift are known."""

import numpy as np
import pytest

from libxr.errors import ManifestError
from libxr.judging.calibration import BOUNDS, calibrated, fit, fit_temperature, read_field, uncalibrated
from libxr.judging.metrics import metrics
from libxr.records.tasks import Task

BINARY = Task("binary", ["NORMAL", "PNEUMONIA"])
THREE = Task("multiclass", ["COVID", "NORMAL", "Viral Pneumonia"])
LABELS = Task("multilabel", ["Edema", "Effusion"])


def calibrated_truth(task, n=4000, seed=0):
    """(true logits, targets drawn from them): a model that outputs the true logits is calibrated."""
    rng = np.random.default_rng(seed)
    if task.kind == "multiclass":
        z = rng.normal(0, 2, (n, 3))
        p = task.probabilities(z)
        return z, np.array([rng.choice(3, p=row) for row in p])
    z = rng.normal(0, 2, (n, 1) if task.kind == "binary" else (n, 2))
    y = (rng.random(z.shape) < 1 / (1 + np.exp(-z))).astype(np.float32)
    return z, y.reshape(n) if task.kind == "binary" else y


@pytest.mark.parametrize("task", [BINARY, THREE], ids=lambda t: t.kind)
@pytest.mark.parametrize("confidence, expected", [
    pytest.param(3.0, 3.0, id="over-confident-gets-T-above-1"),
    pytest.param(0.4, 0.4, id="under-confident-gets-T-below-1"),
])
def test_a_miscalibrated_model_gets_the_temperature_that_undoes_it_and_a_lower_ece(task, confidence, expected):
    z, y = calibrated_truth(task)
    logits = confidence * z                 # the model's logits: too sure (×3), or too timid (×0.4)
    t = fit_temperature(task, logits, y)
    assert t == pytest.approx(expected, rel=0.08)
    before = metrics(task, y, task.probabilities(logits), detail=False)
    after = metrics(task, y, calibrated(task, logits, t), detail=False)
    assert after["ece"] < 0.03 < before["ece"] and after["brier"] < before["brier"]
    assert after["log_loss"] < before["log_loss"]
    ranking = "auc" if task.kind == "binary" else "accuracy"      # unchanged: T keeps every order
    assert after[ranking] == pytest.approx(before[ranking])


def test_multilabel_gets_one_temperature_per_label_and_ignores_unstated_labels():
    z, y = calibrated_truth(LABELS)
    logits = z * np.array([3.0, 0.4])             # Edema over-confident, Effusion under-confident
    unstated = np.random.default_rng(1).random(y.shape) < 0.3
    y[unstated] = np.nan
    logits[unstated] = 1000.0                     # what a model says about an unstated label is not counted
    t = fit_temperature(LABELS, logits, y)
    assert isinstance(t, list) and t[0] == pytest.approx(3.0, rel=0.1) and t[1] == pytest.approx(0.4, rel=0.1)
    p = calibrated(LABELS, logits, t)
    assert p[:, 0] == pytest.approx(1 / (1 + np.exp(-logits[:, 0] / t[0])))


@pytest.mark.parametrize("task, y, warned", [
    pytest.param(BINARY, np.ones(50, np.float32), "validation holds one class only", id="binary"),
    pytest.param(THREE, np.full(50, 2), "validation holds one class only", id="multiclass"),
    pytest.param(LABELS, np.stack([np.ones(50), np.arange(50) % 2], 1).astype(np.float32),
                 "label Edema: one class only; its temperature stays 1.0", id="multilabel"),
])
def test_one_class_in_validation_keeps_temperature_1_and_says_so(task, y, warned):
    logits = np.random.default_rng(2).normal(0, 3, (50, task.outputs))
    said = []
    t = fit_temperature(task, logits, y, said.append)
    assert (t[0] if task.kind == "multilabel" else t) == 1.0
    assert len(said) == 1 and said[0].startswith(warned)


def test_validation_the_logits_separate_stops_at_the_lower_bound():
    z = np.linspace(-3, 3, 40)
    assert fit_temperature(BINARY, z, (z > 0).astype(np.float32)) == pytest.approx(BOUNDS[0], rel=1e-4)


@pytest.mark.parametrize("task", [BINARY, THREE, LABELS], ids=lambda t: t.kind)
def test_uncalibrated_undoes_each_records_temperature(task):
    z, _ = calibrated_truth(task, n=200)
    t = np.where(np.arange(200) % 2, 2.5, 0.5)                      # two models' records, mixed
    if task.kind == "binary":
        z, per_record, divisor = z.reshape(200), t, t
    elif task.kind == "multiclass":
        per_record, divisor = t, t[:, None]
    else:
        per_record = divisor = t[:, None] * np.array([1.0, 1.5])    # one per record and label
    p = task.probabilities(z / divisor)
    assert uncalibrated(task, p, per_record) == pytest.approx(task.probabilities(z), abs=1e-9)
    rounded = np.round(p, 6)      # as records carry them: T = 0.5 undone takes a square root of ±5e-7
    assert uncalibrated(task, rounded, per_record) == pytest.approx(task.probabilities(z), abs=1e-3)


def test_platt_undoes_a_scale_and_a_prior_shift_that_a_temperature_alone_cannot():
    z, y = calibrated_truth(BINARY)
    logits = 2.0 * z.reshape(-1) + 1.5       # too sure, and pushed toward the positive class (class weights)
    t, b = fit(BINARY, logits, y, "platt")
    assert t == pytest.approx(2.0, rel=0.08) and b == pytest.approx(-0.75, abs=0.1)
    alone, no_shift = fit(BINARY, logits, y, "temperature")
    assert no_shift is None
    raw = metrics(BINARY, y, BINARY.probabilities(logits), detail=False)
    scaled = metrics(BINARY, y, calibrated(BINARY, logits, alone), detail=False)
    platt = metrics(BINARY, y, calibrated(BINARY, logits, t, b), detail=False)
    assert platt["ece"] < 0.03 < scaled["ece"] < raw["ece"]
    assert platt["log_loss"] < scaled["log_loss"] and platt["auc"] == pytest.approx(raw["auc"])


def test_platt_fits_each_label_its_own_shift_and_multiclass_a_temperature_only():
    z, y = calibrated_truth(LABELS)
    t, b = fit(LABELS, z * np.array([2.0, 0.5]) + np.array([1.0, -1.0]), y, "platt")
    assert t == pytest.approx([2.0, 0.5], rel=0.1) and b == pytest.approx([-0.5, 2.0], abs=0.15)
    z3, y3 = calibrated_truth(THREE)
    said = []
    t3, b3 = fit(THREE, 3.0 * z3, y3, "platt", said.append)
    assert b3 is None and t3 == pytest.approx(3.0, rel=0.08)
    assert said == ["multiclass tasks are calibrated by a temperature only (a shift would change the argmax)"]


def test_platt_on_one_class_keeps_scores_raw_and_says_so():
    said = []
    assert fit(BINARY, np.linspace(-2, 2, 30), np.ones(30), "platt", said.append) == (1.0, 0.0)
    assert len(said) == 1 and said[0].startswith("validation holds one class only")


@pytest.mark.parametrize("task", [BINARY, LABELS], ids=lambda t: t.kind)
def test_uncalibrated_undoes_each_records_temperature_and_shift(task):
    z, _ = calibrated_truth(task, n=200)
    z = z.reshape(200) if task.kind == "binary" else z
    t = np.where(np.arange(200) % 2, 2.5, 0.5)
    b = np.where(np.arange(200) % 3, -1.0, 0.7)
    if task.kind == "multilabel":
        t, b = t[:, None] * np.array([1.0, 1.5]), b[:, None] * np.array([1.0, -2.0])
    p = task.probabilities(z / t + b)
    assert uncalibrated(task, p, t, b) == pytest.approx(task.probabilities(z), abs=1e-9)


@pytest.mark.parametrize("record, task, expected", [
    pytest.param({"shift": -1.25}, BINARY, -1.25, id="negative-shift"),
    pytest.param({"shift": {"Edema": 0.5, "Effusion": -2}}, LABELS, [0.5, -2.0], id="per-label"),
    pytest.param({}, BINARY, None, id="absent"),
    pytest.param({"shift": "1"}, BINARY, "shift '1' is not a finite number", id="text"),
    pytest.param({"shift": float("inf")}, BINARY, "shift inf is not a finite number", id="infinite"),
    pytest.param({"shift": {"Edema": 0.5}}, LABELS, "is not one finite number per label", id="label-missing"),
])
def test_a_records_shift_is_read_or_refused_naming_file_and_line(record, task, expected):
    if isinstance(expected, str):
        with pytest.raises(ManifestError, match=expected) as err:
            read_field(record, task, "s.jsonl", 7, "shift")
        assert str(err.value).startswith("s.jsonl:7:")
    else:
        got = read_field(record, task, "s.jsonl", 7, "shift")
        assert got is None if expected is None else list(np.atleast_1d(got)) == pytest.approx(np.atleast_1d(expected))
