"""Evaluation: baselines, warning scoring, and the report from a tiny model."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from generator.fleet import build_fleet
from generator.output import simulate
from trainer.evaluate import LINEAR_POINTS, evaluate, linear_forecast, score_warnings, write_report

START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)


def test_linear_forecast_is_least_squares_extrapolated_from_now():
    rng = np.random.default_rng(0)
    hist = rng.normal(size=(LINEAR_POINTS, 2)).cumsum(axis=0)
    got = linear_forecast(hist[None], 24)[0]
    x = np.arange(-LINEAR_POINTS + 1, 1)
    for j in range(2):
        slope, intercept = np.polyfit(x, hist[:, j], 1)
        np.testing.assert_allclose(got[:, j], intercept + slope * np.arange(1, 25), rtol=1e-9)


def test_warnings_are_scored_for_recall_lead_time_and_false_alarms():
    first = int(START.timestamp()) // 300
    checks = np.arange(0, 2000, 3)
    warned = np.zeros((2, len(checks)), bool)

    def at(step):
        return (START + dt.timedelta(minutes=5 * step)).strftime("%Y-%m-%dT%H:%M:%SZ")

    labels = [
        # warned from 2 h before onset: caught, lead 120 minutes
        {"server": "a", "onset": at(600), "end": at(630), "has_precursor": True},
        # warned only 15 minutes before onset: not caught 30 minutes ahead
        {"server": "a", "onset": at(1200), "end": at(1230), "has_precursor": True},
        # never warned, no precursor
        {"server": "b", "onset": at(900), "end": at(920), "has_precursor": False},
    ]
    warned[0, (checks >= 576) & (checks < 630)] = True
    warned[0, (checks >= 1197) & (checks < 1200)] = True
    warned[1, (checks >= 1500) & (checks < 1530)] = True  # nothing follows: false
    r = score_warnings(["a", "b"], checks, warned, labels, first, 2000, 3)
    assert r["incidents_with_precursor"] == 2 and r["recall_30m"] == 0.5
    assert r["median_lead_minutes"] == pytest.approx((120 + 15) / 2)
    assert r["incidents_without_precursor"] == 1 and r["recall_30m_without_precursor"] == 0
    assert r["false_warnings"] == 1
    assert r["false_warnings_per_100_server_days"] == pytest.approx(100 / (2 * 2000 / 288))


def test_evaluate_writes_a_report_with_baselines(tmp_path):
    from trainer.bundle import save_bundle
    from trainer.train import train

    fleet = build_fleet({"web_api": 1, "database": 1, "ml_compute": 1})
    frame, incidents, _ = simulate(fleet, 4, START, int(2.5 * 288))
    model, summary = train(frame, "tiny", seed=2, progress=False, log=lambda m: None)
    from trainer.bundle import load_bundle

    forecaster = load_bundle(save_bundle(model, tmp_path / "b", summary))
    result = evaluate(
        forecaster,
        frame,
        [i.as_dict() for i in incidents],
        origin_every_minutes=180,
        incident_every_minutes=120,
        seen_servers={"ppdb001"},
    )
    s = result["summary"]
    assert s["servers"] == 3 and s["servers_seen_in_training"] == 1 and s["origins"] >= 2
    assert set(s["mae_by_horizon"]) == {"tft", "last_value", "seasonal_naive", "predict_linear"}
    assert set(s["mae_by_horizon"]["tft"]) == {"30m", "1h", "2h", "4h", "8h"}
    assert 0 <= s["coverage_p10_p90"] <= 1
    assert np.isfinite(s["unseen_vs_seen_mase_ratio"])
    assert s["missing_metrics_cost"]["mase_8h_other_metrics_when_absent"] > 0
    assert set(s["incidents_tft_by_threshold"]) == {"30", "40", "50", "60", "70", "80", "90"}
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
    assert (tmp_path / "report" / "mae_by_horizon.png").read_bytes()[:4] == b"\x89PNG"
    assert isinstance(result["by_metric"], pd.DataFrame)
