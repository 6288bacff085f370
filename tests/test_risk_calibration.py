"""Risk above healthy: the ceilings `linborg calibrate-risk` fits, and how the score uses them."""

from __future__ import annotations

import datetime as dt
import json
import stat

import numpy as np
import pandas as pd
import pytest

from linborg.app.cli import main
from linborg.bundle import SPEC, save_bundle
from linborg.contract import METRIC_NAMES, STEP_SECONDS
from linborg.features import ENCODER_STEPS
from linborg.generator.fleet import build_fleet
from linborg.generator.output import simulate
from linborg.parquet import write_metrics
from linborg.risk import above_healthy, assess, healthy_risk
from linborg.thresholds import load_thresholds
from linborg.trainer import riskcal
from linborg.trainer.train import train

TH = load_thresholds()
M = len(METRIC_NAMES)
START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)


def test_risk_above_healthy_maps_the_ceiling_to_zero_and_keeps_100():
    raw = np.array([[0.0, 30.0, 40.0, 70.0, 100.0]])
    h = np.full(raw.shape, 40.0)
    assert above_healthy(raw, h).tolist() == [[0.0, 0.0, 0.0, 50.0, 100.0]]
    # A ceiling at the largest risk a first step can score (urgency 0.99583): nothing is above.
    top = 100 * (1 - 0.4 / 96)
    assert above_healthy(np.array([top, 99.0]), np.full(2, top)).tolist() == [0.0, 0.0]
    assert above_healthy(np.array([100.0]), np.array([100.0])).tolist() == [0.0]
    # No ceiling: the raw risk.
    assert above_healthy(raw, np.zeros(raw.shape)).tolist() == raw.tolist()


def test_the_ceilings_are_looked_up_per_profile_and_metric_and_zero_where_not_fitted():
    cal = {"healthy_risk": {"database": {"cpu_iowait_pct": 60.0, "mem_used_pct": 12.5}}}
    h = healthy_risk(cal, ["database", "web_api"], list(METRIC_NAMES))
    assert h.shape == (2, M)
    assert h[0, METRIC_NAMES.index("cpu_iowait_pct")] == 60.0
    assert h[0, METRIC_NAMES.index("mem_used_pct")] == 12.5
    assert h[0].sum() == 72.5 and h[1].sum() == 0.0  # web_api: not fitted
    assert healthy_risk(None, ["database"], list(METRIC_NAMES)) is None
    assert healthy_risk({"healthy_risk": {}}, ["database"], list(METRIC_NAMES)) is None
    # The 30-minute risk has its own ceilings; a calibration without them gives the 8-hour ones.
    io = METRIC_NAMES.index("cpu_iowait_pct")
    assert healthy_risk(cal, ["database"], list(METRIC_NAMES), "30m")[0, io] == 60.0
    both = {**cal, "healthy_risk_30m": {"database": {"cpu_iowait_pct": 7.0}}}
    assert healthy_risk(both, ["database"], list(METRIC_NAMES), "30m")[0, io] == 7.0
    assert healthy_risk(both, ["database"], list(METRIC_NAMES), "8h")[0, io] == 60.0


def _flat(value, spread=1.0):
    return np.tile([value - spread, value, value + spread], (96, 1)).astype(float)


def test_a_metric_at_its_healthy_ceiling_no_longer_drives_the_risk():
    # database iowait warning is 30: p50 29 with a band of 2 scores about 31 raw; memory heading
    # for 95 from 90 scores lower raw, and has a low ceiling.
    f = np.zeros((1, M, 96, 3))
    for j in range(M):
        f[0, j] = _flat(1.0 if METRIC_NAMES[j] != "cpu_idle_pct" else 60.0)
    io, mem = METRIC_NAMES.index("cpu_iowait_pct"), METRIC_NAMES.index("mem_used_pct")
    f[0, io] = _flat(29.0, 2.0)
    p50 = np.linspace(90, 94.5, 96)
    f[0, mem] = np.stack([p50 - 0.5, p50, p50 + 0.5], -1)
    raw = assess(f, ["database"], list(METRIC_NAMES), TH)
    assert raw.driver[0] == io
    h = np.zeros((1, M))
    h[0, io] = raw.per_metric[0, io] + 1  # the healthy fleet's iowait reached this
    h[0, mem] = 5.0
    cal = assess(f, ["database"], list(METRIC_NAMES), TH, healthy=h)
    assert cal.per_metric[0, io] == 0.0
    assert cal.driver[0] == mem
    expect = 100 * (raw.per_metric[0, mem] - 5.0) / 95.0
    assert cal.score[0] == pytest.approx(expect)
    # Time to breach reads the forecast, not the ceilings.
    np.testing.assert_array_equal(cal.time_to_breach, raw.time_to_breach)


