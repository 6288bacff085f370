"""Interval calibration: the p10-p90 band of each metric and future step, fitted after training.

A quantile network's band is right on average and wrong per metric: on the held-out fleet of
the stage-2 model, swap_used_pct's p10-p90 band held 0.91 of the actuals and uptime_days' 0.74.
After training, the trainer forecasts windows it did not train on (each server's validation
span, the end of its history) and fits, per metric and future step, two factors: how much to
stretch or shrink the distance from p50 down to p10 and from p50 up to p90 so that 10% of the
actuals fall below the band and 10% above it. p50 is never moved.

The factor of one side is the 90th percentile, over the windows, of the actual's distance past
p50 on that side in units of that side's width; it is smoothed over neighbouring steps
(SMOOTH_STEPS) and bounded to BOUNDS, so a few windows cannot collapse or blow up a band.
A metric and step with fewer than MIN_WINDOWS finite actuals keeps factor 1. The factors live
in the bundle's ``model.json`` (``interval_calibration``) and ``Forecaster.predict`` applies
them, so evaluation, the exporter and the risk score see the same band.
"""

from __future__ import annotations

import numpy as np

from linborg.contract import METRIC_NAMES, ContractError
from linborg.features import HORIZON_STEPS

#: Share of actuals meant to fall below p10, and above p90.
TAIL = 0.10
#: Smallest and largest factor: a band is at most quartered or doubled. The floor was 0.5
#: until 2026-12-02, when the shipped bundle's upper factors of uptime_days (a counter) and
#: swap_used_pct sat on it; they reach 0.25 too at some steps (the floor was chosen on a dev
#: fleet: docs/training.md, "The p10-p90 band").
BOUNDS = (0.25, 2.0)
#: Steps in the moving average that smooths each factor over the horizon.
SMOOTH_STEPS = 9
#: Fewest finite actuals at a metric and step for its factors to be fitted.
MIN_WINDOWS = 30
#: The smallest band width (either side) counted as a width; narrower ones count as this.
MIN_WIDTH = 1e-9


def _smooth(k: np.ndarray) -> np.ndarray:
    """Moving average over the last axis, edges padded with their own values."""
    half = SMOOTH_STEPS // 2
    padded = np.pad(k, [(0, 0)] * (k.ndim - 1) + [(half, half)], mode="edge")
    kernel = np.ones(SMOOTH_STEPS) / SMOOTH_STEPS
    return np.apply_along_axis(lambda row: np.convolve(row, kernel, mode="valid"), -1, padded)


def fit(forecast: np.ndarray, actual: np.ndarray) -> dict:
    """Return the calibration fitted on (windows, 14, 96, 3) forecasts and their actuals.

    The result is JSON-ready: {"lower": {metric: [96 factors]}, "upper": ..., "windows": n,
    "fitted": [metrics with enough windows]}.
    """
    forecast = np.sort(np.asarray(forecast, np.float64), axis=-1)
    actual = np.asarray(actual, np.float64)
    want = (len(METRIC_NAMES), HORIZON_STEPS)
    if forecast.shape[1:] != (*want, 3) or actual.shape != forecast.shape[:-1]:
        raise ContractError(
            f"calibration needs (windows, {want[0]}, {want[1]}, 3) forecasts and matching "
            f"actuals, got {forecast.shape} and {actual.shape}"
        )
    p10, p50, p90 = forecast[..., 0], forecast[..., 1], forecast[..., 2]
    ok = np.isfinite(actual) & np.isfinite(p50)
    below = np.where(ok, (p50 - actual) / np.maximum(p50 - p10, MIN_WIDTH), np.nan)
    above = np.where(ok, (actual - p50) / np.maximum(p90 - p50, MIN_WIDTH), np.nan)
    enough = ok.sum(axis=0) >= MIN_WINDOWS  # (14, 96)
    factors = {}
    for side, ratio in (("lower", below), ("upper", above)):
        k = np.ones(want)
        if enough.any():
            with np.errstate(all="ignore"):
                q = np.nanquantile(np.where(enough[None], ratio, 0.0), 1 - TAIL, axis=0)
            k = np.where(enough & np.isfinite(q), q, 1.0)
        k = np.clip(_smooth(np.clip(k, *BOUNDS)), *BOUNDS)
        k[~enough.all(axis=1)] = 1.0  # a metric missing at some steps keeps its band
        factors[side] = {m: [round(float(x), 4) for x in k[i]] for i, m in enumerate(METRIC_NAMES)}
    fitted = [m for i, m in enumerate(METRIC_NAMES) if enough[i].all()]
    return {**factors, "windows": int(len(actual)), "fitted": fitted}


def factors(calibration: dict | None) -> tuple[np.ndarray, np.ndarray] | None:
    """Return (lower, upper) factor arrays (14, 96) from a bundle's calibration, None for none.

    Raises ContractError naming what is wrong with a malformed one.
    """
    if not calibration:
        return None
    out = []
    for side in ("lower", "upper"):
        table = calibration.get(side) if isinstance(calibration, dict) else None
        if not isinstance(table, dict) or set(table) != set(METRIC_NAMES):
            raise ContractError(f"interval_calibration.{side} must name each of the 14 metrics")
        if not all(isinstance(table[m], list) and len(table[m]) == HORIZON_STEPS for m in table):
            raise ContractError(
                f"interval_calibration.{side} must hold {HORIZON_STEPS} factors per metric"
            )
        try:
            k = np.array([table[m] for m in METRIC_NAMES], np.float64)
        except (TypeError, ValueError):
            raise ContractError(f"interval_calibration.{side} holds non-numbers") from None
        lo, hi = BOUNDS
        if not np.isfinite(k).all() or (k < lo).any() or (k > hi).any():
            raise ContractError(f"interval_calibration.{side} has factors outside {lo}-{hi}")
        out.append(k)
    return out[0], out[1]


def apply(forecast: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
    """Scale, in place, the bands of sorted (servers, 14, steps, 3) forecasts; p50 stays."""
    steps = forecast.shape[2]
    p50 = forecast[..., 1]
    forecast[..., 0] = p50 - lower[None, :, :steps] * (p50 - forecast[..., 0])
    forecast[..., 2] = p50 + upper[None, :, :steps] * (forecast[..., 2] - p50)
