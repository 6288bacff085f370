"""linborg/fused.py: the batched variable selection gives the network's own numbers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from linborg.bundle import load_bundle
from linborg.contract import METRIC_NAMES
from linborg.features import fill_window, time_index, windows_from_frame
from linborg.fused import FusedRealSelection, applicable, fused_selections
from linborg.generator.fleet import build_fleet
from linborg.generator.output import simulate
from linborg.model import Forecaster

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "default"
START = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def shipped():
    return load_bundle(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def windows():
    fleet = build_fleet({"web_api": 2, "database": 2, "ml_compute": 2, "risk_analytics": 1})
    frame, _, _ = simulate(fleet, 5, START, 2 * 288)
    end = int(time_index(frame["timestamp"].max()))
    names, profiles, values = windows_from_frame(frame, end)
    values = values.copy()
    values[0, :, METRIC_NAMES.index("java_cpu_pct")] = np.nan  # a server lacking a metric
    values[1, :100] = np.nan  # and one with a short history
    return profiles, values, end, names


def raw_both(forecaster: Forecaster, profiles, values, ends):
    filled, present, _ = fill_window(values)
    x = forecaster.inputs(filled, present, profiles, ends)
    plain = Forecaster(forecaster.model, forecaster.spec, fused=False)
    return plain.raw(x), forecaster.raw(x)


def test_the_time_varying_selections_are_fused_and_the_static_one_is_not(shipped):
    model = shipped.model
    fused = fused_selections(model)
    assert set(fused) == {model.encoder_variable_selection, model.decoder_variable_selection}
    assert not applicable(model.static_variable_selection)  # the profile is an embedding
    with pytest.raises(ValueError, match="inputs the fused path lacks"):
        FusedRealSelection(model.static_variable_selection)


@pytest.mark.parametrize("same_end", [True, False], ids=["one end step", "ends differ"])
def test_fused_forward_matches_the_network(shipped, windows, same_end):
    profiles, values, end, names = windows
    # One end step for all (the time features are shared and run once) or one per server.
    ends = np.full(len(profiles), end) if same_end else end - np.arange(len(profiles)) * 7
    expected, got = raw_both(shipped, profiles, values, ends)
    assert got.shape == expected.shape == (len(profiles), 14, 96, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    # Not trivially equal: the forecasts differ between servers and steps.
    assert np.ptp(expected[:, :, :, 1], axis=(0, 2)).min() > 0


def test_the_network_is_restored_after_each_forward(shipped, windows):
    profiles, values, end, names = windows
    shipped.predict(values, profiles, end, servers=names)
    for vsn in fused_selections(shipped.model):
        assert "forward" not in vsn.__dict__  # the class's own forward again


def test_a_batch_of_one_server_is_fused_too(shipped, windows):
    profiles, values, end, names = windows
    expected, got = raw_both(shipped, profiles[:1], values[:1], end)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_time_features_follow_the_fleets_timezone(shipped, windows):
    profiles, values, end, names = windows
    utc = shipped.predict(values, profiles, end, servers=names).values
    again = shipped.predict(values, profiles, end, timezone="UTC", servers=names).values
    tokyo = shipped.predict(values, profiles, end, timezone="Asia/Tokyo", servers=names).values
    np.testing.assert_array_equal(utc, again)
    # Market hours and the morning spike move by 9 hours: the forecast paths change.
    assert np.nanmax(np.abs(tokyo - utc)) > 0.1