def test_checks_near_an_incident_are_not_healthy():
    t0 = 1_800_000_000 - 1_800_000_000 % 86400
    checks = t0 + np.arange(0, 24 * 3600, 900)
    onset = t0 + 12 * 3600
    iso = lambda s: pd.Timestamp(s, unit="s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    labels = [
        {"server": "b", "onset": iso(onset), "end": iso(onset + 1800), "precursor_start": None},
        {"server": "c", "onset": iso(onset), "end": iso(onset + 1800)},
        {"server": "c", "onset": iso(onset), "end": iso(onset), "precursor_start": iso(t0)},
        {"server": "elsewhere", "onset": iso(onset), "end": iso(onset)},
    ]
    ok = riskcal.healthy_checks(["a", "b", "c"], checks, labels)
    assert ok[0].all()  # no incident
    bad = ~ok[1]
    # From 8 h before onset to 1 h after the end, both ends included.
    assert checks[bad].min() == onset - 8 * 3600
    assert checks[bad].max() == onset + 1800 + 3600
    assert bad.sum() == (8 * 3600 + 1800 + 3600) // 900 + 1
    # A precursor that began earlier than 8 h before onset widens the span.
    assert checks[~ok[2]].min() == t0


def test_fit_keeps_the_largest_ceiling_of_each_file_and_window_and_skips_thin_profiles():
    a = (
        {
            "8h": {"web_api": np.full(M, 10.0), "database": np.full(M, 5.0)},
            "30m": {"web_api": np.full(M, 3.0), "database": np.full(M, 1.0)},
        },
        {"web_api": 200, "database": 50},
    )
    b = (
        {"8h": {"web_api": np.arange(M, dtype=float) * 2}, "30m": {"web_api": np.full(M, 1.0)}},
        {"web_api": 100},
    )
    out = riskcal.fit([a, b], ["a.parquet", "b.parquet"])
    web = out["healthy_risk"]["web_api"]
    assert web[METRIC_NAMES[0]] == 10.0 and web[METRIC_NAMES[-1]] == 2.0 * (M - 1)
    assert set(out["healthy_risk_30m"]["web_api"].values()) == {3.0}
    assert out["healthy_checks"] == {"database": 50, "web_api": 300}
    assert "database" not in out["healthy_risk"] and out["not_fitted"] == ["database"]
    assert "database" not in out["healthy_risk_30m"]
    assert out["sources"] == ["a.parquet", "b.parquet"] and out["check_every_minutes"] == 15


class _Fc:
    def __init__(self, values, present):
        self.values, self.present = values, present


class Echo:
    """A fake forecaster: p50 = the window's last value, band +-1."""

    spec: dict = {}

    def predict(self, windows, profiles, end, servers=None):
        last = windows[:, -1, :]
        p50 = np.repeat(np.nan_to_num(last)[:, :, None], 96, axis=2)
        return _Fc(np.stack([p50 - 1, p50, p50 + 1], -1), np.isfinite(last))


