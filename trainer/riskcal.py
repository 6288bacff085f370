"""Risk calibration: the highest risk each profile's metrics reach on healthy servers.

The risk score (linborg.risk) reads the network's band against the warning levels. On some
metrics the band of a healthy server brushes the warning level every day (database iowait,
risk_analytics idle CPU), and those risks drown out the ramps before incidents. This module
runs a bundle on fleets it never trained on, at the scoreboard's checks (every 15 minutes),
and keeps, per profile and metric, the largest metric risk at a healthy check: one that lies
outside every labelled incident's span from 8 hours before onset (or its precursor's start,
when earlier) to 1 hour after its end. The risk score then counts only risk above that
ceiling (``linborg.risk.above_healthy``). Labels select the checks; they are never model
inputs. A file without labels is taken as healthy throughout.

The ceilings are fitted for both windows the exporter serves: the 8-hour risk (the alert
rules') in ``healthy_risk`` and the 30-minute risk in ``healthy_risk_30m``, each from the risk
of that window at the same checks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import numpy as np
import pandas as pd

from linborg.contract import METRIC_NAMES, STEP_SECONDS
from linborg.features import ENCODER_STEPS, dense_frame, time_index
from linborg.risk import HEALTHY_KEYS, HORIZON_STEPS, assess
from linborg.thresholds import Thresholds

CHECK_EVERY_STEPS = 3  # 15 minutes: the scoreboard's checks
BEFORE_ONSET_SECONDS = 8 * 3600  # unhealthy from 8 h before onset ...
AFTER_END_SECONDS = 3600  # ... to 1 h after the end
#: A profile with fewer healthy checks than this (one server-day) is not fitted.
MIN_CHECKS = 288 // CHECK_EVERY_STEPS
#: The risk windows fitted, as the exporter serves them (``window`` label), in steps; each is
#: stored under ``linborg.risk.HEALTHY_KEYS[window]`` in the bundle's ``risk_calibration``.
WINDOWS = {"8h": HORIZON_STEPS, "30m": 1800 // STEP_SECONDS}


def _seconds(text: str) -> int:
    return int(time_index(pd.Series([pd.Timestamp(text)]))[0]) * STEP_SECONDS


def healthy_checks(names: list[str], check_times: np.ndarray, labels: list[dict] | None):
    """Return (servers, checks) True where no incident of the server is near (module doc)."""
    ok = np.ones((len(names), len(check_times)), bool)
    index = {n: i for i, n in enumerate(names)}
    for inc in labels or []:
        i = index.get(str(inc.get("server")))
        if i is None:
            continue
        onset = _seconds(inc["onset"])
        start = onset - BEFORE_ONSET_SECONDS
        if inc.get("precursor_start"):
            start = min(start, _seconds(inc["precursor_start"]))
        end = _seconds(inc["end"]) if inc.get("end") else onset
        ok[i, (check_times >= start) & (check_times <= end + AFTER_END_SECONDS)] = False
    return ok


def fleet_ceilings(
    forecaster,
    frame: pd.DataFrame,
    labels: list[dict] | None,
    thresholds: Thresholds,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, int]]:
    """Return, per window (``WINDOWS``) and profile, the largest healthy risk of each metric,
    and per profile the checks it read."""
    names, profiles, values, first = dense_frame(frame)
    checks = np.arange(ENCODER_STEPS - 1, values.shape[1], CHECK_EVERY_STEPS)
    ok = healthy_checks(names, (first + checks) * STEP_SECONDS, labels)
    top = {w: np.zeros((len(names), len(METRIC_NAMES))) for w in WINDOWS}
    counts = ok.sum(axis=1)
    for c, o in enumerate(checks):
        window = values[:, o - ENCODER_STEPS + 1 : o + 1]
        fc = forecaster.predict(window, profiles, first + o, servers=names)
        for w, steps in WINDOWS.items():
            r = assess(fc.values, profiles, list(METRIC_NAMES), thresholds, steps, fc.present)
            top[w] = np.where(ok[:, c : c + 1], np.maximum(top[w], r.per_metric), top[w])
        if progress is not None:
            progress(c + 1, len(checks))
    ceilings: dict[str, dict[str, np.ndarray]] = {w: {} for w in WINDOWS}
    n: dict[str, int] = {}
    for i, prof in enumerate(profiles):
        for w in WINDOWS:
            ceilings[w][prof] = np.maximum(ceilings[w].get(prof, 0.0), top[w][i])
        n[prof] = n.get(prof, 0) + int(counts[i])
    return ceilings, n


def fit(
    parts: list[tuple[dict[str, dict[str, np.ndarray]], dict[str, int]]], sources: list[str]
) -> dict:
    """Return the bundle's ``risk_calibration`` from each file's ``fleet_ceilings``."""
    ceilings: dict[str, dict[str, np.ndarray]] = {w: {} for w in WINDOWS}
    checks: dict[str, int] = {}
    for top, n in parts:
        for w in WINDOWS:
            for prof, row in top[w].items():
                ceilings[w][prof] = np.maximum(ceilings[w].get(prof, 0.0), row)
        for prof in n:
            checks[prof] = checks.get(prof, 0) + n[prof]
    fitted = sorted(p for p in checks if checks[p] >= MIN_CHECKS)
    tables = {
        HEALTHY_KEYS[w]: {
            p: {m: round(float(v), 3) for m, v in zip(METRIC_NAMES, ceilings[w][p], strict=True)}
            for p in fitted
        }
        for w in WINDOWS
    }
    return {
        **tables,
        "healthy_checks": {p: checks[p] for p in sorted(checks)},
        "not_fitted": sorted(p for p in checks if p not in fitted),
        "check_every_minutes": CHECK_EVERY_STEPS * STEP_SECONDS // 60,
        "sources": sources,
        "fitted": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
