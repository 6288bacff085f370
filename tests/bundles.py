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
