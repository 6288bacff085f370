"""Backtests: the TFT against naive baselines on held-out data, and the early-warning scoreboard.

Forecast accuracy: at rolling origins, per metric, profile and horizon (30m, 1h, 2h, 4h, 8h):
MAE of p50, MASE against the seasonal naive forecast (same time yesterday), the ratio of the
TFT's MAE to the best naive baseline of that metric and horizon (last value, seasonal naive or
the mean of the last 24 hours, whichever has the lowest MAE there), pinball loss, and coverage
of the p10-p90 interval. predict_linear (least squares over the last hour, extrapolated, as
PromQL does) is shown too but is not a naive baseline. Errors of different units are never
added up: pooled figures are geometric means of scale-free ratios.

Origins are every ``origin_every_minutes``; the default stride, 7 steps (35 minutes), shares no
factor with the 288 steps of a day, so over 288 origins (a week) every time of day is visited once
(a stride of 360 minutes would only ever forecast from 4 times of day), and a burst on one server
is shared among several forecasts instead of deciding a cell.

Early warnings: trainer.scoreboard scores the TFT risk score and time to breach, and the shipped
predicted-incident alert rules' conditions, against static thresholds and predict_linear rules
at the same checks; its RULES say exactly what counts.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from linborg.contract import METRIC_NAMES, METRICS_BY_NAME, STEP_SECONDS
from linborg.features import ENCODER_STEPS, HORIZON_STEPS, dense_frame
from linborg.risk import assess, healthy_risk, threshold_arrays
from linborg.thresholds import load_thresholds, ratio_floors
from linborg.trainer import scoreboard as sbd

HORIZONS = {"30m": 6, "1h": 12, "2h": 24, "4h": 48, "8h": 96}
DAY = 288
LINEAR_POINTS = 12  # one hour
METHODS = ("tft", "last_value", "seasonal_naive", "mean_24h", "predict_linear")
NAIVE = ("last_value", "seasonal_naive", "mean_24h")  # candidates for "the best naive baseline"
#: 7 steps: co-prime with 288, so origins rotate through the day; about 275 origins per server a
#: week ("How many origins" in docs/training.md says why not fewer).
DEFAULT_ORIGIN_EVERY_MINUTES = 35
#: ``evaluate``'s passes over the data, as its ``progress`` names them.
PASSES = (
    "forecast origins",
    "forecast origins without node_exporter's absent metrics",
    "early-warning checks",
)
QUIET_SHARE = 0.25  # per metric, the lowest-variance quarter of series is reported apart
TARGETS = {
    "recall_min": 0.80,
    "false_budget": sbd.FALSE_BUDGET,
    "lead_median_min_minutes": 60.0,
    "mase_8h_mean_max": 0.80,
    "mase_any_max": 1.0,
    "coverage_min": 0.78,
    "coverage_max": 0.82,
    "coverage_cell_min": 0.70,
    "coverage_cell_max": 0.90,
    "unseen_vs_seen_max": 1.10,
    "ratio_best_naive_max": 1.0,  # issue 13
    "series_ratio_short_max": 0.90,  # issue 13: pooled per-series, 30 min to 2 h
    "quiet_vs_last_value_max": 1.10,  # issue 13
}


def origin_stride(minutes: float) -> tuple[int, str | None]:
    """Return (steps between origins, a warning or None) for ``--origin-every`` minutes.

    A stride sharing a factor g with the 288 steps of a day only ever forecasts from 288/g
    times of day, which can flatter a model on a few lucky hours.
    """
    steps = max(1, round(minutes * 60 / STEP_SECONDS))
    notes = []
    if steps * STEP_SECONDS != minutes * 60:
        notes.append(f"{minutes:g} minutes is not a whole number of 5-minute steps")
    g = math.gcd(steps, DAY)
    if g != 1:
        notes.append(
            f"a stride of {steps} steps shares the factor {g} with the {DAY} steps of a day, so "
            f"origins fall on only {DAY // g} times of day (use e.g. "
            f"{DEFAULT_ORIGIN_EVERY_MINUTES:g} minutes = 7 steps, or 355 = 71 steps)"
        )
    return steps, "; ".join(notes) or None


def origin_steps(total_steps: int, stride: int) -> list[int]:
    """Return the forecast origins: the last encoder step of every backtest window."""
    start = max(ENCODER_STEPS - 1, DAY)  # seasonal naive needs yesterday
    return list(range(start, total_steps - HORIZON_STEPS, stride))


def times_of_day(origins) -> int:
    """Return how many of the 288 times of day the origins forecast from."""
    return len({int(o) % DAY for o in origins})


def linear_forecast(history: np.ndarray, steps: int) -> np.ndarray:
    """Return predict_linear's forecast for 1..steps ahead from the last hour of ``history``.

    ``history``: (..., LINEAR_POINTS, metrics). Least squares with the intercept at the last
    sample, as PromQL's predict_linear does at evaluation time; missing samples are left out.
    """
    at_now, slope = sbd.fit_line(history)
    ahead = np.arange(1, steps + 1, dtype=np.float64)
    return at_now[..., None, :] + slope[..., None, :] * ahead[:, None]


def last_present(window: np.ndarray) -> np.ndarray:
    """Return the last non-missing value of each (server, metric) in (servers, steps, metrics)."""
    ok = np.isfinite(window)
    last = window.shape[1] - 1 - ok[:, ::-1].argmax(axis=1)
    got = np.take_along_axis(window, last[:, None, :], axis=1)[:, 0]
    return np.where(ok.any(axis=1), got, np.nan)


def _pinball(actual: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Mean pinball loss over p10/p50/p90; actual (...), q (..., 3)."""
    levels = np.array([0.1, 0.5, 0.9])
    diff = actual[..., None] - q
    return np.mean(np.maximum(levels * diff, (levels - 1) * diff), axis=-1)


#: ``accuracy`` hands freed memory back to the system every this many origins (``release_memory``).
RELEASE_EVERY = 10


def release_memory() -> bool:
    """Hand the allocator's free memory back to the system; return whether it could.

    glibc's allocator keeps freed blocks in its heap, and after a large block is freed it serves
    later large ones from the heap too, between small blocks that live on: over hundreds of
    origins ``accuracy``'s memory grows although what it keeps does not ("How many origins" in
    docs/training.md). ``malloc_trim`` releases the free pages; elsewhere this does nothing.
    """
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return False
    trim(0)
    return True


