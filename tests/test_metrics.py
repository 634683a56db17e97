"""libxr.learning.epoch_metrics: equal to scikit-learn on real numbers, and no crash on degenerate input."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score, roc_auc_score

from libxr.learning.epoch_metrics import epoch_metrics
from libxr.records.tasks import Task

rng = np.random.default_rng(0)


def test_binary_equals_sklearn():
    y = rng.integers(0, 2, 200)
    s = np.clip(y * 0.3 + rng.random(200) * 0.7, 0, 1)
    m = epoch_metrics(Task("binary", ["n", "p"]), y, s)
    pred = (s >= 0.5).astype(int)
    assert m == pytest.approx({"accuracy": accuracy_score(y, pred), "auc": roc_auc_score(y, s),
                               "kappa": cohen_kappa_score(y, pred), "f1": f1_score(y, pred)})


def test_multiclass_equals_sklearn():
    y = rng.integers(0, 3, 300)
    logits = rng.normal(size=(300, 3)) + np.eye(3)[y]
    s = Task("multiclass", ["a", "b", "c"]).probabilities(logits)
    assert np.allclose(s.sum(1), 1)
    m = epoch_metrics(Task("multiclass", ["a", "b", "c"]), y, s)
    pred = s.argmax(1)
    assert m["auc"] == pytest.approx(roc_auc_score(y, s, multi_class="ovr"))
    assert m["kappa"] == pytest.approx(cohen_kappa_score(y, pred))
    assert m["f1"] == pytest.approx(f1_score(y, pred, average="macro"))


def test_multilabel_ignores_unstated_and_averages_labels():
    y = np.array([[1, 0], [0, np.nan], [1, 1], [0, 0]], np.float32)
    s = np.array([[0.9, 0.2], [0.1, 0.9], [0.6, 0.7], [0.4, 0.1]])
    m = epoch_metrics(Task("multilabel", ["a", "b"]), y, s)
    auc_b = roc_auc_score([0, 1, 0], [0.2, 0.7, 0.1])
    assert m["auc"] == pytest.approx((1.0 + auc_b) / 2)
    assert m["accuracy"] == pytest.approx(7 / 7)


def test_single_class_auc_is_undefined_not_a_crash():
    m = epoch_metrics(Task("binary", ["n", "p"]), np.ones(5), rng.random(5))
    assert m["auc"] is None and m["accuracy"] is not None
    m = epoch_metrics(Task("multiclass", ["a", "b", "c"]), np.array([0, 1, 1]), rng.random((3, 3)))
    assert m["auc"] is None


def test_binary_scores_are_sigmoids():
    assert Task("binary", ["n", "p"]).probabilities(np.array([[0.0], [100.0]])).tolist() == [0.5, 1.0]
