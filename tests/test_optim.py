"""libxr.learning.optim and stopping: the learning rate per epoch by schedule and warm-up, registries
that are the command line's choices, and early stopping that survives a checkpoint."""

import pytest
import torch

from libxr.judging.direction import improved, lower_is_better
from libxr.learning.optim import OPTIMIZERS, SCHEDULERS, Schedule, make_optimizer
from libxr.learning.options import EARLY_STOP, TrainOptions
from libxr.learning.stopping import EarlyStopping

LR = 0.3


def lrs(epochs=6, steps=2, **options):
    """The learning rate each epoch starts with, and the one after the last."""
    opts = TrainOptions(lr=LR, epochs=epochs, **options)
    optimizer = make_optimizer(opts, [torch.nn.Parameter(torch.zeros(1))])
    schedule = Schedule(optimizer, opts, steps, warn=pytest.fail)
    out = []
    for epoch in range(epochs):
        out.append(round(optimizer.param_groups[0]["lr"], 6))
        for _ in range(steps):
            optimizer.step()
            schedule.after_batch()
        schedule.after_epoch({"val_auc": 0.5, "val_loss": 1.0})
    return out


@pytest.mark.parametrize("options, expected", [
    pytest.param({}, [LR] * 6, id="none"),
    pytest.param({"warmup": 2}, [LR / 3, LR * 2 / 3, LR, LR, LR, LR], id="none+warmup"),
    pytest.param({"scheduler": "step"}, [LR, LR, 0.03, 0.03, 0.003, 0.003], id="step"),
    pytest.param({"scheduler": "cosine", "warmup": 2},
                 [LR / 3, LR * 2 / 3, LR, LR * 0.853553, LR * 0.5, LR * 0.146447], id="cosine+warmup"),
    pytest.param({"scheduler": "plateau"}, [LR, LR, LR, LR, 0.03, 0.03], id="plateau (no improvement)"),
    pytest.param({"scheduler": "plateau", "warmup": 1}, [LR / 2, LR, LR, LR, LR, 0.03], id="plateau+warmup"),
])
def test_learning_rate_per_epoch(options, expected):
    assert lrs(**options) == pytest.approx(expected, abs=1e-6)


def test_batch_schedules_step_every_batch_and_say_warmup_is_theirs():
    warned = []
    opts = TrainOptions(lr=LR, epochs=2, scheduler="onecycle", warmup=3)
    optimizer = make_optimizer(opts, [torch.nn.Parameter(torch.zeros(1))])
    schedule = Schedule(optimizer, opts, 5, warn=warned.append)
    seen = []
    for _ in range(10):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.after_batch()
    assert max(seen) == pytest.approx(LR, rel=0.05) and seen[0] < LR / 10
    assert warned == ["--warmup 3 is ignored: the onecycle schedule shapes its own start"]


def test_a_resumed_schedule_continues_where_it_stopped():
    """In xr-train's order (torchvision's): build optimiser and schedule, then load their states."""
    options = {"scheduler": "cosine", "warmup": 2, "epochs": 6}
    full = lrs(**options)
    opts = TrainOptions(lr=LR, **options)
    first = make_optimizer(opts, [torch.nn.Parameter(torch.zeros(1))])
    schedule = Schedule(first, opts, 1)
    for _ in range(3):
        first.step()
        schedule.after_epoch({})
    again = make_optimizer(opts, [torch.nn.Parameter(torch.zeros(1))])
    resumed = Schedule(again, opts, 1)
    again.load_state_dict(first.state_dict())
    resumed.load_state_dict(schedule.state_dict())
    rest = []
    for _ in range(3):
        rest.append(round(again.param_groups[0]["lr"], 6))
        again.step()
        resumed.after_epoch({})
    assert rest == pytest.approx(full[3:], abs=1e-6)


def test_registries_are_the_command_line_choices():
    from xrtools.train import main

    choices = {p.name: tuple(p.type.choices) for p in main.params if hasattr(p.type, "choices")}
    assert choices["optimizer"] == tuple(OPTIMIZERS) and choices["scheduler"] == tuple(SCHEDULERS)
    assert choices["early_stop"] == EARLY_STOP == ("val_accuracy", "val_auc", "val_kappa", "val_f1", "val_loss")


@pytest.mark.parametrize("field, value", [
    pytest.param("optimizer", "adagrad", id="optimizer"),
    pytest.param("scheduler", "exp", id="scheduler"),
    pytest.param("early_stop", "val_dice", id="early-stop"),
])
def test_options_from_python_are_checked(field, value):
    from libxr.errors import UsageError

    with pytest.raises(UsageError, match=f"{value!r}: use "):
        TrainOptions(**{field: value}).check()


@pytest.mark.parametrize("metric, lower", [
    pytest.param("val_loss", True, id="val_loss"), pytest.param("log_loss", True, id="log_loss"),
    pytest.param("test_ece", True, id="test_ece"), pytest.param("brier", True, id="brier"),
    pytest.param("val_auc", False, id="val_auc"), pytest.param("kappa", False, id="kappa"),
    pytest.param("val_log_loss", True, id="val_log_loss"),
])
def test_one_table_says_which_way_is_better(metric, lower):
    assert lower_is_better(metric) is lower
    assert improved(1.0, 2.0, metric) is lower and improved(2.0, 1.0, metric) is not lower
    assert improved(None, 1.0, metric) is False and improved(1.0, None, metric) is True


def test_early_stopping_counts_epochs_without_improvement():
    monitor = EarlyStopping("val_auc", patience=2, min_delta=0.01)
    seen = [monitor.update(e, {"val_auc": v}) for e, v in enumerate([0.6, 0.7, 0.705, 0.69], start=1)]
    assert seen == [True, True, False, False] and monitor.should_stop
    assert monitor.best == {"epoch": 2, "value": 0.7, "metric": "val_auc"}
    assert monitor.describe() == "early stop: val_auc did not improve for 2 epochs (best 0.7000 at epoch 2)"


def test_early_stopping_state_survives_a_checkpoint():
    monitor = EarlyStopping("val_loss", patience=3)
    for e, v in enumerate([1.0, 0.9, 0.95, 0.97], start=1):
        monitor.update(e, {"val_loss": v})
    resumed = EarlyStopping("val_loss", patience=3)
    resumed.load_state_dict(monitor.state_dict())
    assert (resumed.best, resumed.stale, resumed.should_stop) == ({"epoch": 2, "value": 0.9, "metric": "val_loss"},
                                                                  2, False)
    resumed.update(5, {"val_loss": 0.99})
    assert resumed.should_stop


def test_without_a_metric_the_monitor_tracks_val_loss_and_never_stops():
    monitor = EarlyStopping(None, patience=1)
    for e, v in enumerate([1.0, 2.0, 3.0], start=1):
        monitor.update(e, {"val_loss": v})
    assert monitor.best["epoch"] == 1 and monitor.stale == 2 and not monitor.should_stop