def test_fleet_ceilings_read_only_healthy_checks():
    days = 3
    steps = days * 288
    rows = []
    t = pd.date_range("2026-03-02", periods=steps, freq="5min", tz="UTC")
    for server in ("ppdb001", "ppdb002"):
        df = pd.DataFrame({m: 1.0 for m in METRIC_NAMES}, index=range(steps))
        df["cpu_idle_pct"] = 60.0
        df["cpu_iowait_pct"] = 20.0
        if server == "ppdb002":
            df.loc[ENCODER_STEPS + 60 : ENCODER_STEPS + 70, "cpu_iowait_pct"] = 29.0  # incident
            df.loc[steps - 32 : steps - 29, "cpu_iowait_pct"] = 25.0  # healthy, later
        df["timestamp"], df["server"], df["profile"] = t, server, "database"
        rows.append(df)
    frame = pd.concat(rows, ignore_index=True)
    onset = t[ENCODER_STEPS + 66].strftime("%Y-%m-%dT%H:%M:%SZ")
    labels = [{"server": "ppdb002", "onset": onset, "end": onset}]
    top, n = riskcal.fleet_ceilings(Echo(), frame, labels, TH)
    io = METRIC_NAMES.index("cpu_iowait_pct")

    def risk_at(v):
        f = np.zeros((1, M, 96, 3))
        for j, m in enumerate(METRIC_NAMES):
            f[0, j] = _flat({"cpu_idle_pct": 60.0, "cpu_iowait_pct": v}.get(m, 1.0))
        return assess(f, ["database"], list(METRIC_NAMES), TH).per_metric[0, io]

    assert risk_at(29.0) > risk_at(25.0) > risk_at(20.0)
    assert top["8h"]["database"][io] == pytest.approx(risk_at(25.0))  # not the incident's 29
    checks = np.arange(ENCODER_STEPS - 1, steps, 3)
    # The incident's checks (8 h before onset to 1 h after its end) are not counted.
    o = ENCODER_STEPS + 66
    near = ((checks >= o - 8 * 3600 // STEP_SECONDS) & (checks <= o + 3600 // STEP_SECONDS)).sum()
    assert near == 27  # the span starts before the first check
    assert n["database"] == 2 * len(checks) - near


@pytest.fixture(scope="module")
def tiny_and_fleet(tmp_path_factory):
    frame, _, _ = simulate(build_fleet({"web_api": 1, "database": 1}), 4, START, 864)
    model, summary = train(frame, "tiny", seed=3, progress=False, log=lambda m: None)
    d = tmp_path_factory.mktemp("rc")
    bundle = save_bundle(model, d / "tiny", summary)
    later = START + dt.timedelta(days=30)
    fresh, _, _ = simulate(build_fleet({"web_api": 1, "database": 1}), 99, later, 864)
    data = d / "fresh.parquet"
    write_metrics(fresh, data)
    return bundle, data


def copy_of(tiny_and_fleet, tmp_path):
    """Return (a copy of the tiny bundle that a test may rewrite, the fresh fleet's file)."""
    import shutil

    src, data = tiny_and_fleet
    shutil.copytree(src, tmp_path / "b")
    return tmp_path / "b", data


def test_calibrate_risk_writes_the_ceilings_into_the_bundle_and_evaluate_uses_them(
    tiny_and_fleet, tmp_path, capsys
):
    bundle, data = copy_of(tiny_and_fleet, tmp_path)
    assert main(["calibrate-risk", "--model", str(bundle), "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert f"wrote risk_calibration into {bundle / SPEC}" in out
    spec = json.loads((bundle / SPEC).read_text())
    cal = spec["risk_calibration"]
    assert set(cal["healthy_risk"]) == {"web_api", "database"}
    assert set(cal["healthy_risk"]["web_api"]) == set(METRIC_NAMES)
    assert all(0 <= v <= 100 for row in cal["healthy_risk"].values() for v in row.values())
    assert cal["sources"] == [str(data)]
    assert stat.S_IMODE((bundle / SPEC).stat().st_mode) == 0o644
    assert (
        main(
            ["evaluate", "--model", str(bundle), "--data", str(data), "--out", str(tmp_path / "e")]
        )
        == 0
    )
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert report["risk_calibration"].startswith("risk above healthy")
    assert str(data) in report["risk_calibration"]


def test_calibrate_risk_refuses_a_fleet_shorter_than_a_day_of_checks(
    tiny_and_fleet, tmp_path, capsys
):
    from linborg.parquet import read_metrics

    bundle, data = copy_of(tiny_and_fleet, tmp_path)
    frame, _ = read_metrics(data, allow_missing=True)
    short = tmp_path / "short.parquet"
    cut = frame["timestamp"].min() + pd.Timedelta(hours=30)
    write_metrics(frame[frame["timestamp"] < cut], short)
    before = (bundle / SPEC).read_text()
    assert main(["calibrate-risk", "--model", str(bundle), "--data", str(short)]) == 1
    assert "no profile has a day of healthy checks" in capsys.readouterr().err
    assert (bundle / SPEC).read_text() == before


def test_ceilings_are_fitted_against_the_thresholds_the_fleet_alerts_on(
    tiny_and_fleet, tmp_path, capsys
):
    bundle, data = copy_of(tiny_and_fleet, tmp_path)
    assert main(["calibrate-risk", "--model", str(bundle), "--data", str(data)]) == 0
    packaged = json.loads((bundle / SPEC).read_text())["risk_calibration"]
    assert packaged["thresholds_file"] is None
    # A fleet that alerts on user CPU at 2%: every healthy server is "at risk" there.
    th = tmp_path / "th.yaml"
    th.write_text("defaults:\n  cpu_user_pct: {warning: 2, critical: 3}\n")
    assert (
        main(
            ["calibrate-risk", "--model", str(bundle), "--data", str(data), "--thresholds", str(th)]
        )
        == 0
    )
    mine = json.loads((bundle / SPEC).read_text())["risk_calibration"]
    assert mine["thresholds_file"] == str(th)
    for prof in ("web_api", "database"):
        assert mine["healthy_risk"][prof]["cpu_user_pct"] > 90
        assert (
            mine["healthy_risk"][prof]["cpu_user_pct"]
            > packaged["healthy_risk"][prof]["cpu_user_pct"]
        )
        assert (
            mine["healthy_risk"][prof]["mem_used_pct"]
            == packaged["healthy_risk"][prof]["mem_used_pct"]
        )
    capsys.readouterr()
    # Scored against other levels than it was fitted on, the report says so.
    out = tmp_path / "e"
    assert main(["evaluate", "--model", str(bundle), "--data", str(data), "--out", str(out)]) == 0
    words = json.loads((out / "report.json").read_text())["risk_calibration"]
    assert f"fitted against {th}, not the packaged thresholds" in words
    assert (
        main(
            [
                "calibrate-risk",
                "--model",
                str(bundle),
                "--data",
                str(data),
                "--thresholds",
                str(tmp_path / "none.yaml"),
            ]
        )
        == 2
    )


class Climb(Echo):
    """A fake forecaster whose p50 climbs 20 points over 8 hours from the last value."""

    def predict(self, windows, profiles, end, servers=None):
        fc = super().predict(windows, profiles, end)
        fc.values = fc.values + np.linspace(0, 20, 96)[None, None, :, None]
        return fc


def test_the_30_minute_ceilings_come_from_the_30_minute_risk():
    steps = 2 * 288
    t = pd.date_range("2026-03-02", periods=steps, freq="5min", tz="UTC")
    df = pd.DataFrame({m: 1.0 for m in METRIC_NAMES}, index=range(steps))
    df["cpu_idle_pct"], df["cpu_iowait_pct"] = 60.0, 20.0
    df["timestamp"], df["server"], df["profile"] = t, "ppdb001", "database"
    top, _ = riskcal.fleet_ceilings(Climb(), df, [], TH)
    io = METRIC_NAMES.index("cpu_iowait_pct")
    f = Climb().predict(np.array(df[list(METRIC_NAMES)], float)[None], ["database"], 0).values
    for window, steps_ in (("8h", 96), ("30m", 6)):
        want = assess(f, ["database"], list(METRIC_NAMES), TH, steps_).per_metric[0, io]
        assert top[window]["database"][io] == pytest.approx(want)
    # iowait climbs past database's warning (30) within 8 h but not within 30 minutes
    assert top["8h"]["database"][io] > 50 > top["30m"]["database"][io]
