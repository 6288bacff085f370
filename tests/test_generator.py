"""Generator: fleet specs, physical couplings, determinism, incident labels and outputs."""

from __future__ import annotations

import datetime as dt
import io
import sys

import numpy as np
import pandas as pd
import pytest

from linborg.contract import METRIC_NAMES, STATES, ContractError
from linborg.generator.behaviour import PRECURSOR_TYPES, SUDDEN_TYPES
from linborg.generator.fleet import (
    DEFAULT_COMPOSITION,
    build_fleet,
    parse_composition,
    scaled_composition,
)
from linborg.generator.output import (
    incidents_path,
    parse_time,
    simulate,
    write_heldout,
    write_history,
    write_openmetrics,
)
from linborg.generator.simulate import SWAP_PRESSURE_PCT, Simulator
from linborg.parquet import read_metrics
from linborg.thresholds import load_thresholds
from linborg.validate import check

START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)  # a Monday
SMALL = {p: 2 for p in DEFAULT_COMPOSITION}


@pytest.fixture(scope="module")
def history():
    """Ten days of a 14-server fleet, shared by the read-only tests below."""
    frame, incidents, _ = simulate(build_fleet(SMALL), 11, START, 10 * 288)
    return frame, incidents


@pytest.fixture(scope="module")
def busy_history():
    """A 7-day history of 21 servers with many incidents (rates raised for the test)."""
    fleet = build_fleet({p: 3 for p in DEFAULT_COMPOSITION})
    sim = Simulator(fleet, 5, START, incident_rate=8)
    rows = []
    for _ in range(7 * 288):
        t, values, state = sim.step()
        rows.append((t, values, state))
    n = len(fleet)
    frame = pd.DataFrame(
        {
            "timestamp": np.repeat([r[0] for r in rows], n),
            "server": np.tile([s.name for s in fleet], len(rows)),
            "profile": np.tile([s.profile for s in fleet], len(rows)),
            "state_code": np.concatenate([r[2] for r in rows]),
            **{m: np.concatenate([r[1][m] for r in rows]) for m in METRIC_NAMES},
        }
    )
    return frame, [i.as_dict() for i in sim.incidents]


# --- fleet ----------------------------------------------------------------------------------


def test_default_fleet_has_90_servers_named_by_convention():
    fleet = build_fleet()
    assert len(fleet) == 90
    counts = pd.Series([s.profile for s in fleet]).value_counts().to_dict()
    assert counts == dict(DEFAULT_COMPOSITION)
    names = {s.name for s in fleet}
    assert {"ppml0001", "ppml0020", "ppdb015", "ppweb025", "ppcon05", "ppetl010"} <= names
    assert {"pprisk008", "ppgen007"} <= names
    assert len(names) == 90


def test_fleet_scales_to_10000_servers_within_naming_conventions():
    comp = scaled_composition(10_000)
    assert sum(comp.values()) == 10_000
    fleet = build_fleet(comp)
    assert len({s.name for s in fleet}) == 10_000


def test_impossible_fleet_specs_are_reported_together():
    with pytest.raises(ContractError) as err:
        build_fleet({"web_api": -1, "gpu_farm": 3, "conductor_mgmt": 100})
    text = str(err.value)
    assert "unknown profile 'gpu_farm'" in text
    assert "web_api: server count must be a whole number >= 0, got -1" in text
    assert (
        "conductor_mgmt: 100 servers do not fit the naming convention ppcon## (at most 99)" in text
    )
    with pytest.raises(ContractError, match="the fleet has no servers"):
        build_fleet({"web_api": 0})
    with pytest.raises(ContractError, match="'web_api:3': expected PROFILE=COUNT"):
        parse_composition("web_api:3")
    with pytest.raises(ContractError, match="count 'x' is not a whole number"):
        parse_composition("web_api=x")
    assert parse_composition("web_api=3, database=2") == {"web_api": 3, "database": 2}