def accuracy(
    forecaster, names, profiles, values, first, origin_every: int, seen, quiet=None, progress=None
):
    """Return (absolute errors per origin, server, metric, horizon and method; origin count).

    Origins are every ``origin_every`` steps (``origin_steps``). Only cells where the actual,
    the TFT and every baseline have a value are kept, so every method is scored on the same
    cells. ``quiet``: (servers, metrics) bool, or None. ``progress``: called with (origins
    done, origins in all) after each origin, or None.
    """
    s_count, _, m_count = values.shape
    h = np.array(list(HORIZONS.values())) - 1
    hnames = np.array(list(HORIZONS))
    quiet = np.zeros((s_count, m_count), bool) if quiet is None else quiet
    seen_row = np.array([s in seen for s in names])
    origins = origin_steps(values.shape[1], origin_every)
    parts = []
    for n, o in enumerate(origins, 1):
        if n % RELEASE_EVERY == 0:
            release_memory()
        window = values[:, o - ENCODER_STEPS + 1 : o + 1]
        fc = forecaster.predict(window, profiles, first + o, servers=names)
        fc = np.asarray(fc.values)  # (S,14,96,3)
        q = fc[:, :, h, :].astype(np.float64)
        actual = values[:, o + 1 + h].transpose(0, 2, 1).astype(np.float64)  # (S,14,H)
        day = values[:, o - DAY + 1 : o + 1].astype(np.float64)
        count = np.isfinite(day).sum(axis=1)
        mean24 = np.where(count > 0, np.nansum(day, axis=1) / np.maximum(count, 1), np.nan)
        at_now, slope = sbd.fit_line(values[:, o - LINEAR_POINTS + 1 : o + 1])
        point = {
            "tft": q[..., 1],
            "last_value": np.repeat(last_present(window)[..., None], len(h), axis=2),
            "seasonal_naive": values[:, o + 1 + h - DAY].transpose(0, 2, 1),
            "mean_24h": np.repeat(mean24[..., None], len(h), axis=2),
            "predict_linear": at_now[..., None] + slope[..., None] * (h + 1),
        }
        ok = np.isfinite(actual)
        for p in point.values():
            ok &= np.isfinite(p)
        i, j, k = np.nonzero(ok)
        a = actual[i, j, k]
        part = {
            "origin": np.full(len(i), o),
            "server": np.asarray(names, object)[i],
            "profile": np.asarray(profiles, object)[i],
            "seen": seen_row[i],
            "quiet": quiet[i, j],
            "metric": np.asarray(METRIC_NAMES, object)[j],
            "horizon": hnames[k],
        }
        for m, p in point.items():
            part[f"ae_{m}"] = np.abs(p[i, j, k] - a)
        part["pinball"] = _pinball(a, q[i, j, k])
        part["covered"] = (a >= q[i, j, k, 0]) & (a <= q[i, j, k, 2])
        parts.append(pd.DataFrame(part))
        if progress:
            progress(n, len(origins))
    if not parts:
        raise ValueError(
            f"too little data for a backtest: need more than {max(ENCODER_STEPS, DAY + 1)} + "
            f"{HORIZON_STEPS} steps per server, got {values.shape[1]}"
        )
    return pd.concat(parts, ignore_index=True), len(origins)


def ratio_eps() -> pd.Series:
    """Return each metric's ratio floor (``linborg.thresholds.ratio_floors``) by metric name."""
    return pd.Series(ratio_floors(), index=list(METRIC_NAMES))


def _ratio(num, den, eps):
    return (num + eps) / (den + eps)


def _gmean(x) -> float:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x) & (x > 0)]
    return float(np.exp(np.log(x).mean())) if len(x) else float("nan")


def summarise_accuracy(errors: pd.DataFrame) -> dict:
    """Return the accuracy tables: per metric and horizon, per profile, per series, overall."""
    eps = ratio_eps()
    ae = [f"ae_{m}" for m in METHODS]
    g = errors.groupby(["metric", "horizon"])
    bm = g[ae + ["pinball", "covered"]].mean()
    bm.columns = [f"mae_{m}" for m in METHODS] + ["pinball", "coverage"]
    bm["n"] = g.size()
    e = eps.reindex(bm.index.get_level_values("metric")).to_numpy()
    naive = bm[[f"mae_{m}" for m in NAIVE]]
    bm["best_naive"] = naive.idxmin(axis=1).str.removeprefix("mae_")
    bm["mase"] = _ratio(bm["mae_tft"], bm["mae_seasonal_naive"], e)
    best = naive.min(axis=1)
    bm["ratio_best_naive"] = _ratio(bm["mae_tft"], best, e)
    bm = bm.join(largest_error(errors, e))
    bm = bm.join(servers_behind(errors, bm["best_naive"]))
    ser = series_ratios(errors, bm["best_naive"], eps)
    bm["series_gmean_vs_best_naive"] = series_gmean_by_cell(ser)

    # Scale-free pooling: for each method, the geometric mean over metrics of its MAE relative
    # to the best naive baseline of that metric and horizon.
    relative = {
        m: {
            hz: _gmean(_ratio(bm.loc[rows, f"mae_{m}"], best[rows], e[rows]))
            for hz in HORIZONS
            if (rows := bm.index.get_level_values("horizon") == hz).any()
        }
        for m in METHODS
    }

    # Per profile: geometric mean over metrics of the per-metric MASE within the profile.
    gp = errors.groupby(["profile", "metric", "horizon"])[["ae_tft", "ae_seasonal_naive"]].mean()
    gp["mase"] = _ratio(
        gp["ae_tft"],
        gp["ae_seasonal_naive"],
        eps.reindex(gp.index.get_level_values("metric")).to_numpy(),
    )
    by_profile = gp.groupby(level=["profile", "horizon"])["mase"].agg(_gmean).to_frame("mase")
    by_profile["coverage"] = errors.groupby(["profile", "horizon"])["covered"].mean()

    h8 = bm.xs("8h", level="horizon")
    mase_8h = h8["mase"].replace([np.inf], np.nan).dropna()
    seen = errors[errors["seen"]]
    unseen = errors[~errors["seen"]]
    ratio = float("nan")
    if len(seen) and len(unseen):
        # Compare like with like: MASE per metric at 8 h on each side, averaged.
        def mase(part):
            g = part[part["horizon"] == "8h"].groupby("metric")[["ae_tft", "ae_seasonal_naive"]]
            g = g.mean()
            return _ratio(g["ae_tft"], g["ae_seasonal_naive"], eps.reindex(g.index).to_numpy())

        ratio = float((mase(unseen) / mase(seen)).dropna().mean())
    return {
        "by_metric": bm,
        "by_profile": by_profile,
        "mase_8h_mean": float(mase_8h.mean()),
        "mase_max": float(bm["mase"].max()),
        "ratio_best_naive_max": float(bm["ratio_best_naive"].max()),
        "series_ratio_best_naive_max": float(bm["series_gmean_vs_best_naive"].max()),
        "coverage": float(errors["covered"].mean()),
        "coverage_by_horizon": errors.groupby("horizon")["covered"].mean().to_dict(),
        "coverage_metric_horizon_min": float(bm["coverage"].min()),
        "coverage_metric_horizon_max": float(bm["coverage"].max()),
        "unseen_vs_seen_mase_ratio": ratio,
        "relative_mae_by_horizon": relative,
        "per_series": per_series(ser),
    }


