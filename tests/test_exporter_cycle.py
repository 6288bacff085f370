"""Exporter cycle with a fake clock, a fake Prometheus client and a fake model."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from fakes import FLEET, START, FakeModel, FakePrometheus, at

from linborg.contract import METRIC_NAMES, STEP_SECONDS, shard_of
from linborg.exporter.config import config_from_dict
from linborg.exporter.cycle import FILL_CHUNK_STEPS, Exporter
from linborg.features import HORIZON_STEPS
from linborg.generator.output import simulate
from linborg.prom import PrometheusError, Series
from linborg.thresholds import load_thresholds


@pytest.fixture
def world():
    frame, _, _ = simulate(FLEET, 3, START, 2 * 288)
    for col in ("server", "profile"):
        frame[col] = frame[col].astype(str)
    return frame


def make(frame, **config):
    prom = FakePrometheus(frame)
    model = FakeModel()
    exp = Exporter(config_from_dict(config), prom, model, load_thresholds())
    return exp, prom, model


def test_first_cycle_fills_24h_then_cycles_fetch_only_new_steps(world):
    exp, prom, model = make(world)
    snap = exp.run_once(at(30))
    # 24 hours per metric, in chunks of FILL_CHUNK_STEPS that tile the window exactly once.
    chunks = 288 // FILL_CHUNK_STEPS
    assert len(prom.calls) == 14 * chunks
    first = [c for c in prom.calls if c[0] == "linborg_cpu_user_pct"]
    assert first[-1][2] - first[0][1] == 287 * STEP_SECONDS
    for (_, _, end), (_, start, _) in zip(first, first[1:], strict=False):
        assert start - end == STEP_SECONDS
    assert snap.servers == tuple(sorted(s.name for s in FLEET))
    assert model.batches == [6]  # one batch for the whole fleet
    prom.calls.clear()
    exp.run_once(at(30) + 300)
    assert len(prom.calls) == 14
    _, start, end = prom.calls[0]
    assert (end - start) / STEP_SECONDS == 3  # one new step plus two for late samples


def test_the_configured_timezone_reaches_the_model(world):
    exp, _, model = make(world, timezone="America/New_York")
    exp.run_once(at(30))
    assert model.timezones == ["America/New_York"]


def test_the_servers_names_reach_the_model_in_the_windows_order(world):
    # A bundle with a plain-host network (or --unknown-profile) tells plain hosts by name.
    exp, _, model = make(world)
    snap = exp.run_once(at(30))
    assert model.servers == [list(snap.servers)]
    assert snap.plain_hosts == 0  # no plain-host network


def test_plain_hosts_are_counted_when_the_bundle_has_a_plain_host_network(world):
    frame = world.copy()
    first = sorted(frame["server"].unique())[:2]
    frame["server"] = frame["server"].replace({first[0]: "vm-1", first[1]: "vm-2"})
    exp, _, model = make(frame, labels={"profile": "role"})  # profiles from hostnames
    assert exp.run_once(at(30)).plain_hosts == 0  # the model has no plain-host network
    model.plain = object()
    snap = exp.run_once(at(30) + 300)
    assert snap.plain_hosts == 2 and len(snap.servers) == len(FLEET)


def test_snapshot_holds_forecast_risk_and_completeness(world):
    exp, _, _ = make(world)
    snap = exp.run_once(at(30))
    assert snap.forecast.shape == (6, 14, HORIZON_STEPS, 3)
    assert set(snap.risk) == {"30m", "8h"}
    assert snap.completeness.min() == 1.0 and snap.present.all()
    assert snap.time_to_breach.shape == (6, 14, 2, 2)
    with pytest.raises(ValueError):
        snap.forecast[0, 0, 0, 0] = 1.0  # immutable


def test_new_server_waits_for_history_and_missing_series_are_not_invented(world):
    late = world[world["server"] == "ppdb002"]
    cutoff = late["timestamp"].min() + dt.timedelta(hours=29)
    world = world[(world["server"] != "ppdb002") | (world["timestamp"] >= cutoff)].copy()
    world.loc[world["server"] == "ppweb001", ["java_cpu_pct", "back_close_wait"]] = np.nan
    exp, _, _ = make(world)
    snap = exp.run_once(at(30))
    assert snap.not_forecast["ppdb002"] == ("database", "too_little_history")
    i = snap.servers.index("ppweb001")
    j = METRIC_NAMES.index("java_cpu_pct")
    assert not snap.present[i, j] and np.isnan(snap.forecast[i, j]).all()
    assert snap.present[i, METRIC_NAMES.index("mem_used_pct")]


def test_shards_partition_the_fleet_exactly_once(world):
    covered = []
    for i in range(3):
        exp, _, _ = make(world, shard=f"{i}/3")
        snap = exp.run_once(at(30))
        covered += list(snap.servers)
        assert all(shard_of(s, 3) == i for s in snap.servers)
        assert all(r == "outside_shard" for _, r in snap.not_forecast.values())
    assert sorted(covered) == sorted(s.name for s in FLEET)


def test_profile_fallbacks_are_counted_by_the_shard_that_owns_the_server(world):
    frame = world.copy()
    names = {s: f"host-{k}" for k, s in enumerate(sorted(frame["server"].unique()))}
    frame["server"] = frame["server"].map(names)  # no hostname convention matches
    total = 0
    for i in range(3):
        exp, _, _ = make(frame, shard=f"{i}/3", labels={"profile": "role"})  # no such label
        snap = exp.run_once(at(30))
        assert set(snap.profiles) <= {"generic"}
        assert snap.profile_fallbacks == len(snap.servers)
        total += snap.profile_fallbacks
    assert total == len(names)


def test_prometheus_down_keeps_the_last_snapshot_backs_off_and_recovers(world):
    exp, prom, _ = make(world)
    first = exp.run_once(at(30))
    assert exp.retry_after() is None
    prom.down = True
    prom.calls.clear()
    delays = []
    for k in range(1, 7):
        assert exp.run_once(at(30) + k * 60) is None
        delays.append(exp.retry_after())
    # Refused connections: one query sent per cycle, not fourteen; the 13 not sent count as
    # failed too, as linborg_exporter_query_failures_total documents (ratio 1 in an outage).
    assert len(prom.calls) == 6 and exp.stats.query_failures == 6 * 14
    assert exp.stats.queries - exp.stats.query_failures == 112  # the first cycle's, all good
    assert exp.snapshot is first and exp.stats.cycle_failures == 6
    assert delays == [15, 30, 60, 120, 240, 300]  # doubling from retry_backoff, capped
    prom.down = False
    prom.calls.clear()
    again = exp.run_once(at(30) + 600)
    assert again is not None and exp.stats.last_success == at(30) + 600
    assert exp.retry_after() is None and exp.stats.consecutive_failures == 0
    _, start, end = prom.calls[0]
    assert (end - start) / STEP_SECONDS == 4  # the missed steps are fetched too


def test_prometheus_errors_fail_the_cycle_but_every_metric_is_tried(world):
    exp, prom, _ = make(world)
    first = exp.run_once(at(30))
    prom.broken = True
    prom.calls.clear()
    assert exp.run_once(at(30) + 300) is None
    assert len(prom.calls) == 14  # an answer came: the other metrics may still work
    assert exp.snapshot is first and exp.retry_after() == 15


def test_new_server_is_forecast_once_it_has_min_history(world):
    late = world[world["server"] == "ppdb002"]
    cutoff = late["timestamp"].min() + dt.timedelta(hours=29)
    world = world[(world["server"] != "ppdb002") | (world["timestamp"] >= cutoff)].copy()
    exp, _, _ = make(world, min_history="2h")
    snap = exp.run_once(at(30))  # ppdb002 has 1 hour
    assert snap.not_forecast["ppdb002"] == ("database", "too_little_history")
    for k in range(1, 13):
        snap = exp.run_once(at(30) + k * STEP_SECONDS)
        if "ppdb002" in snap.servers:
            break
    assert "ppdb002" in snap.servers and "ppdb002" not in snap.not_forecast
    # 13 samples (29h..30h) at the first cycle; forecast exactly when it holds 24 samples
    # (2 hours of 5-minute steps), with no restart.
    assert k == 24 - 13


def test_bad_samples_are_counted_and_treated_as_missing(world):
    world.loc[world.index[-5:], "cpu_user_pct"] = np.inf
    world.loc[world.index[-8:-5], "mem_used_pct"] = 250.0
    exp, _, _ = make(world)
    exp.run_once(at(48))
    assert exp.stats.invalid_samples == 8


def test_servers_and_series_that_vanish_stop_being_exported(world):
    exp, prom, _ = make(world)
    exp.run_once(at(30))
    prom.hidden = {"ppml0001"}
    prom.hidden_metrics = {("ppdb001", "swap_used_pct")}
    i = METRIC_NAMES.index("swap_used_pct")
    snap = exp.run_once(at(30) + 300)
    assert "ppml0001" in snap.servers  # one missed step is a gap, not a departure
    assert snap.present[snap.servers.index("ppdb001"), i]
    for k in (2, 3):
        snap = exp.run_once(at(30) + k * 300)
    assert "ppml0001" not in snap.servers and "ppml0001" not in snap.not_forecast
    row = snap.servers.index("ppdb001")
    assert not snap.present[row, i] and snap.present[row].sum() == 13
    assert np.isnan(snap.time_to_breach[row, i]).all()
    # A server that comes back is forecast again at once, with its history.
    prom.hidden = set()
    snap = exp.run_once(at(30) + 4 * 300)
    assert "ppml0001" in snap.servers
    # Without data for 24 hours its window ages out.
    prom.hidden = {"ppml0001"}
    exp.window.advance(exp.window.end_step + 288)
    assert "ppml0001" not in exp.window.servers


def test_no_model_means_no_forecast_and_a_reason(world):
    exp = Exporter(config_from_dict({}), FakePrometheus(world), None, load_thresholds())
    snap = exp.run_once(at(30))
    assert snap.forecast is None
    assert {r for _, r in snap.not_forecast.values()} == {"no_model"}


class DuplicatingPrometheus(FakePrometheus):
    """Answers a second series for one server's metric (a relabelling mistake)."""

    def __init__(self, frame, server: str, metric: str):
        super().__init__(frame)
        self.dup = (server, metric)

    def query_range(self, query, start, end, step):
        out = super().query_range(query, start, end, step)
        if query == f"linborg_{self.dup[1]}":
            extra = [s for s in out if s.labels["server"] == self.dup[0]]
            out += [
                Series({**s.labels, "job": "other"}, s.timestamps, s.values * 0 + 1.0)
                for s in extra
            ]
        return out