def test_parse_time_accepts_iso_and_relative_and_rejects_junk():
    now = dt.datetime(2026, 3, 1, 12, 7, 30, tzinfo=dt.UTC)
    assert parse_time("now", now) == dt.datetime(2026, 3, 1, 12, 5, tzinfo=dt.UTC)
    assert parse_time("now-2h", now) == dt.datetime(2026, 3, 1, 10, 5, tzinfo=dt.UTC)
    assert parse_time("2026-01-05T00:03:00Z") == START
    with pytest.raises(ContractError, match="bad time 'yesterday'"):
        parse_time("yesterday", now)


# --- couplings ------------------------------------------------------------------------------


def test_history_is_valid_under_the_contract(history):
    frame, _ = history
    assert check(frame) == []


def test_cpu_parts_sum_to_100(history):
    frame, _ = history
    total = frame[["cpu_user_pct", "cpu_sys_pct", "cpu_iowait_pct", "cpu_idle_pct"]].sum(axis=1)
    assert np.abs(total - 100).max() < 1e-6


def test_java_cpu_stays_within_user_cpu(history):
    frame, _ = history
    assert (frame["java_cpu_pct"] <= frame["cpu_user_pct"] + 1e-9).all()
    ml = frame[frame["profile"] == "ml_compute"]
    assert (ml["java_cpu_pct"] / ml["cpu_user_pct"].clip(lower=1)).median() > 0.7


def test_swap_grows_only_when_memory_is_near_full(busy_history):
    frame, _ = busy_history
    for _, g in frame.groupby("server"):
        grew = np.diff(g["swap_used_pct"].to_numpy()) > 0.05
        mem = g["mem_used_pct"].to_numpy()[1:]
        assert (mem[grew] > SWAP_PRESSURE_PCT).all()


def test_load_average_follows_cpu_and_iowait(history):
    frame, _ = history
    for _, g in frame.groupby("server", observed=True):
        busy = 100 - g["cpu_idle_pct"]
        assert np.corrcoef(busy, g["load_average"])[0, 1] > 0.6


def test_uptime_grows_per_step_and_resets_to_zero(busy_history):
    frame, _ = busy_history
    resets = 0
    for _, g in frame.groupby("server"):
        up = g["uptime_days"].to_numpy()
        d = np.diff(up)
        grew = np.isclose(d, 300 / 86400, atol=2e-5)
        zero = up[1:] == 0
        assert (grew | zero).all()
        resets += int((zero & (up[:-1] > 0)).sum())
    assert resets > 0, "some server should reboot (maintenance, outage or hardware fault)"


def test_disk_usage_creeps_up_and_drops_at_log_rotation(history):
    frame, incidents = history
    calm = sorted(set(frame["server"]) - {i.server for i in incidents})
    assert calm
    for server in calm:
        g = frame[frame["server"] == server]
        d = np.diff(g["disk_usage_pct"].to_numpy())
        assert (d >= 0).mean() > 0.95  # creeps up (or holds at 0.01% resolution)
        assert d[d > 0].sum() > 2
        drops = d < -0.1
        assert 8 <= drops.sum() <= 11, server  # rotation once a day over ten days
        dropped_at = g["timestamp"].iloc[1:][drops]
        assert (dropped_at.dt.minute == 0).all()
        assert dropped_at.dt.hour.nunique() == 1  # at the server's own rotation hour


def test_weekends_are_quieter_than_weekdays(history):
    frame, _ = history
    web = frame[frame["profile"] == "web_api"]
    weekend = web["timestamp"].dt.dayofweek >= 5
    used = 100 - web["cpu_idle_pct"]
    assert used[~weekend].mean() > used[weekend].mean() + 3


def test_profiles_follow_their_baselines(history):
    frame, _ = history
    used = (100 - frame["cpu_idle_pct"]).groupby(frame["profile"], observed=True).mean()
    mem = frame.groupby("profile", observed=True)["mem_used_pct"].mean()
    iowait = frame.groupby("profile", observed=True)["cpu_iowait_pct"].median()
    assert 66 <= used["ml_compute"] <= 90 and 70 <= used["risk_analytics"] <= 94
    assert 20 <= used["web_api"] <= 36 and 40 <= used["database"] <= 70
    assert 75 <= mem["database"] <= 95 and 45 <= mem["web_api"] <= 65
    assert 10 <= iowait["database"] <= 20 and iowait["ml_compute"] < 2


