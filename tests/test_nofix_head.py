"""The no-fix head: a second set of quantile outputs trained without the incidents' aftermath,
while the forecasts keep every step."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import torch

from linborg.bundle import load_bundle, save_bundle
from linborg.contract import ContractError
from linborg.features import time_index, windows_from_frame
from linborg.generator.fleet import build_fleet
from linborg.generator.output import simulate
from linborg.model import AFTERMATH_CODE_BASE, MaskedQuantileLoss
from linborg.trainer.train import train

START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)


def test_the_forecasts_loss_keeps_the_aftermath_the_no_fix_loss_skips_it():
    torch.manual_seed(2)
    pred = torch.randn(2, 6, 3)
    target = torch.randn(2, 6)
    weight = torch.zeros(2, 6)
    weight[0, :] = -(3 + AFTERMATH_CODE_BASE * 2)  # 2 steps after an incident of metric 3

    def total(skip):
        loss = MaskedQuantileLoss(quantiles=[0.1, 0.5, 0.9], metric_code=3, skip_aftermath=skip)
        loss.update(pred, (target, weight))
        return float(loss.losses)

    each = MaskedQuantileLoss(quantiles=[0.1, 0.5, 0.9]).loss(pred, target).sum(-1) / 3
    assert total(False) == pytest.approx(float(each.sum()), rel=1e-5)
    assert total(True) == pytest.approx(float(each.sum() - each[0, 2:].sum()), rel=1e-5)


@pytest.fixture(scope="module")
def history():
    frame, _, _ = simulate(
        build_fleet({"web_api": 1, "database": 1, "ml_compute": 1}), 6, START, 3 * 288
    )
    return frame


def incidents_of(history):
    server = str(history["server"].iloc[0])
    day = history["timestamp"].min() + dt.timedelta(hours=26)
    return [
        {
            "server": server,
            "metric": "mem_used_pct",
            "precursor_start": day.isoformat(),
            "onset": (day + dt.timedelta(hours=2)).isoformat(),
            "end": (day + dt.timedelta(hours=4)).isoformat(),
        }
    ]


def test_training_with_the_no_fix_head_keeps_it_serves_it_on_request_and_needs_labels(
    history, tmp_path
):
    incidents = incidents_of(history)
    model, summary = train(
        history,
        "tiny",
        seed=5,
        progress=False,
        log=lambda m: None,
        incidents=incidents,
        incident_share=0.5,
        nofix_head=5.0,
    )
    assert summary["nofix_head"] == 5.0
    assert summary["skip_aftermath"] is False  # the forecasts keep the aftermath
    assert model.nofix_layer[0] is not model.output_layer[0]
    # Both heads started alike and trained on different losses.
    apart = max(
        float((a.weight - b.weight).abs().max())
        for a, b in zip(model.output_layer, model.nofix_layer, strict=True)
    )
    assert apart > 0
    out = save_bundle(model, tmp_path / "nofix", {**summary, "source": "test"})
    forecaster = load_bundle(out)
    for a, b in zip(model.nofix_layer, forecaster.model.nofix_layer, strict=True):
        torch.testing.assert_close(a.weight, b.weight)
    end = int(time_index(history["timestamp"].max()))
    names, profiles, values = windows_from_frame(history, end)
    forecast = forecaster.predict(values, profiles, end).values
    forecaster.model.read_nofix = True
    nofix = forecaster.predict(values, profiles, end).values
    forecaster.model.read_nofix = False
    again = forecaster.predict(values, profiles, end).values
    assert not np.allclose(forecast, nofix, equal_nan=True)
    np.testing.assert_allclose(forecast, again)
    with pytest.raises(ContractError, match="no-fix head needs incident labels"):
        train(history, "tiny", log=lambda m: None, nofix_head=5.0)
    with pytest.raises(ContractError, match="a weight of 1 or more"):
        train(history, "tiny", log=lambda m: None, incidents=incidents, nofix_head=0.5)
