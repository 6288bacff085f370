"""Trend inputs: each future step sees where the window's recent straight lines reach by then."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from bundles import assert_reloads_alike, last_windows, tiny_fleet_bundle

from linborg.bundle import SPEC, load_bundle, save_bundle
from linborg.contract import METRIC_NAMES
from linborg.features import ENCODER_STEPS
from linborg.model import TREND_CLIP, TREND_FEATURES, reals_order, trend_features
from linborg.trainer.train import train

MEM = METRIC_NAMES.index("mem_used_pct")
CPU = METRIC_NAMES.index("cpu_user_pct")


def test_trend_features_by_hand():
    reals = reals_order()
    enc = torch.zeros(1, ENCODER_STEPS, len(reals))
    mem = reals.index("mem_used_pct")
    cpu = reals.index("cpu_user_pct")
    # memory: flat for 23 h, then rising 0.05 per step over the last hour
    enc[0, -12:, mem] = 0.05 * torch.arange(12, dtype=torch.float32)
    # cpu: falling 0.01 per step over the whole window
    enc[0, :, cpu] = -0.01 * torch.arange(ENCODER_STEPS, dtype=torch.float32)
    got = trend_features({"encoder_cont": enc}, reals, 96)
    assert got.shape == (1, 96, len(TREND_FEATURES)) == (1, 96, 28)
    h = torch.arange(1, 97, dtype=torch.float32)
    one_hour, six_hours = got[0, :, :14], got[0, :, 14:]
    torch.testing.assert_close(one_hour[:, MEM], (0.05 * h).clamp(max=TREND_CLIP))
    # over 6 h the same hour is a gentler line: the hand-computed least-squares slope
    t = np.arange(72) - 35.5
    y = np.r_[np.zeros(60), 0.05 * np.arange(12)]
    slope = float((t * y).sum() / (t * t).sum())
    torch.testing.assert_close(six_hours[:, MEM], slope * h, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(one_hour[:, CPU], -0.01 * h)
    torch.testing.assert_close(six_hours[:, CPU], -0.01 * h)
    # the clip: 0.05 per step for 96 steps would be 4.8; a steeper hour is cut at the clip
    enc[0, -12:, mem] = 0.5 * torch.arange(12, dtype=torch.float32)
    steep = trend_features({"encoder_cont": enc}, reals, 96)[0, :, MEM]
    assert steep.max().item() == TREND_CLIP
    assert steep[0].item() == pytest.approx(0.5)
    # other metrics: flat windows, no trend
    others = [j for j in range(14) if j not in (MEM, CPU)]
    assert got[0][:, others].abs().max().item() == 0.0


@pytest.fixture(scope="module")
def fleet_and_bundle(tmp_path_factory):
    return tiny_fleet_bundle(tmp_path_factory.mktemp("trend") / "plain")


def test_added_trend_inputs_start_from_no_effect_then_tell_a_ramp_apart(fleet_and_bundle):
    frame, plain = fleet_and_bundle
    window, profiles, end = last_windows(frame)
    forecaster = load_bundle(plain)
    before = forecaster.predict(window, profiles, end).values
    forecaster.model.add_trend_inputs()
    np.testing.assert_array_equal(forecaster.predict(window, profiles, end).values, before)
    torch.nn.init.normal_(forecaster.model.trend_projection.weight, std=5.0)
    assert np.abs(forecaster.predict(window, profiles, end).values - before).max() > 1e-3
    # Fed through the exporter's path, the map sees the window's own trend.
    x = forecaster.inputs(np.nan_to_num(window), np.ones((2, 14), bool), profiles, end)
    seen = trend_features(x, forecaster.model.hparams.x_reals, 96)
    assert seen.shape == (2, 96, 28)
    assert seen.abs().max().item() > 0


def test_training_with_trend_inputs_records_them_and_the_bundle_reloads_alike(
    fleet_and_bundle, tmp_path
):
    frame, plain = fleet_and_bundle
    model, summary = train(
        frame, "tiny", seed=5, progress=False, log=lambda m: None, init=plain, trend_inputs=True
    )
    assert summary["trend_inputs"] is True
    assert model.trend_projection.weight.abs().max().item() > 0  # it trained
    out = save_bundle(model, tmp_path / "trends", summary)
    spec = json.loads((out / SPEC).read_text())
    assert spec["hparams"]["trend_inputs"] is True
    assert spec["training"]["trend_inputs"] is True
    assert_reloads_alike(model, out, frame)
    assert not hasattr(load_bundle(plain).model, "trend_projection")
