"""xr-train and libxr.learning.train: a run directory, learning, determinism, resume, signals, bad input."""

import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import needs_commands, write_jsonl
from xrtools.index import main as index
from xrtools.predict import main as predict
from xrtools.split import main as split
from xrtools.train import main

from libxr.judging.calibration import BOUNDS
from libxr.learning.checkpoint import load
from libxr.predicting.classifier import Classifier
from libxr.records.tasks import Task

FAST = ["--model", "dense", "--batch-size", "16", "--lr", "3e-3"]
BINARY = Task("binary", ["NORMAL", "PNEUMONIA"])
RUN_FILES = [".lock", "best.pt", "config.json", "curves.png", "last.pt", "metrics.jsonl"]
ROW_KEYS = {"epoch", "lr", "train_loss", "train_seconds", "train_accuracy", "train_auc", "train_kappa",
            "train_f1", "val_loss", "val_accuracy", "val_auc", "val_kappa", "val_f1", "val_ece_raw", "val_ece",
            "val_brier_raw", "val_brier", "seconds"}


def train_run(cli, manifest, run_dir, *args):
    result = cli(main, manifest, "--run-dir", run_dir, *FAST, *args)
    rows = []
    if (run_dir / "metrics.jsonl").exists():
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return result, rows


def metrics_rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def finished(result, run_dir, epochs, task=BINARY, monitor="val_loss", keys=ROW_KEYS):
    """A run that ended well: best.pt's path printed, the run directory whole, one metrics row per
    epoch, last.pt at the last epoch, best.pt at the best one and a classifier that scores a batch.
    Returns best.pt's contents."""
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(run_dir / "best.pt")
    assert sorted(p.name for p in run_dir.iterdir()) == RUN_FILES
    rows = metrics_rows(run_dir)
    assert [r["epoch"] for r in rows] == list(range(1, epochs + 1))
    one_temperature = task.kind != "multilabel"         # per-label ones are in the checkpoint only
    for r in rows:
        assert r.keys() == keys | ({"temperature", "val_predicted_classes"} if one_temperature else set())
        assert math.isfinite(r["train_loss"]) and math.isfinite(r["val_loss"])
    assert load(str(run_dir / "last.pt"))["epoch"] == epochs - 1
    best = load(str(run_dir / "best.pt"))
    values = [r[monitor] for r in rows]
    first_best = values.index(min(values) if monitor == "val_loss" else max(values))
    assert best["best"] == {"epoch": first_best + 1, "value": values[first_best], "metric": monitor}
    timeless = {k: v for k, v in rows[first_best].items() if not k.endswith("seconds")}   # timings: metrics.jsonl
    assert best["epoch"] == first_best and best["metrics"] == timeless
    temperatures = [best["temperature"]] if one_temperature else best["temperature"]
    assert len(temperatures) == (1 if one_temperature else len(task.names))
    assert all(BOUNDS[0] <= t <= BOUNDS[1] for t in temperatures) and "threshold_raw" in best
    assert json.loads((run_dir / "config.json").read_text())["task"] == task.to_dict()
    clf = Classifier(str(run_dir / "best.pt"), device="cpu")
    assert clf.task == task and clf.epoch == first_best + 1
    scores = clf.scores(torch.full((3, clf.in_channels, clf.size, clf.size), 128, dtype=torch.uint8))
    assert scores.shape == ((3,) if task.kind == "binary" else (3, len(task.names)))
    assert ((scores >= 0) & (scores <= 1)).all()
    return best