def largest_error(errors: pd.DataFrame, eps: np.ndarray) -> pd.DataFrame:
    """Per metric and horizon: how much one forecast decides the cell.

    ``largest_error_share``: the TFT's largest single absolute error over the sum of its errors
    in the cell. ``ratio_best_naive_without_largest``: the ratio to the best naive baseline with
    that one cell (server and origin) left out for every method alike. A reading aid for
    heavy-tailed data, where one burst can decide a pooled MAE; the targets use the full ratio.
    ``eps``: each row's ratio floor, aligned with the groups' (metric, horizon) order.
    """
    ae = [f"ae_{m}" for m in METHODS]
    g = errors.groupby(["metric", "horizon"])
    total = g[ae].sum()
    top = errors.loc[g["ae_tft"].idxmax()].set_index(["metric", "horizon"])[ae]
    rest = (total - top).div((g.size() - 1).replace(0, np.nan), axis=0)
    best_rest = rest[[f"ae_{m}" for m in NAIVE]].min(axis=1)
    out = pd.DataFrame(index=total.index)
    out["largest_error_share"] = top["ae_tft"] / total["ae_tft"].replace(0, np.nan)
    out["ratio_best_naive_without_largest"] = _ratio(rest["ae_tft"], best_rest, eps)
    return out


#: How many of the servers furthest behind ``servers_behind`` names per cell.
BEHIND_NAMED = 3


def servers_behind(errors: pd.DataFrame, best_naive: pd.Series) -> pd.DataFrame:
    """Per metric and horizon: where the TFT's error comes from when it is behind.

    ``servers``: the servers scored there. ``servers_behind``: those whose summed TFT error is
    above their summed error of the cell's best naive baseline (``best_naive``, by metric and
    horizon). ``behind_most``: the ``BEHIND_NAMED`` servers furthest behind, each as [server,
    its share of what all servers behind are behind by]. A reading aid: it says whether a cell
    above 1 is a few servers or the whole fleet.
    """
    cols = ["ae_tft", *(f"ae_{n}" for n in NAIVE)]
    sums = errors.groupby(["metric", "horizon", "server"])[cols].sum()
    cell = sums.index.droplevel("server")
    best = best_naive.reindex(cell).to_numpy()
    base = np.choose(
        np.array([NAIVE.index(b) for b in best]), [sums[f"ae_{n}"].to_numpy() for n in NAIVE]
    )
    excess = pd.Series(sums["ae_tft"].to_numpy() - base, index=sums.index)
    rows = {}
    for key, ex in excess.groupby(level=["metric", "horizon"]):
        behind = ex[ex > 0].droplevel(["metric", "horizon"]).sort_values(ascending=False)
        rows[key] = {
            "servers": len(ex),
            "servers_behind": len(behind),
            "behind_most": [
                [str(server), float(v / behind.sum())]
                for server, v in behind.iloc[:BEHIND_NAMED].items()
            ],
        }
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index = out.index.set_names(["metric", "horizon"])
    return out


#: A cell whose largest single TFT error is at least this share of its summed error is listed
#: in the report below the per-metric table of ratios to the best naive baseline.
ONE_FORECAST_SHARE = 0.2


def series_ratios(errors: pd.DataFrame, best_naive: pd.Series, eps: pd.Series) -> pd.DataFrame:
    """Return per series (server, metric) and horizon its MAEs and its two error ratios.

    ``vs_best_naive``: the TFT's MAE over the series' MAE of the metric's best naive baseline at
    that horizon; ``vs_last_value``: over its last-value MAE. ``quiet`` as in ``accuracy``.
    """
    cols = [f"ae_{m}" for m in METHODS]
    g = errors.groupby(["server", "metric", "horizon"])
    ser = g[cols].mean()
    ser["quiet"] = g["quiet"].first()
    idx = ser.index.droplevel("server")
    e = eps.reindex(ser.index.get_level_values("metric")).to_numpy()
    best = best_naive.reindex(idx).to_numpy()
    base = np.choose(
        np.array([NAIVE.index(b) for b in best]), [ser[f"ae_{n}"].to_numpy() for n in NAIVE]
    )
    ser["vs_best_naive"] = _ratio(ser["ae_tft"].to_numpy(), base, e)
    ser["vs_last_value"] = _ratio(ser["ae_tft"], ser["ae_last_value"], e)
    return ser


def series_gmean_by_cell(ser: pd.DataFrame) -> pd.Series:
    """Per metric and horizon: the geometric mean over servers of ``vs_best_naive``.

    The scale-free reading of a cell: every server counts once, whatever its traffic, so one
    burst on one busy server cannot decide it as it can decide the ratio of pooled MAEs.
    """
    return ser.groupby(level=["metric", "horizon"])["vs_best_naive"].agg(_gmean)


