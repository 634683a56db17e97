"""libxr.records.tasks: task inference, targets, training checks, class weights."""

import numpy as np
import pytest

from libxr.errors import UsageError, XRError
from libxr.records.tasks import (
    Task,
    check_training_targets,
    class_weights,
    guessed_positive,
    infer_task,
    targets,
)


@pytest.mark.parametrize("labels, kind, names", [
    pytest.param(["NORMAL", "PNEUMONIA"], "binary", ["NORMAL", "PNEUMONIA"], id="normal-is-negative"),
    pytest.param(["normal", "abnormal"], "binary", ["normal", "abnormal"],  # MURA: abnormal is positive
                 id="mura-abnormal-is-positive"),
    pytest.param(["Covid", "Normal", "Viral Pneumonia"], "multiclass", ["Covid", "Normal", "Viral Pneumonia"],
                 id="three-classes-are-multiclass"),
    pytest.param(["b", "a"], "binary", ["a", "b"], id="no-negative-name-sorts"),
])
def test_single_label_tasks(labels, kind, names):
    task = infer_task([{"label": label} for label in labels])
    assert (task.kind, task.names, task.outputs) == (kind, names, 1 if kind == "binary" else len(names))


def test_multilabel_task_and_overrides():
    task = infer_task([{"labels": {"Edema": 1}}, {"labels": {"Atelectasis": -1, "Edema": 0}}])
    assert task == Task("multilabel", ["Atelectasis", "Edema"]) and task.outputs == 2
    assert infer_task([{"label": "a"}, {"label": "b"}], kind="multiclass").kind == "multiclass"
    assert infer_task([{"label": "x"}, {"label": "y"}], positive="x").names == ["y", "x"]


@pytest.mark.parametrize("records, kind, error, message", [
    pytest.param([{"id": "1"}], None, XRError, "no `label` or `labels`", id="no-label"),
    pytest.param([{"label": "a"}, {"label": "a"}], None, XRError, "only one class", id="one-class"),
    pytest.param([{"label": "a"}, {"labels": {"x": 1}}], None, XRError, "mixes", id="label-and-labels-mixed"),
    pytest.param([{"label": "a"}, {"label": "b"}, {"label": "c"}], "binary", UsageError, "3 classes",
                 id="three-classes-as-binary"),
    pytest.param([{"labels": {"x": 1}}], "binary", UsageError, "multi-label", id="multilabel-as-binary"),
])
def test_bad_manifests(records, kind, error, message):
    with pytest.raises(error, match=message):
        infer_task(records, kind=kind)


def test_targets():
    task = Task("binary", ["normal", "abnormal"])
    assert targets([{"label": "abnormal"}, {"label": "normal"}], task).tolist() == [1.0, 0.0]
    multi = Task("multilabel", ["a", "b"])
    y = targets([{"labels": {"a": 1, "b": -1}}, {"labels": {"b": 0}}], multi)
    assert np.isnan(y[0, 1]) and y[0, 0] == 1 and np.isnan(y[1, 0]) and y[1, 1] == 0
    assert targets([{"labels": {"a": 1, "b": -1}}], multi, uncertain="ones").tolist() == [[1, 1]]
    with pytest.raises(XRError, match="'c', not one of"):
        targets([{"id": "r", "label": "c"}], task)


def test_unlabelled_training_records_are_counted_and_named():
    records = [{"id": str(i), "label": "ab"[i % 2] if i % 3 else None} for i in range(10)]
    with pytest.raises(XRError) as err:
        targets(records, Task("binary", ["a", "b"]))
    assert str(err.value) == ("4 of 10 records have no label ('0', '3', '6', ...): label them, or leave them out "
                              "(xr-index --drop-unlabelled)")


@pytest.mark.parametrize("silent", [
    pytest.param({"labels": {}}, id="empty-labels"),
    pytest.param({"labels": {"a": None, "b": None}}, id="every-label-null"),
    pytest.param({}, id="no-labels-field"),
])
def test_multilabel_records_that_state_no_label_are_named(silent):
    records = [{"id": "r0", "labels": {"a": 1, "b": 0}}, {"id": "r1", **silent}, {"id": "r2", "labels": {"a": -1}}]
    with pytest.raises(XRError) as err:
        targets(records, Task("multilabel", ["a", "b"]))
    assert str(err.value) == ("1 of 3 records state no label ('r1'): label them, or leave them out "
                              "(xr-index --drop-unlabelled)")


