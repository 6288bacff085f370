"""Which level should the risk read? Perfect forecasts against the network's own, per level.

For a labelled fleet (a generated Parquet file), at the scoreboard's checks (every 15 minutes):

1. the actual future read as a perfect forecast would be: "past warning for K minutes in a
   row within W hours" and "past critical within W hours";
2. with ``--model``, the network's forecasts read with the risk formula of linborg/risk.py
   (P(past the level) x urgency, the maximum over steps and metrics) against a level a
   fraction of the way from each metric's warning level (0) to its critical level (1).

Each is swept and scored with the early-warning scoreboard (trainer/scoreboard.py); the table
gives the best recall at 1 false warning per 100 server-days. Forecasting every check takes
4-6 minutes per 96 servers x 6 days on 2 cores.

Run: .venv/bin/python benchmarks/risk_levels.py --data out/dev.parquet [--model models/default]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from linborg.contract import METRIC_NAMES, STEP_SECONDS
from linborg.features import ENCODER_STEPS, HORIZON_STEPS, dense_frame
from linborg.parquet import read_metrics
from linborg.risk import exceedance, threshold_arrays, urgency
from linborg.thresholds import load_thresholds
from linborg.trainer import scoreboard as sbd

CHECK_STEPS = 3  # 15 minutes, the scoreboard's checks
FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)
RISK_THRESHOLDS = (*range(1, 10), *range(10, 100, 5))


def past(values: np.ndarray, level: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Return (servers, steps, metrics): the value is past its server's ``level`` (servers,
    metrics), as the scoreboard decides it (NaN never is)."""
    return sbd.past(values, level[:, None, :], direction[:, None, :])


def in_a_row(hit: np.ndarray, steps: int) -> np.ndarray:
    """Return (servers, steps): some metric is past its level at this step and the next
    ``steps - 1`` (the run starts here)."""
    run = hit.copy()
    for j in range(1, steps):
        run[:, :-j] &= hit[:, j:]
        run[:, -j:] = False
    return run.any(axis=2)


def within(starts: np.ndarray, checks: np.ndarray, steps: int) -> np.ndarray:
    """Return (servers, checks): a run starts within ``steps`` steps after the check."""
    out = np.zeros((starts.shape[0], len(checks)), bool)
    for c, o in enumerate(checks):
        out[:, c] = starts[:, o + 1 : o + 1 + steps].any(axis=1)
    return out


def perfect_detectors(values, checks, warn, crit, direction) -> list[sbd.Detector]:
    """Return the perfect-forecast readings as detectors."""
    out = []
    hit_warn = past(values, warn, direction)
    for minutes in (5, 30, 60, 120):
        starts = in_a_row(hit_warn, minutes * 60 // STEP_SECONDS)
        for hours in (2, 8):
            w = within(starts, checks, hours * 3600 // STEP_SECONDS)
            name = f"past warning {minutes} min in a row within {hours} h"
            out.append(sbd.Detector(name, "perfect warning", {}, w))
    starts = past(values, crit, direction).any(axis=2)
    for hours in (1, 2, 4, 8):
        w = within(starts, checks, hours * 3600 // STEP_SECONDS)
        out.append(sbd.Detector(f"past critical within {hours} h", "perfect critical", {}, w))
    return out


def level_scores(forecaster, values, profiles, first, checks, warn, crit, direction, names=None):
    """Return {fraction: (servers, checks) risk read at that level} from the network.

    ``names``: the servers' names, which a bundle with a plain-host network needs.
    """
    weight = urgency(HORIZON_STEPS)
    d = direction[:, :, None]
    scores = {a: np.zeros((len(profiles), len(checks))) for a in FRACTIONS}
    start = time.time()
    for c, o in enumerate(checks):
        window = values[:, o - ENCODER_STEPS + 1 : o + 1]
        fc = forecaster.predict(window, profiles, first + o, servers=names)
        f = np.sort(fc.values, axis=-1)
        for a in FRACTIONS:
            level = (warn + a * (crit - warn))[:, :, None]
            per_metric = 100.0 * (exceedance(f, level, d) * weight).max(axis=-1)
            scores[a][:, c] = np.where(fc.present, per_metric, 0.0).max(axis=1)
        if c % 100 == 0:
            print(
                f"risk_levels: check {c + 1}/{len(checks)}, {time.time() - start:.0f}s", flush=True
            )
    return scores


def best_row(detectors, check_times, names, labels) -> dict:
    sb = sbd.scoreboard(detectors, check_times, names, labels, CHECK_STEPS * STEP_SECONDS)
    return next(iter(sb["best"].values()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="a labelled fleet (Parquet from the generator)")
    ap.add_argument("--model", help="a bundle: also read its forecasts at each level")
    args = ap.parse_args(argv)
    frame, meta = read_metrics(args.data, allow_missing=True)
    labels = meta.get("incidents") or []
    if not labels:
        ap.error(f"{args.data} has no incident labels")
    names, profiles, values, first = dense_frame(frame)
    warn, crit, direction = threshold_arrays(load_thresholds(), profiles, list(METRIC_NAMES))
    # Only checks with a whole 8 hours of future, so the perfect forecast is never cut short.
    checks = np.arange(ENCODER_STEPS - 1, values.shape[1] - HORIZON_STEPS, CHECK_STEPS)
    times = (first + checks) * STEP_SECONDS
    rows = []
    for det in perfect_detectors(values, checks, warn, crit, direction):
        r = sbd.scoreboard([det], times, names, labels, CHECK_STEPS * STEP_SECONDS)
        d = r["detectors"][det.name]
        rows.append((f"perfect: {det.name}", d["recall"], d["false_per_100_server_days"], d))
    print(
        f"{args.data}: {len(names)} servers, {r['server_days']:.0f} server-days, "
        f"{len(checks)} checks, {d['incidents']} scored precursor incidents"
    )
    print("| reading | recall | false / 100 server-days | median lead (min) |")
    print("|---|---|---|---|")
    for name, recall, false, d in rows:
        print(f"| {name} | {recall:.2f} | {false:.2f} | {d['lead_median_minutes']} |")
    if args.model:
        from linborg.bundle import load_bundle

        scores = level_scores(
            load_bundle(args.model), values, profiles, first, checks, warn, crit, direction, names
        )
        print()
        print("| network risk read at | best detector | recall at <= 1 false / 100 | median lead |")
        print("|---|---|---|---|")
        for a, score in scores.items():
            dets = [
                sbd.Detector(f"risk >= {t}", "tft_risk", {}, score >= t) for t in RISK_THRESHOLDS
            ]
            b = best_row(dets, times, names, labels)
            print(
                f"| {a:g} of the way from warning to critical | `{b['detector']}` | "
                f"{b['recall_at_budget']:.2f} | {b['lead_median_minutes']} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