def per_series(ser: pd.DataFrame) -> dict:
    """Return, per horizon, the distribution of per-series (server, metric) error ratios.

    ``ser`` comes from ``series_ratios``. Reported for all series, the quiet ones (per metric,
    the lowest-variance quarter, ties included) and the others.
    """
    idx = ser.index.droplevel("server")

    def stats(part):
        r = part["vs_best_naive"].to_numpy()
        return {
            "series": len(part),
            "gmean_vs_best_naive": _gmean(r),
            "gmean_vs_last_value": _gmean(part["vs_last_value"]),
            "median_vs_best_naive": float(np.median(r)) if len(r) else None,
            "p90_vs_best_naive": float(np.percentile(r, 90)) if len(r) else None,
            "share_worse_than_best_naive": float((r > 1).mean()) if len(r) else None,
        }

    out = {}
    for hz in HORIZONS:
        part = ser.xs(hz, level="horizon") if hz in idx.get_level_values("horizon") else ser[:0]
        out[hz] = {
            "all": stats(part),
            "quiet": stats(part[part["quiet"]]),
            "other": stats(part[~part["quiet"]]),
        }
    return out


def quiet_series(values: np.ndarray, share: float = QUIET_SHARE) -> np.ndarray:
    """Return (servers, metrics) True for each metric's lowest-variance ``share`` of series."""
    ok = np.isfinite(values)
    n = ok.sum(axis=1)
    mean = np.where(ok, values, 0).sum(axis=1) / np.maximum(n, 1)
    var = (np.where(ok, values - mean[:, None], 0) ** 2).sum(axis=1) / np.maximum(n, 1)
    var = np.where(n > 1, var, np.nan)
    out = np.zeros(var.shape, bool)
    for j in range(var.shape[1]):
        v = var[:, j]
        if np.isfinite(v).any():
            out[:, j] = v <= np.nanquantile(v, share)
    return out


def seen_by_bundle(servers, forecaster, metadata: dict | None) -> tuple[set[str], str]:
    """Return (servers seen in training by either of the bundle's networks, how decided).

    ``seen_in_training`` for the bundle's network and, when it has one, its plain-host network.
    """
    seen, basis = seen_in_training(servers, forecaster.spec.get("training", {}), metadata)
    plain = getattr(forecaster, "plain", None)
    if plain is not None:
        more, _ = seen_in_training(servers, plain.spec.get("training", {}), metadata)
        seen |= more
        basis += ", by either of the bundle's networks"
    return seen, basis


def seen_in_training(servers, training: dict, metadata: dict | None) -> tuple[set[str], str]:
    """Return (servers seen in training, how that was decided).

    A server is the one trained on only if it came from the same data: the same name and the
    same generator seed (``training.server_seeds``, per server; None for data not from the
    generator; bundles of one file before it: ``training.data_source.generator_seed`` and
    ``training.server_names``). A held-out server's seed comes from the file's
    ``server_seeds``, else from its top-level ``seed`` when the generator wrote it, else None.
    Bundles without either can only be matched by name, and the basis says so.
    """
    meta = metadata or {}
    seeds = meta.get("server_seeds") or {}
    file_seed = meta.get("seed") if meta.get("generator") else None
    trained = training.get("server_seeds")
    if isinstance(trained, dict):
        seen = {s for s in servers if s in trained and seeds.get(s, file_seed) == trained[s]}
        return seen, (
            "by data source: same server name and same generator seed as in training (None "
            "for data the generator did not write)"
        )
    names = set(map(str, training.get("server_names") or []))
    source = training.get("data_source")
    if not isinstance(source, dict) or "generator_seed" not in source:
        seen = {s for s in servers if s in names}
        return seen, (
            "by hostname only: this bundle does not record its training data's generator seed "
            "(training.data_source), so a same-named server from another seed counts as seen"
        )
    train_seed = source["generator_seed"]
    seen = {s for s in servers if s in names and seeds.get(s, file_seed) == train_seed}
    return seen, (
        f"by data source: same generator seed ({train_seed}) and same server name as in training"
    )


def tft_at_checks(
    forecaster, profiles, values, first, checks, thresholds, servers=None, progress=None
):
    """Return the TFT's risk (servers, checks), time to breach (servers, checks, 2, 2), the
    driver's own time to breach (the same shape) and the driver's index (servers, checks).

    One forecast per check serves all: the risk score and, over all metrics, the earliest
    time to breach of each level (warning, critical) by p50 and by the pessimistic quantile.
    ``servers``: the servers' names (``Forecaster.predict``). ``progress``: called with (checks
    done, checks in all) after each check, or None.
    """
    risk = np.zeros((len(profiles), len(checks)))
    ttb = np.full((len(profiles), len(checks), 2, 2), np.nan)
    driver_ttb = np.full((len(profiles), len(checks), 2, 2), np.nan)
    driver = np.zeros((len(profiles), len(checks)), int)
    rows = np.arange(len(profiles))
    cal = getattr(forecaster, "spec", {}).get("risk_calibration")
    healthy = healthy_risk(cal, profiles, list(METRIC_NAMES))
    for c, o in enumerate(checks):
        window = values[:, o - ENCODER_STEPS + 1 : o + 1]
        fc = forecaster.predict(window, profiles, first + o, servers=servers)
        r = assess(
            fc.values, profiles, list(METRIC_NAMES), thresholds, present=fc.present, healthy=healthy
        )
        risk[:, c] = r.score
        ttb[:, c] = np.fmin.reduce(r.time_to_breach, axis=1)  # NaN only where all are NaN
        driver[:, c] = r.driver
        driver_ttb[:, c] = r.time_to_breach[rows, r.driver]
        if progress:
            progress(c + 1, len(checks))
    return risk, ttb, driver_ttb, driver


