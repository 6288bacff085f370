"""Level inputs: the network sees where each metric stands, not only its normalised shape."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from bundles import assert_reloads_alike, last_windows, tiny_fleet_bundle

from linborg.bundle import SPEC, load_bundle, save_bundle
from linborg.contract import METRIC_NAMES
from linborg.model import LEVEL_FEATURES, level_features
from linborg.trainer.train import train

MEM = METRIC_NAMES.index("mem_used_pct")
NET = METRIC_NAMES.index("net_in_mb_s")


def test_level_features_by_hand():
    center = torch.zeros(2, len(METRIC_NAMES))
    scale = torch.ones(2, len(METRIC_NAMES))
    center[0, MEM], scale[0, MEM] = 85.0, 2.0
    center[1, NET], scale[1, NET] = 0.0001, 0.00002
    got = level_features([torch.stack([center[:, i], scale[:, i]], -1) for i in range(14)])
    assert got.shape == (2, len(LEVEL_FEATURES)) == (2, 28)
    level, spread = got[:, :14], got[:, 14:]
    # percentages in tenths of their range; other units through asinh
    assert level[0, MEM].item() == pytest.approx(8.5)
    assert spread[0, MEM].item() == pytest.approx(0.2)
    assert level[1, NET].item() == pytest.approx(float(np.arcsinh(0.0001)), rel=1e-5)
    assert spread[1, NET].item() == pytest.approx(float(np.arcsinh(0.00002)), rel=1e-5)
    assert level[1, MEM].item() == 0.0


@pytest.fixture(scope="module")
def fleet_and_bundle(tmp_path_factory):
    return tiny_fleet_bundle(tmp_path_factory.mktemp("level") / "plain")


def test_added_level_inputs_start_from_no_effect_then_tell_levels_apart(fleet_and_bundle):
    frame, plain = fleet_and_bundle
    window, profiles, end = last_windows(frame)
    forecaster = load_bundle(plain)
    before = forecaster.predict(window, profiles, end).values
    forecaster.model.add_level_inputs()
    np.testing.assert_array_equal(forecaster.predict(window, profiles, end).values, before)
    # Once the map is not zero, the same shape at another level is forecast differently
    # (normalised by itself, a window 10 points higher looked exactly alike before).
    torch.nn.init.normal_(forecaster.model.level_projection.weight, std=5.0)
    higher = window.copy()
    higher[:, :, MEM] += 10.0
    low = forecaster.predict(window, profiles, end).values[:, MEM, :, 1]
    high = forecaster.predict(higher, profiles, end).values[:, MEM, :, 1]
    plain_low = load_bundle(plain).predict(window, profiles, end).values[:, MEM, :, 1]
    plain_high = load_bundle(plain).predict(higher, profiles, end).values[:, MEM, :, 1]
    np.testing.assert_allclose(plain_high - plain_low, 10.0, atol=1e-3)
    assert np.abs((high - low) - 10.0).max() > 0.01


def test_training_with_level_inputs_records_them_and_the_bundle_reloads_alike(
    fleet_and_bundle, tmp_path
):
    frame, plain = fleet_and_bundle
    log = []
    model, summary = train(
        frame, "tiny", seed=5, progress=False, log=log.append, init=plain, level_inputs=True
    )
    assert summary["level_inputs"] is True
    # it trained: the map moved from zero
    assert model.level_projection.weight.abs().max().item() > 0
    out = save_bundle(model, tmp_path / "levels", summary)
    spec = json.loads((out / SPEC).read_text())
    assert spec["hparams"]["level_inputs"] is True
    assert spec["training"]["level_inputs"] is True
    assert_reloads_alike(model, out, frame)
    # A bundle without them still loads as it was (no level map, hparams unchanged).
    assert not hasattr(load_bundle(plain).model, "level_projection")