def test_duplicate_series_are_counted_dropped_and_never_overwrite(world):
    server = sorted(world["server"].unique())[0]
    prom = DuplicatingPrometheus(world, server, "mem_used_pct")
    exp = Exporter(config_from_dict({}), prom, FakeModel(), load_thresholds())
    snap = exp.run_once(at(30))
    assert exp.stats.duplicate_series > 0
    assert snap.not_forecast[server][1] == "duplicate_series"
    assert server not in snap.servers and len(snap.servers) == len(FLEET) - 1
    # Neither series was written: the window holds no value of 1.0 from the impostor.
    j = METRIC_NAMES.index("mem_used_pct")
    column = exp.window.servers[server].values[:, j]
    assert not (column == 1.0).any()
    # Once the duplicate is gone, the server is forecast again.
    prom.dup = ("nobody", "mem_used_pct")
    snap = exp.run_once(at(30) + 300)
    assert server in snap.servers


def test_a_partial_first_fill_forecasts_nothing_and_says_why_until_it_completes(world):
    class FlakyPrometheus(FakePrometheus):
        swap_fails = True

        def query_range(self, query, start, end, step):
            if self.swap_fails and query == "linborg_swap_used_pct":
                raise PrometheusError("http://fake answered HTTP 500: killed")
            return super().query_range(query, start, end, step)

    prom = FlakyPrometheus(world)
    exp = Exporter(config_from_dict({}), prom, FakeModel(), load_thresholds())
    snap = exp.run_once(at(30))
    assert snap.failed_metrics == ("swap_used_pct",) and exp.stats.partial_cycles == 1
    assert snap.servers == ()  # no forecast made as if swap were absent
    assert {reason for _, reason in snap.not_forecast.values()} == {"incomplete_fill"}
    prom.swap_fails = False
    snap = exp.run_once(at(30) + 300)
    assert snap.failed_metrics == () and len(snap.servers) == len(FLEET)
    assert exp.stats.partial_cycles == 1
    # The failed metric's whole 24 hours were fetched on the retry.
    j = METRIC_NAMES.index("swap_used_pct")
    assert not np.isnan(exp.window.servers[snap.servers[0]].values[:, j]).any()


