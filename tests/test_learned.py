"""A run that learns nothing says so; the models' defaults learn on real films."""

import json
import os

import numpy as np
import pytest
from conftest import checked, shared, write_jsonl
from PIL import Image
from xrtools.index import main as index
from xrtools.preprocess import main as preprocess
from xrtools.split import main as split
from xrtools.train import main as train

from libxr.learning.learned import CHANCE, TRY, predicted_classes, stuck, verdict
from libxr.records.tasks import Task

BINARY, THREE = Task("binary", ["a", "b"]), Task("multiclass", ["a", "b", "c"])


@pytest.mark.parametrize("task, scores, threshold, classes", [
    pytest.param(BINARY, [0.2, 0.2, 0.2], 0.2, 1, id="binary-constant-at-its-threshold"),
    pytest.param(BINARY, [0.2, 0.3, 0.9], 0.3, 2, id="binary-split-by-its-threshold"),
    pytest.param(BINARY, [0.6, 0.7, 0.9], None, 1, id="binary-no-threshold-cuts-at-0.5"),
    pytest.param(THREE, [[0.5, 0.3, 0.2], [0.6, 0.2, 0.2]], None, 1, id="multiclass-one-argmax"),
    pytest.param(THREE, [[0.5, 0.3, 0.2], [0.1, 0.2, 0.7]], None, 2, id="multiclass-two-argmaxes"),
    pytest.param(Task("multilabel", ["x", "y"]), [[0.1, 0.1], [0.1, 0.1]], [0.5, 0.5], None, id="multilabel-not-judged"),
])
def test_predicted_classes(task, scores, threshold, classes):
    assert predicted_classes(task, scores, threshold) == classes


def _rows(*epochs):
    """metrics rows from (val_auc, val_predicted_classes) pairs."""
    return [{"epoch": i + 1, "val_auc": auc, "val_predicted_classes": k} for i, (auc, k) in enumerate(epochs)]


LEARNING, ONE_CLASS, GUESSING = (0.9, 2), (0.8, 1), (CHANCE, 2)


@pytest.mark.parametrize("rows, said", [
    pytest.param(_rows(ONE_CLASS), None, id="one-epoch-is-not-yet-a-stretch"),
    pytest.param(_rows(ONE_CLASS, GUESSING), "epochs 1-2: val AUC 0.550", id="two-at-chance"),
    pytest.param(_rows(GUESSING, ONE_CLASS), "epochs 1-2: one class for every val record", id="one-class"),
    pytest.param(_rows(ONE_CLASS, GUESSING, GUESSING), None, id="said-once-a-stretch"),
    pytest.param(_rows(LEARNING, GUESSING), None, id="a-learning-epoch-breaks-it"),
    pytest.param(_rows(LEARNING, GUESSING, ONE_CLASS), "epochs 2-3", id="a-new-stretch"),
    pytest.param(_rows((None, 2), (None, 2)), None, id="auc-undefined-is-not-chance"),
])
def test_a_stretch_at_chance_is_said_once(rows, said):
    note = stuck(rows, 2)
    assert (note is None) == (said is None)
    if said:
        assert note.startswith(said) and note.endswith(TRY)


@pytest.mark.parametrize("row, alarming, said", [
    pytest.param((0.93, 2), False, "best epoch 2 of 3: val_loss 0.3000, val AUC 0.9300", id="learned"),
    pytest.param((0.5, 2), True, "this run learned nothing: best epoch 2 of 3: val_loss 0.3000, val AUC 0.5000, "
                                 "at chance; " + TRY, id="auc-at-chance"),
    pytest.param((0.93, 1), True, "this run learned nothing: best epoch 2 of 3: val_loss 0.3000, val AUC 0.9300, "
                                  "one class for every val record; " + TRY, id="one-class"),
])
def test_the_last_line_says_whether_the_best_epoch_learned(row, alarming, said):
    rows = _rows(LEARNING, row, LEARNING)
    assert verdict(rows, {"epoch": 2, "value": 0.3, "metric": "val_loss"}) == (alarming, said)


