"""The naive mix: each forecast adds last value, yesterday and the 24-hour mean, weighted."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from bundles import assert_reloads_alike, last_windows, tiny_fleet_bundle

from linborg.bundle import SPEC, load_bundle, save_bundle
from linborg.contract import METRIC_NAMES
from linborg.features import ENCODER_STEPS, SEASONAL_LAG
from linborg.model import NAIVE_FORECASTS, naive_forecasts, reals_order
from linborg.trainer.train import train

MEM = METRIC_NAMES.index("mem_used_pct")


def test_naive_forecasts_by_hand():
    reals = reals_order()
    enc = torch.zeros(1, ENCODER_STEPS, len(reals))
    mem = reals.index("mem_used_pct")
    enc[0, :, mem] = torch.arange(ENCODER_STEPS, dtype=torch.float32)  # 0, 1, ..., 287
    got = naive_forecasts({"encoder_cont": enc}, reals, 96)
    assert got.shape == (1, 96, 14, len(NAIVE_FORECASTS)) == (1, 96, 14, 3)
    last, seasonal, mean = got[0, :, MEM].unbind(-1)
    assert torch.all(last == ENCODER_STEPS - 1)
    # future step h (1-based) is 287 + h in window positions; 24 h before it is 287 + h - 288
    h = torch.arange(1, 97, dtype=torch.float32)
    torch.testing.assert_close(seasonal, ENCODER_STEPS - 1 + h - SEASONAL_LAG)
    assert torch.all(mean == (ENCODER_STEPS - 1) / 2)
    # other metrics: zero windows, zero naive forecasts
    others = [j for j in range(14) if j != MEM]
    assert got[0][:, others].abs().max().item() == 0.0
    # a shorter decoder reads the first steps only
    assert naive_forecasts({"encoder_cont": enc}, reals, 12).shape == (1, 12, 14, 3)


@pytest.fixture(scope="module")
def fleet_and_bundle(tmp_path_factory):
    return tiny_fleet_bundle(tmp_path_factory.mktemp("naive") / "plain")


def test_added_mix_starts_from_no_effect_and_a_weight_on_last_value_moves_to_it(
    fleet_and_bundle,
):
    frame, plain = fleet_and_bundle
    window, profiles, end = last_windows(frame)
    forecaster = load_bundle(plain)
    forecaster.calibration = None  # the raw quantiles, to compare with the window's values
    before = forecaster.predict(window, profiles, end).values
    forecaster.model.add_naive_mix()
    np.testing.assert_array_equal(forecaster.predict(window, profiles, end).values, before)
    # A bias of +1 on memory's last-value weight adds (last value - centre) to every quantile.
    with torch.no_grad():
        forecaster.model.naive_weights.bias[MEM * len(NAIVE_FORECASTS)] = 1.0
    after = forecaster.predict(window, profiles, end).values
    centre = window[:, -forecaster.center_steps :, MEM].mean(1)
    shift = (window[:, -1, MEM] - centre)[:, None, None]
    lo, hi = 0.0, 100.0
    expected = np.clip(before[:, MEM] + shift, lo, hi)
    np.testing.assert_allclose(np.sort(after[:, MEM], -1), np.sort(expected, -1), atol=1e-3)
    others = [j for j in range(14) if j != MEM]
    np.testing.assert_array_equal(after[:, others], before[:, others])


def test_training_with_the_mix_records_it_and_the_bundle_reloads_alike(fleet_and_bundle, tmp_path):
    frame, plain = fleet_and_bundle
    model, summary = train(
        frame, "tiny", seed=5, progress=False, log=lambda m: None, init=plain, naive_mix=True
    )
    assert summary["naive_mix"] is True
    assert model.naive_weights.weight.abs().max().item() > 0  # it trained
    out = save_bundle(model, tmp_path / "mix", summary)
    spec = json.loads((out / SPEC).read_text())
    assert spec["hparams"]["naive_mix"] is True
    assert spec["training"]["naive_mix"] is True
    assert_reloads_alike(model, out, frame)
    assert not hasattr(load_bundle(plain).model, "naive_weights")
