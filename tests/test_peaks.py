"""Peak outputs: the running extreme's quantiles, their loss, serving, risk and --peaks-only."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import torch

from linborg.bundle import load_bundle, save_bundle
from linborg.contract import METRIC_NAMES, ContractError
from linborg.generator.fleet import build_fleet
from linborg.generator.output import simulate
from linborg.model import (
    SENTINEL,
    Forecaster,
    MaskedQuantileLoss,
    has_peaks,
    running_extreme,
    with_peak_outputs,
)
from linborg.risk import assess, threshold_arrays
from linborg.thresholds import load_thresholds
from linborg.trainer.train import train

START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)


def test_running_extreme_is_the_maximum_so_far_or_the_minimum_for_low_is_bad_metrics():
    target = np.array([[1.0, 3.0, 2.0, SENTINEL, 5.0]])
    present = target != SENTINEL
    assert running_extreme(target, present, 1.0).tolist() == [[1, 3, 3, 3, 5]]
    assert running_extreme(np.array([[5.0, 3.0, 4.0]]), np.ones((1, 3), bool), -1.0).tolist() == [
        [5, 3, 3]
    ]
    # Before the first present sample there is no extreme yet: infinite, and the loss skips it.
    late = np.array([[SENTINEL, 2.0, 1.0]])
    got = running_extreme(late, late != SENTINEL, 1.0)
    assert np.isinf(got[0, 0]) and got[0, 1:].tolist() == [2, 2]
    t = torch.tensor(late)
    assert running_extreme(t, t != SENTINEL, 1.0)[0, 1:].tolist() == [2, 2]


def _loss_of(y_pred: torch.Tensor, target: torch.Tensor, direction: float = 1.0) -> float:
    loss = MaskedQuantileLoss(quantiles=[0.1, 0.5, 0.9], direction=direction)
    loss.update(y_pred, target)
    return float(loss.compute())


def test_the_peak_loss_scores_the_running_extreme_not_the_value():
    target = torch.tensor([[1.0, 4.0, 2.0, 2.0]])
    value = target[..., None].expand(1, 4, 3)
    peak = torch.tensor([[1.0, 4.0, 4.0, 4.0]])[..., None].expand(1, 4, 3)
    # Value heads exact and peak heads exact: no loss at all.
    assert _loss_of(torch.cat([value, peak], -1), target) == pytest.approx(0.0)
    # Peak heads that only repeat the value miss the running maximum at the last two steps.
    assert _loss_of(torch.cat([value, value], -1), target) > 0.1
    # For a low-is-bad metric the running minimum is the target: 1, 1, 1, 1.
    low = torch.ones(1, 4, 3)
    assert _loss_of(torch.cat([value, low], -1), target, -1.0) == pytest.approx(0.0)
    # Three outputs per metric: the value loss alone, as before.
    assert _loss_of(value, target) == pytest.approx(0.0)


def test_risk_and_time_to_breach_read_the_peak_when_given():
    th = load_thresholds()
    j = METRIC_NAMES.index("mem_used_pct")
    warn = th.get("web_api", "mem_used_pct").warning
    warns, _, direction = threshold_arrays(th, ["web_api"], list(METRIC_NAMES))
    # Every other metric sits well on the safe side of its warning level.
    safe = warns - direction * (np.abs(warns) / 2 + 1)
    f = np.broadcast_to(safe[:, :, None, None], (1, len(METRIC_NAMES), 96, 3)).copy()
    f[0, j] = [warn - 20, warn - 10, warn - 1]  # no single step past warning is likely
    peak = f.copy()
    peak[0, j, :, :] = [warn - 20, warn - 10, warn - 1]
    peak[0, j, 12:, :] = [warn - 5, warn + 2, warn + 6]  # reached by 1 h in more than half
    without = assess(f, ["web_api"], list(METRIC_NAMES), th)
    with_peak = assess(f, ["web_api"], list(METRIC_NAMES), th, peak=peak)
    assert without.per_metric[0, j] < 20
    assert with_peak.per_metric[0, j] > 50 and with_peak.driver[0] == j
    # Median time to warning: the first step whose peak p50 is past it (step 13 = 65 min).
    assert with_peak.time_to_breach[0, j, 0, 0] == 13 * 300
    assert np.isnan(without.time_to_breach[0, j, 0, 0])
    with pytest.raises(ContractError):
        assess(f, ["web_api"], list(METRIC_NAMES), th, peak=peak[:, :, :48])


@pytest.fixture(scope="module")
def history():
    frame, _, _ = simulate(build_fleet({"web_api": 1, "database": 1}), 4, START, 3 * 288)
    return frame


@pytest.fixture(scope="module")
def old_bundle(history, tmp_path_factory, monkeypatch_module):
    """A bundle of the kind shipped before peak outputs: 3 outputs per metric."""
    monkeypatch_module.setattr("linborg.model.PEAK_OUTPUTS", False)
    model, summary = train(history, "tiny", seed=3, progress=False, log=lambda m: None)
    monkeypatch_module.undo()
    assert not has_peaks(model)
    return save_bundle(model, tmp_path_factory.mktemp("old") / "b", summary)


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def _windows(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = 40 + rng.normal(0, 3, (3, 288, len(METRIC_NAMES))).astype(np.float32)
    w[..., METRIC_NAMES.index("mem_used_pct")] += np.linspace(0, 30, 288, dtype=np.float32)
    return w


def test_an_old_bundle_serves_values_only_and_gains_peaks_that_start_as_its_values(old_bundle):
    old = load_bundle(old_bundle)
    assert not old.peaks
    before = old.predict(_windows(), ["web_api"] * 3, 100_000)
    assert before.peak is None
    grown = Forecaster(with_peak_outputs(old.model), old.spec)
    assert grown.peaks
    after = grown.predict(_windows(), ["web_api"] * 3, 100_000)
    np.testing.assert_allclose(after.values, before.values, atol=1e-4)
    assert after.peak.shape == after.values.shape
    # Served peaks never turn back: running maximum up, running minimum (cpu_idle_pct) down.
    up, down = METRIC_NAMES.index("mem_used_pct"), METRIC_NAMES.index("cpu_idle_pct")
    assert (np.diff(after.peak[:, up], axis=1) >= 0).all()
    assert (np.diff(after.peak[:, down], axis=1) <= 0).all()
    assert (np.diff(after.peak, axis=-1) >= 0).all()  # p10 <= p50 <= p90


def test_peaks_only_training_changes_the_peak_rows_and_nothing_else(history, old_bundle, tmp_path):
    with pytest.raises(ContractError, match="--init"):
        train(history, "tiny", progress=False, log=lambda m: None, peaks_only=True)
    lines = []
    model, summary = train(
        history, "tiny", seed=5, progress=False, log=lines.append, init=old_bundle, peaks_only=True
    )
    assert any("no peak outputs; they are added" in line for line in lines)
    child = load_bundle(save_bundle(model, tmp_path / "child", summary))
    parent = load_bundle(old_bundle)
    assert child.peaks
    a = dict(parent.model.named_parameters())
    b = dict(child.model.named_parameters())
    for name, value in a.items():
        if name.startswith("output_layer."):
            assert torch.equal(b[name][:3], value)  # the value rows
            assert not torch.equal(b[name][3:], value)  # the peak rows learned
        else:
            assert torch.equal(b[name], value), name
    assert child.spec.get("interval_calibration") == parent.spec.get("interval_calibration")
    assert any("calibration kept from the bundle" in line for line in lines)
    got = child.predict(_windows(1), ["database"] * 3, 100_000)
    want = parent.predict(_windows(1), ["database"] * 3, 100_000)
    np.testing.assert_allclose(got.values, want.values, atol=1e-4)


def test_a_new_network_has_peak_outputs(history):
    model, _ = train(history, "tiny", seed=3, progress=False, log=lambda m: None)
    assert has_peaks(model)
    out = Forecaster(model, {}).predict(_windows(), ["web_api"] * 3, 100_000)
    assert out.peak is not None and np.isfinite(out.peak).all()