def early_warning(
    forecaster,
    profiles,
    values,
    first,
    every,
    risk_threshold,
    alert_rule=None,
    thresholds=None,
    servers=None,
    progress=None,
):
    """Return (every detector's warnings at the checks, the check times in Unix seconds).

    ``alert_rule``: (rule, which metrics may drive it) as ``scoreboard.alert_rule_detectors``
    takes them (the application reads them from the mixin's config); None: no alert_rule family.
    ``thresholds``: the levels every detector is scored against (default: the packaged ones).
    ``servers``: the servers' names (``Forecaster.predict``). ``progress``: as ``tft_at_checks``.
    """
    checks = np.arange(ENCODER_STEPS - 1, values.shape[1], every)
    th = thresholds if thresholds is not None else load_thresholds()
    warn, crit, direction = threshold_arrays(th, profiles, list(METRIC_NAMES))
    # The harmless end of each metric's range (for predict_linear's "half" guard).
    low = np.array([METRICS_BY_NAME[m].min for m in METRIC_NAMES])
    high = np.array([METRICS_BY_NAME[m].max for m in METRIC_NAMES])
    safe = np.where(direction > 0, low, high)
    risk, ttb, driver_ttb, driver = tft_at_checks(
        forecaster, profiles, values, first, checks, th, servers, progress
    )
    thresholds = sorted(set(sbd.RISK_THRESHOLDS) | {risk_threshold})
    detectors = sbd.tft_detectors(risk, ttb, thresholds)
    if alert_rule is not None:
        rule, may_drive = alert_rule
        detectors += sbd.alert_rule_detectors(risk, driver_ttb, may_drive[driver], rule)
    detectors += sbd.baseline_detectors(values, checks, warn, crit, direction, safe)
    detectors += sbd.perfect_forecast_detectors(values, checks, warn, crit, direction)
    return detectors, (first + checks) * STEP_SECONDS


def evaluate(
    forecaster,
    frame: pd.DataFrame,
    labels: list[dict] | None,
    origin_every_minutes: float = DEFAULT_ORIGIN_EVERY_MINUTES,
    incident_every_minutes: int = 15,
    risk_threshold: float = 50.0,
    seen_servers: set[str] | None = None,
    seen_basis: str | None = None,
    alert_rule: tuple[dict, np.ndarray] | None = None,
    thresholds_file: str | None = None,
    progress=None,
) -> dict:
    """Return the backtest result: summary (JSON-ready), tables and the raw errors.

    ``thresholds_file``: an override of the packaged thresholds (the exporter's
    ``thresholds_file``) for the early-warning scoreboard; the accuracy figures do not use it.
    ``progress``: called with (pass, done, in all) as each of the three passes (``PASSES``)
    goes, or None; the second runs only where the data has a metric it takes away.
    """

    def report(stage):
        return (lambda done, total: progress(stage, done, total)) if progress else None

    thresholds = load_thresholds(*([thresholds_file] if thresholds_file else []))
    names, profiles, values, first = dense_frame(frame)
    seen = seen_servers or set()
    stride, stride_note = origin_stride(origin_every_minutes)
    origins = origin_steps(values.shape[1], stride)
    quiet = quiet_series(values)
    errors, n_origins = accuracy(
        forecaster, names, profiles, values, first, stride, seen, quiet, report(PASSES[0])
    )
    acc = summarise_accuracy(errors)
    # What missing metrics cost: the same backtest with a plain node_exporter's gaps
    # (no java_cpu_pct, no close_wait counts), scored on the metrics both runs forecast.
    # Data that has none of them (a plain node_exporter fleet) is that backtest already.
    from linborg.trainer.train import NODE_EXPORTER_ABSENT

    absent = [METRIC_NAMES.index(m) for m in NODE_EXPORTER_ABSENT]
    if np.isnan(values[:, :, absent]).all():
        errors_missing = errors
    else:
        stripped = values.copy()
        stripped[:, :, absent] = np.nan
        errors_missing, _ = accuracy(
            forecaster, names, profiles, stripped, first, stride, seen, progress=report(PASSES[1])
        )

    def mase_8h(e):
        e = e[(e["horizon"] == "8h") & ~e["metric"].isin(NODE_EXPORTER_ABSENT)]
        g = e.groupby("metric")[["ae_tft", "ae_seasonal_naive"]].mean()
        eps = ratio_eps().reindex(g.index).to_numpy()
        return float(_ratio(g["ae_tft"], g["ae_seasonal_naive"], eps).mean())

    bm = acc["by_metric"]
    summary = {
        "thresholds_file": thresholds_file,
        "missing_metrics_cost": {
            "absent": list(NODE_EXPORTER_ABSENT),
            "mase_8h_other_metrics_all_present": mase_8h(errors),
            "mase_8h_other_metrics_when_absent": mase_8h(errors_missing),
        },
        "servers": len(names),
        "servers_seen_in_training": sum(s in seen for s in names),
        "seen_basis": seen_basis or "as given by the caller",
        "days": round(values.shape[1] / DAY, 2),
        "origins": n_origins,
        "origin_every_minutes": stride * STEP_SECONDS / 60,
        "origin_times_of_day": times_of_day(origins),
        "origin_note": stride_note,
        "mase_8h_mean": acc["mase_8h_mean"],
        "mase_max": acc["mase_max"],
        "ratio_best_naive_max": acc["ratio_best_naive_max"],
        "series_ratio_best_naive_max": acc["series_ratio_best_naive_max"],
        "coverage_p10_p90": acc["coverage"],
        "coverage_by_horizon": acc["coverage_by_horizon"],
        "coverage_metric_horizon_min": acc["coverage_metric_horizon_min"],
        "coverage_metric_horizon_max": acc["coverage_metric_horizon_max"],
        "unseen_vs_seen_mase_ratio": acc["unseen_vs_seen_mase_ratio"],
        "relative_mae_by_horizon": acc["relative_mae_by_horizon"],
        "per_series": acc["per_series"],
        "by_metric": {
            m: {hz: bm.loc[(m, hz)].to_dict() for hz in HORIZONS if (m, hz) in bm.index}
            for m in METRIC_NAMES
            if m in bm.index.get_level_values(0)
        },
        "by_profile": {
            p: {hz: row.to_dict() for (_, hz), row in part.iterrows()}
            for p, part in acc["by_profile"].groupby(level="profile")
        },
        "risk_threshold": risk_threshold,
        "risk_calibration": _risk_calibration_words(
            getattr(forecaster, "spec", {}).get("risk_calibration"), thresholds_file
        ),
        "scoreboard": None,
        "warnings_without_labels": None,
    }
    every = max(1, round(incident_every_minutes * 60 / STEP_SECONDS))
    detectors, check_times = early_warning(
        forecaster,
        profiles,
        values,
        first,
        every,
        risk_threshold,
        alert_rule,
        thresholds,
        servers=names,
        progress=report(PASSES[2]),
    )
    if len(check_times) and labels is not None:
        sb = sbd.scoreboard(detectors, check_times, names, labels, every * STEP_SECONDS)
        summary["scoreboard"] = sb
        summary["incidents_at_risk_threshold"] = sb["detectors"][f"tft_risk >= {risk_threshold:g}"]
    elif len(check_times):
        summary["warnings_without_labels"] = warnings_without_labels(
            detectors, check_times, names, every * STEP_SECONDS
        )
    summary["targets"] = check_targets(summary)
    return {
        "summary": _jsonable(summary),
        "by_metric": acc["by_metric"],
        "by_profile": acc["by_profile"],
        "errors": errors,
    }


