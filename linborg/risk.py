"""The risk score and time to breach, from forecast quantiles against per-profile thresholds.

Defined once here; evaluation and the exporter both call it. Inputs are numpy arrays shaped
(servers, metrics, steps, quantiles) holding p10, p50 and p90 for each future 5-minute step.

Probability of a breach at one step: the forecast distribution is read as a two-sided normal
around p50, its spread on each side taken from p10 and p90 (z = 1.2816). The risk of a metric
is the largest, over the steps in the window, of
    P(past the warning level) * urgency(step),
where urgency falls linearly from 1 now to URGENCY_AT_HORIZON at 8 hours, so a breach
expected soon scores higher than the same breach expected late. A server's risk is the largest
metric risk, 0-100, and the metric that gives it is the driving metric.

Risk above healthy: a bundle may carry, per profile and metric, the highest metric risk its
network gave on healthy servers (``risk_calibration``, fitted by ``linborg calibrate-risk`` on
fleets it never trained on, away from their incidents: trainer/riskcal.py). With it, a metric's
risk is rescaled so that this healthy ceiling maps to 0 and 100 stays 100:
    100 * clip((risk - healthy) / (100 - healthy), 0, 1).
A metric whose forecast band routinely brushes its warning level on healthy servers (database
iowait, risk_analytics idle CPU) then stops drowning out a ramp on a quiet one. Measured on the
dev fleet (generator seed 4242; never the held-out one), the network shipped 2026-12-02,
fitted on two fresh 96-server weeks (seeds 6101, 6102): recall at <= 1 false warning per 100
server-days 0.36 -> 0.61, median lead 62 -> 102 minutes. The shipped bundle carries it, and
the alert rules' risk threshold (10, in linborg/mixin) assumes it. Each window has its own
ceilings (the 8-hour risk the alert rules read, and the 30-minute one), fitted the same way.

Why the warning level, at full weight: the critical level lies beyond it, so P(critical) is
never above P(warning), and a forecast confidently heading past warning is what precedes an
incident. The previous rule, max(P(critical), 0.6 * P(warning)), capped every warning-level
forecast at 60 and ranked precursors below quiet servers whose forecasts merely brushed
critical. Same forecasts, decision fleet (generator seed 4242, never reported), best recall
at <= 1 false warning per 100 server-days over thresholds every 5 points: the shipped model
0.14 -> 0.20, two trial models 0.03 -> 0.20 and 0.00 -> 0.29.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from linborg.contract import METRICS_BY_NAME, STEP_SECONDS, ContractError
from linborg.thresholds import Thresholds

QUANTILES = (0.1, 0.5, 0.9)
Z90 = 1.2815515655446004  # standard normal quantile of 0.9
URGENCY_AT_HORIZON = 0.6
HORIZON_STEPS = 96  # 8 hours
MIN_SPREAD = 1e-6


def _normal_sf(z: np.ndarray) -> np.ndarray:
    """Return P(Z >= z) for a standard normal Z (Abramowitz-Stegun 7.1.26, error < 2e-7)."""
    x = np.abs(np.asarray(z, float)) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    erfc = poly * np.exp(-x * x)
    return np.where(np.asarray(z) >= 0, 0.5 * erfc, 1.0 - 0.5 * erfc)


def exceedance(forecast: np.ndarray, threshold: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Return the probability that the value is past ``threshold``, per step.

    ``forecast``: (..., steps, 3) quantiles; ``threshold`` and ``direction`` (+1 above, -1 below)
    broadcast against (..., steps).
    """
    p10, p50, p90 = forecast[..., 0], forecast[..., 1], forecast[..., 2]
    up = np.maximum((p90 - p50) / Z90, MIN_SPREAD)
    down = np.maximum((p50 - p10) / Z90, MIN_SPREAD)
    above = np.where(threshold >= p50, (threshold - p50) / up, (threshold - p50) / down)
    p_above = _normal_sf(above)
    return np.where(direction > 0, p_above, 1.0 - p_above)


@dataclass(frozen=True)
class RiskResult:
    """Risk per server and metric, and the time to breach of each threshold."""

    #: (servers,) overall risk 0-100 within the window, and the index of the driving metric.
    score: np.ndarray
    driver: np.ndarray
    #: (servers, metrics) risk of each metric.
    per_metric: np.ndarray
    #: (servers, metrics, 2 levels [warning, critical], 2 quantiles [p50, pessimistic]):
    #: seconds until the forecast first crosses the threshold; NaN when not within the window.
    time_to_breach: np.ndarray


#: The ``risk_calibration`` key of each window's ceilings (trainer/riskcal.py fits both).
HEALTHY_KEYS = {"8h": "healthy_risk", "30m": "healthy_risk_30m"}


def healthy_risk(
    calibration: dict | None, profiles: list[str], metrics: list[str], window: str = "8h"
):
    """Return the (servers, metrics) healthy risk ceilings of a bundle's ``risk_calibration``
    for the risk of ``window`` ("8h" or "30m"), 0 where a profile or metric was not fitted;
    None without a calibration. A calibration fitted before the 30-minute ceilings existed
    gives its 8-hour ones for both windows (they are at least as high: the 30-minute risk then
    reads low)."""
    cal = calibration or {}
    table = cal.get(HEALTHY_KEYS[window]) or cal.get("healthy_risk")
    if not table:
        return None
    # One row per profile, then one lookup per server (the exporter calls this every cycle).
    rows = {
        prof: [float((table.get(prof) or {}).get(name, 0.0)) for name in metrics]
        for prof in set(profiles)
    }
    return np.array([rows[prof] for prof in profiles], float).reshape(len(profiles), len(metrics))