def test_web_api_is_busiest_in_market_hours_and_database_at_end_of_day(history):
    frame, _ = history
    weekday = frame[frame["timestamp"].dt.dayofweek < 5]
    hour = weekday["timestamp"].dt.hour
    used = 100 - weekday["cpu_idle_pct"]
    web = used[(weekday["profile"] == "web_api")].groupby(hour).mean()
    assert web.loc[10:15].mean() > web.loc[[0, 1, 2, 3, 4, 22, 23]].mean() + 10
    db = used[(weekday["profile"] == "database")].groupby(hour).mean()
    assert db.loc[16:18].mean() > db.loc[2:5].mean() + 10


# --- determinism ----------------------------------------------------------------------------


def test_same_seed_gives_the_same_history_and_labels():
    fleet = build_fleet(SMALL)
    a, ia, _ = simulate(fleet, 3, START, 2 * 288)
    b, ib, _ = simulate(fleet, 3, START, 2 * 288)
    pd.testing.assert_frame_equal(a, b)
    assert [i.as_dict() for i in ia] == [i.as_dict() for i in ib]
    c, _, _ = simulate(fleet, 4, START, 2 * 288)
    assert not np.allclose(a["cpu_user_pct"], c["cpu_user_pct"])


def test_history_file_round_trips_with_metadata_and_label_file(tmp_path):
    path, meta = write_history(tmp_path / "h.parquet", build_fleet(SMALL), 9, START, 2)
    frame, doc = read_metrics(path)
    assert len(frame) == 14 * 2 * 288
    assert doc["seed"] == 9 and doc["fleet"] == SMALL and doc["servers"] == 14
    assert doc["start"] == "2026-01-05T00:00:00Z" and doc["end"] == "2026-01-07T00:00:00Z"
    assert doc["incidents"] == meta["incidents"]
    labels = pd.read_csv(incidents_path(path))
    assert len(labels) == len(meta["incidents"])
    assert list(labels.columns)[:4] == ["server", "profile", "type", "metric"]


def test_incident_rate_multiplies_random_incidents_and_is_recorded(tmp_path):
    fleet = build_fleet(SMALL)
    counts = {}
    for rate in (0, 1, 4):
        path, meta = write_history(
            tmp_path / f"r{rate}.parquet", fleet, 9, START, 4, incident_rate=rate
        )
        assert read_metrics(path)[1]["incident_rate"] == rate
        counts[rate] = len(meta["incidents"])
    assert counts[0] == 0
    assert counts[4] > 2 * counts[1] > 0, counts
    for bad in (-1, 10.5):
        with pytest.raises(ContractError, match="incident rate"):
            Simulator(fleet, 9, START, incident_rate=bad)


# --- incident labels ------------------------------------------------------------------------


