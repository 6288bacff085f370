"""The shared risk score and time to breach."""

from __future__ import annotations

import numpy as np
import pytest

from linborg.contract import METRIC_NAMES, ContractError
from linborg.risk import assess, exceedance
from linborg.thresholds import load_thresholds

TH = load_thresholds()
STEPS = 96


def flat(value: float, spread: float = 1.0, steps: int = STEPS) -> np.ndarray:
    """Return a (steps, 3) forecast holding ``value`` with a symmetric p10-p90 band."""
    return np.tile([value - spread, value, value + spread], (steps, 1)).astype(float)


def fleet_forecast(profiles: list[str], overrides: dict) -> np.ndarray:
    """Return (servers, 14, steps, 3) of calm values, with {(server, metric): (steps, 3)} set."""
    calm = {
        "cpu_iowait_pct": 1.0,
        "cpu_sys_pct": 5.0,
        "swap_used_pct": 1.0,
        "cpu_idle_pct": 60.0,
        "uptime_days": 10.0,
        "back_close_wait": 5.0,
        "front_close_wait": 5.0,
        "load_average": 2.0,
        "net_in_mb_s": 20.0,
        "net_out_mb_s": 20.0,
    }
    out = np.zeros((len(profiles), len(METRIC_NAMES), STEPS, 3))
    for j, m in enumerate(METRIC_NAMES):
        out[:, j] = flat(calm.get(m, 20.0))
    for (i, m), f in overrides.items():
        out[i, METRIC_NAMES.index(m)] = f
    return out


def ramp(start: float, end: float, steps: int = STEPS, spread: float = 1.0) -> np.ndarray:
    p50 = np.linspace(start, end, steps)
    return np.stack([p50 - spread, p50, p50 + spread], axis=-1)


def test_calm_fleet_has_no_risk_and_no_breach():
    r = assess(
        fleet_forecast(["web_api", "database"], {}), ["web_api", "database"], list(METRIC_NAMES), TH
    )
    assert r.score.max() < 1.0
    assert np.isnan(r.time_to_breach).all()


def test_memory_heading_past_critical_drives_the_risk_and_its_time_to_breach():
    # database critical memory is 98.5: p50 reaches it after about 3 hours.
    mem = ramp(88, 100, spread=0.5)
    r = assess(
        fleet_forecast(["database"], {(0, "mem_used_pct"): mem}),
        ["database"],
        list(METRIC_NAMES),
        TH,
    )
    assert METRIC_NAMES[r.driver[0]] == "mem_used_pct"
    assert r.score[0] > 60
    j = METRIC_NAMES.index("mem_used_pct")
    first_crit = int(np.argmax(mem[:, 1] >= 98.5)) + 1
    assert r.time_to_breach[0, j, 1, 0] == first_crit * 300  # critical at p50
    first_warn = int(np.argmax(mem[:, 1] >= 95)) + 1
    assert r.time_to_breach[0, j, 0, 0] == first_warn * 300  # warning at p50
    assert r.time_to_breach[0, j, 1, 1] < r.time_to_breach[0, j, 1, 0]  # p90 crosses sooner


def test_iowait_thresholds_depend_on_the_profile():
    io = flat(18.0, spread=1.0)
    profiles = ["database", "ml_compute"]
    f = fleet_forecast(profiles, {(0, "cpu_iowait_pct"): io, (1, "cpu_iowait_pct"): io})
    r = assess(f, profiles, list(METRIC_NAMES), TH)
    assert r.score[0] < 5  # 18% iowait is normal for a database
    assert r.score[1] > 90  # and critical for ml_compute (critical 5%)
    assert METRIC_NAMES[r.driver[1]] == "cpu_iowait_pct"


def test_idle_cpu_is_risky_when_low():
    f = fleet_forecast(["web_api"], {(0, "cpu_idle_pct"): ramp(40, 0)})
    r = assess(f, ["web_api"], list(METRIC_NAMES), TH)
    assert METRIC_NAMES[r.driver[0]] == "cpu_idle_pct" and r.score[0] > 50
    j = METRIC_NAMES.index("cpu_idle_pct")
    assert r.time_to_breach[0, j, 1, 0] < 8 * 3600