def test_a_scrape_during_a_partial_cycle_never_sees_its_count_without_its_failed_metrics(world):
    # A scrape reads the stats and the snapshot separately; while the cycle's forecast runs,
    # the partial count must still match the snapshot then published (the fault test raced here).
    class FlakyPrometheus(FakePrometheus):
        def query_range(self, query, start, end, step):
            if query == "linborg_swap_used_pct":
                raise PrometheusError("http://fake answered HTTP 500: killed")
            return super().query_range(query, start, end, step)

    exp = Exporter(config_from_dict({}), FlakyPrometheus(world), FakeModel(), load_thresholds())
    seen = []
    forecast = exp.forecast

    def watched(now, end_step):
        seen.append((exp.stats.partial_cycles, exp.snapshot))
        return forecast(now, end_step)

    exp.forecast = watched
    snap = exp.run_once(at(30))
    assert seen == [(0, None)]  # mid-cycle: no partial counted, no snapshot yet
    assert exp.stats.partial_cycles == 1 and exp.snapshot is snap
    assert snap.failed_metrics == ("swap_used_pct",)


def test_servers_beyond_max_servers_are_not_held_and_are_counted(world):
    exp, _, _ = make(world, max_servers=4)
    snap = exp.run_once(at(30))
    assert len(exp.window.servers) == 4 and len(snap.servers) == 4
    assert exp.stats.servers_over_limit == len(FLEET) - 4