def test_incident_labels_are_consistent_with_the_data(busy_history):
    frame, incidents = busy_history
    thresholds = load_thresholds()
    by_server = {s: g.set_index("timestamp") for s, g in frame.groupby("server")}
    last = frame["timestamp"].max()
    checked_precursor = checked_sudden = 0
    assert {i["type"] for i in incidents} & set(SUDDEN_TYPES)
    for inc in incidents:
        onset, end = pd.Timestamp(inc["onset"]), pd.Timestamp(inc["end"])
        assert onset < end
        if end > last:
            continue
        g = by_server[inc["server"]]
        during = g.loc[onset : end - pd.Timedelta(minutes=5)]
        # The labelled window is where the ground-truth state says critical_issue (offline
        # for a hardware fault: the host is down).
        if inc["type"] == "hardware_fault":
            assert (during["state_code"] == STATES.index("offline")).all(), inc
            assert (during["cpu_idle_pct"] == 100).all()
            checked_sudden += 1
            continue
        assert (during["state_code"] == STATES.index("critical_issue")).all(), inc
        if inc["type"] == "traffic_surge":
            checked_sudden += 1
            continue
        assert inc["has_precursor"] and inc["type"] in PRECURSOR_TYPES
        start = pd.Timestamp(inc["precursor_start"])
        lead = onset - start
        assert pd.Timedelta(minutes=30) <= lead <= pd.Timedelta(hours=8)
        metric = inc["metric"]
        t = thresholds.get(inc["profile"], metric)
        values = during[metric]
        # Onset lies inside the window: the metric is past critical from onset to end.
        assert values.apply(lambda v, t=t: t.breached(v, "critical")).all(), inc
        # The precursor builds up before onset: not critical at its start, moving toward it.
        before = g.loc[start : onset - pd.Timedelta(minutes=5), metric]
        assert not t.breached(before.iloc[0], "critical"), inc
        toward = before.iloc[-1] - before.iloc[0]
        assert toward > 0 if t.direction == "above" else toward < 0, inc
        checked_precursor += 1
    assert checked_precursor >= 10 and checked_sudden >= 1


def test_some_incidents_have_no_precursor_and_most_do(busy_history):
    _, incidents = busy_history
    sudden = sum(not i["has_precursor"] for i in incidents)
    assert 0 < sudden < 0.4 * len(incidents)


# --- scenarios ------------------------------------------------------------------------------


def test_degrading_scenario_starts_a_labelled_incident_with_precursor():
    sim = Simulator(build_fleet(SMALL), 1, START)
    for _ in range(10):
        sim.step()
    started = sim.apply_scenario(["ppdb001"], "degrading", "disk_fill", precursor_minutes=60)
    assert len(started) == 1
    inc = started[0].as_dict()
    assert inc["precursor_start"] == "2026-01-05T00:50:00Z"
    assert inc["onset"] == "2026-01-05T01:50:00Z" and inc["source"] == "scenario"
    disk = [sim.step()[1]["disk_usage_pct"][sim.index["ppdb001"]] for _ in range(14)]
    assert disk[-1] >= load_thresholds().get("database", "disk_usage_pct").critical
    assert disk[0] < disk[6] < disk[11]


def test_healthy_scenario_ends_an_incident_and_critical_starts_at_onset():
    sim = Simulator(build_fleet(SMALL), 1, START)
    sim.step()
    (inc,) = sim.apply_scenario(["ppweb001"], "critical", "connection_leak")
    assert inc.precursor_start is None and inc.onset == sim.time_of(1)
    _, values, state = sim.step()
    assert values["front_close_wait"][sim.index["ppweb001"]] >= 600
    sim.apply_scenario(["ppweb001"], "healthy")
    assert inc.end == sim.time_of(2)
    _, values, state = sim.step()
    assert values["front_close_wait"][sim.index["ppweb001"]] < 100


def test_bad_scenarios_are_refused_with_every_reason():
    sim = Simulator(build_fleet(SMALL), 1, START)
    with pytest.raises(ContractError) as err:
        sim.apply_scenario(["nope"], "exploding", "alien_attack", precursor_minutes=-5)
    text = str(err.value)
    assert "unknown scenario 'exploding'" in text
    assert "unknown incident type 'alien_attack'" in text
    assert (
        "precursor_minutes must be a whole number of minutes from 0 to 10080 (7 days), got -5"
        in (text)
    )
    assert "unknown servers: nope" in text


# --- backfill -------------------------------------------------------------------------------