def test_a_run_on_films_that_tell_nothing_apart_says_so_while_it_runs_and_at_its_end(cli, tmp_path):
    """Every film the same grey: the network can only predict one class; exit 0, but said."""
    for label in ("NORMAL", "PNEUMONIA"):
        (tmp_path / "ds" / label).mkdir(parents=True)
        for i in range(24):
            Image.fromarray(np.full((32, 32), 128, np.uint8)).save(tmp_path / "ds" / label / f"p{i}_{label}.png")
    raw = checked(split, "--val", "0.25", "--seed", "1", input=checked(index, str(tmp_path / "ds")))
    manifest = tmp_path / "h5.jsonl"
    manifest.write_text(checked(preprocess, "-o", str(tmp_path / "d.h5"), "--size", "32", input=raw))
    result = cli(train, manifest, "--model", "vgg5", "--epochs", 3, "--patience", 2, "--run-dir", tmp_path / "run")
    assert result.exit_code == 0
    warnings = [line for line in result.stderr.splitlines() if line.startswith("xr-train: warning:")]
    assert len(warnings) == 2
    assert warnings[0] == f"xr-train: warning: epochs 1-2: one class for every val record: the model is not learning; {TRY}"
    assert warnings[-1].startswith("xr-train: warning: this run learned nothing: best epoch ")
    assert warnings[-1].endswith(f"val AUC 0.5000, one class for every val record; {TRY}")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_predicted_classes"] for r in rows] == [1, 1, 1]


def test_a_run_that_learns_ends_naming_its_best_epoch(cli, manifests, tmp_path):
    result = cli(train, manifests[0], "--model", "vgg5", "--epochs", 4, "--early-stop", "val_auc",
                 "--run-dir", tmp_path / "run")
    assert result.exit_code == 0 and "not learning" not in result.stderr and "learned nothing" not in result.stderr
    last = result.stderr.splitlines()[-1]
    best = max(json.loads(line)["val_auc"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
    assert last.startswith("xr-train: best epoch ") and last.endswith(f"of 4: val_auc {best:.4f}")


# CI checks 64 px; `XR_LEARN_SIZE=128 pytest tests/test_learned.py` checks the same defaults at 128
# (about 9 minutes on two cores, against 2.5 at 64, so not in CI).
SIZE = os.environ.get("XR_LEARN_SIZE", "64")


@pytest.fixture(scope="module")
def real_sets(tmp_path_factory):
    """Real films at SIZE px: 240 chest films (official train, val carved by patient) and the COVID set
    (3 classes, its own split); {name: HDF5 manifest}."""
    tmp = tmp_path_factory.mktemp("real")
    chest = checked(index, str(shared("chest_xray", "train")), "--patient-regex", r"(person\d+|IM-\d+)", "-q")
    rng = np.random.default_rng(0)
    records = [json.loads(line) for line in chest.splitlines()]
    chest = write_jsonl(tmp / "chest.jsonl", [records[i] for i in sorted(rng.choice(len(records), 240, False))])
    covid = checked(index, str(shared("covid19-3class")), "-q")
    sets = {}
    for name, raw in (("chest", checked(split, str(chest), "--val", "0.25", "--seed", "0", "-q")),
                      ("covid", covid)):
        sets[name] = tmp / f"{name}-h5.jsonl"
        sets[name].write_text(checked(preprocess, "-o", str(tmp / f"{name}.h5"), "--size", SIZE, "-q", input=raw))
    return sets


@pytest.mark.parametrize("model", ["cnn", "vgg5", "resnet10", "dense", "resnet18"])
@pytest.mark.parametrize("data", ["chest", "covid"])
def test_every_models_defaults_learn_on_real_films(cli, real_sets, tmp_path, model, data, record_property):
    """Defaults only (model, SIZE px, 4 epochs): the best val AUC is far from chance (each run's val AUCs
    go to `--junitxml` as a property)."""
    result = cli(train, real_sets[data], "--model", model, "--epochs", 4, "--early-stop", "val_auc",
                 "--run-dir", tmp_path / "run", "-q")
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    record_property("val_auc", [round(r["val_auc"], 4) for r in rows])
    assert max(r["val_auc"] for r in rows) >= 0.8, [r["val_auc"] for r in rows]
