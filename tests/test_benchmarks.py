"""The benchmarks' own helpers (benchmarks/benchlib.py): the numbers they report rest on these."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from benchlib import (  # noqa: E402
    DAY_STEPS,
    NEVER,
    FakeQueryAPI,
    churn_schedule,
    cpu_hogs,
    open_fds,
    rss_bytes,
    slope_per_100,
    wrap_steps,
)

from linborg.contract import STEP_SECONDS  # noqa: E402


def test_slope_is_per_100_samples_and_leaves_out_the_warm_up():
    warm = [500.0] * 10  # a big first fill, then a steady 0.03 per cycle
    values = warm + [100 + 0.03 * k for k in range(50)]
    assert slope_per_100(values, warmup=10) == pytest.approx(3.0)
    assert slope_per_100(values, warmup=0) < 0  # the warm-up would hide the growth
    assert slope_per_100([7, 7, 7, 7], warmup=1) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError):
        slope_per_100([1.0, 2.0], warmup=1)


def test_steps_outside_the_simulated_block_repeat_it_day_by_day():
    first, count = 1000, DAY_STEPS + 25
    inside = np.arange(first, first + count)
    assert (wrap_steps(inside, first, count) == inside - first).all()
    for step in (first - 1, first - DAY_STEPS - 3, first + count, first + 5 * count + 7):
        (k,) = wrap_steps(np.array([step]), first, count)
        assert 0 <= k < count
        assert (step - first - k) % DAY_STEPS == 0
    with pytest.raises(ValueError):
        wrap_steps(inside, first, DAY_STEPS - 1)


def test_churn_keeps_the_fleet_size_and_each_server_joins_and_leaves_once():
    events = [100, 120, 140]
    join, leave = churn_schedule(initial=40, per_event=3, event_steps=events, seed=1)
    assert len(join) == len(leave) == 40 + 3 * 3
    for step in range(90, 160):
        assert ((join <= step) & (step < leave)).sum() == 40
    assert (join < leave).all()
    for e in events:
        assert (join == e).sum() == 3 and (leave == e).sum() == 3
    assert ((join < 0) & (leave > events[-1])).sum() == 40 - 9  # the rest never leave


def test_the_fake_query_api_answers_only_the_steps_a_server_reports_at():
    end = dt.datetime(2024, 3, 4, 12, 0, tzinfo=dt.UTC)
    step = int(end.timestamp()) // STEP_SECONDS
    join = np.array([-NEVER, -NEVER, step - 1] + [-NEVER] * 4)  # 7: the smallest fleet
    leave = np.array([NEVER, step - 1, NEVER] + [NEVER] * 4)
    api = FakeQueryAPI(7, end, hours=24, membership=(join, leave))
    start, stop = (step - 3) * STEP_SECONDS, (step + 2) * STEP_SECONDS
    doc = json.loads(api.answer("linborg_cpu_user_pct", start, stop, STEP_SECONDS))
    got = {r["metric"]["server"]: [t for t, _ in r["values"]] for r in doc["data"]["result"]}
    names = [s.name for s in api.fleet]
    assert got[names[0]] == [(step + k) * STEP_SECONDS for k in range(-3, 3)]  # past the end
    assert got[names[1]] == [(step - 3) * STEP_SECONDS, (step - 2) * STEP_SECONDS]
    assert got[names[2]] == [(step + k) * STEP_SECONDS for k in range(-1, 3)]
    # A server with no sample in the range is not answered at all, as Prometheus does.
    late = json.loads(api.answer("linborg_cpu_user_pct", stop, stop, STEP_SECONDS))
    assert {r["metric"]["server"] for r in late["data"]["result"]} == set(names) - {names[1]}


def test_cpu_hogs_spin_inside_the_block_and_are_gone_after_it():
    with pytest.raises(KeyboardInterrupt), cpu_hogs(2) as procs:
        assert [p.poll() for p in procs] == [None, None]
        raise KeyboardInterrupt  # Ctrl-C in the middle of a measurement
    assert all(p.returncode is not None for p in procs)


def test_proc_readings_are_plausible():
    assert 1024**2 < rss_bytes() < 1024**4
    before = open_fds()
    with open(__file__) as f:
        assert open_fds() == before + 1
        f.read(1)
    assert open_fds() == before


def test_risk_levels_counts_a_run_past_a_level_only_when_it_lasts_and_starts_within_reach():
    from risk_levels import in_a_row, past, within

    values = np.array([0, 0, 5, 5, 5, 0, 5, np.nan, 0, 0], float)[None, :, None]
    hit = past(values, np.array([[4.0]]), np.array([[1.0]]))
    assert (
        hit[0, :, 0].tolist() == [False, False, True, True, True, False, True, False] + [False] * 2
    )
    # "below" metrics (cpu_idle_pct) are past when at or under the level; NaN never is
    low = past(values, np.array([[0.0]]), np.array([[-1.0]]))
    assert np.flatnonzero(low[0, :, 0]).tolist() == [0, 1, 5, 8, 9]
    runs = in_a_row(hit, 3)
    assert np.flatnonzero(runs[0]).tolist() == [2]  # step 6 alone is too short
    assert np.flatnonzero(in_a_row(hit, 1)[0]).tolist() == [2, 3, 4, 6]
    # a check sees the runs starting in the next 2 steps, not at the check itself
    assert within(runs, np.array([0, 1, 2]), 2)[0].tolist() == [True, True, False]


def tiny_bundle_and_labelled_fleet(tmp_path, capsys, fleet: str) -> tuple[Path, Path]:
    """Return a tiny bundle trained on two servers and a generated 3-day FLEET with many
    labelled incidents (the paths of both)."""
    from linborg.app.cli import main as linborg
    from linborg.bundle import save_bundle
    from linborg.generator.fleet import build_fleet
    from linborg.generator.output import simulate
    from linborg.trainer.train import train

    start = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    frame, _, _ = simulate(build_fleet({"web_api": 1, "database": 1}), 4, start, 2 * 288)
    model, summary = train(frame, "tiny", seed=3, progress=False, log=lambda m: None)
    bundle = save_bundle(model, tmp_path / "tiny", summary)
    data = tmp_path / "fleet.parquet"
    args = ["--fleet", fleet, "--days", "3", "--seed", "5", "--incident-rate", "10", "--quiet"]
    assert linborg(["generate", "history", "--out", str(data), *args]) == 0
    capsys.readouterr()
    return bundle, data


def test_risk_levels_scores_perfect_forecasts_and_a_bundle_on_a_labelled_fleet(tmp_path, capsys):
    import risk_levels

    fleet = "web_api=3,database=3,data_ingest=2"
    bundle, data = tiny_bundle_and_labelled_fleet(tmp_path, capsys, fleet)
    assert risk_levels.main(["--data", str(data), "--model", str(bundle)]) == 0
    out = capsys.readouterr().out
    scored = int(out.split(" scored precursor incidents")[0].rsplit(" ", 1)[1])
    assert scored > 0
    # The onset is where a precursor's metric reaches critical: a perfect forecast of critical
    # within 2 h warns of every scored incident at least 30 minutes ahead.
    assert "| perfect: past critical within 2 h | 1.00 |" in out
    rows = [line for line in out.splitlines() if "of the way from warning to critical" in line]
    assert [r.split(" of the way")[0] for r in rows] == ["| 0", "| 0.25", "| 0.5", "| 0.75", "| 1"]


def test_risk_levels_refuses_a_fleet_without_labels(tmp_path, capsys):
    import risk_levels

    from linborg.generator.fleet import build_fleet
    from linborg.generator.output import simulate
    from linborg.parquet import write_metrics

    start = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    frame, _, _ = simulate(build_fleet({"web_api": 1}), 4, start, 2 * 288)
    write_metrics(frame, tmp_path / "plain.parquet")
    with pytest.raises(SystemExit) as err:
        risk_levels.main(["--data", str(tmp_path / "plain.parquet")])
    assert err.value.code == 2
    assert "has no incident labels" in capsys.readouterr().err


def test_alert_rule_sweep_at_the_shipped_threshold_is_what_evaluate_scores(tmp_path, capsys):
    import alert_rule_sweep

    from linborg.app.train import shipped_alert_rule
    from linborg.bundle import load_bundle
    from linborg.mixin import CONFIG
    from linborg.parquet import read_metadata, read_metrics
    from linborg.trainer.evaluate import evaluate

    bundle, data = tiny_bundle_and_labelled_fleet(tmp_path, capsys, "web_api=3,database=3")
    fleet, _ = read_metrics(data, allow_missing=True)
    labels = read_metadata(data)["incidents"]
    forecaster = load_bundle(bundle)
    rows = alert_rule_sweep.sweep(forecaster, fleet, labels, (0, CONFIG["risk_warning"], 1000))
    # each threshold scores as `linborg evaluate` scores the shipped rules with that threshold
    rule, may_drive = shipped_alert_rule()
    for threshold in (0, CONFIG["risk_warning"]):
        at = {lvl: (float(threshold), qi, lead) for lvl, (_, qi, lead) in rule.items()}
        scored = evaluate(forecaster, fleet, labels, alert_rule=(at, may_drive))
        board = scored["summary"]["scoreboard"]["detectors"]
        for name, row in rows[threshold].items():
            assert row["family"] == "alert_rule"
            for key in ("recall", "false_warnings", "false_per_100_server_days", "incidents"):
                assert row[key] == board[name][key], (threshold, name, key)
    # at 0 the rules fire (on time to breach alone); a risk no score reaches warns of nothing
    assert any(row["recall"] > 0 or row["false_warnings"] > 0 for row in rows[0].values())
    assert all(row["recall"] == 0 and row["false_warnings"] == 0 for row in rows[1000].values())

    assert alert_rule_sweep.main(["--model", str(bundle), "--data", str(data)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 + 4 * len(alert_rule_sweep.SWEEP)  # 4 detectors per threshold


def test_ramp_follow_is_one_for_the_actual_future_zero_for_last_value_and_below_zero_back():
    from types import SimpleNamespace

    from ramp_follow import Ramp, follow_ratios, ramps_of, table

    from linborg.contract import METRIC_NAMES

    mem, idle = METRIC_NAMES.index("mem_used_pct"), METRIC_NAMES.index("cpu_idle_pct")
    steps, first = 360, 1_000_000
    values = np.full((2, steps, len(METRIC_NAMES)), 40.0)
    values[0, :, mem] = 50.0 + np.clip(np.arange(steps) - 300.0, 0, None)  # climbs from step 300
    values[1, :, idle] = 90.0 - np.clip(np.arange(steps) - 300.0, 0, None)  # "below": falls
    ramps = [Ramp("memory_leak", 0, mem, 330), Ramp("runaway_cpu", 1, idle, 330)]

    def forecaster(p50):
        def predict(window, profiles, origin, servers=None):
            out = np.zeros((1, len(METRIC_NAMES), 96, 3))
            out[..., 1] = p50(window, profiles[0], origin - first)[:, None]
            out[..., 0], out[..., 2] = out[..., 1] - 1, out[..., 1] + 1
            return SimpleNamespace(values=out)

        return SimpleNamespace(predict=predict)

    profiles = ["web_api", "database"]  # one per server: the fake reads the future by it
    actual = forecaster(lambda w, prof, o: values[profiles.index(prof), o + 12])
    last = forecaster(lambda w, prof, o: w[0, -1])
    back = forecaster(lambda w, prof, o: w[0, 0])  # the level before the ramp

    # checks 2 h to 30 min before onset: steps 306, 309, ..., 324 (7 per incident)
    assert follow_ratios(actual, values, profiles, first, ramps) == {
        "memory_leak": [1.0] * 7,
        "runaway_cpu": [1.0] * 7,
    }
    assert follow_ratios(last, values, profiles, first, ramps)["runaway_cpu"] == [0.0] * 7
    pulled = follow_ratios(back, values, profiles, first, ramps)
    # at step 306 the value is 6 past its level and moves 12 more in the hour: -6 / 12
    assert pulled["memory_leak"][0] == pulled["runaway_cpu"][0] == -0.5
    assert "| all | 14 | 1.00 | " in "\n".join(table(pulled))

    # a check where the metric does not move on towards the incident is not scored
    # (checks from step 288: its hour ahead ends at step 300, where the climb begins)
    early = [Ramp("memory_leak", 0, mem, 288 + 24)]
    assert len(follow_ratios(last, values, profiles, first, early)["memory_leak"]) == 6

    labels = [
        {
            "type": "memory_leak",
            "server": "b",
            "metric": "mem_used_pct",
            "has_precursor": True,
            "onset": dt.datetime.fromtimestamp((first + 330) * STEP_SECONDS, dt.UTC).isoformat(),
        },
        {
            "type": "disk_fill",
            "server": "b",
            "metric": "disk_usage_pct",
            "has_precursor": False,
            "onset": "2026-01-01T00:00:00Z",
        },
        {
            "type": "gc_storm",
            "server": "elsewhere",
            "metric": "java_gc_pct",
            "has_precursor": True,
            "onset": "2026-01-01T00:00:00Z",
        },
    ]
    assert ramps_of(labels, ["a", "b"], first) == [Ramp("memory_leak", 1, mem, 330)]


def test_context_separability_labels_from_8_hours_before_onset_to_the_end_on_its_metric():
    from context_separability import oriented, targets

    from linborg.contract import METRIC_NAMES

    first = 1_000_000  # in steps
    checks = np.arange(300, 420, 3)
    z = {
        "names": ["a", "b"],
        "profiles": ["web_api", "web_api"],
        "checks": checks,
        "times": (first + checks) * STEP_SECONDS,
        "labels": [
            {
                "server": "b",
                "metric": "mem_used_pct",
                "onset": str(np.datetime64((first + 400) * STEP_SECONDS, "s")),
                "end": str(np.datetime64((first + 405) * STEP_SECONDS, "s")),
            }
        ],
    }
    y = targets(z)
    mem = METRIC_NAMES.index("mem_used_pct")
    assert not y[:, 0].any()  # server a has no incident
    assert not np.delete(y[:, 1], mem, axis=1).any()  # only the incident's metric
    # 8 hours (96 steps) before onset at step 400: from step 304 to the end at 405
    assert checks[y[:, 1, mem]].tolist() == list(range(306, 406, 3))

    # oriented: 0 at warning, 1 at critical, above and below metrics alike
    from linborg.risk import threshold_arrays
    from linborg.thresholds import load_thresholds

    warn, crit, _ = threshold_arrays(load_thresholds(), ["web_api"], list(METRIC_NAMES))
    x = np.stack([warn[0], crit[0]])[None]  # (1 server, 2 steps, metrics)
    u = oriented({"profiles": ["web_api"]}, x)
    assert np.allclose(u[0, 0], 0.0) and np.allclose(u[0, 1], 1.0)


def test_context_separability_counts_each_warning_episode_once_on_a_file_without_labels():
    from context_separability import warnings_without_labels

    checks = np.arange(0, 96 * 3, 3)  # 96 checks of 15 minutes: one day
    z = {"names": ["a", "b", "c"], "times": (1_000_000 + checks) * STEP_SECONDS}
    score = np.zeros((96, 3))
    score[10:14, 0] = 5.0  # server a: one episode of four checks
    score[40, 0] = 5.0  # and a second one
    score[50:52, 1] = 2.0  # server b: below the threshold
    score[60, 2] = 3.0  # server c: exactly at it
    w = warnings_without_labels(z, score, 3.0)
    assert (w["episodes"], w["servers_warned"], w["servers"]) == (3, 2, 3)
    assert w["server_days"] == 3.0 and w["per_100_server_days"] == 100.0


def test_context_separability_scores_each_input_on_a_labelled_fleet(tmp_path, capsys):
    import context_separability

    bundle, data = tiny_bundle_and_labelled_fleet(tmp_path, capsys, "web_api=3,database=3")
    args = ["--train", str(data), "--data", str(data), "--model", str(bundle), "--seeds", "0"]
    assert context_separability.main(args) == 0
    out = capsys.readouterr().out
    rows = [
        line.split(" | ")[0]
        for line in out.splitlines()
        if line.startswith("| ") and "---" not in line
    ]
    assert rows[1:] == ["| context", "| forecast", "| forecast + context", "| decoder state"]
    # trained and scored on the same fleet, the classifier finds incidents there
    recalls = [
        float(line.split(" | ")[2].split()[0])
        for line in out.splitlines()
        if line.startswith("| context")
    ]
    assert recalls[0] > 0
    # --unlabelled: the same fleet without its labels, read at the threshold chosen on --data
    from linborg.parquet import read_metrics, write_metrics

    frame, _ = read_metrics(data, allow_missing=True)
    bare = write_metrics(frame, tmp_path / "bare.parquet", {}, allow_missing=True)
    args = ["--train", str(data), "--data", str(data), "--unlabelled", str(bare), "--seeds", "0"]
    assert context_separability.main(args + ["--unlabelled-days", "2"]) == 0
    out = capsys.readouterr().out
    (row,) = [x for x in out.splitlines() if x.startswith(f"| {bare} |")]
    cells = row.split(" | ")
    # it warns where it found the incidents; without labels every episode is counted
    assert int(cells[3]) > 0 and cells[5].endswith("of 6 |")
    # A bundle with an incident head also has the head read as it is (no classifier).
    from linborg.bundle import load_bundle, read_spec, save_bundle

    forecaster = load_bundle(bundle)
    forecaster.model.add_incident_head(1.0)
    spec = read_spec(bundle)
    training = {**spec["training"], "interval_calibration": spec.get("interval_calibration")}
    head = save_bundle(forecaster.model, tmp_path / "head", training)
    args = ["--train", str(data), "--data", str(data), "--model", str(head), "--seeds", "0"]
    assert context_separability.main(args) == 0
    out = capsys.readouterr().out
    heads = [x.split(" | ")[0] for x in out.splitlines() if "incident head" in x]
    assert heads == [
        "| the network's incident head, read as it is",
        "| the incident head above its healthy ceilings (from --train)",
        "| incident head",
    ]
    line = next(x for x in out.splitlines() if "incident head" in x)
    assert 0.0 <= float(line.split(" | ")[2].split()[0]) <= 1.0


def test_context_separability_head_above_healthy_subtracts_each_profile_and_metric_ceiling():
    from context_separability import head_above_healthy

    from linborg.contract import METRIC_NAMES

    first = 1_000_000  # in steps
    checks = np.arange(0, 300, 3)
    mem, cpu = METRIC_NAMES.index("mem_used_pct"), METRIC_NAMES.index("cpu_user_pct")
    present = np.zeros((2, len(METRIC_NAMES)), bool)
    present[:, [mem, cpu]] = True
    onset = np.datetime64((first + 250) * STEP_SECONDS, "s")
    train = {
        "names": ["a", "b"],
        "profiles": ["web_api", "database"],
        "times": (first + checks) * STEP_SECONDS,
        "present": present,
        # b's incident makes its checks from 8 h before onset on unhealthy
        "labels": [{"server": "b", "metric": "mem_used_pct", "onset": str(onset)}],
    }
    h = np.full((len(checks), 2, len(METRIC_NAMES)), -5.0)
    h[10, 0, mem] = 1.0  # web_api's healthy memory reaches 1.0
    h[10, 0, cpu] = -2.0  # and its cpu -2.0
    # database's highest memory falls in the span from 8 h before onset to 1 h after the end
    # (steps 154-262): not a healthy check
    h[checks.tolist().index(201), 1, mem] = 9.0
    test = {"profiles": ["web_api", "database", "web_api"], "present": np.ones((3, 14), bool)}
    test["present"][:, :] = False
    test["present"][:, [mem, cpu]] = True
    ht = np.full((1, 3, len(METRIC_NAMES)), -10.0)
    ht[0, 0, mem], ht[0, 0, cpu] = 1.5, 0.0  # above: 0.5 and 2.0
    ht[0, 1, mem] = -4.0  # database memory's ceiling is -5.0 (healthy checks only): 1.0
    ht[0, 2, mem] = 0.0  # below its ceiling
    ht[0, 2, cpu] = -3.0
    score = head_above_healthy([train], [h], test, ht)
    assert score.shape == (1, 3)
    assert np.allclose(score[0], [2.0, 1.0, -1.0])


def test_context_separability_window_features_forget_the_level_unless_given_it():
    from context_separability import window_features

    from linborg.contract import METRIC_NAMES

    rng = np.random.default_rng(3)
    # a spread well above the floors (2% of the level), so that only the shape is read
    values = 40 + rng.normal(0, 2, (1, 400, len(METRIC_NAMES))).cumsum(axis=1)
    z = {"values": values, "checks": np.array([300, 399])}
    shifted = {"values": values * 3 + 5, "checks": z["checks"]}
    # the same shape at another level and spread reads the same as the network sees it ...
    assert np.allclose(window_features(z, False), window_features(shifted, False), atol=1e-4)
    # ... and differs only by the centre and spread given beside it
    a, b = window_features(z, True), window_features(shifted, True)
    assert np.allclose(a[..., :-2], b[..., :-2], atol=1e-4)
    assert np.allclose(b[..., -2], 3 * a[..., -2] + 5, rtol=1e-5)
    assert np.allclose(b[..., -1], 3 * a[..., -1], rtol=1e-5)


def test_origin_phase_ranges_a_burst_that_only_some_phases_catch():
    import pandas as pd
    from origin_phase import phase_range, table

    # One server, origins 300..309; last value errs by 100 at origin 303 only, the others by 50.
    errors = pd.DataFrame(
        {
            "origin": np.arange(300, 310),
            "server": "a",
            "metric": "net_in_mb_s",
            "horizon": "1h",
            "ae_last_value": [0.0, 0, 0, 100, 0, 0, 0, 0, 0, 0],
            "ae_seasonal_naive": 50.0,
            "ae_mean_24h": 50.0,
        }
    )
    r = phase_range(errors, 5).loc[("net_in_mb_s", "1h")]
    # Phases 0-2 and 4 see only zeros; phase 3 (origins 303, 308) last value 50, the others 50.
    assert r["low"] == 0 and r["high"] == 50
    t = table(errors, [5, 1]).loc[("net_in_mb_s", "1h")]
    assert t["every_origin"] == pytest.approx(10.0)
    assert t["stride_1_low"] == t["stride_1_high"] == pytest.approx(10.0)


def test_origin_phase_scores_the_naive_baselines_as_evaluate_does():
    from origin_phase import naive_errors

    from linborg.contract import METRIC_NAMES

    steps = 288 + 96 + 20
    values = np.full((2, steps, len(METRIC_NAMES)), np.nan, np.float32)
    j = METRIC_NAMES.index("cpu_user_pct")
    values[0, :, j] = 40.0  # flat: every baseline exact
    values[1, :, j] = 10 + 0.01 * np.arange(steps)  # a ramp: last value off by 0.01 per step
    e = naive_errors(["a", "b"], ["generic", "generic"], values, 0)
    assert e["origin"].nunique() == 20 and set(e["metric"]) == {"cpu_user_pct"}
    flat = e[e["server"] == "a"]
    assert (flat[["ae_last_value", "ae_seasonal_naive", "ae_mean_24h"]] == 0).all().all()
    ramp = e[(e["server"] == "b") & (e["horizon"] == "30m")]
    assert ramp["ae_last_value"].to_numpy() == pytest.approx(0.06, abs=1e-4)
    assert ramp["ae_seasonal_naive"].to_numpy() == pytest.approx(2.88, abs=1e-3)
