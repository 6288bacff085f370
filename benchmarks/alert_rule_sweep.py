"""Recall and false warnings of the shipped alert rules at several risk thresholds.

The LinborgPredictedIncident rules (linborg/mixin/__init__.py: `risk_warning`, `risk_critical`,
the quantiles and lead times) are scored as `linborg evaluate` scores its `alert_rule` family
(trainer/scoreboard.py), on one labelled Parquet file, with both severities reading the same
risk threshold T for each T swept. The forecasts are made once, at every 15-minute check.

How the shipped threshold was chosen (on the dev fleet, never the held-out one):

    .venv/bin/python benchmarks/alert_rule_sweep.py --model models/default --data out/dev.parquet
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from linborg.app.train import shipped_alert_rule
from linborg.bundle import load_bundle
from linborg.contract import STEP_SECONDS
from linborg.features import ENCODER_STEPS, dense_frame
from linborg.parquet import read_metadata, read_metrics
from linborg.thresholds import load_thresholds
from linborg.trainer import scoreboard as sbd
from linborg.trainer.evaluate import tft_at_checks

SWEEP = (2, 5, 10, 15, 20, 25, 30, 35, 40)
CHECK_STEPS = 3  # every 15 minutes, as `linborg evaluate --incident-every 15`


def sweep(forecaster, frame, labels, thresholds=SWEEP) -> dict[float, dict[str, dict]]:
    """Return, per risk threshold, the scoreboard row of each alert-rule detector by name."""
    names, profiles, values, first = dense_frame(frame)
    checks = np.arange(ENCODER_STEPS - 1, values.shape[1], CHECK_STEPS)
    risk, _, driver_ttb, driver = tft_at_checks(
        forecaster, profiles, values, first, checks, load_thresholds()
    )
    shipped, may_drive = shipped_alert_rule()
    times = (first + checks) * STEP_SECONDS
    out = {}
    for threshold in thresholds:
        rule = {lvl: (float(threshold), qi, lead) for lvl, (_, qi, lead) in shipped.items()}
        detectors = sbd.alert_rule_detectors(risk, driver_ttb, may_drive[driver], rule)
        sb = sbd.scoreboard(detectors, times, names, labels, CHECK_STEPS * STEP_SECONDS)
        out[threshold] = {d.name: sb["detectors"][d.name] for d in detectors}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="models/default")
    p.add_argument("--data", required=True, help="a Parquet file with incident labels")
    args = p.parse_args(argv)
    frame, _ = read_metrics(args.data, allow_missing=True)
    labels = read_metadata(args.data).get("incidents")
    if not labels:
        print(f"{args.data}: no incident labels to score against", file=sys.stderr)
        return 2
    rows = sweep(load_bundle(args.model), frame, labels)
    print("risk >=  detector                                       recall  false/100 sd  lead")
    for threshold, by_name in rows.items():
        for name, row in by_name.items():
            lead = row.get("lead_median_minutes")
            print(
                f"{threshold:7g}  {name:<45}  {row['recall']:6.2f}  "
                f"{row['false_per_100_server_days']:12.2f}  "
                f"{'-' if lead is None else f'{lead:.0f} min'}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
