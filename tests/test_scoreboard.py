"""The early-warning scoreboard and evaluate's honest baselines, on small hand-made cases."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from linborg.contract import METRIC_NAMES
from linborg.trainer import scoreboard as sb
from linborg.trainer.evaluate import (
    DEFAULT_ORIGIN_EVERY_MINUTES,
    accuracy,
    behind_cells,
    last_present,
    one_forecast_cells,
    origin_steps,
    origin_stride,
    quiet_series,
    ratio_eps,
    seen_in_training,
    servers_behind,
    summarise_accuracy,
    times_of_day,
)

T0 = int(dt.datetime(2026, 1, 5, tzinfo=dt.UTC).timestamp())
MIN = 60


def iso(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def label(server, onset, end=None, precursor_minutes=120, type_="leak"):
    return {
        "server": server,
        "type": type_,
        "metric": "front_close_wait",
        "has_precursor": precursor_minutes is not None,
        "precursor_start": None
        if precursor_minutes is None
        else iso(onset - precursor_minutes * MIN),
        "onset": iso(onset),
        "end": iso(onset + 30 * MIN if end is None else end),
    }


def board(warned, check_times, servers, labels, every=MIN):
    d = sb.Detector("d", "tft_risk", {}, np.asarray(warned, bool))
    return sb.scoreboard([d], check_times, servers, labels, every)["detectors"]["d"]


# Checks every minute for 12 hours, so that 29 and 30 minutes are both check times.
CHECKS = T0 + MIN * np.arange(12 * 60)
ONSET = T0 + 10 * 3600


def check(t: int) -> int:
    """Return the index of the check at time ``t``."""
    (i,) = np.flatnonzero(np.equal(CHECKS, t))
    return int(i)


@pytest.mark.parametrize(
    ("minutes_before", "warned", "false"),
    [
        (30, 1, 0),  # exactly 30 minutes before onset: in time
        (29, 0, 0),  # 29 minutes: too late, but not false (the incident follows within 8 h)
        (8 * 60, 1, 0),  # exactly 8 hours before: counts
        (8 * 60 + 1, 0, 1),  # 8 h 1 min before: not a warning of this incident, and false
    ],
)
def test_a_warning_counts_from_8_hours_to_exactly_30_minutes_before_onset(
    minutes_before, warned, false
):
    w = np.zeros((1, len(CHECKS)), bool)
    w[0, check(ONSET - minutes_before * MIN)] = True
    r = board(w, CHECKS, ["a"], [label("a", ONSET)])
    assert r["incidents"] == 1
    assert r["warned"] == warned and r["recall"] == warned
    assert r["false_warnings"] == false
    if warned:
        assert r["lead_median_minutes"] == minutes_before


def test_lead_is_from_the_first_warning_in_the_window_and_late_warnings_are_misses():
    checks = T0 + 5 * MIN * np.arange(2000)  # every 5 minutes

    def at(step):
        return int(T0 + 5 * MIN * step)

    labels = [
        label("a", at(600), at(630)),  # warned from 2 h before onset: lead 120 min
        label("a", at(1200), at(1230)),  # warned only 15 minutes before onset: a miss
        label("b", at(900), at(920), precursor_minutes=None),  # sudden, never warned
    ]
    step = np.arange(2000)
    w = np.zeros((2, 2000), bool)
    w[0, (step >= 576) & (step < 630)] = True
    w[0, (step >= 1197) & (step < 1200)] = True
    w[1, (step >= 1500) & (step < 1530)] = True  # nothing follows on b: one false episode
    r = board(w, checks, ["a", "b"], labels, every=5 * MIN)
    assert r["incidents"] == 2 and r["recall"] == 0.5
    assert r["lead_median_minutes"] == 120 and r["lead_p25_minutes"] == 120
    assert r["incidents_without_precursor"] == 1 and r["recall_without_precursor"] == 0
    assert r["false_warnings"] == 1
    assert r["false_per_100_server_days"] == pytest.approx(100 / (2 * 2000 / 288))
    assert r["recall_by_type"] == {"leak": {"warned": 1, "incidents": 2, "recall": 0.5}}


def test_an_episode_of_consecutive_warnings_counts_once():
    w = np.zeros((1, len(CHECKS)), bool)
    w[0, 100:160] = True  # one hour of warnings on a server without incidents
    assert board(w, CHECKS, ["a"], [])["false_warnings"] == 1
    w[0, 200] = True  # a second, separate episode
    assert board(w, CHECKS, ["a"], [])["false_warnings"] == 2


def test_a_warning_on_another_server_is_false():
    w = np.zeros((2, len(CHECKS)), bool)
    w[1, check(ONSET - 60 * MIN)] = True  # server b warned an hour before a's incident
    r = board(w, CHECKS, ["a", "b"], [label("a", ONSET)])
    assert r["recall"] == 0 and r["false_warnings"] == 1


def test_a_warning_during_an_incident_is_not_false_but_one_after_its_end_is():
    end = ONSET + 40 * MIN
    w = np.zeros((1, len(CHECKS)), bool)
    w[0, check(end)] = True  # onset <= t <= end: in progress
    assert board(w, CHECKS, ["a"], [label("a", ONSET, end)])["false_warnings"] == 0
    w[0, check(end + 2 * MIN)] = True  # a separate episode after the end
    assert board(w, CHECKS, ["a"], [label("a", ONSET, end)])["false_warnings"] == 1


def test_incidents_without_a_full_8_hour_window_of_checks_are_not_scored():
    early = T0 + 7 * 3600  # 8 h before onset is before the first check
    w = np.ones((1, len(CHECKS)), bool)
    r = board(w, CHECKS, ["a"], [label("a", early), label("a", ONSET)])
    assert r["incidents"] == 1 and r["recall"] == 1


def test_static_threshold_with_and_without_a_15_minute_for():
    values = np.full((1, 30, len(METRIC_NAMES)), np.nan)
    j = METRIC_NAMES.index("front_close_wait")
    values[0, :, j] = np.where(np.arange(30) >= 10, 200.0, 50.0)  # past 150 from step 10
    values[0, 20, j] = np.nan  # a missing sample resets the `for`
    level = np.full((1, len(METRIC_NAMES)), 150.0)
    direction = np.ones((1, len(METRIC_NAMES)))
    checks = np.arange(30)
    now = sb.static_warned(values, checks, level, direction, 0)[0]
    held = sb.static_warned(values, checks, level, direction, 3)[0]
    assert np.flatnonzero(now).tolist() == [s for s in range(10, 30) if s != 20]
    # for: 15m = this sample and the 3 before (15 minutes) all past the level
    assert np.flatnonzero(held).tolist() == [13, 14, 15, 16, 17, 18, 19, 24, 25, 26, 27, 28, 29]
    # Lower is worse for cpu_idle_pct: a value at or below the level is past it.
    k = METRIC_NAMES.index("cpu_idle_pct")
    low = np.full_like(values, np.nan)
    low[0, :, k] = np.linspace(20, 0, 30)
    direction[0, k] = -1
    level[0, k] = 10.0
    got = sb.static_warned(low, checks, level, direction, 0)[0]
    assert np.flatnonzero(got).tolist() == [s for s in range(30) if 20 - 20 * s / 29 <= 10]


def test_static_levels_are_swept_from_warning_to_critical():
    values = np.full((1, 5, len(METRIC_NAMES)), np.nan)
    j = METRIC_NAMES.index("cpu_iowait_pct")
    k = METRIC_NAMES.index("cpu_idle_pct")
    values[0, :, j] = [20, 30, 37.5, 40, 45]  # warning 30, critical 45
    warn = np.full((1, len(METRIC_NAMES)), 30.0)
    crit = np.full((1, len(METRIC_NAMES)), 45.0)
    direction = np.ones((1, len(METRIC_NAMES)))
    safe = np.zeros((1, len(METRIC_NAMES)))
    # lower is worse for cpu_idle_pct: warning 4, critical 1, so halfway is 2.5
    values[0, :, k] = [50, 50, 50, 50, 2.5]
    warn[0, k], crit[0, k], direction[0, k], safe[0, k] = 4.0, 1.0, -1.0, 100.0
    checks = np.arange(4)  # the idle dip at step 4 is not checked
    static = {
        d.name: np.flatnonzero(d.warned[0]).tolist()
        for d in sb.baseline_detectors(values, checks, warn, crit, direction, safe)
        if d.family == "static_threshold"
    }
    assert static["static warning"] == [1, 2, 3]
    assert static["static 25% warning to critical"] == [2, 3]  # level 33.75
    assert static["static 50% warning to critical"] == [2, 3]  # level 37.5: at it counts
    assert static["static 75% warning to critical"] == []  # level 41.25: 40 is not past it
    assert static["static critical"] == []
    assert static["static 50% warning to critical for 15m"] == []  # 2 samples, not 4
    assert len(static) == len(sb.STATIC_LEVEL_FRACTIONS) * len(sb.STATIC_FOR_STEPS)
    values[0, 4, j] = 20.0
    checks = np.arange(5)
    dip = {
        d.name: bool(d.warned[0, 4])
        for d in sb.baseline_detectors(values, checks, warn, crit, direction, safe)
    }
    assert dip["static 50% warning to critical"] and not dip["static 75% warning to critical"]


def test_predict_linear_fits_a_ramp_and_checks_the_value_at_the_horizon():
    steps = 200
    values = np.full((1, steps, len(METRIC_NAMES)), np.nan)
    j = METRIC_NAMES.index("cpu_user_pct")
    values[0, :, j] = 0.5 * np.arange(steps)  # 0.5 percent per 5 minutes
    values[0, 95, j] = np.nan  # a missing sample is left out of the fit
    checks = np.array([100])
    at_now, slope = sb.linear_at_checks(values, checks, 12)
    assert at_now[0, 0, j] == pytest.approx(50.0) and slope[0, 0, j] == pytest.approx(0.5)
    assert np.isnan(at_now[0, 0, METRIC_NAMES.index("mem_used_pct")])  # no samples: no line
    warn = np.full((1, len(METRIC_NAMES)), 85.0)
    crit = np.full((1, len(METRIC_NAMES)), 95.0)
    direction = np.ones((1, len(METRIC_NAMES)))
    safe = np.zeros((1, len(METRIC_NAMES)))
    got = {
        d.name: bool(d.warned[0, 0])
        for d in sb.baseline_detectors(values, checks, warn, crit, direction, safe)
    }
    # Now 50, +6 per hour: 62 at 2 h, 74 at 4 h, 98 at 8 h.
    assert not got["predict_linear[1h] 4h critical"]
    assert got["predict_linear[1h] 8h critical"]
    assert got["predict_linear[6h] 8h critical"]
    assert not got["predict_linear[1h] 4h warning"] and got["predict_linear[1h] 8h warning"]
    # Guards: 50 is past halfway to warning (42.5) but not past warning (85).
    assert got["predict_linear[1h] 8h critical guard half"]
    assert not got["predict_linear[1h] 8h critical guard warning"]
    assert not got["static warning"] and not got["static critical for 15m"]


def test_tft_detectors_read_the_risk_and_the_earliest_time_to_breach():
    risk = np.array([[49.0, 50.0, 95.0]])
    ttb = np.full((1, 3, 2, 2), np.nan)
    ttb[0, 0, 1, 0] = 3600  # p50 reaches critical in exactly 1 h
    ttb[0, 1, 1, 0] = 3605
    ttb[0, 2, 0, 1] = 600  # pessimistic reaches warning in 10 min
    got = {d.name: d.warned[0].tolist() for d in sb.tft_detectors(risk, ttb)}
    assert got["tft_risk >= 50"] == [False, True, True]
    assert got["tft_risk >= 95"] == [False, False, True]
    assert got["tft p50 reaches critical within 1 h"] == [True, False, False]
    assert got["tft p50 reaches critical within 2 h"] == [True, True, False]
    assert got["tft pessimistic reaches warning within 1 h"] == [False, False, True]
    assert got["tft p50 reaches warning within 8 h"] == [False, False, False]


def test_the_perfect_forecast_reference_reads_the_actual_future_with_the_risk_urgency():
    steps = 200
    values = np.full((2, steps, len(METRIC_NAMES)), 10.0)
    j = METRIC_NAMES.index("mem_used_pct")
    values[0, 124:, j] = 96.0  # past warning (90) from step 124
    values[0, 150:, j] = 99.0  # past critical (97) from step 150
    values[1, :, j] = np.nan  # missing is never past a level
    warn = np.full((2, len(METRIC_NAMES)), 90.0)
    crit = np.full((2, len(METRIC_NAMES)), 97.0)
    direction = np.ones((2, len(METRIC_NAMES)))
    checks = np.array([99, 100, 125, 190])
    got = {
        d.name: d.warned.tolist()
        for d in sb.perfect_forecast_detectors(values, checks, warn, crit, direction)
    }
    # Urgency 1 - 0.4 * k / 96 for a breach k steps ahead: k = 24 (2 h) scores exactly 90.
    # From check 100 warning is 24 steps ahead (90); from check 99, 25 steps (89.6).
    assert got["perfect forecast past warning >= 90"][0] == [False, True, True, True]
    assert got["perfect forecast past warning >= 60"][0] == [True, True, True, True]
    # Critical: 50 steps ahead of check 100 (79.2), 25 of check 125 (89.6), past at 190.
    assert got["perfect forecast past critical >= 75"][0] == [True, True, True, True]
    assert got["perfect forecast past critical >= 80"][0] == [False, False, True, True]
    assert got["perfect forecast past critical >= 90"][0] == [False, False, False, True]
    assert not any(any(w[1]) for w in got.values())
    # A check with no future left reads nothing.
    last = sb.perfect_forecast_detectors(values, np.array([steps - 1]), warn, crit, direction)
    assert not any(d.warned.any() for d in last)
    assert {d.family for d in last} == {"perfect_forecast"}


def _row(family, recall, false, lead=60.0):
    return {
        "family": family,
        "recall": recall,
        "false_per_100_server_days": false,
        "lead_median_minutes": lead,
        "incidents": 10,
    }


def test_best_of_family_is_the_highest_recall_within_the_false_warning_budget():
    rows = {
        "s noisy": _row("static_threshold", 0.9, 3.0),
        "s ok": _row("static_threshold", 0.5, 0.9),
        "s quiet": _row("static_threshold", 0.5, 0.2),  # same recall, fewer false: wins
        "s weak": _row("static_threshold", 0.3, 0.0),
        "l a": _row("predict_linear", 0.9, 5.0),
        "l b": _row("predict_linear", 0.2, 2.0),
    }
    best = sb.best_of_family(rows, budget=1.0)
    assert best["static_threshold"]["detector"] == "s quiet"
    assert best["static_threshold"]["within_budget"]
    assert best["static_threshold"]["recall_at_budget"] == 0.5
    # No predict_linear member within budget: the least false is shown, at recall 0.
    assert best["predict_linear"]["detector"] == "l b"
    assert not best["predict_linear"]["within_budget"]
    assert best["predict_linear"]["recall_at_budget"] == 0.0
    assert "tft_risk" not in best


def test_the_limit_is_the_share_of_precursors_of_45_minutes_or_more():
    labels = [
        label("a", ONSET, precursor_minutes=44),
        label("a", ONSET + 3600, precursor_minutes=45),
        label("b", ONSET, precursor_minutes=300),
        label("b", ONSET + 3600, precursor_minutes=None),  # no precursor: not counted
    ]
    incs = sb.parse_incidents(labels, ["a", "b"])
    assert sb.limit_share(incs) == pytest.approx(2 / 3)


def test_minutes_earlier_than_the_best_static_threshold(tmp_path):
    w_tft = np.zeros((1, len(CHECKS)), bool)
    w_tft[0, check(ONSET - 120 * MIN)] = True
    w_static = np.zeros((1, len(CHECKS)), bool)
    w_static[0, check(ONSET + 5 * MIN)] = True  # fires only after onset
    detectors = [
        sb.Detector("tft", "tft_risk", {}, w_tft),
        sb.Detector("static", "static_threshold", {}, w_static),
        sb.Detector("silent", "predict_linear", {}, np.zeros_like(w_tft)),
    ]
    out = sb.scoreboard(detectors, CHECKS, ["a"], [label("a", ONSET)], MIN)
    assert out["static_reference"] == "static"
    assert out["best"]["tft_risk"]["vs_static"] == {
        "median_minutes_earlier": 125.0,
        "share_earlier": 1.0,
    }
    # Silent until the end (onset + 30 min) counts as warning at the end: 25 minutes later.
    assert out["detectors"]["silent"]["vs_static"]["median_minutes_earlier"] == -25.0
    first = out["incidents"][0]["first_warning_minutes_before_onset"]
    assert first == {"tft_risk": 120.0, "static_threshold": -5.0, "predict_linear": None}
    text = "\n".join(sb.markdown(out))
    assert "exactly 30 minutes before onset counts" in text and "`tft`" in text
    sb.plot(out, tmp_path / "scoreboard.png")
    assert (tmp_path / "scoreboard.png").read_bytes()[:4] == b"\x89PNG"


def test_seen_in_training_is_decided_by_generator_seed_and_name():
    training = {"server_names": ["ppweb002", "ppdb001"], "data_source": {"generator_seed": 7}}
    servers = ["ppweb002", "ppdb001", "ppml003"]
    meta = {"generator": "linborg.generator", "seed": 8, "server_seeds": {"ppweb002": 7}}
    seen, basis = seen_in_training(servers, training, meta)
    assert seen == {"ppweb002"} and "seed" in basis  # ppdb001 came from seed 8: another server
    seen, _ = seen_in_training(servers, training, {"generator": "linborg.generator", "seed": 7})
    assert seen == {"ppweb002", "ppdb001"}
    seen, _ = seen_in_training(servers, training, {"generator": "linborg.generator", "seed": 9})
    assert seen == set()
    # Real data (no generator seed on either side) is matched by name.
    real = {"server_names": ["vm1"], "data_source": {"generator_seed": None}}
    assert seen_in_training(["vm1", "vm2"], real, None)[0] == {"vm1"}
    assert seen_in_training(["vm1"], real, meta)[0] == set()
    # An old bundle without data_source: names only, and the basis says so.
    seen, basis = seen_in_training(servers, {"server_names": ["ppdb001"]}, meta)
    assert seen == {"ppdb001"} and "hostname only" in basis


def test_seen_in_training_per_server_seed_when_trained_on_several_files():
    # Trained on a generator file (seed 7) and a real file (no seed): each server keeps its own.
    training = {"server_seeds": {"ppweb002": 7, "vm1": None}}
    gen7 = {"generator": "linborg.generator", "seed": 7}
    assert seen_in_training(["ppweb002", "vm1"], training, gen7)[0] == {"ppweb002"}
    assert seen_in_training(["ppweb002", "vm1"], training, None)[0] == {"vm1"}
    gen8 = {"generator": "linborg.generator", "seed": 8}
    assert seen_in_training(["ppweb002", "ppdb001"], training, gen8)[0] == set()


def test_the_default_origin_stride_rotates_through_every_time_of_day():
    steps, note = origin_stride(DEFAULT_ORIGIN_EVERY_MINUTES)
    assert steps == 7 and note is None
    assert times_of_day(origin_steps(600 + 288 * 7, steps)) == 288
    steps, note = origin_stride(355)  # the default before 2026-12-06
    assert steps == 71 and note is None
    assert times_of_day(origin_steps(600 + 288 * 71, steps)) == 288
    steps, note = origin_stride(360)  # the default before 355
    assert steps == 72 and "only 4 times of day" in note
    assert times_of_day(origin_steps(600 + 288 * 72, steps)) == 4


@dataclass
class _Forecast:
    values: np.ndarray
    present: np.ndarray


class LastValuePlus:
    """A fake forecaster: p50 = the last value + ``offset`` at every step, p10/p90 +-1."""

    def __init__(self, offset: float):
        self.offset = offset

    def predict(self, windows, profiles, end_time_idx, servers=None):
        p50 = np.repeat(last_present(windows)[:, :, None], 96, axis=2) + self.offset
        values = np.stack([p50 - 1, p50, p50 + 1], axis=-1)
        return _Forecast(values, np.isfinite(values[:, :, 0, 1]))


def test_ratio_to_the_best_naive_baseline_on_a_ramp_where_last_value_is_best():
    steps = 288 + 96 + 200
    values = np.full((1, steps, len(METRIC_NAMES)), np.nan, np.float32)
    j = METRIC_NAMES.index("cpu_user_pct")
    values[0, :, j] = 10 + 0.01 * np.arange(steps)  # +0.01 per step: last value is 0.01*h off
    errors, n = accuracy(LastValuePlus(0.03), ["a"], ["generic"], values, 0, 71, set())
    assert n == len(origin_steps(steps, 71)) and set(errors["metric"]) == {"cpu_user_pct"}
    bm = summarise_accuracy(errors)["by_metric"]
    c30, c1h = bm.loc[("cpu_user_pct", "30m")], bm.loc[("cpu_user_pct", "1h")]
    assert c30["best_naive"] == "last_value" and c1h["best_naive"] == "last_value"
    # By hand at 30 min (6 steps): last value off by 0.06, the TFT (last + 0.03) by 0.03,
    # seasonal naive by 2.88 (a day of ramp), the 24-hour mean by 0.01 * (143.5 + 6).
    assert c30["mae_last_value"] == pytest.approx(0.06, abs=1e-4)
    assert c30["mae_mean_24h"] == pytest.approx(1.495, abs=1e-3)
    assert c30["ratio_best_naive"] == pytest.approx(0.5, rel=1e-2)
    assert c30["mase"] == pytest.approx(0.03 / 2.88, rel=1e-2)
    assert c1h["ratio_best_naive"] == pytest.approx(0.09 / 0.12, rel=1e-2)
    # A worse fake (last + 0.2) loses to last value: the ratio says so, MASE does not.
    bm = summarise_accuracy(
        accuracy(LastValuePlus(0.2), ["a"], ["generic"], values, 0, 71, set())[0]
    )["by_metric"]
    assert bm.loc[("cpu_user_pct", "30m"), "ratio_best_naive"] > 2
    assert bm.loc[("cpu_user_pct", "30m"), "mase"] < 0.1


def test_accuracy_hands_free_memory_back_every_few_origins(monkeypatch):
    import linborg.trainer.evaluate as evaluate

    calls = []
    monkeypatch.setattr(evaluate, "release_memory", lambda: calls.append(1))
    steps = 288 + 96 + 71 * 24
    values = np.full((1, steps, len(METRIC_NAMES)), 10.0, np.float32)
    _, n = evaluate.accuracy(LastValuePlus(0.0), ["a"], ["generic"], values, 0, 71, set())
    assert n >= 2 * evaluate.RELEASE_EVERY
    assert len(calls) == n // evaluate.RELEASE_EVERY
    # on this machine's glibc the release is there and runs
    monkeypatch.undo()
    assert evaluate.release_memory() is True


def test_a_cell_decided_by_one_burst_is_named_with_its_ratio_without_it():
    import pandas as pd

    # One metric at 8 h, four servers at one origin: the TFT errs by 1 three times and by 97 once
    # (a burst); last value errs by 2 every time, the other baselines by 50.
    errors = pd.DataFrame(
        {
            "metric": "net_in_mb_s",
            "horizon": "8h",
            "server": ["a", "b", "c", "d"],
            "origin": 300,
            "profile": "generic",
            "seen": False,
            "quiet": False,
            "ae_tft": [1.0, 1.0, 97.0, 1.0],
            "ae_last_value": 2.0,
            "ae_seasonal_naive": 50.0,
            "ae_mean_24h": 50.0,
            "ae_predict_linear": 50.0,
            "pinball": 1.0,
            "covered": True,
        }
    )
    cell = summarise_accuracy(errors)["by_metric"].loc[("net_in_mb_s", "8h")]
    eps = ratio_eps()["net_in_mb_s"]
    assert cell["largest_error_share"] == pytest.approx(0.97)
    assert cell["ratio_best_naive"] == pytest.approx((25 + eps) / (2 + eps))
    assert cell["ratio_best_naive_without_largest"] == pytest.approx((1 + eps) / (2 + eps))
    by_metric = {"net_in_mb_s": {"8h": cell.to_dict()}}
    lines = "\n".join(one_forecast_cells(by_metric, ["8h"]))
    assert "| net_in_mb_s | 8h | 0.970 |" in lines
    # Four equal errors: a quarter each, still listed (the line is at 20%).
    errors["ae_tft"] = 10.0
    cell = summarise_accuracy(errors)["by_metric"].loc[("net_in_mb_s", "8h")]
    lines = one_forecast_cells({"net_in_mb_s": {"8h": cell.to_dict()}}, ["8h"])
    assert cell["largest_error_share"] == pytest.approx(0.25)
    assert "| net_in_mb_s |" in "\n".join(lines)
    # Eight equal errors: an eighth each, below the line, and the report says no cell is listed.
    errors = pd.concat([errors] * 2, ignore_index=True)
    cell = summarise_accuracy(errors)["by_metric"].loc[("net_in_mb_s", "8h")]
    lines = one_forecast_cells({"net_in_mb_s": {"8h": cell.to_dict()}}, ["8h"])
    assert lines[-1].startswith("No cell above is decided by one forecast")


def test_the_per_series_reading_of_a_cell_counts_each_server_once_so_one_burst_cannot_decide_it():
    import pandas as pd

    # Four servers at two origins, net_in at 8 h: last value is best pooled. Server d bursts
    # once (TFT off by 200, last value by 40); the others the TFT halves last value's error.
    errors = pd.DataFrame(
        {
            "metric": "net_in_mb_s",
            "horizon": "8h",
            "server": ["a", "b", "c", "d"] * 2,
            "origin": [300] * 4 + [371] * 4,
            "profile": "generic",
            "seen": False,
            "quiet": False,
            "ae_tft": [1.0, 1.0, 1.0, 200.0, 1.0, 1.0, 1.0, 2.0],
            "ae_last_value": [2.0, 2.0, 2.0, 40.0, 2.0, 2.0, 2.0, 4.0],
            "ae_seasonal_naive": 500.0,
            "ae_mean_24h": 500.0,
            "ae_predict_linear": 500.0,
            "pinball": 1.0,
            "covered": True,
        }
    )
    acc = summarise_accuracy(errors)
    cell = acc["by_metric"].loc[("net_in_mb_s", "8h")]
    eps = ratio_eps()["net_in_mb_s"]
    assert cell["best_naive"] == "last_value"
    assert cell["ratio_best_naive"] == pytest.approx((208 / 8 + eps) / (56 / 8 + eps))  # > 3
    # Per series: a, b, c at (1 + eps) / (2 + eps), d at (101 + eps) / (22 + eps).
    expected = np.exp((3 * np.log((1 + eps) / (2 + eps)) + np.log((101 + eps) / (22 + eps))) / 4)
    assert cell["series_gmean_vs_best_naive"] == pytest.approx(expected)
    assert acc["series_ratio_best_naive_max"] == pytest.approx(expected)
    assert expected < 1 < cell["ratio_best_naive"]
    # When every server loses, so does the reading.
    errors["ae_tft"] = errors["ae_last_value"] * 1.5
    acc = summarise_accuracy(errors)
    assert acc["by_metric"].loc[("net_in_mb_s", "8h"), "series_gmean_vs_best_naive"] > 1.4


def test_quiet_series_are_the_lowest_variance_quarter_of_each_metric():
    rng = np.random.default_rng(1)
    values = np.full((8, 300, len(METRIC_NAMES)), np.nan)
    j, k = METRIC_NAMES.index("net_in_mb_s"), METRIC_NAMES.index("cpu_user_pct")
    spread = np.array([1e-4, 1e-3, 5, 10, 20, 40, 80, 160])
    values[:, :, j] = 1 + spread[:, None] * rng.standard_normal((8, 300))
    values[:, :, k] = 50 + spread[::-1, None] * rng.standard_normal((8, 300))
    quiet = quiet_series(values)
    assert np.flatnonzero(quiet[:, j]).tolist() == [0, 1]  # per metric, not across units
    assert np.flatnonzero(quiet[:, k]).tolist() == [6, 7]
    assert not quiet[:, METRIC_NAMES.index("mem_used_pct")].any()  # absent metric


def test_the_alert_rule_family_is_the_shipped_rules_condition_at_each_check():
    nan = np.nan
    # one server, four checks; ttb[check] = (level [warning, critical], quantile [p50, pess.])
    risk = np.array([[35.0, 35.0, 25.0, 60.0]])
    ttb = np.full((1, 4, 2, 2), nan)
    ttb[0, 0, 0, 1] = 3 * 3600  # pessimistic forecast past warning in 3 h: warning condition
    ttb[0, 1, 0, 1] = 3 * 3600
    ttb[0, 2, 0, 1] = 600  # ... but the risk is below 30: nothing
    ttb[0, 3, 1, 0] = 3 * 3600  # p50 past critical in 3 h: beyond the 2 h lead
    eligible = np.array([[True, True, True, True]])
    rule = {"warning": (30.0, 1, 8 * 3600), "critical": (40.0, 0, 2 * 3600)}
    got = {d.name: d.warned.tolist()[0] for d in sb.alert_rule_detectors(risk, ttb, eligible, rule)}
    assert got == {
        "LinborgPredictedIncident critical": [False] * 4,
        "LinborgPredictedIncident critical held 2 checks": [False] * 4,
        "LinborgPredictedIncident any severity": [True, True, False, False],
        "LinborgPredictedIncident any severity held 2 checks": [False, True, False, False],
    }
    ttb[0, 3, 1, 0] = 2 * 3600  # within the lead now: critical at the last check
    eligible[0, 0] = False  # an ignored driver (uptime_days) raises nothing
    got = {d.name: d.warned.tolist()[0] for d in sb.alert_rule_detectors(risk, ttb, eligible, rule)}
    assert got["LinborgPredictedIncident critical"] == [False, False, False, True]
    assert got["LinborgPredictedIncident any severity"] == [False, True, False, True]


def test_the_alert_rule_family_reads_the_shipped_mixin_config():
    from linborg.app.train import shipped_alert_rule
    from linborg.mixin import CONFIG

    rule, eligible = shipped_alert_rule()
    assert rule["warning"] == (CONFIG["risk_warning"], 1, 8 * 3600)  # pessimistic, 8h
    assert rule["critical"] == (CONFIG["risk_critical"], 0, 2 * 3600)  # p50, 2h
    assert [m for m, ok in zip(METRIC_NAMES, eligible, strict=True) if not ok] == ["uptime_days"]


def test_a_server_seen_by_either_of_a_bundles_networks_counts_as_seen():
    from types import SimpleNamespace

    from linborg.trainer.evaluate import seen_by_bundle

    main = {"training": {"server_seeds": {"ppdb001": 8, "vm1": None}}}
    plain = {"training": {"server_seeds": {"vm1": None, "vm2": None}}}
    servers = ["ppdb001", "vm1", "vm2", "vm3"]
    alone = SimpleNamespace(spec=main, plain=None)
    meta = {"generator": "linborg.generator", "seed": 8}
    assert seen_by_bundle(servers, alone, None)[0] == {"vm1"}  # ppdb001 of no seed: another one
    assert seen_by_bundle(servers, alone, meta)[0] == {"ppdb001"}
    both = SimpleNamespace(spec=main, plain=SimpleNamespace(spec=plain))
    seen, basis = seen_by_bundle(servers, both, None)
    assert seen == {"vm1", "vm2"} and "either of the bundle's networks" in basis


def test_servers_behind_counts_them_against_each_cells_own_best_naive_baseline():
    rows = []
    # (server, horizon, TFT, last value, seasonal naive, 24-hour mean), two origins each
    for server, hz, tft, last, seasonal, mean in [
        ("a", "30m", 5, 1, 10, 10),  # behind last value by 4 a forecast
        ("b", "30m", 2, 1, 10, 10),  # by 1
        ("c", "30m", 1, 4, 10, 10),  # ahead
        ("a", "8h", 3, 0, 10, 1),  # behind the 24-hour mean by 2
        ("b", "8h", 1, 0.5, 10, 2),  # behind last value, ahead of the 24-hour mean
        ("c", "8h", 1, 9, 10, 2),
    ]:
        for origin in (0, 7):
            rows.append(
                {
                    "origin": origin,
                    "server": server,
                    "metric": "cpu_user_pct",
                    "horizon": hz,
                    "ae_tft": tft,
                    "ae_last_value": last,
                    "ae_seasonal_naive": seasonal,
                    "ae_mean_24h": mean,
                }
            )
    errors = pd.DataFrame(rows)
    best = pd.Series(
        ["last_value", "mean_24h"],
        index=pd.MultiIndex.from_tuples(
            [("cpu_user_pct", "30m"), ("cpu_user_pct", "8h")], names=["metric", "horizon"]
        ),
    )
    out = servers_behind(errors, best)
    c30, c8 = out.loc[("cpu_user_pct", "30m")], out.loc[("cpu_user_pct", "8h")]
    assert (c30["servers"], c30["servers_behind"]) == (3, 2)
    assert c30["behind_most"] == [["a", pytest.approx(0.8)], ["b", pytest.approx(0.2)]]
    assert (c8["servers"], c8["servers_behind"], c8["behind_most"]) == (3, 1, [["a", 1.0]])
    cells = {"cpu_user_pct": {"30m": {"ratio_best_naive": 1.25, **c30.to_dict()}}}
    lines = behind_cells(cells, ["30m"])
    assert lines[-1] == "| cpu_user_pct | 30m | 1.250 | 2 of 3 | a 80%, b 20% |"
    cells["cpu_user_pct"]["30m"]["ratio_best_naive"] = 0.9
    assert behind_cells(cells, ["30m"])[-1] == "No cell above is behind its best naive baseline."
