"""Evaluation: baselines, warning scoring, and the report from a tiny model."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from linborg.app.train import shipped_alert_rule
from linborg.contract import ContractError
from linborg.generator.fleet import build_fleet
from linborg.generator.output import simulate
from linborg.trainer.evaluate import (
    DEFAULT_ORIGIN_EVERY_MINUTES,
    LINEAR_POINTS,
    PASSES,
    evaluate,
    linear_forecast,
    write_report,
)

START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)


def test_linear_forecast_is_least_squares_extrapolated_from_now():
    rng = np.random.default_rng(0)
    hist = rng.normal(size=(LINEAR_POINTS, 2)).cumsum(axis=0)
    got = linear_forecast(hist[None], 24)[0]
    x = np.arange(-LINEAR_POINTS + 1, 1)
    for j in range(2):
        slope, intercept = np.polyfit(x, hist[:, j], 1)
        np.testing.assert_allclose(got[:, j], intercept + slope * np.arange(1, 25), rtol=1e-9)


@dataclass
class _Forecast:
    values: np.ndarray
    present: np.ndarray


class SeasonalFake:
    """A fake forecaster: p50 = the same time yesterday, p10/p90 at -10%/+10% (+0.1)."""

    spec: dict = {}

    def predict(self, windows, profiles, end_time_idx, servers=None):
        assert windows.shape[1:] == (288, 14)
        p50 = windows[:, :96].transpose(0, 2, 1)
        values = np.stack([p50 * 0.9, p50, p50 * 1.1 + 0.1], axis=-1)
        present = np.isfinite(windows).any(axis=1)
        values[~present] = np.nan
        return _Forecast(values, present)


def hand_made_label() -> dict:
    """One front_close_wait incident on ppweb001, 14 hours into day 2, with a 2-hour precursor."""
    onset = START + dt.timedelta(days=1, hours=14)

    def iso(t):
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")

    return {
        "server": "ppweb001",
        "type": "hand_made",
        "metric": "front_close_wait",
        "has_precursor": True,
        "precursor_start": iso(onset - dt.timedelta(hours=2)),
        "onset": iso(onset),
        "end": iso(onset + dt.timedelta(hours=1)),
    }


def _no_nan(text):
    raise AssertionError(f"report.json holds {text}, which is not JSON")


def test_evaluate_with_a_fake_forecaster_writes_the_scoreboard(tmp_path):
    fleet = build_fleet({"web_api": 2, "database": 1, "ml_compute": 1})
    frame, incidents, _ = simulate(fleet, 4, START, 3 * 288)
    labels = [i.as_dict() for i in incidents]
    labels.append(hand_made_label())
    result = evaluate(SeasonalFake(), frame, labels, alert_rule=shipped_alert_rule())
    s = result["summary"]
    # The fake is seasonal naive itself: MASE exactly 1 everywhere.
    assert s["mase_8h_mean"] == pytest.approx(1.0) and s["mase_max"] == pytest.approx(1.0)
    assert s["origin_every_minutes"] == 35 and s["origin_note"] is None
    assert s["origin_times_of_day"] == s["origins"]  # every origin at another time of day
    assert set(s["relative_mae_by_horizon"]) == {
        "tft",
        "last_value",
        "seasonal_naive",
        "mean_24h",
        "predict_linear",
    }
    assert s["relative_mae_by_horizon"]["tft"] == s["relative_mae_by_horizon"]["seasonal_naive"]
    assert set(s["per_series"]["8h"]) == {"all", "quiet", "other"}
    assert s["per_series"]["8h"]["quiet"]["series"] > 0
    sb = s["scoreboard"]
    assert set(sb["best"]) == {
        "tft_risk",
        "tft_time_to_breach",
        "alert_rule",
        "static_threshold",
        "predict_linear",
        "perfect_forecast",
    }
    assert {k for k, v in sb["detectors"].items() if v["family"] == "alert_rule"} == {
        "LinborgPredictedIncident critical",
        "LinborgPredictedIncident critical held 2 checks",
        "LinborgPredictedIncident any severity",
        "LinborgPredictedIncident any severity held 2 checks",
    }
    assert sb["checks"] == len(range(287, 3 * 288, 3))
    assert any(e["type"] == "hand_made" for e in sb["incidents"])
    assert s["incidents_at_risk_threshold"] == sb["detectors"]["tft_risk >= 50"]
    # No server seen in training: the unseen/seen target cannot be measured, so n/a.
    unseen = next(v for k, v in s["targets"].items() if k.startswith("unseen/seen"))
    assert unseen == {"measured": None, "met": None}
    path = write_report(result, tmp_path / "r")
    text = path.read_text()
    assert "| unseen/seen MASE at 8 h <= 1.10 | n/a | n/a |" in text
    assert "exactly 30 minutes before onset counts" in text
    reference = "| perfect_forecast (reference: reads the actual future) | `perfect forecast past "
    assert reference in text
    assert "## Per metric: TFT MAE / best naive baseline MAE" in text
    assert "(all metrics, native units)" not in text
    for png in ("scoreboard.png", "relative_mae_by_horizon.png", "coverage_by_horizon.png"):
        assert (tmp_path / "r" / png).read_bytes()[:4] == b"\x89PNG"
    doc = json.loads((tmp_path / "r" / "report.json").read_text(), parse_constant=_no_nan)
    assert doc["scoreboard"]["best"].keys() == sb["best"].keys()


def test_evaluate_without_labels_says_the_scoreboard_is_not_measured(tmp_path):
    fleet = build_fleet({"web_api": 1, "generic": 1})
    frame, _, _ = simulate(fleet, 5, START, int(2.5 * 288))
    result = evaluate(SeasonalFake(), frame, None, origin_every_minutes=360)
    s = result["summary"]
    assert s["scoreboard"] is None and "only 4 times of day" in s["origin_note"]
    recall = [v for k, v in s["targets"].items() if k.startswith("TFT recall")]
    assert recall and all(v == {"measured": None, "met": None} for v in recall)
    text = write_report(result, tmp_path / "r").read_text()
    assert "n/a: the data has no incident labels" in text and "**no** | n/a" not in text
    # Without labels each detector's warnings are counted, their truth unknown.
    w = s["warnings_without_labels"]
    assert w["servers"] == 2 and w["checks"] == len(range(287, int(2.5 * 288), 3))
    assert {r["family"] for r in w["detectors"].values()} >= {"tft_risk", "static_threshold"}
    assert "### How often each detector warns here" in text
    assert "| static_threshold | `static warning` |" in text


def test_evaluate_without_labels_counts_a_warning_that_never_ends_once_per_server(tmp_path):
    fleet = build_fleet({"web_api": 1, "generic": 1})
    frame, _, _ = simulate(fleet, 5, START, int(2.5 * 288))
    frame["mem_used_pct"] = 99.0  # past critical on both servers all along
    s = evaluate(SeasonalFake(), frame, None)["summary"]
    w = s["warnings_without_labels"]
    static = w["detectors"]["static warning"]
    assert (static["episodes"], static["servers_warned"]) == (2, 2)
    assert static["per_100_server_days"] == pytest.approx(200 / w["server_days"])
    # a day and a half of checks every 15 minutes on two servers
    assert w["server_days"] == pytest.approx(2 * w["checks"] * 15 / 1440)


def test_evaluate_writes_a_report_with_baselines(tmp_path):
    from linborg.bundle import save_bundle
    from linborg.trainer.train import train

    fleet = build_fleet({"web_api": 1, "database": 1, "ml_compute": 1})
    frame, incidents, _ = simulate(fleet, 4, START, int(2.5 * 288))
    model, summary = train(frame, "tiny", seed=2, progress=False, log=lambda m: None)
    from linborg.bundle import load_bundle

    forecaster = load_bundle(save_bundle(model, tmp_path / "b", summary))
    result = evaluate(
        forecaster,
        frame,
        [i.as_dict() for i in incidents],
        origin_every_minutes=175,
        incident_every_minutes=120,
        seen_servers={"ppdb001"},
    )
    s = result["summary"]
    assert s["servers"] == 3 and s["servers_seen_in_training"] == 1 and s["origins"] >= 2
    assert set(s["relative_mae_by_horizon"]) == {
        "tft",
        "last_value",
        "seasonal_naive",
        "mean_24h",
        "predict_linear",
    }
    assert set(s["relative_mae_by_horizon"]["tft"]) == {"30m", "1h", "2h", "4h", "8h"}
    assert 0 <= s["coverage_p10_p90"] <= 1
    assert np.isfinite(s["unseen_vs_seen_mase_ratio"])
    assert s["missing_metrics_cost"]["mase_8h_other_metrics_when_absent"] > 0
    members = s["scoreboard"]["detectors"]
    assert {f"tft_risk >= {t}" for t in (10, 50, 90)} <= set(members)
    assert all(m["false_per_100_server_days"] >= 0 for m in members.values())
    errors = result["errors"]
    # Baselines by hand on one row: last value and same time yesterday, 30 minutes ahead.
    from linborg.features import dense_frame

    names, _, values, _ = dense_frame(frame)
    row = errors[(errors["metric"] == "mem_used_pct") & (errors["horizon"] == "30m")].iloc[0]
    o, i, j = int(row["origin"]), names.index(row["server"]), 5
    actual = values[i, o + 6, j]
    assert row["ae_last_value"] == pytest.approx(abs(values[i, o, j] - actual))
    assert row["ae_seasonal_naive"] == pytest.approx(abs(values[i, o + 6 - 288, j] - actual))
    path = write_report(result, tmp_path / "report")
    text = path.read_text()
    assert "| target | measured | met |" in text and "predict_linear" in text
    assert json.loads((tmp_path / "report" / "report.json").read_text())["servers"] == 3
    assert (tmp_path / "report" / "scoreboard.png").read_bytes()[:4] == b"\x89PNG"
    assert isinstance(result["by_metric"], pd.DataFrame)


def test_evaluate_scores_the_detectors_against_a_thresholds_override(tmp_path):
    fleet = build_fleet({"web_api": 2, "database": 1})
    frame, _, _ = simulate(fleet, 4, START, 3 * 288)
    labels = [hand_made_label()]
    # Web servers' front_close_wait is always at or past a warning level of 0.
    override = tmp_path / "thresholds.yml"
    override.write_text(
        "profiles:\n  web_api:\n    front_close_wait: {warning: 0, critical: 600}\n"
    )

    def static_warned(result):
        row = result["summary"]["scoreboard"]["detectors"]["static warning"]
        return row["recall_by_type"]["hand_made"]["warned"]

    packaged = evaluate(SeasonalFake(), frame, labels)
    overridden = evaluate(SeasonalFake(), frame, labels, thresholds_file=str(override))
    assert static_warned(packaged) == 0  # nothing in the data crosses 150 before onset
    assert static_warned(overridden) == 1
    # The accuracy figures do not depend on the thresholds.
    assert overridden["summary"]["mase_max"] == packaged["summary"]["mase_max"]
    assert packaged["summary"]["thresholds_file"] is None
    text = write_report(overridden, tmp_path / "r").read_text()
    assert f"overridden by {override}" in text
    bad = tmp_path / "bad.yml"
    bad.write_text("profiles:\n  web_api:\n    front_close_wait: {warning: 700, critical: 600}\n")
    with pytest.raises(ContractError, match="front_close_wait"):
        evaluate(SeasonalFake(), frame, labels, thresholds_file=str(bad))


def test_evaluate_reports_the_progress_of_each_pass_to_its_end():
    fleet = build_fleet({"web_api": 1, "generic": 1})
    frame, _, _ = simulate(fleet, 5, START, int(2.5 * 288))
    calls = []
    s = evaluate(SeasonalFake(), frame, None, progress=lambda *call: calls.append(call))["summary"]
    for stage in PASSES:
        mine = [(done, total) for st, done, total in calls if st == stage]
        totals = {total for _, total in mine}
        assert len(totals) == 1 and [d for d, _ in mine] == list(range(1, totals.pop() + 1))
    assert max(d for st, d, _ in calls if st == PASSES[0]) == s["origins"]
    checks = s["warnings_without_labels"]["checks"]
    assert max(d for st, d, _ in calls if st == PASSES[2]) == checks
    assert [c[0] for c in calls] == sorted((c[0] for c in calls), key=PASSES.index)


def test_the_progress_printer_prints_a_line_at_each_tenth_and_at_the_end(capsys):
    from linborg.app.train import tenths_printer

    now = iter(range(0, 1000, 2))
    progress = tenths_printer("evaluate", clock=lambda: next(now))
    for done in range(1, 276):
        progress("forecast origins", done, 275)
    for done in range(1, 4):
        progress("early-warning checks", done, 3)
    lines = capsys.readouterr().err.splitlines()
    firsts = [ln for ln in lines if "forecast origins" in ln]
    assert [ln.split(": ")[2].split(" ")[0] for ln in firsts] == [
        f"{-(-275 * k // 10)}/275" for k in range(1, 10)
    ] + ["275/275"]
    assert firsts[0] == "evaluate: forecast origins: 28/275 (10%), 2 s elapsed"
    assert len(lines) == 13 and lines[-1].startswith("evaluate: early-warning checks: 3/3 (100%)")


def test_the_command_line_default_origin_stride_is_evaluates_own():
    from linborg.app.cli import build_parser

    args = build_parser().parse_args(["evaluate", "--model", "m", "--out", "o"])
    assert args.origin_every == DEFAULT_ORIGIN_EVERY_MINUTES == 35


def test_evaluate_runs_the_backtest_once_on_data_without_node_exporters_absent_metrics():
    from linborg.trainer.train import NODE_EXPORTER_ABSENT

    fleet = build_fleet({"generic": 2})
    frame, _, _ = simulate(fleet, 5, START, int(2.5 * 288))
    calls = []
    with_them = evaluate(SeasonalFake(), frame, None, progress=lambda *c: calls.append(c[0]))
    assert calls.count(PASSES[1]) == with_them["summary"]["origins"]
    for m in NODE_EXPORTER_ABSENT:
        frame[m] = np.nan
    calls.clear()
    s = evaluate(SeasonalFake(), frame, None, progress=lambda *c: calls.append(c[0]))["summary"]
    assert PASSES[1] not in calls and calls.count(PASSES[0]) == s["origins"]
    cost = s["missing_metrics_cost"]
    assert cost["mase_8h_other_metrics_when_absent"] == cost["mase_8h_other_metrics_all_present"]
