"""Feature building: the long metrics table -> model inputs. Trainer and exporter both call this.

The model sees, per server and 5-minute step:
  - the 14 metrics as targets (and past inputs), an absent metric filled with SENTINEL;
  - one static flag per metric, ``present_<metric>`` = 1 when the server has that series;
  - the known future time features MODEL_TIME_FEATURES (bounded, so no fitted scaler);
  - for each future step and metric, the value 24 hours earlier (``seasonal_<metric>``): what
    seasonal naive knows. It lies inside the 24-hour encoder window (step t+h-288 for future
    step t+h), so it is legal and the exporter needs no extra history. The frame holds zeros
    in these columns; the model fills its decoder steps from the normalised encoder window
    at SEASONAL_POSITIONS (``linborg.model.SeasonalTFT``), the same code in training and
    serving;
  - its profile as a static categorical; a network trained with ``--unknown-profile`` sees a
    plain host (profile ``generic``, a hostname that follows no profile's convention) as the
    profile ``unknown`` (``network_profiles``), so that it can tell a user's plain VMs from the
    generator's ``generic`` servers.
Server names are never an input, so a server the model never saw is forecast like any other.
Short gaps inside a present series are filled from the neighbouring samples (forward, then
backward); a series with less than MIN_PRESENT_FRACTION of its samples counts as absent.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from linborg.contract import (
    FALLBACK_PROFILE,
    METRIC_NAMES,
    PROFILE,
    SERVER,
    STEP_SECONDS,
    TIMESTAMP,
    ProfileMatcher,
)
from linborg.timefeatures import time_features

#: 24 hours of context and 8 hours of horizon, in 5-minute steps.
ENCODER_STEPS = 288
HORIZON_STEPS = 96
#: Filled in for an absent metric; every real LINBORG value is >= 0.
SENTINEL = -1.0
#: A series with fewer samples than this share of its window is treated as absent.
MIN_PRESENT_FRACTION = 0.5
#: Time features the model takes as known future inputs (all within [-1, 1] or {0, 1}).
MODEL_TIME_FEATURES: tuple[str, ...] = (
    "hour_sin",
    "hour_cos",
    "week_sin",
    "week_cos",
    "is_weekend",
    "is_morning_spike",
    "is_market_hours",
    "is_end_of_day",
)
TIME_IDX = "time_idx"
#: The seasonal input's lag: the same time yesterday, in steps.
SEASONAL_LAG = 288
#: What a network trained with ``--unknown-profile`` sees as the profile of a plain host: a name
#: no contract profile has, so the profile encoder gives it its spare code (``nan``).
UNKNOWN_PROFILE = "unknown"


def network_profiles(servers, profiles) -> list[str]:
    """Return the profile the network sees for each server under ``--unknown-profile``.

    A server of profile ``generic`` whose hostname follows none of the profiles' default
    conventions (``ppgen001`` does, ``bbvm001`` or ``web-7`` do not) is a plain host the
    generator never wrote: ``unknown``. Every other server keeps its profile. Thresholds and
    risk always use the real profile; only the network's input changes.
    """
    matcher = ProfileMatcher()
    return [
        UNKNOWN_PROFILE
        if str(p) == FALLBACK_PROFILE and not matcher.match(str(s)).matched
        else str(p)
        for s, p in zip(servers, profiles, strict=True)
    ]


def seasonal_column(metric: str) -> str:
    """Return the name of the known input holding ``metric`` 24 hours before each future step."""
    return f"seasonal_{metric}"


SEASONAL_COLUMNS: tuple[str, ...] = tuple(seasonal_column(m) for m in METRIC_NAMES)
#: Encoder positions (0 = oldest of the ENCODER_STEPS) holding the value SEASONAL_LAG steps
#: before each of the HORIZON_STEPS future steps: future step t+h (h = 1..96) reads position
#: ENCODER_STEPS - 1 + h - SEASONAL_LAG.
SEASONAL_POSITIONS: np.ndarray = ENCODER_STEPS - 1 + np.arange(1, HORIZON_STEPS + 1) - SEASONAL_LAG


def seasonal_values(window: np.ndarray) -> np.ndarray:
    """Return (..., HORIZON_STEPS, metrics): each future step's value 24 hours earlier.

    ``window``: (..., ENCODER_STEPS, metrics), oldest first, ending at the forecast origin.
    """
    return np.asarray(window)[..., SEASONAL_POSITIONS, :]


def present_column(metric: str) -> str:
    """Return the name of the static flag saying a server has ``metric``."""
    return f"present_{metric}"


PRESENT_COLUMNS: tuple[str, ...] = tuple(present_column(m) for m in METRIC_NAMES)


def time_index(timestamps) -> np.ndarray:
    """Return the global step index (Unix seconds // 300) of each timestamp."""
    ts = pd.to_datetime(timestamps, utc=True)
    seconds = (ts - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return np.asarray(seconds, dtype=np.int64) // STEP_SECONDS


def known_features(time_idx: np.ndarray, timezone: str = "UTC") -> np.ndarray:
    """Return the model's known time features for step indices, shaped (..., features)."""
    flat = np.asarray(time_idx, np.int64).reshape(-1)
    stamps = pd.to_datetime(flat * STEP_SECONDS, unit="s", utc=True)
    feats = time_features(stamps, timezone)
    out = np.stack([feats[f] for f in MODEL_TIME_FEATURES], axis=-1)
    return out.reshape(*np.shape(time_idx), len(MODEL_TIME_FEATURES)).astype(np.float32)


def presence(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (present flags, completeness), each (servers, metrics), of raw windows.

    Completeness is the share of the whole window actually present. A metric is present when
    it has at least MIN_PRESENT_FRACTION of the steps since the server was first seen in the
    window, so a new server with a few hours of history is not mistaken for one that lacks
    its series (training windows have no such lead, so the two readings agree there).
    """
    have = np.isfinite(np.asarray(values, np.float32))
    completeness = have.mean(axis=1)
    seen = have.any(axis=2)  # (servers, steps)
    steps = have.shape[1]
    span = np.where(seen.any(axis=1), steps - seen.argmax(axis=1), 0)
    count = have.sum(axis=1)
    present = (count > 0) & (count >= MIN_PRESENT_FRACTION * span[:, None])
    return present, completeness


def fill_window(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fill gaps in per-server windows; return (filled, present flags, completeness).

    ``values``: (servers, steps, metrics) with NaN for missing samples. A metric that is not
    present (see ``presence``) becomes SENTINEL with flag 0; a present one is filled forward,
    and its leading gap backward. Completeness is the share of the window actually present.
    """
    values = np.asarray(values, np.float32)
    have = np.isfinite(values)
    present, completeness = presence(values)
    filled = values.copy()
    filled[~have] = np.nan
    # Forward fill along time, then backward fill the leading gap.
    steps = values.shape[1]
    idx = np.where(have, np.arange(steps)[None, :, None], 0)
    np.maximum.accumulate(idx, axis=1, out=idx)
    filled = np.take_along_axis(filled, idx, axis=1)
    first = np.argmax(have, axis=1)  # (servers, metrics): first present step
    lead = np.arange(steps)[None, :, None] < first[:, None, :]
    first_values = np.take_along_axis(values, first[:, None, :], axis=1)
    filled = np.where(lead, first_values, filled)
    filled = np.where(present[:, None, :], filled, SENTINEL)
    filled = np.nan_to_num(filled, nan=SENTINEL)
    return filled.astype(np.float32), present.astype(np.float32), completeness


def build_model_frame(
    frame: pd.DataFrame, timezone: str = "UTC", unknown_profile: bool = False
) -> pd.DataFrame:
    """Return the model's long frame for training from a contract-schema metrics table.

    Each server gets every step between its first and last timestamp (missing steps become
    gaps), its metrics filled as in ``fill_window`` over its whole history, the presence flags,
    the known time features, and ``time_idx``. Metric columns absent from ``frame`` are absent
    for every server. ``unknown_profile``: the profile column holds what the network sees
    (``network_profiles``).
    """
    parts = []
    for server, g in frame.groupby(SERVER, observed=True, sort=True):
        idx = time_index(g[TIMESTAMP])
        order = np.argsort(idx, kind="stable")
        idx = idx[order]
        full = np.arange(idx[0], idx[-1] + 1)
        raw = np.full((1, len(full), len(METRIC_NAMES)), np.nan, np.float32)
        pos = idx - idx[0]
        for j, m in enumerate(METRIC_NAMES):
            if m in g.columns:
                raw[0, pos, j] = g[m].to_numpy(np.float32, na_value=np.nan)[order]
        filled, present, _ = fill_window(raw)
        part = pd.DataFrame(filled[0], columns=list(METRIC_NAMES))
        part.insert(0, TIME_IDX, full)
        part.insert(1, SERVER, str(server))
        prof = str(g[PROFILE].iloc[0])
        if unknown_profile:
            prof = network_profiles([server], [prof])[0]
        part.insert(2, PROFILE, prof)
        for j, col in enumerate(PRESENT_COLUMNS):
            part[col] = np.float32(present[0, j])
        for col in SEASONAL_COLUMNS:
            part[col] = np.float32(0.0)  # placeholder: the model fills its decoder steps
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    known = known_features(out[TIME_IDX].to_numpy(), timezone)
    for j, f in enumerate(MODEL_TIME_FEATURES):
        out[f] = known[:, j]
    return out


def dense_frame(frame: pd.DataFrame) -> tuple[list[str], list[str], np.ndarray, int]:
    """Return (servers, profiles, values, first time_idx) of a contract-schema table.

    ``values`` is (servers, steps, 14) over every step from the first to the last timestamp,
    with NaN where a sample is missing (pass windows of it to ``fill_window``).
    """
    idx = time_index(frame[TIMESTAMP])
    first = int(idx.min())
    steps = int(idx.max()) - first + 1
    names = sorted(frame[SERVER].astype(str).unique())
    row = {s: i for i, s in enumerate(names)}
    r = frame[SERVER].astype(str).map(row).to_numpy()
    values = np.full((len(names), steps, len(METRIC_NAMES)), np.nan, np.float32)
    for j, m in enumerate(METRIC_NAMES):
        if m in frame.columns:
            values[r, idx - first, j] = frame[m].to_numpy(np.float32, na_value=np.nan)
    prof = frame.groupby(SERVER, observed=True)[PROFILE].first().astype(str)
    return names, [prof[s] for s in names], values, first


def windows_from_frame(
    frame: pd.DataFrame, end_time_idx: int
) -> tuple[list[str], list[str], np.ndarray]:
    """Return (servers, profiles, values) of the ENCODER_STEPS steps ending at ``end_time_idx``.

    ``values`` is (servers, ENCODER_STEPS, 14) with NaN where a sample is missing.
    """
    names, profiles, values, first = dense_frame(frame)
    out = np.full((len(names), ENCODER_STEPS, len(METRIC_NAMES)), np.nan, np.float32)
    start = end_time_idx - ENCODER_STEPS + 1
    a, b = max(start, first), min(end_time_idx, first + values.shape[1] - 1)
    if a <= b:
        out[:, a - start : b - start + 1] = values[:, a - first : b - first + 1]
    return names, profiles, out