def test_run_directory_and_learning(cli, manifests, tmp_path):
    result, rows = train_run(cli, manifests[0], tmp_path / "run", "--epochs", 6)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "run" / "best.pt")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == RUN_FILES
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert {"train_loss", "train_auc", "val_loss", "val_auc", "val_kappa", "val_f1", "val_accuracy"} <= rows[0].keys()
    assert rows[-1]["train_loss"] < 0.8 * rows[0]["train_loss"]
    assert max(r["val_auc"] for r in rows) > 0.75
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["task"] == {"kind": "binary", "names": ["NORMAL", "PNEUMONIA"]}
    assert len(config["manifest_sha256"]) == 64 and config["options"]["model"] == "dense"
    assert (tmp_path / "run" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    state = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert state["task"]["names"] == ["NORMAL", "PNEUMONIA"] and len(state["normalization"]["mean"]) == 1
    assert state["preprocess"]["size"] == 32
    finished(result, tmp_path / "run", 6)


def test_each_checkpoint_carries_the_temperature_fitted_on_its_val_logits(trained):
    """best.pt's temperature, thresholds and calibration metrics, found again from the model's val logits."""
    from libxr.judging.calibration import calibrated, fit_temperature
    from libxr.judging.metrics import metrics
    from libxr.judging.thresholds import choose
    from libxr.pixels.datasets import RecordPixels

    best = load(str(trained["ckpt"]))
    clf = Classifier(str(trained["ckpt"]), "cpu", calibrate=False)
    val = [r for r in map(json.loads, trained["h5"].read_text().splitlines()) if r["split"] == "val"]
    logits = clf.logits(RecordPixels(val, clf.preprocess)[list(range(len(val)))].pixels)
    y = [float(r["label"] == "PNEUMONIA") for r in val]
    t = fit_temperature(BINARY, logits, y)
    assert best["temperature"] == pytest.approx(t, rel=1e-4)
    raw, scores = BINARY.probabilities(logits), calibrated(BINARY, logits, t)
    assert best["threshold"] == pytest.approx(choose("youden", y, scores), abs=1e-5)
    assert best["threshold_raw"] == pytest.approx(choose("youden", y, raw), abs=1e-5)
    for key, p in (("ece_raw", raw), ("ece", scores), ("brier_raw", raw), ("brier", scores)):
        assert best["metrics"][f"val_{key}"] == pytest.approx(metrics(BINARY, y, p)[key.removesuffix("_raw")],
                                                              abs=1e-5)
    assert best["metrics"]["temperature"] == best["temperature"]


def test_calibration_platt_stores_the_shift_fitted_with_the_temperature_on_val_logits(cli, manifests, tmp_path):
    from libxr.judging.calibration import calibrated, fit
    from libxr.judging.thresholds import choose
    from libxr.pixels.datasets import RecordPixels

    result, rows = train_run(cli, manifests[0], tmp_path / "run", "--epochs", 2, "--calibration", "platt")
    best = finished(result, tmp_path / "run", 2, keys=ROW_KEYS | {"shift"})
    clf = Classifier(str(tmp_path / "run" / "best.pt"), "cpu", calibrate=False)
    val = [r for r in map(json.loads, manifests[0].read_text().splitlines()) if r["split"] == "val"]
    logits = clf.logits(RecordPixels(val, clf.preprocess)[list(range(len(val)))].pixels)
    y = [float(r["label"] == "PNEUMONIA") for r in val]
    t, b = fit(BINARY, logits, y, "platt")
    assert best["temperature"] == pytest.approx(t, rel=1e-3) and best["shift"] == pytest.approx(b, abs=1e-3)
    assert best["threshold"] == pytest.approx(choose("youden", y, calibrated(BINARY, logits, t, b)), abs=1e-4)
    assert all(isinstance(r["shift"], float) for r in rows)
    assert Classifier(str(tmp_path / "run" / "best.pt"), "cpu").shift == best["shift"]


def test_same_seed_same_metrics(cli, manifests, tmp_path):
    runs = [train_run(cli, manifests[0], tmp_path / f"r{i}", "--epochs", 2, "--augment") for i in range(2)]
    for i, (result, _) in enumerate(runs):
        finished(result, tmp_path / f"r{i}", 2)
    strip = [[{k: v for k, v in r.items() if "seconds" not in k} for r in rows] for _, rows in runs]
    assert strip[0] == strip[1]
    weights = [load(str(tmp_path / f"r{i}" / "last.pt"))["model"] for i in range(2)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_resume_continues_exactly(cli, manifests, tmp_path):
    first, straight = train_run(cli, manifests[0], tmp_path / "a", "--epochs", 3, "--augment")
    finished(first, tmp_path / "a", 3)
    partial, _ = train_run(cli, manifests[0], tmp_path / "b", "--epochs", 1, "--augment")
    finished(partial, tmp_path / "b", 1)
    result, resumed = train_run(cli, manifests[0], tmp_path / "b", "--epochs", 3, "--augment", "--resume")
    finished(result, tmp_path / "b", 3)
    assert f"resuming {tmp_path / 'b'} at epoch 2" in result.stderr
    strip = [[{k: v for k, v in r.items() if "seconds" not in k} for r in rows] for rows in (straight, resumed)]
    assert strip[0] == strip[1]


def test_raw_images_without_hdf5(cli, manifests, tmp_path):
    result, _ = train_run(cli, manifests[1], tmp_path / "run", "--epochs", 2, "--size", 32)
    best = finished(result, tmp_path / "run", 2)
    assert best["preprocess"] == {"size": 32, "fit": "pad", "channels": ["gray"]}       # no HDF5 file
    assert best["size"] == 32 and best["in_channels"] == 1
    records = [json.loads(line) for line in manifests[1].read_text().splitlines()]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train_records"] == sum(r.get("split") == "train" for r in records)
    assert config["val_records"] == sum(r.get("split") == "val" for r in records)


@pytest.mark.parametrize("args", [
    pytest.param(["--optimizer", "sgd", "--lr", "0.01"], id="sgd"),
    pytest.param(["--optimizer", "adamw"], id="adamw"),
    pytest.param(["--optimizer", "rmsprop", "--lr", "1e-4"], id="rmsprop"),
    pytest.param(["--scheduler", "step"], id="step-schedule"),
    pytest.param(["--scheduler", "cosine", "--warmup", "1"], id="cosine-schedule-with-warmup"),
    pytest.param(["--scheduler", "plateau"], id="plateau-schedule"),
    pytest.param(["--scheduler", "cyclic"], id="cyclic-schedule"),
    pytest.param(["--scheduler", "onecycle"], id="onecycle-schedule"),
    pytest.param(["--class-weights", "balanced"], id="balanced-class-weights"),
    pytest.param(["--class-weights", "1,2"], id="given-class-weights"),
    pytest.param(["--focal-gamma", "2"], id="focal-loss"),
    pytest.param(["--sampling", "balanced"], id="balanced-sampling"),
    pytest.param(["--sampling", "over"], id="over-sampling"),
    pytest.param(["--sampling", "under"], id="under-sampling"),
    pytest.param(["--ema", "0.9"], id="weight-average"),
    pytest.param(["--mixup", "0.2", "--cutmix", "1.0", "--label-smoothing", "0.1"], id="mixing-and-smoothing"),
    pytest.param(["--precision", "bf16"], id="bfloat16-autocast"),
])
def test_every_optimiser_schedule_loss_and_sampling_learns(cli, manifests, tmp_path, args):
    # VGG-5 learns the synthetic finding in 3 epochs; the 4 × 200 dense net is too noisy to tell.
    result, rows = train_run(cli, manifests[0], tmp_path / "run", "--epochs", 3, "--model", "vgg5", "--lr", "1e-3",
                             *args)
    finished(result, tmp_path / "run", 3)
    assert rows[-1]["train_loss"] < 0.85 * rows[0]["train_loss"]
    assert rows[-1]["val_auc"] > 0.9


@pytest.mark.parametrize("choice, dtype", [("auto", torch.float32), ("fp32", torch.float32),
                                           ("bf16", torch.bfloat16)])
def test_training_and_validation_run_the_model_in_the_precision_asked(cli, manifests, tmp_path, monkeypatch, choice,
                                                                      dtype):
    """Every forward pass, training and validation alike, seen from inside the model; the choice in config.json."""
    from libxr.learning import train as training

    seen, build = set(), training.build_model

    def spied(*args, **kwargs):
        model = build(*args, **kwargs)
        model.register_forward_hook(lambda module, inputs, out: seen.add((module.training, out.dtype)))
        return model

    monkeypatch.setattr(training, "build_model", spied)
    result, _ = train_run(cli, manifests[0], tmp_path / "run", "--epochs", 1, "--max-steps", 2, "--precision", choice)
    finished(result, tmp_path / "run", 1)
    assert seen == {(True, dtype), (False, dtype)}
    assert json.loads((tmp_path / "run" / "config.json").read_text())["options"]["precision"] == choice


def test_emulated_bfloat16_is_warned_of_and_a_resume_in_another_precision_is_said(cli, manifests, tmp_path,
                                                                                  monkeypatch):
    from libxr import precision

    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    run = tmp_path / "run"
    first, _ = train_run(cli, manifests[0], run, "--epochs", 1, "--max-steps", 2, "--precision", "bf16")
    assert first.exit_code == 0 and "warning: --precision bf16: this CPU has no bfloat16 arithmetic" in first.stderr
    resumed, _ = train_run(cli, manifests[0], run, "--epochs", 2, "--max-steps", 2, "--resume")
    finished(resumed, run, 2)
    assert (f"warning: --resume: {run / 'last.pt'} was trained with --precision bf16 up to epoch 1; the run goes on "
            "with --precision auto") in resumed.stderr
    assert "no bfloat16 arithmetic" not in resumed.stderr


def test_learning_rate_schedules(cli, manifests, tmp_path):
    result, rows = train_run(cli, manifests[0], tmp_path / "step", "--epochs", 4, "--scheduler", "step",
                             "--lr", "0.01")
    finished(result, tmp_path / "step", 4)
    assert [r["lr"] for r in rows] == pytest.approx([1e-2, 1e-3, 1e-4, 1e-5])   # step_size 4 // 3 = 1
    result, warm = train_run(cli, manifests[0], tmp_path / "warm", "--epochs", 3, "--warmup", "2",
                             "--lr", "0.01")
    finished(result, tmp_path / "warm", 3)
    assert warm[0]["lr"] < warm[1]["lr"] < 0.01 + 1e-12


# every option of xr's own networks is stored, so that a checkpoint does not depend on the defaults of the
# code that reads it
CNN_STORED = {"layers": 2, "kernel_growth": "funnel_in", "filter_growth": "constant", "local_pool": "avg",
              "global_pool": "avg", "spatial_dropout": 0.1, "dropout": 0.3, "batch_norm": True, "pool_stride": 2}


def test_cnn_and_torchvision_models_train(cli, manifests, tmp_path):
    for model, extra in (("cnn", ["--arch", "layers=2", "--arch", "batch_norm=true"]), ("resnet18", [])):
        result = cli(main, manifests[0], "--run-dir", tmp_path / model, "--model", model, "--epochs", 1,
                     "--max-steps", 2, "--batch-size", 8, *extra)
        best = finished(result, tmp_path / model, 1)
        assert best["model_name"] == model and best["config"]["options"]["max_steps"] == 2
        assert best["arch"] == (CNN_STORED if model == "cnn" else
                                {"weights": "none", "head": "linear", "dropout": 0.0, "freeze": None})


def test_a_last_batch_of_one_image_is_left_out_where_batch_norm_cannot_train_on_it(cli, manifests, tmp_path):
    """ResNet-18 at 32 px ends in 1 x 1 maps: batch norm over one image has no variance."""
    n = sum('"split":"train"' in line for line in manifests[0].read_text().splitlines())
    result = cli(main, manifests[0], "--run-dir", tmp_path / "run", "--model", "resnet18", "--epochs", 1,
                 "--batch-size", n - 1, "-q")
    finished(result, tmp_path / "run", 1)
    assert (f"each epoch's last batch would hold one image, which resnet18's batch norm cannot train on (its maps are "
            f"1 x 1): that image is left out of the epoch (another each epoch; --batch-size {n - 1} leaves one "
            "over)") in result.stderr
    # batch norm over 8 x 8 maps trains on one image: nothing is left out, as before
    wide = cli(main, manifests[0], "--run-dir", tmp_path / "wide", "--model", "cnn", "--arch", "layers=2",
               "--epochs", 1, "--batch-size", n - 1, "-q")
    assert wide.exit_code == 0 and "batch norm" not in wide.stderr


@pytest.mark.parametrize("length, batch, kept", [(9, 4, 8), (8, 4, 8), (1, 4, 1), (5, 1, 5), (7, 2, 6)])
def test_without_lone_tail(length, batch, kept):
    from libxr.learning.sampling import without_lone_tail

    order = list(range(length))
    assert without_lone_tail(order, batch) == order[:kept]


def test_early_stopping(cli, manifests, tmp_path):
    result, rows = train_run(cli, manifests[0], tmp_path / "run", "--epochs", 10, "--lr", "1e-12",
                             "--early-stop", "val_loss", "--patience", 2)
    assert len(rows) == 3
    best = finished(result, tmp_path / "run", 3)
    assert best["best"]["epoch"] == 1                       # nothing improved on the first epoch
    assert f"early stop: val_loss did not improve for 2 epochs (best {rows[0]['val_loss']:.4f} at epoch 1)" \
        in result.stderr


def test_multilabel_training(cli, synth, tmp_path):
    records = cli(index, synth("chexpert", count=80, size=32), "--uncertain", "keep").records
    records = cli(split, "--val", "0.25", "--resplit", input="".join(json.dumps(r) + "\n" for r in records)).records
    manifest = write_jsonl(tmp_path / "m.jsonl", records)
    result, rows = train_run(cli, manifest, tmp_path / "run", "--epochs", 8, "--size", 32,
                             "--class-weights", "balanced")
    names = sorted({label for r in records for label in r.get("labels") or {}})
    best = finished(result, tmp_path / "run", 8, Task("multilabel", names))
    assert len(names) > 1 and len(best["threshold"]) == len(names)      # one Youden cut per label
    assert len(set(best["temperature"])) > len(names) // 2               # and one temperature per label
    scored = cli(predict, "-m", tmp_path / "run" / "best.pt", manifest).records
    assert all(r["temperature"] == dict(zip(names, (round(t, 6) for t in best["temperature"])))
               for r in scored if "scores" in r)
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]


@pytest.mark.parametrize("edit, message", [
    pytest.param(lambda rs: [{**r, "split": "train"} for r in rs], "no record has split 'val'",
                 id="no-val-split"),
    pytest.param(lambda rs: [{k: v for k, v in r.items() if k != "label"} for r in rs],
                 "no `label` or `labels`", id="no-label"),
    pytest.param(lambda rs: [{**r, "label": "A"} for r in rs], "only one class", id="one-class"),
    pytest.param(lambda rs: [{**r, "label": "B" if r["split"] == "val" else "A"} for r in rs],
                 "no training example of class B", id="val-class-missing-from-train"),
])
def test_bad_input_fails_before_training(cli, manifests, tmp_path, edit, message):
    records = [json.loads(line) for line in manifests[0].read_text().splitlines()]
    manifest = write_jsonl(tmp_path / "m.jsonl", edit(records))
    result = cli(main, manifest, "--run-dir", tmp_path / "run", *FAST)
    assert result.exit_code == 1 and message in result.stderr
    assert not (tmp_path / "run").exists()


class _Boom:
    def __reduce__(self):
        return (os.system, (f"touch {_Boom.marker}",))


def test_resume_refuses_a_malicious_checkpoint(cli, manifests, tmp_path):
    _Boom.marker = tmp_path / "pwned"
    train_run(cli, manifests[0], tmp_path / "run", "--epochs", 1)
    torch.save({"model": _Boom()}, tmp_path / "run" / "last.pt")
    result, _ = train_run(cli, manifests[0], tmp_path / "run", "--epochs", 2, "--resume")
    assert result.exit_code == 1 and "not a loadable checkpoint" in result.stderr
    assert not _Boom.marker.exists()


def test_resume_of_a_run_that_saved_no_epoch_starts_it_afresh(cli, manifests, tmp_path):
    """The first epoch failed (a full disk): config and metrics written, no checkpoint. --resume
    must not be refused with advice to use --resume."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n')
    result, rows = train_run(cli, manifests[0], run, "--epochs", 1, "--resume", "-q")
    assert result.exit_code == 0, result.stderr
    assert f"--resume: {run} has no finished epoch to resume; starting it afresh" in result.stderr
    assert [r["epoch"] for r in rows] == [1] and "val_auc" in rows[0]
    (run / "last.pt").unlink()
    again, _ = train_run(cli, manifests[0], run, "--epochs", 1, "--resume")
    assert again.exit_code == 2 and "holds a run but no last.pt to continue from; --force starts it over" in again.stderr
    (run / "best.pt").unlink()
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2}\n')      # epochs whose checkpoints were moved
    assert train_run(cli, manifests[0], run, "--epochs", 1, "--resume")[0].exit_code == 2
    assert train_run(cli, manifests[0], run, "--epochs", 1, "--resume", "--force", "-q")[0].exit_code == 0


def test_records_with_an_error_are_left_out_and_said(cli, manifests, tmp_path):
    records = [json.loads(line) for line in manifests[0].read_text().splitlines()]
    bad = next(i for i, r in enumerate(records) if r["split"] == "train")
    records[bad] = {k: v for k, v in records[bad].items() if k not in ("h5", "row")} | {"error": "missing"}
    manifest = write_jsonl(tmp_path / "m.jsonl", records)
    result, _ = train_run(cli, manifest, tmp_path / "run", "--epochs", 1, "-q")
    assert result.exit_code == 0, result.stderr
    assert (f"1 train/val records with an `error` are left out (first {manifest}:{bad + 1}: missing)"
            in result.stderr)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train_records"] == sum(r["split"] == "train" for r in records) - 1


def test_resume_needs_a_run_dir(cli, manifests):
    result = cli(main, manifests[0], "--resume")
    assert result.exit_code == 2 and "--run-dir" in result.stderr


def test_sigusr1_saves_and_exits_for_requeue(manifests, tmp_path):
    needs_commands()
    run = tmp_path / "run"
    argv = [os.path.join(os.path.dirname(sys.executable), "xr-train"), str(manifests[0]), "--run-dir", str(run),
            *FAST, "--epochs", "400", "-q"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR1)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err
    assert "--resume continues" in err and out.strip() == str(run / "best.pt")
    done = len((run / "metrics.jsonl").read_text().splitlines())
    assert 1 <= done < 400
    resumed = subprocess.run(argv[:-3] + ["--epochs", str(done + 1), "--resume", "-q"], capture_output=True,
                             text=True, timeout=120, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert len((run / "metrics.jsonl").read_text().splitlines()) == done + 1


@pytest.mark.parametrize("stop_at_batch", [3, 10])   # in epoch 1 (nothing finished) and in epoch 2
def test_a_signal_mid_epoch_discards_it_and_resume_is_exact(manifests, tmp_path, stop_at_batch):
    from libxr.learning.options import TrainOptions
    from libxr.learning.signals import STOPPED
    from libxr.learning.train import train
    from libxr.records.manifest import read_records

    with open(manifests[0], "rb") as f:
        records = list(read_records(f, "m"))
    opts = TrainOptions(model="dense", batch_size=16, lr=3e-3, epochs=3, augment=True, size=32)
    quiet = lambda *a, **k: None
    train(records, opts, str(tmp_path / "a"), log=quiet, warn=quiet)
    batches = 0

    def tick(n, total=None):
        nonlocal batches
        batches += n > 0
        if n and batches == stop_at_batch:
            os.kill(os.getpid(), signal.SIGUSR1)

    warnings = []
    _, status = train(records, opts, str(tmp_path / "b"), log=quiet, warn=warnings.append, tick=tick)
    assert status == STOPPED and "discarded" in warnings[0]
    finished = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert len(finished) == (0 if stop_at_batch < 6 else 1) and (tmp_path / "b" / "last.pt").exists() == bool(finished)
    _, status = train(records, opts, str(tmp_path / "b"), resume=True, log=quiet, warn=quiet)
    assert status == 0
    rows = [[{k: v for k, v in json.loads(line).items() if "seconds" not in k}
             for line in (tmp_path / r / "metrics.jsonl").read_text().splitlines()] for r in ("a", "b")]
    assert rows[0] == rows[1]


def test_two_process_ddp_matches_one_process(manifests, tmp_path):
    """torchrun, 2 gloo processes × batch 8 see the same global batches as 1 process × 16."""
    needs_commands()
    xr_train = os.path.join(os.path.dirname(sys.executable), "xr-train")
    args = [str(manifests[0]), "--model", "cnn", "--arch", "layers=3", "--arch", "spatial_dropout=0", "--arch",
            "dropout=0", "--arch", "batch_norm=false", "--epochs", "2", "--lr", "1e-3", "-q"]   # batch norm sees the batch
    one = subprocess.run([xr_train, *args, "--run-dir", str(tmp_path / "one"), "--batch-size", "16"],
                         capture_output=True, text=True, timeout=300, check=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "--no-python", xr_train, *args, "--run-dir", str(tmp_path / "two"), "--batch-size", "8"],
                         capture_output=True, text=True, timeout=300, check=False, env=env)
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.split() == [str(tmp_path / "two" / "best.pt")]          # rank 0 alone prints
    assert json.loads((tmp_path / "two" / "config.json").read_text())["processes"] == 2
    rows = [[json.loads(line) for line in (tmp_path / r / "metrics.jsonl").read_text().splitlines()]
            for r in ("one", "two")]
    assert len(rows[0]) == len(rows[1]) == 2
    for a, b in zip(*rows):
        for key in ("train_loss", "train_auc", "val_loss", "val_auc", "val_accuracy"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), key


def test_slurm_script_requeues_on_usr1_and_the_requeued_job_finishes(manifests, tmp_path):
    """examples/slurm/train.sbatch under stand-in srun/scontrol, with 2 torchrun processes on CPU."""
    import socket

    needs_commands()
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text('#!/bin/bash\nwhile [[ $1 == --* ]]; do shift; done\nexec "$@"\n')
    (fake / "scontrol").write_text('#!/bin/bash\nif [ "$1" = show ]; then echo localhost; '
                                   f'else echo "$@" >> {tmp_path / "scontrol.log"}; fi\n')
    for f in fake.iterdir():
        f.chmod(0o755)
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    run = tmp_path / "run"
    env = {**os.environ, "PATH": f"{fake}:{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
           "MANIFEST": str(manifests[0]), "RUN": str(run), "SLURM_JOB_ID": "42", "SLURM_GPUS_ON_NODE": "2",
           "RDZV_PORT": str(port), "OMP_NUM_THREADS": "1",
           "TRAIN_ARGS": "--model dense --batch-size 8 --epochs 400 --device cpu"}
    script = os.path.join(os.path.dirname(__file__), "..", "examples", "slurm", "train.sbatch")
    job = subprocess.Popen(["bash", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    job.send_signal(signal.SIGUSR1)
    _, err = job.communicate(timeout=120)
    assert job.returncode == 0, err[-2000:]
    assert (tmp_path / "scontrol.log").read_text() == "requeue 42\n"
    assert "time limit near" in err and "--resume continues" in err
    done = len((run / "metrics.jsonl").read_text().splitlines())
    assert 1 <= done < 400
    env["TRAIN_ARGS"] = env["TRAIN_ARGS"].replace("400", str(done + 1))
    again = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming {run} at epoch {done + 1}" in again.stderr and again.stdout.strip() == str(run / "best.pt")
    assert len((run / "metrics.jsonl").read_text().splitlines()) == done + 1
    assert (tmp_path / "scontrol.log").read_text() == "requeue 42\n"


def test_early_stopping_counts_across_a_resume(cli, manifests, tmp_path):
    """val_auc cannot rise by 1: epoch 1 is best, 2 and 3 are stale, patience 2 stops after 3 —
    also when the run was stopped after epoch 2 and resumed (the count is in the checkpoint)."""
    stop = ("--early-stop", "val_auc", "--patience", 2, "--min-delta", 1.0)
    straight, rows = train_run(cli, manifests[0], tmp_path / "a", "--epochs", 6, *stop)
    assert "early stop: val_auc did not improve for 2 epochs" in straight.stderr and len(rows) == 3
    train_run(cli, manifests[0], tmp_path / "b", "--epochs", 2, *stop)
    resumed, again = train_run(cli, manifests[0], tmp_path / "b", "--epochs", 6, "--resume", *stop)
    assert "early stop" in resumed.stderr
    assert [{k: v for k, v in r.items() if "seconds" not in k} for r in again] == \
        [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]
    assert load(tmp_path / "b" / "last.pt")["stopping"] == {"best": load(tmp_path / "a" / "last.pt")["best"],
                                                            "stale": 2}
    before = (tmp_path / "b" / "last.pt").read_bytes()      # a requeued job of a run early stopping ended
    over, rows_after = train_run(cli, manifests[0], tmp_path / "b", "--epochs", 6, "--resume", *stop)
    assert over.exit_code == 0 and "the run was over; nothing to resume" in over.stderr
    assert len(rows_after) == 3 and (tmp_path / "b" / "last.pt").read_bytes() == before


def test_the_same_inputs_give_the_same_bytes(manifests, tmp_path):
    """HDF5 files and checkpoints carry no timestamps or timings, so make and cmp can trust them."""
    from conftest import sh

    needs_commands()
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        done = sh(f"xr-preprocess {manifests[1]} -o d.h5 --size 32 -q > h5.jsonl && "
                  "xr-train h5.jsonl --model vgg5 --epochs 2 --run-dir run -q", cwd=tmp_path / run)
        assert done.exit_code == 0, done.stderr
        time.sleep(1.1)              # HDF5 object times have a resolution of one second
    for name in ("d.h5", "h5.jsonl", "run/best.pt", "run/last.pt", "run/config.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_a_run_directory_in_use_by_another_xr_train_is_refused(cli, manifests, tmp_path):
    holder = ("import sys; from libxr.learning.rundir import RunDir\n"      # another xr-train, as far as locks go
              "with RunDir(sys.argv[1]).locked() as busy:\n    print(busy, flush=True); sys.stdin.read()")
    other = subprocess.Popen([sys.executable, "-c", holder, str(tmp_path / "run")], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "False"
        busy, _ = train_run(cli, manifests[0], tmp_path / "run", "--epochs", 1)
        assert busy.exit_code == 1 and busy.stdout == ""
        assert busy.stderr.strip().endswith(f"{tmp_path / 'run'} is in use by another xr-train: wait for it to end, "
                                            "or give another --run-dir")
        assert not (tmp_path / "run" / "metrics.jsonl").exists()
    finally:
        other.communicate("")
    done, _ = train_run(cli, manifests[0], tmp_path / "run", "--epochs", 1)
    finished(done, tmp_path / "run", 1)


def test_a_finished_run_is_not_overwritten_without_force(cli, manifests, tmp_path):
    run = tmp_path / "run"
    train_run(cli, manifests[0], run, "--epochs", 1)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    again, _ = train_run(cli, manifests[0], run, "--epochs", 1)
    assert again.exit_code == 2 and again.stdout == ""
    assert f"xr-train: error: {run} holds a run already: --resume continues it, --force starts it over" \
        in again.stderr
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    forced, _ = train_run(cli, manifests[0], run, "--epochs", 2, "--force")
    finished(forced, run, 2)


@pytest.mark.parametrize("change, message", [
    pytest.param(["--model", "cnn"], "--model dense, not cnn", id="model"),
    pytest.param(["--arch", "dropout=0.2"], "--arch dropout=0.5, not dropout=0.2", id="arch"),
    pytest.param(["--ema", "0.9"], "--ema none, not 0.9", id="ema"),
    pytest.param(["--calibration", "platt"], "--calibration temperature, not platt", id="calibration"),
    pytest.param(["--early-stop", "val_auc"], "--early-stop none, not val_auc", id="early-stop-metric"),
    pytest.param(["--task", "multiclass"], "--task binary, not multiclass", id="task"),
    pytest.param(["other-manifest"], "the manifest (sha256) ", id="manifest"),
])
def test_resume_refuses_another_manifest_or_model_unless_forced(cli, manifests, tmp_path, change, message):
    run = tmp_path / "run"
    train_run(cli, manifests[0], run, "--epochs", 1)
    manifest = manifests[0]
    if change == ["other-manifest"]:
        lines = manifests[0].read_text().splitlines()
        manifest, change = write_jsonl(tmp_path / "fewer.jsonl", [json.loads(line) for line in lines[:-3]]), []
    refused, _ = train_run(cli, manifest, run, "--epochs", 2, "--resume", *change)
    assert refused.exit_code == 2 and message in refused.stderr and refused.stderr.count("\n") == 1
    assert len(metrics_rows(run)) == 1
    forced, rows = train_run(cli, manifest, run, "--epochs", 2, "--resume", "--force", *change)
    if "--model" in change or "--task" in change:   # another model's weights cannot be loaded when forced: one line
        assert forced.exit_code == 1 and "its states do not fit this run" in forced.stderr
        assert "Traceback" not in forced.stderr and len(rows) == 1
    else:
        assert forced.exit_code == 0 and "--force: continuing" in forced.stderr and len(rows) == 2


XR_TRAIN = os.path.join(os.path.dirname(sys.executable), "xr-train")


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return f.read().split()
    except OSError:
        return []


def test_sigterm_to_the_process_group_with_workers_checkpoints_and_exits_75(manifests, tmp_path):
    """A scheduler's stop reaches every process of the job, DataLoader workers too: they leave it
    to xr-train, which ends the epoch's batch, keeps the last whole epoch and exits 75."""
    needs_commands()
    if not os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children"):
        pytest.skip("no /proc/PID/task/PID/children to see the DataLoader workers")
    run = tmp_path / "run"
    argv = [XR_TRAIN, str(manifests[0]), "--run-dir", str(run), *FAST, "--workers", "2", "-q"]
    proc = subprocess.Popen(argv + ["--epochs", "400"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 120
    while not ((run / "last.pt").exists() and len(_children(proc.pid)) >= 2) and time.time() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGTERM)          # the whole group, workers and all, as a scheduler does
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err
    assert "Traceback" not in err and "--resume continues" in err and out.strip() == str(run / "best.pt")
    done = len(metrics_rows(run))
    assert 1 <= done < 400 and load(str(run / "last.pt"))["epoch"] == done - 1
    resumed = subprocess.run(argv + ["--epochs", str(done + 1), "--resume"], capture_output=True, text=True,
                             timeout=120, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert [r["epoch"] for r in metrics_rows(run)] == list(range(1, done + 2))


def _file_size_limit(argv, workdir, run):
    """xr-train under a 64 KiB file size limit: a checkpoint write fails with EFBIG.
    (completed process, the run directory after, the run directory xr-train was given)"""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, 1 << 16))

    done = subprocess.run([*argv, "--run-dir", str(run)], capture_output=True, text=True, timeout=300,
                          check=False, preexec_fn=limit)
    return done, run, run


def _full_disk(argv, workdir, run):
    """xr-train on a tmpfs (mounted in a user namespace: no root needed) with room for the files it
    holds and half a checkpoint more: a checkpoint write fails with ENOSPC. The run is copied back."""
    if subprocess.run(["unshare", "-rm", "true"], capture_output=True, check=False).returncode != 0:
        pytest.skip("no user namespaces here (unshare -rm) to mount a small tmpfs")
    pages = sum(-(-p.stat().st_size // 4096) for p in run.iterdir())
    room = 4 * pages + 8 + (run / "last.pt").stat().st_size // 2048           # KiB
    disk, after = workdir / "disk", workdir / "after"
    disk.mkdir()
    after.mkdir()
    script = (f"mount -t tmpfs -o size={room}k xr {disk} && cp -a {run} {disk}/run && "
              f"{' '.join(argv)} --run-dir {disk}/run; code=$?; cp -a {disk}/run/. {after}/; exit $code")
    done = subprocess.run(["unshare", "-rm", "bash", "-c", script], capture_output=True, text=True, timeout=300,
                          check=False)
    return done, after, disk / "run"


@pytest.mark.parametrize("fill", [_file_size_limit, _full_disk], ids=["file-size-limit", "full-disk"])
def test_a_full_disk_names_the_file_and_keeps_the_last_epoch(manifests, tmp_path, fill):
    needs_commands()
    run = tmp_path / "run"
    argv = [XR_TRAIN, str(manifests[0]), *FAST, "-q"]
    first = subprocess.run([*argv, "--run-dir", str(run), "--epochs", "1"], capture_output=True, text=True,
                           timeout=300, check=False)
    assert first.returncode == 0, first.stderr
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    done, left, named = fill([*argv, "--epochs", "2", "--resume"], tmp_path, run)
    assert done.returncode == 1 and done.stdout == ""
    why = "File too large" if fill is _file_size_limit else "No space left on device"
    assert re.fullmatch(rf"xr-train: error: {re.escape(str(named))}/(best|last)\.pt: {why}; "
                        rf"{re.escape(str(named / 'last.pt'))} holds epoch 1, which --resume continues\n",
                        done.stderr), done.stderr
    assert {n: (left / n).read_bytes() for n in ("best.pt", "last.pt")} == {n: before[n] for n in ("best.pt", "last.pt")}
    assert sorted(p.name for p in left.iterdir()) == RUN_FILES           # no temporary left
    resumed = subprocess.run([*argv, "--run-dir", str(left), "--epochs", "2", "--resume"], capture_output=True,
                             text=True, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert "rows after epoch 1 are left out" in resumed.stderr       # written before the checkpoint that failed
    assert [r["epoch"] for r in metrics_rows(left)] == [1, 2] and load(str(left / "last.pt"))["epoch"] == 1


@pytest.fixture(scope="module")
def one_epoch(manifests, tmp_path_factory):
    """A 1-epoch run and its best.pt's predictions on the manifest: (run directory, predictions)."""
    from conftest import checked
    from xrtools.predict import main as predict

    tmp = tmp_path_factory.mktemp("one-epoch")
    checked(main, str(manifests[0]), "--run-dir", str(tmp / "run"), *FAST, "--epochs", "1", "-q")
    (tmp / "scored.jsonl").write_text(checked(predict, "-m", str(tmp / "run" / "best.pt"), str(manifests[0])))
    return tmp / "run", tmp / "scored.jsonl"


def _append(text):
    return lambda lines: lines + text


CUT = "an unfinished last line (a run stopped while writing it?) is left out"


@pytest.mark.parametrize("command", ["xr-train", "xr-eval"], ids=["train-resume", "eval-run"])
@pytest.mark.parametrize("edit, line, outcome", [
    pytest.param(_append('{"epoch": 2, "lr": 0.0'), 2, CUT, id="a-later-row-cut-short"),
    pytest.param(lambda lines: lines[:100], 1, CUT, id="the-last-epochs-row-cut-short"),
    pytest.param(_append("garbage\n"), 2, "error: not JSON: Expecting value at column 1", id="not-json"),
    pytest.param(_append("[1, 2]\n"), 2, "error: expected a JSON object, got list", id="not-an-object"),
    pytest.param(lambda lines: lines.replace('"epoch": 1', '"epoch": "1"'), 1,
                 "error: epoch '1' where epoch 1 belongs (not a metrics.jsonl of xr-train?)", id="epoch-a-string"),
    pytest.param(lambda lines: lines.replace('"lr": ', '"lr": [0.5], "was": '), 1, "error: lr is [0.5], not a number",
                 id="a-rate-a-list"),
])
def test_a_corrupt_metrics_file_is_named_at_its_line(cli, manifests, one_epoch, tmp_path, command, edit, line,
                                                    outcome):
    """A run's metrics.jsonl that cannot be read is a FILE:LINE error (exit 1) for xr-train --resume and
    xr-eval --run, never a traceback; a last line cut short is left out with a warning, and a resumed
    run writes the file whole again (the row of last.pt's own epoch from last.pt)."""
    import shutil

    from xrtools.eval import main as evaluate

    run = tmp_path / "run"
    shutil.copytree(one_epoch[0], run)
    metrics = run / "metrics.jsonl"
    metrics.write_text(edit(metrics.read_text()))
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    if command == "xr-train":
        result = cli(main, manifests[0], "--run-dir", run, *FAST, "--epochs", 2, "--resume", "-q")
    else:
        result = cli(evaluate, one_epoch[1], "--run", run, "--plots", tmp_path / "plots", "-q")
    where = f"{metrics}:{line}: "
    if outcome.startswith("error: "):
        assert result.exit_code == 1 and result.stderr == f"{command}: error: {where}{outcome[7:]}\n"
        assert {p.name: p.read_bytes() for p in run.iterdir()} == before
        return
    assert result.exit_code == 0, result.stderr
    assert f"{command}: warning: {where}{outcome}" in result.stderr
    if command == "xr-train":
        assert [r["epoch"] for r in metrics_rows(run)] == [1, 2]       # whole again
        assert (f"epoch 1's row is taken from {run / 'last.pt'}" in result.stderr) == (line == 1)
    else:
        assert (tmp_path / "plots" / "training.png").exists() == (line == 2)      # no row left: no curves


ARCH_KEYS = {"cnn": "layers, kernel_growth, filter_growth, local_pool, global_pool, spatial_dropout, dropout, "
                    "batch_norm, pool_stride, preset", "vgg5": "widths, dropout, batch_norm",
             "resnet10": "widths, dropout, batch_norm", "dense": "units, depth, dropout",
             "resnet18": "weights, head, dropout, freeze"}


@pytest.mark.parametrize("model, pair, kind", [
    *(pytest.param(model, f"{key}=3", None, id=f"{model}-unknown") for model, key in (
        ("cnn", "foo"), ("vgg5", "layers"), ("resnet10", "units"), ("dense", "widths"), ("resnet18", "layers"))),
    pytest.param("cnn", "layers=abc", "a whole number from 1 (default 5)", id="cnn-word-for-a-count"),
    pytest.param("cnn", "pool_stride=0", "a whole number from 1 (default 2)", id="cnn-zero-stride"),
    pytest.param("cnn", "dropout=2", "a number from 0 to 1 (default 0.3)", id="cnn-dropout-above-1"),
    pytest.param("vgg5", "batch_norm=1", "true or false (default true)", id="vgg5-number-for-a-flag"),
    pytest.param("resnet10", "widths=16,x", "whole numbers from 1, comma-separated (default 32,64,128)",
                 id="resnet10-bad-widths"),
    pytest.param("dense", "depth=-1", "a whole number from 1 (default 4)", id="dense-negative-depth"),
    pytest.param("resnet18", "dropout=yes", "a number from 0 to 1 (default 0.0)", id="torchvision-word-for-dropout"),
])
def test_an_arch_option_the_model_has_not_is_a_usage_error(cli, manifests, tmp_path, model, pair, kind):
    """Every model that takes --arch: an unknown key names the keys there are; a bad value the kind it needs."""
    key = pair.split("=")[0]
    message = (f"--arch {key}: {model} has no such option; it takes {ARCH_KEYS[model]}" if kind is None
               else f"--arch {pair}: {model}'s {key} is {kind}")
    result = cli(main, manifests[0], "--run-dir", tmp_path / "run", "--model", model, "--arch", pair, "--epochs", 1)
    assert result.exit_code == 2 and result.stderr == f"xr-train: error: {message}\n"
    assert not (tmp_path / "run").exists()


def test_arch_widths_are_a_comma_list(cli, manifests, tmp_path):
    result = cli(main, manifests[0], "--run-dir", tmp_path / "run", "--model", "vgg5", "--arch", "widths=8,16",
                 "--epochs", 1, "--max-steps", 1)
    assert finished(result, tmp_path / "run", 1)["arch"] == {"widths": [8, 16], "dropout": 0.5, "batch_norm": True}
    assert Classifier(str(tmp_path / "run" / "best.pt"), device="cpu").model.features[0].out_channels == 8


def _line(records, n, **change):
    """Records with record ``n`` (0-based) changed: a field set, or removed when its value is None."""
    records = [dict(r) for r in records]
    records[n].update(change)
    records[n] = {k: v for k, v in records[n].items() if v is not None}
    return records


@pytest.mark.parametrize("raw, edit, line, message", [
    pytest.param(False, lambda rs: _line(rs, 6, label=None), 7, "1 of {in_split6} records have no label ({id6!r})",
                 id="no-label"),
    pytest.param(False, lambda rs: _line(rs, 9, row=999), 10, "{h5}: row 999 of record {id9!r} is not one of its 160 "
                 "rows (a manifest of another file?)", id="row-out-of-range"),
    pytest.param(False, lambda rs: _line(rs, 4, row=None), 5, "{h5}: row None of record {id4!r} is not one of its "
                 "160 rows (a manifest of another file?)", id="no-row"),
    pytest.param(False, lambda rs: _line(_line(rs, 4, row=5), 5, row=4), 5, "{h5}: row 5 holds {id5!r}, not {id4!r}: "
                 "the manifest is stale", id="rows-swapped"),
    pytest.param(True, lambda rs: _line(rs, 7, path=None), 8, "record {id7!r} has neither `h5`/`row` nor `path`: "
                 "no image", id="no-path"),
])
def test_a_bad_record_is_named_at_its_manifest_line(cli, manifests, tmp_path, raw, edit, line, message):
    records = [json.loads(line) for line in manifests[raw].read_text().splitlines()]
    manifest = write_jsonl(tmp_path / "m.jsonl", edit(records))
    result = cli(main, manifest, "--run-dir", tmp_path / "run", *FAST, "--size", 32)
    expected = message.format(h5=records[0].get("h5"), **{f"id{i}": r["id"] for i, r in enumerate(records)},
                              in_split6=sum(r["split"] == records[6]["split"] for r in records))
    assert result.exit_code == 1 and result.stderr.startswith(f"xr-train: error: {manifest}:{line}: {expected}")
    assert result.stderr.count("\n") == 1 and not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, which, good", [
    pytest.param(["--lr", "100"], "training", False, id="training-loss-in-epoch-1"),
    # one step an epoch: the step that breaks the weights is the epoch's last, validation sees it first
    pytest.param(["--lr", "1e30", "--max-steps", "1"], "validation", False, id="validation-loss-in-epoch-1"),
    pytest.param(["--lr", "100", "--max-steps", "1"], "validation", True, id="validation-loss-after-good-epochs"),
])
def test_a_nan_loss_stops_the_run_naming_the_last_good_checkpoint(cli, manifests, tmp_path, args, which, good):
    """Plain SGD at a rate that diverges: the weights overflow, in the first epoch or after some."""
    run = tmp_path / "run"
    result = cli(main, manifests[0], "--run-dir", run, "--model", "dense", "--batch-size", 16, "--optimizer", "sgd",
                 "--epochs", 8, "-q", *args)
    assert result.exit_code == 1 and result.stdout == ""
    rows = metrics_rows(run)
    assert bool(rows) == good and all(math.isfinite(r["train_loss"]) and math.isfinite(r["val_loss"]) for r in rows)
    kept = f"the last good checkpoint is {run / 'last.pt'} (epoch {len(rows)})" if rows else "no checkpoint was written"
    assert result.stderr == (f"xr-train: error: the {which} loss became NaN or infinite in epoch {len(rows) + 1}; "
                             f"{kept} (lower --lr)\n")
    assert (run / "last.pt").exists() == good
    if good:
        last = load(str(run / "last.pt"))
        assert last["epoch"] == len(rows) - 1 and all(torch.isfinite(t).all() for t in last["model"].values())


# Every training lever at once, on a network that pools adaptively (it takes the smaller images).
LEVERS = {"--ema": 0.9, "--ema-warmup": True, "--label-smoothing": 0.1, "--mixup": 0.4, "--cutmix": 1.0,
          "--mix-prob": 0.8, "--mix-switch": 0.3, "--progressive": 16, "--progressive-until": 1.0, "--tta": "hflip"}
LEVER_ARGS = [str(a) for option, value in LEVERS.items() for a in ((option,) if value is True else (option, value))]
LEVER_RUN = ["--model", "cnn", "--arch", "layers=2", "--arch", "batch_norm=true", "--batch-size", "16", "--augment",
             *LEVER_ARGS]


@pytest.fixture(scope="module")
def levers(manifests, tmp_path_factory):
    """{"straight": a 3-epoch run with every lever, "resumed": the same stopped after 1 epoch and resumed}."""
    from conftest import checked

    tmp = tmp_path_factory.mktemp("levers")
    checked(main, str(manifests[0]), "--run-dir", str(tmp / "straight"), "--epochs", "3", *LEVER_RUN, "-q")
    checked(main, str(manifests[0]), "--run-dir", str(tmp / "resumed"), "--epochs", "1", *LEVER_RUN, "-q")
    checked(main, str(manifests[0]), "--run-dir", str(tmp / "resumed"), "--epochs", "3", *LEVER_RUN, "--resume", "-q")
    return {"straight": tmp / "straight", "resumed": tmp / "resumed"}


def test_every_lever_reaches_the_config_and_the_metrics_say_what_they_mean(levers):
    run = levers["straight"]
    best = load(str(run / "best.pt"))
    for options in (json.loads((run / "config.json").read_text())["options"], best["config"]["options"]):
        assert {option: options[option[2:].replace("-", "_")] for option in LEVERS} == LEVERS
    assert best["tta"] == "hflip"
    rows = metrics_rows(run)
    assert [r["train_size"] for r in rows] == [16, 24, 32]          # START, rising to the data's 32 px
    for r in rows:              # mixed images have no one label: train metrics are null, the loss a number
        assert r["train_accuracy"] is r["train_auc"] is r["train_kappa"] is r["train_f1"] is None
        assert math.isfinite(r["train_loss"]) and r["val_auc"] is not None


def test_resume_with_every_lever_continues_exactly(levers):
    """The weight average, its update count, the mixing draws and each epoch's size continue where
    last.pt left them: the resumed run's metrics and weights are the unbroken run's."""
    strip = [[{k: v for k, v in r.items() if "seconds" not in k} for r in metrics_rows(levers[name])]
             for name in ("straight", "resumed")]
    assert strip[0] == strip[1]
    straight, resumed = (load(str(levers[name] / "last.pt")) for name in ("straight", "resumed"))
    train_records = json.loads((levers["straight"] / "config.json").read_text())["train_records"]
    assert straight["ema"]["updates"] == resumed["ema"]["updates"] == 3 * math.ceil(train_records / 16)
    for weights in (lambda s: s["model"], lambda s: s["ema"]["raw"]):
        a, b = weights(straight), weights(resumed)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(straight["model"]["head.1.weight"], straight["ema"]["raw"]["head.1.weight"])


def test_validation_with_ema_and_tta_is_what_xr_predict_scores(cli, manifests, levers):
    """best.pt's `model` is the weight average validation scored, and xr-predict scores with the TTA the
    stored threshold was chosen with unless told otherwise, which it warns of."""
    from xrtools.predict import main as predict

    from libxr.judging.metrics import metrics
    from libxr.judging.thresholds import choose

    best_pt = levers["straight"] / "best.pt"
    best = load(str(best_pt))
    scored = cli(predict, "-m", best_pt, manifests[0])
    assert scored.exit_code == 0 and "warning" not in scored.stderr
    val = [r for r in scored.records if r["split"] == "val"]
    truth, p = np.array([r["label"] == "PNEUMONIA" for r in val]), np.array([r["scores"]["PNEUMONIA"] for r in val])
    assert metrics(BINARY, truth.astype(float), p, detail=False)["auc"] == pytest.approx(best["metrics"]["val_auc"])
    assert best["threshold"] == pytest.approx(choose("youden", truth, p), abs=1e-5)
    plain = cli(predict, "-m", best_pt, manifests[0], "--tta", "none")
    assert plain.exit_code == 0 and plain.stderr.count("warning") == 1
    assert f"warning: --tta none: {best_pt}'s threshold was chosen on validation scores with --tta hflip" in plain.stderr
    assert [r["scores"] for r in plain.records] != [r["scores"] for r in scored.records]


@pytest.mark.parametrize("args, message", [
    pytest.param(["--mix-prob", "0.5"], "--mix-prob takes effect only with --mixup or --cutmix", id="mix-prob-alone"),
    pytest.param(["--mixup", "0.2", "--mix-switch", "0.2"], "--mix-switch takes effect only with both --mixup and "
                 "--cutmix", id="switch-without-both"),
    pytest.param(["--mixup", "0.2", "--mix-switch", "0.5"], "--mix-switch takes effect only with both --mixup and "
                 "--cutmix", id="switch-at-its-default-without-both"),
    pytest.param(["--mix-prob", "1.0"], "--mix-prob takes effect only with --mixup or --cutmix",
                 id="mix-prob-at-its-default-alone"),
    pytest.param(["--progressive-until", "0.5"], "--progressive-until takes effect only with --progressive",
                 id="until-at-its-default-alone"),
    pytest.param(["--ema-warmup"], "--ema-warmup takes effect only with --ema", id="ema-warmup-alone"),
    pytest.param(["--progressive-until", "0.3"], "--progressive-until takes effect only with --progressive",
                 id="until-alone"),
    pytest.param(["--progressive", "16"], "--progressive 16: dense cannot take 16 px images (", id="flattening-model"),
    pytest.param(["--progressive", "32"], "--progressive 32: the images are 32 px; START must be smaller",
                 id="start-not-smaller"),
    pytest.param(["--ema", "1"], "Invalid value for '--ema': 1.0 is not in the range 0<x<1", id="ema-of-1"),
    pytest.param(["--device", "tpu"], "--device 'tpu' is not a device: give auto, cpu, cuda or cuda:N",
                 id="unknown-device"),
    pytest.param(["--device", "meta"], "--device 'meta' is not a device: give auto, cpu, cuda or cuda:N",
                 id="a-torch-device-xr-does-not-run-on"),
])
def test_a_lever_that_cannot_take_effect_is_a_usage_error(cli, manifests, tmp_path, args, message):
    result = cli(main, manifests[0], "--run-dir", tmp_path / "run", *FAST, "--epochs", 1, *args)
    assert result.exit_code == 2 and message in result.stderr and not (tmp_path / "run").exists()
