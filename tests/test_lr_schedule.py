"""The cosine learning-rate schedule over a training run's budget (``train --lr-schedule``)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from bundles import START

from linborg.app.cli import build_parser
from linborg.contract import ContractError
from linborg.generator.fleet import build_fleet
from linborg.generator.output import simulate
from linborg.model import PRESETS
from linborg.trainer.train import (
    COSINE_FLOOR,
    LR_SCHEDULES,
    _cosine_callback,
    _schedule_callbacks,
    cosine_learning_rate,
    train,
)


def test_cosine_rate_by_hand():
    assert cosine_learning_rate(0.004, 0.0) == pytest.approx(0.004)
    assert cosine_learning_rate(0.004, 1.0) == pytest.approx(0.004 * COSINE_FLOOR)
    half = 0.004 * (COSINE_FLOOR + (1 - COSINE_FLOOR) / 2)
    assert cosine_learning_rate(0.004, 0.5) == pytest.approx(half)
    quarter = 0.004 * (COSINE_FLOOR + (1 - COSINE_FLOOR) * (1 + math.cos(math.pi / 4)) / 2)
    assert cosine_learning_rate(0.004, 0.25) == pytest.approx(quarter)
    # past the budget's end (the last epoch's tail) it stays at the floor; before 0 at the start
    assert cosine_learning_rate(0.004, 1.7) == pytest.approx(0.004 * COSINE_FLOOR)
    assert cosine_learning_rate(0.004, -1.0) == pytest.approx(0.004)
    rates = [cosine_learning_rate(1.0, p / 20) for p in range(21)]
    assert all(a > b for a, b in zip(rates, rates[1:], strict=False))


def _optimizer():
    return torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=0.004)


def test_callback_sets_every_group_from_steps_or_minutes_whichever_is_further():
    optimizer = _optimizer()
    trainer = SimpleNamespace(optimizers=[optimizer], global_step=0)
    # a long budget in minutes: the steps decide
    cb = _cosine_callback(0.004, budget_minutes=600, total_steps=100)
    cb.on_train_batch_start(trainer, None, None, 0)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.004, rel=1e-3)
    trainer.global_step = 50
    cb.on_train_batch_start(trainer, None, None, 50)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(
        cosine_learning_rate(0.004, 0.5), rel=1e-3
    )
    # minutes spent decide when they are further along than the steps
    cb.began -= 0.75 * 600 * 60
    cb.on_train_batch_start(trainer, None, None, 51)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(
        cosine_learning_rate(0.004, 0.75), rel=1e-3
    )


def test_cosine_runs_to_its_budget_and_plateau_stops_early():
    from lightning.pytorch.callbacks import EarlyStopping

    params = dict(PRESETS["default"], lr_schedule="plateau")
    (stop,) = _schedule_callbacks(params)
    assert isinstance(stop, EarlyStopping)
    assert stop.patience == PRESETS["default"]["patience"]
    assert stop.monitor == "val_loss"
    params["lr_schedule"] = "cosine"
    callbacks = _schedule_callbacks(params)
    # no early stopping: a stalled validation loss would otherwise end the run before the
    # rate reaches its low end
    assert not any(isinstance(c, EarlyStopping) for c in callbacks)
    (rate,) = callbacks
    assert hasattr(rate, "on_train_batch_start")


def test_training_with_cosine_ends_low_and_records_it():
    frame, _, _ = simulate(build_fleet({"web_api": 1, "database": 1}), 4, START, 3 * 288)
    lines = []
    model, summary = train(
        frame, "tiny", seed=3, progress=False, log=lines.append, lr_schedule="cosine", max_epochs=3
    )
    assert summary["hyperparameters"]["lr_schedule"] == "cosine"
    assert len(summary["epochs"]) == 3
    assert any("cosine learning rate over the budget" in line for line in lines)
    base = summary["hyperparameters"]["learning_rate"]
    steps = (
        summary["hyperparameters"]["batches_per_epoch"] * summary["hyperparameters"]["max_epochs"]
    )
    last = model.trainer.optimizers[0].param_groups[0]["lr"]
    # the last batch starts at step steps - 1: at most the rate the steps alone give
    assert base * COSINE_FLOOR <= last <= cosine_learning_rate(base, (steps - 1) / steps) * 1.001
    assert last < base / 5


def test_unknown_schedule_is_refused_and_the_cli_offers_the_trainers():
    frame, _, _ = simulate(build_fleet({"web_api": 1, "database": 1}), 4, START, 2 * 288)
    with pytest.raises(ContractError, match="unknown learning-rate schedule 'linear'"):
        train(frame, "tiny", progress=False, log=lambda m: None, lr_schedule="linear")
    parser = build_parser()
    action = next(
        a
        for sub in parser._subparsers._group_actions
        for a in sub.choices["train"]._actions
        if "--lr-schedule" in a.option_strings
    )
    assert tuple(action.choices) == LR_SCHEDULES
    assert action.default == "plateau"
