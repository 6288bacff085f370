"""A tiny trained bundle and its servers' last windows, for tests of parts added to a network."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from linborg.bundle import save_bundle
from linborg.contract import METRIC_NAMES
from linborg.features import ENCODER_STEPS, time_index
from linborg.generator.fleet import build_fleet
from linborg.generator.output import simulate
from linborg.trainer.train import train

START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
SERVERS = ("ppweb001", "ppdb001")
PROFILES = ["web_api", "database"]


def tiny_fleet_bundle(directory: Path) -> tuple[pd.DataFrame, Path]:
    """Return (3 days of a web and a database server, a tiny bundle trained on them)."""
    frame, _, _ = simulate(build_fleet({"web_api": 1, "database": 1}), 4, START, 3 * 288)
    model, summary = train(frame, "tiny", seed=3, progress=False, log=lambda m: None)
    summary["source"] = "synthetic test fleet"
    return frame, save_bundle(model, directory, summary)


def last_windows(frame: pd.DataFrame) -> tuple[np.ndarray, list[str], int]:
    """Return (the two servers' last 24-hour windows, their profiles, the last step index)."""
    window = np.stack(
        [
            frame[frame["server"] == s][list(METRIC_NAMES)].to_numpy()[-ENCODER_STEPS:]
            for s in SERVERS
        ]
    )
    return window, list(PROFILES), int(time_index(frame["timestamp"]).max())


def assert_reloads_alike(model, bundle: Path, frame: pd.DataFrame) -> None:
    """Assert that ``bundle`` (saved from ``model``) forecasts the frame's last windows alike.

    The reloaded bundle goes through the exporter's path (``Forecaster.inputs`` and ``raw``,
    with the fused selection), the trained network through its own forward.
    """
    import torch

    from linborg.bundle import load_bundle

    window, profiles, end = last_windows(frame)
    reloaded = load_bundle(bundle)
    x = reloaded.inputs(np.nan_to_num(window), np.ones((2, 14), bool), profiles, end)
    model.eval()
    with torch.inference_mode():
        direct = torch.stack(list(model(x)["prediction"]), 1).numpy()
    np.testing.assert_allclose(reloaded.raw(x), direct, rtol=1e-4, atol=1e-4)  # fused selection