def warnings_without_labels(detectors, check_times, servers, every_seconds: int) -> dict:
    """Return how often each detector warns on data without incident labels: its warning
    episodes (counted as the scoreboard counts false warnings, each once), per 100 server-days,
    and the servers they fall on. Without labels their truth is unknown."""
    sb = sbd.scoreboard(detectors, check_times, servers, [], every_seconds)
    out = {}
    for d in detectors:
        row = sb["detectors"][d.name]
        out[d.name] = {
            "family": d.family,
            "episodes": row["false_warnings"],
            "per_100_server_days": row["false_per_100_server_days"],
            "servers_warned": int(np.asarray(d.warned, bool).any(axis=1).sum()),
        }
    return {
        "checks": sb["checks"],
        "check_every_minutes": sb["check_every_minutes"],
        "servers": len(servers),
        "server_days": sb["server_days"],
        "detectors": out,
    }


def _unlabelled_markdown(w: dict | None, risk_threshold: float) -> list[str]:
    """Return the report's lines on how often each detector warns on data without labels."""
    if not w:
        return []
    lines = [
        "",
        "### How often each detector warns here",
        "",
        f"{w['servers']} servers, {w['checks']} checks every {w['check_every_minutes']:g} "
        f"minutes ({w['server_days']:.1f} server-days). Without labels no warning can be called "
        "true or false; what each detector would cost an on-call team here is its warning "
        "episodes (a maximal run of consecutive warning checks on one server, counted once) per "
        f"100 server-days. `tft_risk >= {risk_threshold:g}` is the risk threshold this report was "
        "run with (the alert rules' unless `--risk-threshold` was given), `alert_rule` the shipped "
        "LinborgPredictedIncident rules; `perfect_forecast` reads the actual future, so it counts "
        "how often the metrics really went past their levels within 8 hours.",
        "",
        "| family | detector | warning episodes | per 100 server-days | servers warned |",
        "|---|---|---|---|---|",
    ]
    for name, r in w["detectors"].items():
        lines.append(
            f"| {r['family']} | `{name}` | {r['episodes']} | "
            f"{_fmt(r['per_100_server_days'], 2)} | {r['servers_warned']} |"
        )
    return lines


def _risk_calibration_words(cal: dict | None, thresholds_file: str | None = None) -> str:
    """Return how the report's risk score was computed (linborg.risk, "risk above healthy")."""
    if not cal or not cal.get("healthy_risk"):
        return "none: the risk score is the raw risk (the bundle has no risk_calibration)"
    words = (
        "risk above healthy: each metric's risk above its profile's healthy ceiling, fitted by "
        f"linborg calibrate-risk on {' + '.join(cal.get('sources') or ['?'])} "
        f"({', '.join(cal['healthy_risk'])})"
    )
    fitted_with = cal.get("thresholds_file")
    if fitted_with != thresholds_file:
        words += (
            f"; the ceilings were fitted against {fitted_with or 'the packaged thresholds'}, "
            f"not {thresholds_file or 'the packaged thresholds'} that this report scores "
            "against: refit them with calibrate-risk --thresholds"
        )
    return words


def _tft_headline(sb: dict) -> dict | None:
    """Return the better of the two TFT families' best members at the false-warning budget."""
    cands = [sb["best"][f] for f in ("tft_risk", "tft_time_to_breach") if f in sb["best"]]
    if not cands:
        return None
    return max(cands, key=lambda b: (b["recall_at_budget"] or 0.0, -b["false_per_100_server_days"]))


def check_targets(s: dict) -> dict:
    """Return each target (issues 12 and 13) with the measured value and whether it is met.

    ``met`` is None (printed "n/a") when the data cannot measure the target.
    """
    t = TARGETS
    out: dict[str, tuple] = {}
    sb = s.get("scoreboard")
    budget = f"<= {t['false_budget']:g} false / 100 server-days"
    tft = _tft_headline(sb) if sb else None
    measurable = bool(tft and tft["incidents"])

    def recall(fam):
        b = (sb or {}).get("best", {}).get(fam)
        return b["recall_at_budget"] if b and measurable else None

    r = tft["recall_at_budget"] if measurable else None
    out[f"TFT recall (>= 30 min ahead) at {budget} >= {t['recall_min']:.2f}"] = (
        r,
        lambda x: x >= t["recall_min"],
    )
    lead = tft["lead_median_minutes"] if measurable and tft["within_budget"] else None
    out[f"TFT median lead at that point >= {t['lead_median_min_minutes']:g} min"] = (
        lead,
        lambda x: x >= t["lead_median_min_minutes"],
    )
    for fam, label in (
        ("static_threshold", "static threshold"),
        ("predict_linear", "predict_linear"),
    ):
        other = recall(fam)
        diff = None if r is None or other is None else r - other
        out[f"TFT recall above the best {label} at {budget} (difference)"] = (diff, _positive)
    out[f"mean MASE of p50 at 8 h <= {t['mase_8h_mean_max']:.2f}"] = (
        s["mase_8h_mean"],
        lambda x: x <= t["mase_8h_mean_max"],
    )
    out[f"no metric MASE above {t['mase_any_max']:.1f} at any horizon (max)"] = (
        s["mase_max"],
        lambda x: x <= t["mase_any_max"],
    )
    out[f"{t['coverage_min']:.2f} <= p10-p90 coverage overall <= {t['coverage_max']:.2f}"] = (
        s["coverage_p10_p90"],
        lambda x: t["coverage_min"] <= x <= t["coverage_max"],
    )
    out[f"coverage per metric and horizon >= {t['coverage_cell_min']:.2f} (min)"] = (
        s["coverage_metric_horizon_min"],
        lambda x: x >= t["coverage_cell_min"],
    )
    out[f"coverage per metric and horizon <= {t['coverage_cell_max']:.2f} (max)"] = (
        s["coverage_metric_horizon_max"],
        lambda x: x <= t["coverage_cell_max"],
    )
    out[f"unseen/seen MASE at 8 h <= {t['unseen_vs_seen_max']:.2f}"] = (
        s["unseen_vs_seen_mase_ratio"],
        lambda x: x <= t["unseen_vs_seen_max"],
    )
    out[f"TFT MAE / best naive <= {t['ratio_best_naive_max']:.1f} at every metric and horizon"] = (
        s["ratio_best_naive_max"],
        lambda x: x <= t["ratio_best_naive_max"],
    )
    out[
        f"per-series geometric mean vs best naive <= {t['ratio_best_naive_max']:.1f} "
        "at every metric and horizon (max)"
    ] = (s.get("series_ratio_best_naive_max"), lambda x: x <= t["ratio_best_naive_max"])
    ps = s.get("per_series") or {}
    short = [ps[h]["all"]["gmean_vs_best_naive"] for h in ("30m", "1h", "2h") if h in ps]
    out[
        f"per-series geometric mean vs best naive <= {t['series_ratio_short_max']:.2f} "
        "at 30m, 1h, 2h (worst)"
    ] = (max(short) if short else None, lambda x: x <= t["series_ratio_short_max"])
    quiet = [v["quiet"]["gmean_vs_last_value"] for v in ps.values() if v["quiet"]["series"]]
    out[
        f"quietest 25% of series vs last value <= {t['quiet_vs_last_value_max']:.2f} "
        "(geometric mean, worst horizon)"
    ] = (max(quiet) if quiet else None, lambda x: x <= t["quiet_vs_last_value_max"])
    result = {}
    for name, (value, ok) in out.items():
        v = _num(value)
        result[name] = {"measured": v, "met": None if v is None else bool(ok(float(value)))}
    return result