def above_healthy(per_metric: np.ndarray, healthy: np.ndarray) -> np.ndarray:
    """Return metric risks (0-100) rescaled so that ``healthy`` maps to 0 and 100 stays 100."""
    h = np.clip(np.asarray(healthy, float), 0.0, 100.0)
    # A ceiling at the top (a metric healthy servers are always forecast past) leaves nothing
    # above it: 0, not a division blown up by the last fraction of a point.
    return 100.0 * np.clip((per_metric - h) / np.maximum(100.0 - h, 1e-9), 0.0, 1.0)


def threshold_arrays(
    thresholds: Thresholds, profiles: list[str], metrics: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (warning, critical, direction) arrays shaped (servers, metrics)."""
    warn = np.empty((len(profiles), len(metrics)))
    crit = np.empty_like(warn)
    for j, name in enumerate(metrics):
        if name not in METRICS_BY_NAME:
            raise ContractError(f"unknown metric '{name}'")
        for i, prof in enumerate(profiles):
            t = thresholds.get(prof, name)
            warn[i, j], crit[i, j] = t.warning, t.critical
    direction = np.array(
        [1.0 if METRICS_BY_NAME[m].direction == "above" else -1.0 for m in metrics]
    )
    return warn, crit, np.broadcast_to(direction, warn.shape)


def urgency(steps: int) -> np.ndarray:
    """Return the weight of a breach at each of the next ``steps`` steps: 1 now, falling
    linearly to URGENCY_AT_HORIZON at 8 hours (and staying there beyond)."""
    lead = np.arange(1, steps + 1) / HORIZON_STEPS
    return 1.0 - (1.0 - URGENCY_AT_HORIZON) * np.clip(lead, 0.0, 1.0)


#: Servers assessed at a time (bounds the memory of ``assess``; the result is the same).
BLOCK_SERVERS = 256


def assess(
    forecast: np.ndarray,
    profiles: list[str],
    metrics: list[str],
    thresholds: Thresholds,
    window_steps: int = HORIZON_STEPS,
    present: np.ndarray | None = None,
    healthy: np.ndarray | None = None,
) -> RiskResult:
    """Return the risk within the first ``window_steps`` steps of ``forecast``.

    ``forecast``: (servers, metrics, steps, 3) p10/p50/p90 in the metrics' units.
    ``present``: (servers, metrics) bool; metrics a server does not have score 0 and never
    drive its risk (nothing is invented for them).
    ``healthy``: (servers, metrics) healthy risk ceilings (``healthy_risk``); each metric's
    risk is then its risk above healthy. Time to breach does not depend on it.
    """
    if forecast.ndim != 4 or forecast.shape[-1] != len(QUANTILES):
        raise ContractError(f"forecast must be (servers, metrics, steps, 3), got {forecast.shape}")
    servers, n_metrics, steps, _ = forecast.shape
    if len(profiles) != servers or len(metrics) != n_metrics:
        raise ContractError("profiles and metrics must match the forecast's first two axes")
    if servers > BLOCK_SERVERS:
        # In blocks: the temporaries below are ~40 float64 copies of the forecast window, which
        # at 10,000 servers and 8 h would be over a gigabyte at once.
        parts = [
            assess(
                forecast[a : a + BLOCK_SERVERS],
                profiles[a : a + BLOCK_SERVERS],
                metrics,
                thresholds,
                window_steps,
                None if present is None else present[a : a + BLOCK_SERVERS],
                None if healthy is None else healthy[a : a + BLOCK_SERVERS],
            )
            for a in range(0, servers, BLOCK_SERVERS)
        ]
        return RiskResult(
            *(np.concatenate([getattr(r, f.name) for r in parts]) for f in fields(RiskResult))
        )
    window = max(1, min(window_steps, steps))
    f = np.sort(forecast[:, :, :window, :], axis=-1)  # quantiles must not cross
    warn, crit, direction = threshold_arrays(thresholds, profiles, metrics)
    d = direction[:, :, None]
    p_warn = exceedance(f, warn[:, :, None], d)
    per_step = p_warn * urgency(window)
    per_metric = 100.0 * per_step.max(axis=-1)
    if healthy is not None:
        per_metric = above_healthy(per_metric, healthy)
    if present is not None:
        per_metric = np.where(present, per_metric, 0.0)
    driver = per_metric.argmax(axis=1)
    score = per_metric[np.arange(servers), driver]

    # Time to breach: the first step where p50 (or the pessimistic quantile) is past the level.
    pessimistic = np.where(d > 0, f[..., 2], f[..., 0])
    ttb = np.full((servers, n_metrics, 2, 2), np.nan)
    for li, level in enumerate((warn, crit)):
        lv = level[:, :, None]
        for qi, values in enumerate((f[..., 1], pessimistic)):
            crossed = np.where(d > 0, values >= lv, values <= lv)
            first = crossed.argmax(axis=-1)
            any_ = crossed.any(axis=-1)
            seconds = (first + 1) * STEP_SECONDS
            ttb[:, :, li, qi] = np.where(any_, seconds, np.nan)
    if present is not None:
        ttb = np.where(present[:, :, None, None], ttb, np.nan)
    return RiskResult(score=score, driver=driver, per_metric=per_metric, time_to_breach=ttb)
