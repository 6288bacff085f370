"""How much do the naive baselines' errors move with where the backtest's origins fall?

`linborg evaluate` forecasts every server from origins every `--origin-every` minutes. With a
few origins per server, a burst on one server can fall on an origin or between two, and a
cell's pooled MAE moves with it. This scores the naive baselines only (no model: last value,
seasonal naive, the 24-hour mean, as `linborg evaluate` scores them) from every origin,
then, for a stride, from each of its phases (origins starting at step 0, 1, ..., stride - 1 of
the first possible one): per metric and horizon, the lowest and highest best-naive MAE over the
phases, beside the figure from every origin. A wide range means the stride leaves the cell to
chance, for any model scored against it.

Run (about 30 seconds and 2 GB for the shared real set's last week, 144 VMs, on 2 cores):

    .venv/bin/python benchmarks/origin_phase.py --holdout-days 7 --stride 71 --stride 13 \
        --stride 7 --data ../shared/data/bitbrains-2013-07/bitbrains-2013-07.parquet
"""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import numpy as np
import pandas as pd

from linborg.features import dense_frame
from linborg.parquet import read_metrics
from linborg.trainer.evaluate import NAIVE, accuracy, last_present


class _LastValue:
    """Stands in for a model: evaluate's accuracy pass needs one; its scores are not read."""

    def predict(self, windows, profiles, end_time_idx, servers=None):
        p50 = np.repeat(last_present(windows)[:, :, None], 96, axis=2)
        return SimpleNamespace(values=np.stack([p50, p50, p50], axis=-1))


def load(path: str, holdout_days: float) -> tuple:
    """Return dense_frame's (names, profiles, values, first) for the file's last days.

    As ``linborg evaluate --holdout-days``: those days with the day before them as context,
    repaired as ``linborg train`` repairs real data.
    """
    frame, _ = read_metrics(path, allow_missing=True, repair=True)
    ts = pd.to_datetime(frame["timestamp"], utc=True)
    begin = ts.max() - pd.Timedelta(days=holdout_days) + pd.Timedelta(minutes=5)
    frame = frame[ts >= begin - pd.Timedelta(days=1)].reset_index(drop=True)
    return dense_frame(frame)


def naive_errors(names, profiles, values, first) -> pd.DataFrame:
    """Return evaluate's absolute errors of the naive baselines from every origin."""
    errors, _ = accuracy(_LastValue(), names, profiles, values, first, 1, set())
    return errors[["origin", "server", "metric", "horizon", *[f"ae_{n}" for n in NAIVE]]]


def best_naive_mae(errors: pd.DataFrame) -> pd.Series:
    """Per metric and horizon: the lowest MAE of the naive baselines."""
    mae = errors.groupby(["metric", "horizon"])[[f"ae_{n}" for n in NAIVE]].mean()
    return mae.min(axis=1)


def phase_range(errors: pd.DataFrame, stride: int) -> pd.DataFrame:
    """Per metric and horizon: the best naive MAE's lowest and highest over a stride's phases."""
    start = int(errors["origin"].min())
    phase = (errors["origin"] - start) % stride
    per = pd.concat(
        {p: best_naive_mae(part) for p, part in errors.groupby(phase)}, axis=1, names=["phase"]
    )
    return pd.DataFrame({"low": per.min(axis=1), "high": per.max(axis=1)})


def table(errors: pd.DataFrame, strides: list[int]) -> pd.DataFrame:
    """Return the report: every origin's best naive MAE, and each stride's range over phases."""
    out = best_naive_mae(errors).to_frame("every_origin")
    for s in strides:
        r = phase_range(errors, s)
        out[f"stride_{s}_low"] = r["low"]
        out[f"stride_{s}_high"] = r["high"]
        out[f"stride_{s}_high_over_low"] = r["high"] / r["low"]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="Parquet file in the contract schema")
    ap.add_argument("--holdout-days", type=float, default=7.0, help="score the last N days")
    ap.add_argument(
        "--stride", type=int, action="append", help="steps between origins (repeat); default 71"
    )
    args = ap.parse_args(argv)
    strides = args.stride or [71]
    names, profiles, values, first = load(args.data, args.holdout_days)
    errors = naive_errors(names, profiles, values, first)
    n = errors["origin"].nunique()
    print(f"{len(names)} servers, {n} origins (every step); best naive MAE per metric and horizon")
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        print(table(errors, strides).round(4).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