def _positive(x) -> bool:
    return x > 0


def _num(x):
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else round(x, 4)


def _jsonable(x):
    """Return ``x`` with numpy scalars as Python numbers and NaN/inf as None (valid JSON)."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, bool | np.bool_):
        return bool(x)
    if isinstance(x, int | np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        x = float(x)
        return None if math.isnan(x) or math.isinf(x) else x
    return x


def _fmt(x, digits=3):
    if x is None or (isinstance(x, float) and (math.isnan(x) or math.isinf(x))):
        return "n/a"
    return f"{x:.{digits}f}"


def behind_cells(bm: dict, order) -> list[str]:
    """Return the report lines on the cells above 1: how many servers are behind, and which."""
    rows = [
        (m, h, c)
        for m, hs in bm.items()
        for h in order
        if (c := hs.get(h)) and (_num(c.get("ratio_best_naive")) or 0) > 1
    ]
    if not rows:
        return ["", "No cell above is behind its best naive baseline."]
    lines = [
        "",
        "Cells above behind their best naive baseline (ratio above 1): the servers whose summed "
        "TFT error there is above their summed error of that baseline, and the ones furthest "
        "behind with their share of what all of them are behind by:",
        "",
        "| metric | horizon | ratio | servers behind | furthest behind (share of the excess) |",
        "|---|---|---|---|---|",
    ]
    for m, h, c in rows:
        most = ", ".join(f"{s} {share:.0%}" for s, share in c.get("behind_most") or [])
        lines.append(
            f"| {m} | {h} | {_fmt(c['ratio_best_naive'])} | "
            f"{c.get('servers_behind')} of {c.get('servers')} | {most} |"
        )
    return lines


def one_forecast_cells(bm: dict, order) -> list[str]:
    """Return the report lines on the cells where one forecast carries much of the error."""
    rows = [
        (m, h, c)
        for m, hs in bm.items()
        for h in order
        if (c := hs.get(h)) and (_num(c.get("largest_error_share")) or 0) >= ONE_FORECAST_SHARE
    ]
    share = f"{ONE_FORECAST_SHARE:.0%} or more of the TFT's summed error there"
    if not rows:
        return ["", f"No cell above is decided by one forecast (none carries {share})."]
    lines = [
        "",
        f"Cells above decided by one forecast (one server at one origin carries {share}), for "
        "reading the table; the targets use the full ratio:",
        "",
        "| metric | horizon | largest error's share | ratio | ratio without that forecast |",
        "|---|---|---|---|---|",
    ]
    for m, h, c in rows:
        lines.append(
            f"| {m} | {h} | {_fmt(c['largest_error_share'])} | {_fmt(c['ratio_best_naive'])} | "
            f"{_fmt(c['ratio_best_naive_without_largest'])} |"
        )
    lines += [
        "",
        "A cell like these moves with which origins happen to fall on the burst: more origins "
        "(a smaller `--origin-every`; 35 minutes forecasts every server from every time of day "
        "once a week) share it among more forecasts, and the per-server reading below weighs "
        "each server once.",
    ]
    return lines


def write_report(result: dict, out: Path) -> Path:
    """Write report.md, report.json and PNG plots into ``out``; return report.md."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    s = _jsonable(result["summary"])
    (out / "report.json").write_text(json.dumps(s, indent=1, sort_keys=True) + "\n")
    order = list(HORIZONS)
    rel = s["relative_mae_by_horizon"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for m in METHODS:
        ys = [rel[m].get(h) for h in order]
        ax.plot(order, [np.nan if y is None else y for y in ys], marker="o", label=m)
    ps = s["per_series"]
    for group, style in (("all", "--"), ("quiet", ":")):
        ys = [ps[h][group]["gmean_vs_best_naive"] for h in order]
        ax.plot(
            order,
            [np.nan if y is None else y for y in ys],
            ls=style,
            color="black",
            label=f"tft, per-series ({group})",
        )
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_yscale("log")
    ax.set_ylabel("MAE / best naive MAE (geometric mean over metrics)")
    ax.set_xlabel("horizon")
    ax.set_title("p50 error relative to the best naive baseline (below 1 beats it)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "relative_mae_by_horizon.png", dpi=80)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(8, 4))
    cov = s["coverage_by_horizon"]
    ax.bar(order, [cov.get(h) or 0 for h in order])
    lo, hi = TARGETS["coverage_min"], TARGETS["coverage_max"]
    ax.axhspan(lo, hi, color="green", alpha=0.15, label=f"target {lo:.0%}-{hi:.0%}")
    ax.set_ylim(0, 1)
    ax.set_title("p10-p90 coverage by horizon")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "coverage_by_horizon.png", dpi=80)
    plt.close(fig)

    lines = [
        "# Model evaluation",
        "",
        f"Data: {s.get('source', '')}; {s['servers']} servers ({s['servers_seen_in_training']} "
        f"seen in training, decided {s['seen_basis']}), {s['days']} days, {s['origins']} "
        f"forecast origins per server every {s['origin_every_minutes']:g} minutes, from "
        f"{s['origin_times_of_day']} of the 288 times of day.",
    ]
    if s.get("origin_note"):
        lines += ["", f"**Origins:** {s['origin_note']}."]
    if s.get("thresholds_file"):
        lines += [
            "",
            f"**Thresholds:** the packaged ones overridden by {s['thresholds_file']} "
            "(every early-warning detector is scored against them).",
        ]
    lines += [
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    for name, t in s["targets"].items():
        met = "n/a" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {name} | {_fmt(t['measured'])} | {met} |")
    sb = s.get("scoreboard")
    if sb:
        sbd.plot(sb, out / "scoreboard.png")
        lines += [""] + sbd.markdown(sb)
        if s.get("risk_calibration"):
            lines += ["", f"Risk score (tft_risk, alert_rule): {s['risk_calibration']}."]
        if s.get("incidents_at_risk_threshold"):
            r = s["incidents_at_risk_threshold"]
            lines += [
                "",
                f"At the alert rules' risk threshold {s['risk_threshold']:g}: recall "
                f"{_fmt(r['recall'])}, {_fmt(r['false_per_100_server_days'], 2)} false warnings "
                f"per 100 server-days, median lead {_fmt(r['lead_median_minutes'], 0)} min.",
            ]
    else:
        lines += ["", "## Early-warning scoreboard", "", "n/a: the data has no incident labels."]
        lines += _unlabelled_markdown(s.get("warnings_without_labels"), s["risk_threshold"])
    lines += [
        "",
        "## Error relative to the best naive baseline",
        "",
        "No errors of different units are added up. Each cell is the geometric mean over "
        "metrics of the method's MAE divided by the MAE of that metric's best naive baseline "
        "at that horizon (the lowest of last value, seasonal naive and 24-hour mean); below 1 "
        "beats it.",
        "",
        "![relative](relative_mae_by_horizon.png) ![coverage](coverage_by_horizon.png)",
        "",
        "| horizon | " + " | ".join(METHODS) + " | coverage |",
        "|---" * (len(METHODS) + 2) + "|",
    ]
    for h in order:
        cells = [_fmt(rel[m].get(h)) for m in METHODS]
        lines.append(f"| {h} | " + " | ".join(cells) + f" | {_fmt(cov.get(h))} |")
    bm = s["by_metric"]

    def metric_table(title, cell):
        rows = ["", title, "", "| metric | " + " | ".join(order) + " |"]
        rows.append("|---" * (len(order) + 1) + "|")
        for m, hs in bm.items():
            rows.append(
                f"| {m} | " + " | ".join(cell(hs[h]) if h in hs else "n/a" for h in order) + " |"
            )
        return rows

    lines += metric_table(
        "## Per metric: TFT MAE / best naive baseline MAE (the baseline in brackets)",
        lambda c: f"{_fmt(c['ratio_best_naive'])} ({c['best_naive']})",
    )
    lines += one_forecast_cells(bm, order)
    lines += behind_cells(bm, order)
    lines += metric_table(
        "## Per metric: geometric mean over servers of each series' ratio to the best naive "
        "baseline",
        lambda c: _fmt(c.get("series_gmean_vs_best_naive")),
    )
    lines += [
        "",
        "Every server counts once here, whatever its traffic: one burst on one busy server can "
        "decide a ratio of pooled MAEs (above), not this one. The baseline is the one in "
        "brackets above.",
    ]
    lines += metric_table("## Per metric: MASE against seasonal naive", lambda c: _fmt(c["mase"]))
    lines += metric_table("## Per metric: p10-p90 coverage", lambda c: _fmt(c["coverage"]))
    lines += [
        "",
        "## Per series",
        "",
        "A series is one metric of one server. Its ratio: TFT MAE over its MAE of the metric's "
        "best naive baseline at that horizon. Quiet: per metric, the lowest-variance "
        f"{QUIET_SHARE:.0%} of series (ties included).",
        "",
        "| horizon | group | series | geometric mean vs best naive | vs last value | median | "
        "90th pct | share worse than best naive |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for h in order:
        for group in ("all", "quiet", "other"):
            st = ps[h][group]
            lines.append(
                f"| {h} | {group} | {st['series']} | {_fmt(st['gmean_vs_best_naive'])} | "
                f"{_fmt(st['gmean_vs_last_value'])} | {_fmt(st['median_vs_best_naive'])} | "
                f"{_fmt(st['p90_vs_best_naive'])} | {_fmt(st['share_worse_than_best_naive'])} |"
            )
    lines += [
        "",
        "## Per profile (geometric mean over metrics of the per-metric MASE)",
        "",
        "| profile | " + " | ".join(order) + " |",
        "|---" * (len(order) + 1) + "|",
    ]
    for p, hs in sorted(s["by_profile"].items()):
        cells = [_fmt(hs[h]["mase"]) if h in hs else "n/a" for h in order]
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    mc = s.get("missing_metrics_cost")
    if mc:
        lines += [
            "",
            "## What missing metrics cost",
            "",
            f"With {', '.join(mc['absent'])} removed from every server (a plain node_exporter "
            f"host), mean MASE at 8 h on the other metrics is "
            f"{_fmt(mc['mase_8h_other_metrics_when_absent'])}, against "
            f"{_fmt(mc['mase_8h_other_metrics_all_present'])} with every metric present. "
            "The removed metrics get no forecast at all.",
        ]
    lines += [
        "",
        f"Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by `linborg evaluate`.",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
