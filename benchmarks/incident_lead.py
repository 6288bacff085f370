"""How long before a scripted incident's onset the shipped model's alerts would fire.

For each incident type, a small fleet is simulated with the incident scripted on one server
(precursor of P minutes); every 10 minutes of the precursor the default model forecasts from
the last 24 hours, and the two LinborgPredictedIncident conditions are checked on its output
(linborg/risk.py; the risk thresholds are CONFIG's `risk_warning` and `risk_critical` in
linborg/mixin/__init__.py): warning = risk >= risk_warning and the driving metric's
pessimistic forecast crosses its warning threshold within 8 h; critical = risk >= risk_critical
and its p50 crosses the critical threshold within 2 h. Prints the first time each
holds, in minutes before the labelled onset (the `for:` guard comes on top).

Run: .venv/bin/python benchmarks/incident_lead.py --precursor 300
"""

from __future__ import annotations

import argparse
import datetime as dt

import numpy as np
import torch

from linborg.bundle import load_bundle
from linborg.contract import METRIC_NAMES, STEP_SECONDS
from linborg.generator.fleet import build_fleet
from linborg.generator.simulate import Simulator
from linborg.mixin.alert_rules import CONFIG
from linborg.risk import assess, healthy_risk
from linborg.thresholds import load_thresholds

CASES = [
    ("ppweb001", "connection_leak"),
    ("ppml0003", "memory_leak"),
    ("ppdb001", "disk_fill"),
    ("ppdb001", "io_bottleneck"),
    ("ppml0003", "gc_storm"),
    ("ppml0003", "runaway_cpu"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--precursor", type=int, default=300, help="precursor minutes")
    parser.add_argument("--model", default="models/default")
    args = parser.parse_args()
    torch.set_num_threads(2)
    model, th = load_bundle(args.model), load_thresholds()
    fleet = build_fleet({"ml_compute": 3, "database": 2, "web_api": 2})
    origin = dt.datetime(2026, 11, 20, 6, tzinfo=dt.UTC)
    steps = args.precursor // 5
    for server, incident in CASES:
        sim = Simulator(fleet, 11, origin)
        k0 = 300
        sim.schedule(
            sim.time_of(k0),
            {"servers": [server], "scenario": "degrading", "incident": incident,
             "precursor_minutes": args.precursor},
        )  # fmt: skip
        rows = []
        for _ in range(k0 + steps + 1):
            _, vals, _ = sim.step()
            rows.append(np.stack([vals[m] for m in METRIC_NAMES], 1))
        arr = np.stack(rows, 1)
        i = [s.name for s in fleet].index(server)
        lags = list(range(2, steps + 1, 2))
        windows = np.stack([arr[i, k0 + lag - 287 : k0 + lag + 1] for lag in lags])
        ends = np.array([int(origin.timestamp()) // STEP_SECONDS + k0 + lag for lag in lags])
        profiles = [fleet[i].profile] * len(lags)
        fc = model.predict(windows, profiles, ends, servers=[server] * len(lags))
        h = healthy_risk(model.spec.get("risk_calibration"), profiles, list(METRIC_NAMES))
        r = assess(fc.values, profiles, list(METRIC_NAMES), th, present=fc.present, healthy=h)
        warn = crit = None
        for n, lag in enumerate(lags):
            ttb = r.time_to_breach[n, r.driver[n]]
            if warn is None and r.score[n] >= CONFIG["risk_warning"] and np.isfinite(ttb[0, 1]):
                warn = lag
            if crit is None and r.score[n] >= CONFIG["risk_critical"] and ttb[1, 0] <= 7200:
                crit = lag
        before = lambda lag: "never" if lag is None else f"{(steps - lag) * 5} min"  # noqa: E731
        print(f"{incident:16} warning {before(warn):>8}   critical {before(crit):>8}  before onset")


if __name__ == "__main__":
    main()