def test_xr_train_names_the_unlabelled_records_before_it_stops(cli, tmp_path):
    from conftest import write_jsonl
    from xrtools.train import main as train

    recs = [{"id": f"r{i}", "path": "x.png", "split": "train" if i < 8 else "val",
             **({} if i in (3, 5) else {"label": "ab"[i % 2]})} for i in range(12)]
    manifest = write_jsonl(tmp_path / "m.jsonl", recs)
    result = cli(train, manifest, "--run-dir", tmp_path / "run")
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"xr-train: error: {manifest}:4: 2 of 8 records have no label ('r3', 'r5'): "
                                     "label them, or leave them out (xr-index --drop-unlabelled)")


@pytest.mark.parametrize("names, kind, positive, note", [
    pytest.param(["cat", "dog"], "binary", None, "neither 'cat' nor 'dog' reads as negative, so 'dog' is taken "
                                                 "as the positive class; --positive CLASS chooses", id="cat-dog"),
    pytest.param(["normal", "healthy"], "binary", None, "neither 'normal' nor 'healthy'", id="two-negatives"),
    pytest.param(["covid", "other"], "binary", "covid", None, id="positive-given"),
    pytest.param(["NORMAL", "PNEUMONIA"], "binary", None, None, id="normal-reads-as-negative"),
    pytest.param(["a", "b", "c"], "multiclass", None, None, id="multiclass"),
])
def test_a_guessed_positive_class_is_said(names, kind, positive, note):
    said = guessed_positive(Task(kind, names), positive)
    assert said == note if note is None else note in said


def test_xr_eval_says_once_which_class_it_took_as_positive(cli, tmp_path):
    from conftest import write_jsonl
    from xrtools.eval import main as evaluate

    recs = [{"id": str(i), "label": "cat" if i % 2 else "dog", "scores": {"cat": 0.3 + 0.02 * i, "dog": 0.7 - 0.02 * i}}
            for i in range(20)]
    path = write_jsonl(tmp_path / "p.jsonl", recs)
    result = cli(evaluate, path)
    assert result.exit_code == 0 and result.stderr.count("'dog' is taken as the positive class") == 1
    chosen = cli(evaluate, path, "--positive", "cat")
    assert chosen.exit_code == 0 and "positive class" not in chosen.stderr


def test_training_checks():
    with pytest.raises(XRError, match="train split is empty"):
        check_training_targets(np.array([]), Task("binary", ["a", "b"]))
    with pytest.raises(XRError, match="no training example of class b"):
        check_training_targets(np.array([0.0, 0.0]), Task("binary", ["a", "b"]))
    with pytest.raises(XRError, match="no positive training example for y"):
        check_training_targets(np.array([[1, 0], [0, np.nan]]), Task("multilabel", ["x", "y"]))


def test_balanced_weights_match_report_000_and_sklearn():
    # MURA train: 21,935 normal / 14,873 abnormal images -> report 000's 0.839 / 1.237
    y = np.r_[np.zeros(21935), np.ones(14873)]
    w = class_weights(y, Task("binary", ["normal", "abnormal"]))
    assert w == pytest.approx([0.839, 1.237], abs=1e-3)
    assert class_weights(y, Task("binary", ["n", "a"]), [1, 3]).tolist() == [1, 3]
    assert class_weights(y, Task("binary", ["n", "a"]), "none") is None
    with pytest.raises(UsageError, match="2 class weights for 3 classes"):
        class_weights(np.array([0, 1, 2]), Task("multiclass", ["a", "b", "c"]), [1, 2])


def test_chexnet_positive_weights():
    y = np.array([[1, 0], [0, 0], [0, np.nan], [0, 1]], np.float32)
    assert class_weights(y, Task("multilabel", ["a", "b"])).tolist() == [3.0, 2.0]


@pytest.mark.parametrize("records, message", [
    pytest.param([{"label": c} for c in "abc"], "--positive is for binary tasks; the records have 3 classes",
                 id="multiclass"),
    pytest.param([{"labels": {"a": 1}}, {"labels": {"b": 0}}], "--positive is for binary tasks; the records carry "
                 "multi-label `labels`", id="multilabel"),
])
def test_positive_on_a_task_that_is_not_binary_is_a_usage_error(records, message):
    with pytest.raises(UsageError, match=f"^{message}$"):
        infer_task(records, positive="a")