def test_a_slow_prometheus_cannot_stretch_a_cycle_past_its_deadline(world, monkeypatch):
    import linborg.exporter.cycle as cycle

    clock = [1000.0]
    monkeypatch.setattr(cycle.time, "monotonic", lambda: clock[0])

    class SlowPrometheus(FakePrometheus):
        def query_range(self, query, start, end, step):
            clock[0] += 50  # each query takes 50 s
            return super().query_range(query, start, end, step)

    prom = SlowPrometheus(world)
    exp = Exporter(config_from_dict({"cycle_deadline": "2m"}), prom, FakeModel(), load_thresholds())
    exp.run_once(at(30))
    # 50 s per query, a 120 s deadline: three queries go out, then nothing more is sent.
    assert len(prom.calls) == 3
    # Each metric's next query is due and not sent: 3 sent + 14 not sent, all 14 failed.
    assert exp.stats.queries == 17 and exp.stats.query_failures == 14
    assert exp.stats.cycle_failures == 1 and len(exp.failed_metrics) == 14
    # A fresh deadline each cycle: once Prometheus is fast again, everything is fetched.
    monkeypatch.setattr(SlowPrometheus, "query_range", FakePrometheus.query_range)
    snap = exp.run_once(at(30) + 300)
    assert snap is not None and snap.failed_metrics == () and len(snap.servers) == len(FLEET)


def test_a_restart_reads_the_saved_window_and_fetches_only_what_it_missed(world, tmp_path):
    state = str(tmp_path / "window.npz")
    exp, prom, _ = make(world, state_file=state)
    first = exp.run_once(at(30))
    assert (tmp_path / "window.npz").exists()
    # A new process, 10 minutes later, same configuration.
    again, prom2, _ = make(world, state_file=state)
    assert again.restore(at(30) + 600)
    snap = again.run_once(at(30) + 600)
    assert len(prom2.calls) == 14  # one query per metric: the steps since the save, no refill
    _, start, end = prom2.calls[0]
    assert (end - start) // STEP_SECONDS == 2 + 2  # 2 new steps plus the late-sample steps
    assert snap.servers == first.servers
    s = first.servers[0]
    np.testing.assert_array_equal(
        again.window.servers[s].values[:-2], exp.window.servers[s].values[2:]
    )


def test_a_saved_window_is_refused_when_stale_corrupt_or_from_another_config(world, tmp_path):
    state = tmp_path / "window.npz"
    exp, _, _ = make(world, state_file=str(state))
    exp.run_once(at(30))
    other, _, _ = make(world, state_file=str(state), queries={"mem_used_pct": "other_metric"})
    assert not other.restore(at(30) + 600)
    stale, _, _ = make(world, state_file=str(state))
    assert not stale.restore(at(30) + 24 * 3600)
    state.write_bytes(b"not a window")
    broken, prom, _ = make(world, state_file=str(state))
    assert not broken.restore(at(30) + 600)
    snap = broken.run_once(at(30) + 600)  # falls back to the 24-hour fill
    assert len(prom.calls) == 14 * (288 // FILL_CHUNK_STEPS) and len(snap.servers) == len(FLEET)


def test_each_risk_window_is_discounted_by_its_own_healthy_ceilings(world):
    raw = make(world)[0].run_once(at(30))
    assert raw.risk["30m"][0].max() > 0  # something to discount
    exp, _, model = make(world)
    profiles = sorted({s.profile for s in FLEET})
    # Ceilings at the top for the 8-hour risk, none for the 30-minute one.
    model.spec = {
        "risk_calibration": {
            "healthy_risk": {p: dict.fromkeys(METRIC_NAMES, 100.0) for p in profiles},
            "healthy_risk_30m": {p: dict.fromkeys(METRIC_NAMES, 0.0) for p in profiles},
        }
    }
    snap = exp.run_once(at(30))
    assert snap.risk["8h"][0].max() == 0.0
    assert snap.risk["30m"][0].tolist() == raw.risk["30m"][0].tolist()
