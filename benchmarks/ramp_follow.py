"""Does the network's p50 follow a precursor ramp, or pull it back towards normal?

For a labelled fleet (a generated Parquet file) and a bundle: at checks every 15 minutes from 2
hours to 30 minutes before each precursor incident's onset, where the incident's metric moves
further towards its incident over the next hour (rises, or falls for a "below" metric), the
share of that move which the p50 forecast for one hour ahead makes:

    follow = (p50 at +1 h - value now) / (value at +1 h - value now), signed towards the incident

1 is a forecast that is exactly right, 0 one that stays where the metric is (last value),
below 0 one that moves the wrong way: back towards normal while the metric keeps climbing.
Per incident type: the checks scored, the share that move the wrong way, and the median follow.
It asks one question of the forecasts the early-warning scoreboard (`linborg evaluate`) scores
as a whole, in about a minute per 96 servers x 6 days on 2 cores.

Run: .venv/bin/python benchmarks/ramp_follow.py --data out/dev.parquet --model models/default
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pandas as pd

from linborg.contract import METRIC_NAMES, METRICS_BY_NAME, STEP_SECONDS
from linborg.features import ENCODER_STEPS, dense_frame
from linborg.parquet import read_metrics

AHEAD_STEPS = 12  # one hour
BEFORE_MINUTES = range(120, 29, -15)  # the checks: 2 h to 30 min before onset


@dataclass(frozen=True)
class Ramp:
    """One precursor incident: its type, server (row) and metric (column), onset (step)."""

    type: str
    server: int
    metric: int
    onset: int


def ramps_of(incidents: list[dict], names: list[str], first: int) -> list[Ramp]:
    """Return the precursor incidents of generator labels as Ramps on the dense grid."""
    out = []
    for inc in incidents:
        if not inc.get("has_precursor") or inc["server"] not in names:
            continue
        onset = int(pd.Timestamp(inc["onset"]).timestamp()) // STEP_SECONDS - first
        metric = METRIC_NAMES.index(inc["metric"])
        out.append(Ramp(inc["type"], names.index(inc["server"]), metric, onset))
    return out


def follow_ratios(forecaster, values, profiles, first, ramps, names=None) -> dict[str, list[float]]:
    """Return {incident type: [follow at each scored check]} (see the module docstring).

    ``values`` is (servers, steps, metrics) on the 5-minute grid starting at step ``first``
    (Unix seconds / STEP_SECONDS); ``forecaster.predict(window, profiles, origin)`` is a
    bundle's; ``names``: the servers' names, which a bundle with a plain-host network needs."""
    out: dict[str, list[float]] = defaultdict(list)
    for r in ramps:
        sign = 1.0 if METRICS_BY_NAME[METRIC_NAMES[r.metric]].direction == "above" else -1.0
        for minutes in BEFORE_MINUTES:
            o = r.onset - minutes * 60 // STEP_SECONDS
            if o < ENCODER_STEPS - 1 or o + AHEAD_STEPS >= values.shape[1]:
                continue
            now, then = values[r.server, o, r.metric], values[r.server, o + AHEAD_STEPS, r.metric]
            move = sign * (then - now)
            if not np.isfinite(move) or move <= 0:
                continue
            window = values[r.server : r.server + 1, o - ENCODER_STEPS + 1 : o + 1]
            server = None if names is None else [names[r.server]]
            fc = forecaster.predict(window, [profiles[r.server]], first + o, servers=server)
            p50 = np.sort(fc.values, axis=-1)[0, r.metric, AHEAD_STEPS - 1, 1]
            out[r.type].append(float(sign * (p50 - now) / move))
    return dict(out)


def table(ratios: dict[str, list[float]]) -> list[str]:
    """Return the Markdown table of ``follow_ratios``: one row per type and one for all."""
    lines = [
        "| incident type | checks | p50 at +1 h moves the wrong way | median follow |",
        "|---|---|---|---|",
    ]
    every: list[float] = []
    for kind in sorted(ratios):
        f = np.array(ratios[kind])
        every += ratios[kind]
        lines.append(f"| {kind} | {len(f)} | {np.mean(f < 0):.2f} | {np.median(f):.2f} |")
    f = np.array(every)
    if len(f):
        lines.append(f"| all | {len(f)} | {np.mean(f < 0):.2f} | {np.median(f):.2f} |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="a labelled fleet (Parquet from the generator)")
    ap.add_argument("--model", default="models/default", help="a bundle (default: %(default)s)")
    args = ap.parse_args(argv)
    frame, meta = read_metrics(args.data, allow_missing=True)
    names, profiles, values, first = dense_frame(frame)
    ramps = ramps_of(meta.get("incidents") or [], names, first)
    if not ramps:
        ap.error(f"{args.data} has no precursor incidents labelled")
    from linborg.bundle import load_bundle

    ratios = follow_ratios(load_bundle(args.model), values, profiles, first, ramps, names)
    print(f"{args.data}, {args.model}: {len(ramps)} precursor incidents")
    print("\n".join(table(ratios)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