def test_openmetrics_backfill_matches_history_values(tmp_path):
    fleet = build_fleet({"web_api": 1, "database": 1})
    end = START + dt.timedelta(hours=2)
    path, steps = write_openmetrics(tmp_path / "b.om", fleet, 3, START, end)
    assert steps == 25
    text = path.read_text()
    assert text.endswith("# EOF\n")
    assert "# TYPE linborg_cpu_user_pct gauge" in text
    frame, _, _ = simulate(fleet, 3, START, steps)
    want = frame[frame["server"] == "ppdb001"]["mem_used_pct"].to_numpy()
    got = [
        float(line.rsplit(" ", 2)[1])
        for line in text.splitlines()
        if line.startswith('linborg_mem_used_pct{server="ppdb001"')
    ]
    assert np.allclose(got, want)
    first = next(x for x in text.splitlines() if x.startswith("linborg_mem_used_pct{"))
    assert first.endswith(f" {int(START.timestamp())}")
    assert 'job="linborg-generator"' in first


def test_scheduled_scenario_gives_the_same_incident_in_history_and_live_fleet():
    from linborg.generator.live import LiveFleet

    fleet = build_fleet({"ml_compute": 2})
    origin = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    at = origin + dt.timedelta(hours=10)
    script = [
        (
            at,
            {
                "servers": ["ppml0002"],
                "scenario": "degrading",
                "incident": "memory_leak",
                "precursor_minutes": 90,
            },
        ),
    ]
    frame, incidents, _ = simulate(fleet, 3, origin, 200, scenarios=script)
    scripted = [i for i in incidents if i.source == "scenario"]
    assert len(scripted) == 1 and scripted[0].server == "ppml0002"
    assert scripted[0].precursor_start == at
    assert scripted[0].onset == at + dt.timedelta(minutes=90)
    # A live fleet with the same script, at the step of that onset, serves the same values.
    live = LiveFleet(
        fleet, 3, origin, clock=lambda: scripted[0].onset.timestamp(), scenarios=script
    )
    row = frame[(frame["server"] == "ppml0002") & (frame["timestamp"] == scripted[0].onset)]
    assert live.values["mem_used_pct"][1] == pytest.approx(row["mem_used_pct"].iloc[0])
    assert row["mem_used_pct"].iloc[0] > 90  # the leak is visible


def test_bad_scheduled_scenarios_fail_before_simulating():
    from linborg.generator.simulate import Simulator

    fleet = build_fleet({"ml_compute": 1})
    origin = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    sim = Simulator(fleet, 1, origin)
    with pytest.raises(ContractError, match="unknown servers"):
        sim.schedule(origin, {"servers": ["ppdb999"], "scenario": "degrading"})
    with pytest.raises(ContractError, match="needs servers and scenario"):
        sim.schedule(origin, {"server": "ppml0001", "scenario": "degrading"})
    sim.step()
    sim.step()
    with pytest.raises(ContractError, match="before"):
        sim.schedule(origin, {"servers": ["ppml0001"], "scenario": "healthy"})


def test_heldout_fresh_fleet_comes_from_its_own_seed_mix_and_start(tmp_path):
    june = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    mix = {"web_api": 2, "database": 1}
    path, meta = write_heldout(tmp_path / "h.parquet", 7, START, 30, 1, 99, mix, start=june)
    frame, stored = read_metrics(path)
    assert sorted(frame["server"].unique()) == ["ppdb001", "ppweb001", "ppweb002"]
    assert frame["timestamp"].min() == pd.Timestamp(june)
    assert len(frame) == 3 * 288
    assert stored["server_seeds"] == {"ppweb001": 99, "ppweb002": 99, "ppdb001": 99}
    assert stored["seed"] == 99 and stored["start"] == "2026-06-01T00:00:00Z"
    # ppweb002 of seed 99 is another server than the training fleet's ppweb002 (seed 7).
    train, _, _ = simulate(build_fleet(mix), 7, june, 288)
    a = frame[frame["server"] == "ppweb002"]["cpu_user_pct"].to_numpy()
    b = train[train["server"] == "ppweb002"]["cpu_user_pct"].to_numpy()
    assert not np.allclose(a, b)


def test_heldout_after_training_says_which_seed_each_server_came_from(tmp_path):
    mix = {"web_api": 1, "database": 1}
    _, meta = write_heldout(tmp_path / "h.parquet", 7, START, 2, 1, 8, mix)
    assert meta["server_seeds"] == {"ppweb001": 7, "ppdb001": 7, "ppweb051": 8, "ppdb051": 8}


