"""libxr.judging.calibration: temperatures fitted on logits, applied, undone — on models whose
miscalibration is made on purpose, so the right temperature is known."""

import numpy as np
import pytest

from libxr.judging.calibration import BOUNDS, calibrated, fit_temperature, uncalibrated
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