def test_window_limits_what_counts_and_sooner_scores_higher():
    soon = np.concatenate([flat(50, steps=6), flat(99.5, spread=0.2, steps=90)])
    late = np.concatenate([flat(50, steps=60), flat(99.5, spread=0.2, steps=36)])
    f = fleet_forecast(
        ["web_api", "web_api"], {(0, "disk_usage_pct"): soon, (1, "disk_usage_pct"): late}
    )
    r8 = assess(f, ["web_api"] * 2, list(METRIC_NAMES), TH)
    r30 = assess(f, ["web_api"] * 2, list(METRIC_NAMES), TH, window_steps=6)
    assert r8.score[0] > r8.score[1] > 50
    assert r30.score[1] < 1  # the late breach is outside the 30-minute window
    assert r30.score[0] < r8.score[0]  # 30 minutes end before the soon breach settles


def test_missing_metrics_never_drive_risk():
    calm_io = flat(0.5, 0.2)  # ml_compute warns at 2% iowait
    f = fleet_forecast(
        ["ml_compute"], {(0, "java_cpu_pct"): flat(99, 0.5), (0, "cpu_iowait_pct"): calm_io}
    )
    present = np.ones((1, len(METRIC_NAMES)), bool)
    present[0, METRIC_NAMES.index("java_cpu_pct")] = False
    r = assess(f, ["ml_compute"], list(METRIC_NAMES), TH, present=present)
    assert r.score[0] < 1
    assert np.isnan(r.time_to_breach[0, METRIC_NAMES.index("java_cpu_pct")]).all()


def test_exceedance_is_a_probability_and_reads_the_band():
    f = flat(50, spread=10, steps=1)
    assert exceedance(f, np.array([50.0]), np.array([1.0]))[0] == pytest.approx(0.5)
    assert exceedance(f, np.array([60.0]), np.array([1.0]))[0] == pytest.approx(0.1, abs=1e-6)
    assert exceedance(f, np.array([40.0]), np.array([-1.0]))[0] == pytest.approx(0.1, abs=1e-6)


def test_bad_shapes_are_refused():
    with pytest.raises(ContractError, match=r"must be \(servers, metrics, steps, 3\)"):
        assess(np.zeros((1, 14, 96)), ["web_api"], list(METRIC_NAMES), TH)
    with pytest.raises(ContractError, match="must match"):
        assess(np.zeros((2, 14, 96, 3)), ["web_api"], list(METRIC_NAMES), TH)


def test_a_fleet_larger_than_a_block_is_assessed_as_one_piece(monkeypatch):
    import linborg.risk as risk

    rng = np.random.default_rng(3)
    profiles = ["web_api", "database", "ml_compute", "risk_analytics", "generic"] * 7  # 35
    base = rng.uniform(0, 100, (len(profiles), len(METRIC_NAMES), 24, 1))
    forecast = np.sort(base + rng.uniform(-20, 20, base.shape[:-1] + (3,)), axis=-1)
    present = rng.uniform(size=(len(profiles), len(METRIC_NAMES))) > 0.1
    whole = assess(forecast, profiles, list(METRIC_NAMES), TH, 24, present)
    monkeypatch.setattr(risk, "BLOCK_SERVERS", 8)  # 5 blocks, the last one short
    blocks = assess(forecast, profiles, list(METRIC_NAMES), TH, 24, present)
    assert whole.score.max() > 0 and np.isfinite(whole.time_to_breach).any()
    for name in ("score", "driver", "per_metric", "time_to_breach"):
        np.testing.assert_array_equal(getattr(blocks, name), getattr(whole, name))


def test_a_forecast_confidently_past_warning_scores_as_high_as_one_past_critical():
    # web_api front_close_wait: warning 150, critical 600. A connection leak forecast to sit at
    # 400 from the next half hour on is as clear a warning as a forecast past critical: both
    # score near 100 (the old rule capped the first at 60).
    leak = np.concatenate([flat(120, spread=5, steps=6), flat(400, spread=20, steps=90)])
    past_critical = np.concatenate([flat(120, spread=5, steps=6), flat(700, spread=20, steps=90)])
    profiles = ["web_api"] * 2
    f = fleet_forecast(
        profiles, {(0, "front_close_wait"): leak, (1, "front_close_wait"): past_critical}
    )
    r = assess(f, profiles, list(METRIC_NAMES), TH)
    assert r.score[0] > 95 and r.score[1] > 95  # urgency at step 7: 1 - 0.4 * 7/96
    assert abs(r.score[0] - r.score[1]) < 0.5
    # Below warning with a band that does not reach it: the risk stays low.
    below = fleet_forecast(["web_api"], {(0, "front_close_wait"): flat(100, spread=10)})
    assert assess(below, ["web_api"], list(METRIC_NAMES), TH).score[0] < 1.0