def test_heldout_refuses_the_training_seed_for_a_fresh_fleet(tmp_path):
    import subprocess
    import sys

    args = ["generate", "heldout", "--out", str(tmp_path / "h.parquet"), "--seed", "7"]
    args += ["--start", "2026-06-01", "--days", "1", "--fleet", "web_api=1"]
    done = subprocess.run(
        [sys.executable, "-m", "linborg", *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert "--seed 7 is the training seed" in done.stderr
    assert not (tmp_path / "h.parquet").exists()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_one_line_per_day_in_a_log_and_one_rewritten_line_on_a_terminal(
    monkeypatch, capsys
):
    fleet = build_fleet({"web_api": 1})
    simulate(fleet, 3, START, 3 * 288, progress=True)
    log = capsys.readouterr().err
    assert "\r" not in log
    # a line after each day; the last part-day counts as a day
    assert [line.split(",")[0] for line in log.splitlines()] == [
        "generate: day 1/3",
        "generate: day 2/3",
        "generate: day 3/3",
    ]
    simulate(fleet, 3, START, 288 + 10, progress=True)
    assert capsys.readouterr().err.splitlines()[-1].startswith("generate: day 2/2, ")
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    simulate(fleet, 3, START, 3 * 288, progress=True)
    text = terminal.getvalue()
    assert text.count("\r") == 3 and text.count("\n") == 1 and text.endswith("\n")


def test_healthy_crossings_count_episodes_away_from_incidents():
    from linborg.generator.report import HEALTHY_MARGIN, healthy_crossings

    steps = 3 * 288  # three days of two servers
    ts = pd.date_range("2026-01-05", periods=steps, freq="5min", tz="UTC")
    frame = pd.DataFrame(
        {
            "timestamp": np.tile(ts, 2),
            "server": np.repeat(["ppdb001", "pprisk001"], steps),
            "profile": np.repeat(["database", "risk_analytics"], steps),
            "cpu_iowait_pct": np.repeat([15.0, 2.0], steps),
            "cpu_idle_pct": 20.0,
        }
    )
    db = frame["server"] == "ppdb001"
    # database iowait (warning 30, above): two episodes on day 1 (the second two steps long),
    # and one at the start of day 3 within 8 h of an incident, which does not count
    frame.loc[db & frame.index.isin([10, 50, 51]), "cpu_iowait_pct"] = 30.0
    frame.loc[db & frame.index.isin([2 * 288 + 2]), "cpu_iowait_pct"] = 40.0
    onset = ts[2 * 288 + 2 + HEALTHY_MARGIN // pd.Timedelta("5min")]  # exactly 8 h later
    incidents = [{"server": "ppdb001", "onset": onset.isoformat(), "end": ts[-1].isoformat()}]
    # risk_analytics idle (warning 4, below): 4 is past it, 4.1 is not
    risk = np.flatnonzero(~db)
    frame.loc[risk[[100, 200]], "cpu_idle_pct"] = [4.0, 4.1]
    table = healthy_crossings(frame, incidents).set_index(["profile", "metric"])
    assert set(table.index) == {("database", "cpu_iowait_pct"), ("risk_analytics", "cpu_idle_pct")}
    assert table.loc[("database", "cpu_iowait_pct"), "episodes"] == 2
    assert table.loc[("risk_analytics", "cpu_idle_pct"), "episodes"] == 1
    # database: healthy until 8 h before the precursor-less onset, i.e. up to step 2 * 288 + 1
    healthy_days = (2 * 288 + 2) / 288
    assert table.loc[("database", "cpu_iowait_pct"), "rate"] == pytest.approx(200 / healthy_days)
    assert table.loc[("database", "cpu_iowait_pct"), "share"] == pytest.approx(3 / (2 * 288 + 2))
    # the first row is the most frequent
    assert table.index[0] == ("database", "cpu_iowait_pct")
