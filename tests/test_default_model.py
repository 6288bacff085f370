"""The shipped default model loads and beats seasonal naive on freshly generated held-out data."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from linborg.bundle import load_bundle
from linborg.features import dense_frame
from linborg.generator.fleet import build_fleet
from linborg.generator.output import simulate
from linborg.trainer.evaluate import accuracy

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "models" / "default"


def test_default_model_beats_seasonal_naive_on_unseen_servers():
    forecaster = load_bundle(DEFAULT_MODEL)
    assert forecaster.spec["training"]["preset"] == "default"
    # A seed, a time window and server names the model never saw.
    fleet = build_fleet(
        {p: 2 for p in ("web_api", "database", "ml_compute", "risk_analytics")}, first=80
    )
    frame, _, _ = simulate(fleet, 2024, dt.datetime(2026, 6, 1, tzinfo=dt.UTC), int(2.5 * 288))
    names, profiles, values, first = dense_frame(frame)
    errors, origins = accuracy(forecaster, names, profiles, values, first, 36, set())
    assert origins >= 4
    h8 = errors[errors["horizon"] == "8h"]
    model_mae = h8.groupby("metric")["ae_tft"].mean()
    naive_mae = h8.groupby("metric")["ae_seasonal_naive"].mean()
    mase = (model_mae / naive_mae).replace(np.inf, np.nan).dropna()
    assert mase.mean() < 1.0, mase.to_dict()
    assert errors["ae_tft"].mean() < errors["ae_seasonal_naive"].mean()
