"""Backtests: the TFT against baselines on held-out data, and incident warnings against labels.

Forecast accuracy: at rolling origins, per metric, profile and horizon (30m, 1h, 2h, 4h, 8h):
MAE of p50, MASE against the seasonal naive forecast (same time yesterday), pinball loss, and
coverage of the p10-p90 interval. Baselines: last value, seasonal naive, and predict_linear
(least squares over the last hour, extrapolated, as PromQL does).

Incidents: every ``incident_every_minutes`` the risk score (linborg.risk) is computed for every
server; a warning is a risk at or above the threshold. A precursor incident counts as warned
when a warning was raised between 8 hours and 30 minutes before its onset; the lead time is
onset minus the first warning in the 8 hours before it. A warning episode (consecutive warned
checks of one server) is false when no incident of that server has its onset within 8 hours
after the episode starts and none is in progress. predict_linear warnings use the same rules:
a warning when any metric's predict_linear over the last hour crosses its critical threshold
within 8 hours.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from linborg.contract import METRIC_NAMES, STEP_SECONDS
from linborg.features import ENCODER_STEPS, HORIZON_STEPS, dense_frame
from linborg.risk import assess, threshold_arrays
from linborg.thresholds import load_thresholds

HORIZONS = {"30m": 6, "1h": 12, "2h": 24, "4h": 48, "8h": 96}
DAY = 288
LINEAR_POINTS = 12  # one hour
WARN_BEFORE = (6, 96)  # 30 minutes .. 8 hours, in steps
METHODS = ("tft", "last_value", "seasonal_naive", "predict_linear")
TARGETS = {
    "mase_8h_max": 0.85,
    "coverage_min": 0.75,
    "coverage_max": 0.85,
    "unseen_vs_seen_max": 1.10,
    "incident_recall_min": 0.80,
    "false_warnings_per_100_server_days_max": 1.0,
}


def linear_forecast(history: np.ndarray, steps: int) -> np.ndarray:
    """Return predict_linear's forecast for 1..steps ahead from the last hour of ``history``.

    ``history``: (..., LINEAR_POINTS, metrics). Least squares with the intercept at the last
    sample, as PromQL's predict_linear does at evaluation time.
    """
    x = np.arange(-LINEAR_POINTS + 1, 1, dtype=np.float64)
    xm = x.mean()
    y = history.astype(np.float64)
    ym = np.nanmean(y, axis=-2, keepdims=True)
    slope = np.nansum((x[:, None] - xm) * (y - ym), axis=-2) / ((x - xm) ** 2).sum()
    at_now = ym[..., 0, :] + slope * (0 - xm)
    ahead = np.arange(1, steps + 1, dtype=np.float64)
    return at_now[..., None, :] + slope[..., None, :] * ahead[:, None]


def _pinball(actual: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Mean pinball loss over p10/p50/p90; actual (...), q (..., 3)."""
    levels = np.array([0.1, 0.5, 0.9])
    diff = actual[..., None] - q
    return np.mean(np.maximum(levels * diff, (levels - 1) * diff), axis=-1)


def accuracy(forecaster, names, profiles, values, first, origin_every: int, seen: set[str]):
    """Return a long table of absolute errors per origin, server, metric, horizon and method."""
    total = values.shape[1]
    start = max(ENCODER_STEPS - 1, DAY)  # seasonal naive needs yesterday
    origins = list(range(start, total - HORIZON_STEPS, origin_every))
    rows = []
    hsteps = np.array(list(HORIZONS.values()))
    for o in origins:
        window = values[:, o - ENCODER_STEPS + 1 : o + 1]
        fc = forecaster.predict(window, profiles, first + o).values  # (S, 14, 96, 3)
        actual = values[:, o + 1 : o + 1 + HORIZON_STEPS].transpose(0, 2, 1)  # (S, 14, 96)
        last = np.repeat(values[:, o][:, :, None], HORIZON_STEPS, axis=2)
        snaive = values[:, o + 1 - DAY : o + 1 - DAY + HORIZON_STEPS].transpose(0, 2, 1)
        lin = linear_forecast(values[:, o - LINEAR_POINTS + 1 : o + 1], HORIZON_STEPS)
        lin = lin.transpose(0, 2, 1)
        h = hsteps - 1
        a = actual[:, :, h]
        point = {
            "tft": fc[:, :, h, 1],
            "last_value": last[:, :, h],
            "seasonal_naive": snaive[:, :, h],
            "predict_linear": lin[:, :, h],
        }
        covered = (a >= fc[:, :, h, 0]) & (a <= fc[:, :, h, 2])
        pin = _pinball(a, fc[:, :, h, :])
        for i, server in enumerate(names):
            for j, metric in enumerate(METRIC_NAMES):
                for k, hname in enumerate(HORIZONS):
                    if not np.isfinite(a[i, j, k]) or not np.isfinite(point["tft"][i, j, k]):
                        continue
                    rows.append(
                        (
                            o,
                            server,
                            profiles[i],
                            server in seen,
                            metric,
                            hname,
                            *(abs(point[m][i, j, k] - a[i, j, k]) for m in METHODS),
                            pin[i, j, k],
                            bool(covered[i, j, k]),
                        )
                    )
    cols = ["origin", "server", "profile", "seen", "metric", "horizon"]
    cols += [f"ae_{m}" for m in METHODS] + ["pinball", "covered"]
    return pd.DataFrame(rows, columns=cols), len(origins)


def summarise_accuracy(errors: pd.DataFrame) -> dict:
    """Return the accuracy tables: per metric and horizon, per profile and horizon, overall."""

    def agg(g):
        out = {f"mae_{m}": g[f"ae_{m}"].mean() for m in METHODS}
        denom = g["ae_seasonal_naive"].mean()
        out["mase"] = g["ae_tft"].mean() / denom if denom > 0 else float("nan")
        out["pinball"] = g["pinball"].mean()
        out["coverage"] = g["covered"].mean()
        out["n"] = len(g)
        return pd.Series(out)

    by_metric = errors.groupby(["metric", "horizon"]).apply(agg, include_groups=False)
    by_profile = errors.groupby(["profile", "horizon"]).apply(agg, include_groups=False)
    h8 = by_metric.xs("8h", level="horizon")
    mase_8h = h8["mase"].replace([np.inf], np.nan).dropna()
    seen = errors[errors["seen"]]
    unseen = errors[~errors["seen"]]
    ratio = float("nan")
    if len(seen) and len(unseen):
        # Compare like with like: MASE per metric at 8 h on each side, averaged.
        def mase(part):
            g = part[part["horizon"] == "8h"].groupby("metric")
            return (g["ae_tft"].mean() / g["ae_seasonal_naive"].mean()).replace([np.inf], np.nan)

        ratio = float((mase(unseen) / mase(seen)).dropna().mean())
    return {
        "by_metric": by_metric,
        "by_profile": by_profile,
        "mase_8h_mean": float(mase_8h.mean()),
        "coverage": float(errors["covered"].mean()),
        "coverage_by_horizon": errors.groupby("horizon")["covered"].mean().to_dict(),
        "unseen_vs_seen_mase_ratio": ratio,
        "mae_by_horizon": {
            m: errors.groupby("horizon")[f"ae_{m}"].mean().to_dict() for m in METHODS
        },
    }


def risk_warnings(forecaster, names, profiles, values, first, every: int):
    """Return (check indices, TFT risk scores (S, checks), predict_linear warned (S, checks))."""
    th = load_thresholds()
    warn_lv, crit, direction = threshold_arrays(th, profiles, list(METRIC_NAMES))
    total = values.shape[1]
    checks = list(range(ENCODER_STEPS - 1, total, every))
    tft = np.zeros((len(names), len(checks)))
    lin = np.zeros((len(names), len(checks)), bool)
    for c, o in enumerate(checks):
        window = values[:, o - ENCODER_STEPS + 1 : o + 1]
        fc = forecaster.predict(window, profiles, first + o)
        r = assess(fc.values, profiles, list(METRIC_NAMES), th, present=fc.present)
        tft[:, c] = r.score
        ahead = linear_forecast(values[:, o - LINEAR_POINTS + 1 : o + 1], HORIZON_STEPS)
        now = values[:, o][:, None, :]
        path = np.concatenate([now, ahead], axis=1)  # (S, 97, 14)
        crossed = np.where(
            direction[:, None, :] > 0, path >= crit[:, None, :], path <= crit[:, None, :]
        )
        lin[:, c] = np.nan_to_num(crossed, nan=0).astype(bool).any(axis=(1, 2))
    return np.array(checks), tft, lin


def score_warnings(names, checks, warned, labels, first, total_steps, every) -> dict:
    """Return recall at >= 30 minutes, median lead time and false warnings per 100 server-days."""
    by_server: dict[str, list[dict]] = {s: [] for s in names}
    for inc in labels:
        if inc["server"] in by_server:
            by_server[inc["server"]].append(inc)

    def step_of(text):
        if text is None:
            return None
        t = pd.Timestamp(text)
        return int(t.timestamp()) // STEP_SECONDS - first

    caught, leads, considered, sudden_caught, sudden = 0, [], 0, 0, 0
    false_episodes = 0
    for i, s in enumerate(names):
        incs = [(step_of(x["onset"]), step_of(x["end"]), x["has_precursor"]) for x in by_server[s]]
        for onset, _, has_pre in incs:
            if onset is None or onset - WARN_BEFORE[1] < checks[0] or onset >= total_steps:
                continue  # no full 8-hour window of checks before onset
            window = (checks >= onset - WARN_BEFORE[1]) & (checks <= onset - WARN_BEFORE[0])
            before = (checks >= onset - WARN_BEFORE[1]) & (checks < onset)
            hit = bool(warned[i, window].any())
            if has_pre:
                considered += 1
                caught += hit
                if warned[i, before].any():
                    leads.append((onset - checks[before][warned[i, before]].min()) * 5)
            else:
                sudden += 1
                sudden_caught += hit
        # False warning episodes.
        w = warned[i]
        starts = np.flatnonzero(w & ~np.concatenate([[False], w[:-1]]))
        for st in starts:
            t = checks[st]
            justified = any(
                (t <= onset <= t + WARN_BEFORE[1]) or (onset <= t <= end + every)
                for onset, end, _ in incs
                if onset is not None
            )
            false_episodes += not justified
    server_days = len(names) * (total_steps - checks[0]) / DAY
    return {
        "incidents_with_precursor": considered,
        "recall_30m": caught / considered if considered else float("nan"),
        "median_lead_minutes": float(np.median(leads)) if leads else float("nan"),
        "incidents_without_precursor": sudden,
        "recall_30m_without_precursor": sudden_caught / sudden if sudden else float("nan"),
        "false_warnings": false_episodes,
        "server_days": round(server_days, 1),
        "false_warnings_per_100_server_days": 100 * false_episodes / server_days,
    }


def evaluate(
    forecaster,
    frame: pd.DataFrame,
    labels: list[dict] | None,
    origin_every_minutes: int = 360,
    incident_every_minutes: int = 15,
    risk_threshold: float = 50.0,
    seen_servers: set[str] | None = None,
) -> dict:
    """Return the backtest result: summary (JSON-ready), tables and the raw errors."""
    names, profiles, values, first = dense_frame(frame)
    seen = seen_servers or set()
    errors, n_origins = accuracy(
        forecaster, names, profiles, values, first, max(1, origin_every_minutes // 5), seen
    )
    acc = summarise_accuracy(errors)
    # What missing metrics cost: the same backtest with a plain node_exporter's gaps
    # (no java_cpu_pct, no close_wait counts), scored on the metrics both runs forecast.
    from trainer.train import NODE_EXPORTER_ABSENT

    stripped = values.copy()
    for m in NODE_EXPORTER_ABSENT:
        stripped[:, :, METRIC_NAMES.index(m)] = np.nan
    errors_missing, _ = accuracy(
        forecaster, names, profiles, stripped, first, max(1, origin_every_minutes // 5), seen
    )

    def mase_8h(e):
        e = e[(e["horizon"] == "8h") & ~e["metric"].isin(NODE_EXPORTER_ABSENT)]
        g = e.groupby("metric")
        return float((g["ae_tft"].mean() / g["ae_seasonal_naive"].mean()).mean())

    summary = {
        "missing_metrics_cost": {
            "absent": list(NODE_EXPORTER_ABSENT),
            "mase_8h_other_metrics_all_present": mase_8h(errors),
            "mase_8h_other_metrics_when_absent": mase_8h(errors_missing),
        },
        "servers": len(names),
        "servers_seen_in_training": sum(s in seen for s in names),
        "days": round(values.shape[1] / DAY, 2),
        "origins": n_origins,
        "mase_8h_mean": acc["mase_8h_mean"],
        "coverage_p10_p90": acc["coverage"],
        "coverage_by_horizon": acc["coverage_by_horizon"],
        "unseen_vs_seen_mase_ratio": acc["unseen_vs_seen_mase_ratio"],
        "mae_by_horizon": acc["mae_by_horizon"],
        "risk_threshold": risk_threshold,
    }
    if labels is not None:
        every = max(1, incident_every_minutes // 5)
        checks, scores, lin = risk_warnings(forecaster, names, profiles, values, first, every)
        total = values.shape[1]
        summary["incidents_tft"] = score_warnings(
            names, checks, scores >= risk_threshold, labels, first, total, every
        )
        summary["incidents_tft_by_threshold"] = {
            str(t): score_warnings(names, checks, scores >= t, labels, first, total, every)
            for t in (30, 40, 50, 60, 70, 80, 90)
        }
        summary["incidents_predict_linear"] = score_warnings(
            names, checks, lin, labels, first, values.shape[1], every
        )
    summary["targets"] = check_targets(summary)
    return {
        "summary": summary,
        "by_metric": acc["by_metric"],
        "by_profile": acc["by_profile"],
        "errors": errors,
    }


def check_targets(s: dict) -> dict:
    """Return each issue target with the measured value and whether it is met."""
    out = {
        "mase_8h_mean <= 0.85": (s["mase_8h_mean"], s["mase_8h_mean"] <= TARGETS["mase_8h_max"]),
        "0.75 <= coverage <= 0.85": (
            s["coverage_p10_p90"],
            TARGETS["coverage_min"] <= s["coverage_p10_p90"] <= TARGETS["coverage_max"],
        ),
        "unseen/seen error <= 1.10": (
            s["unseen_vs_seen_mase_ratio"],
            bool(s["unseen_vs_seen_mase_ratio"] <= TARGETS["unseen_vs_seen_max"]),
        ),
    }
    if "incidents_tft" in s:
        t, lin = s["incidents_tft"], s["incidents_predict_linear"]
        out["incident recall (30 min) >= 0.80"] = (t["recall_30m"], t["recall_30m"] >= 0.8)
        out["false warnings / 100 server-days <= 1"] = (
            t["false_warnings_per_100_server_days"],
            t["false_warnings_per_100_server_days"] <= 1.0,
        )
        out["recall better than predict_linear"] = (
            t["recall_30m"] - lin["recall_30m"],
            t["recall_30m"] > lin["recall_30m"],
        )
        out["fewer false warnings than predict_linear"] = (
            t["false_warnings_per_100_server_days"] - lin["false_warnings_per_100_server_days"],
            t["false_warnings_per_100_server_days"] < lin["false_warnings_per_100_server_days"],
        )
    return {k: {"measured": _num(v), "met": bool(ok)} for k, (v, ok) in out.items()}


def _num(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 4)


def _fmt(x, digits=3):
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def write_report(result: dict, out: Path) -> Path:
    """Write report.md, report.json and PNG plots into ``out``; return report.md."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    s = result["summary"]
    (out / "report.json").write_text(json.dumps(s, indent=1, sort_keys=True, default=_num) + "\n")
    order = list(HORIZONS)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for m in METHODS:
        series = s["mae_by_horizon"][m]
        ax.plot(order, [series.get(h) for h in order], marker="o", label=m)
    ax.set_ylabel("mean absolute error (all metrics, native units)")
    ax.set_xlabel("horizon")
    ax.set_title("p50 error by horizon: TFT and baselines")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "mae_by_horizon.png", dpi=80)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(8, 4))
    cov = s["coverage_by_horizon"]
    ax.bar(order, [cov.get(h, 0) for h in order])
    ax.axhspan(0.75, 0.85, color="green", alpha=0.15, label="target 75-85%")
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
        f"seen in training), {s['days']} days, {s['origins']} forecast origins per server.",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    for name, t in s["targets"].items():
        lines.append(f"| {name} | {_fmt(t['measured'])} | {'yes' if t['met'] else '**no**'} |")
    lines += [
        "",
        "## Error by horizon",
        "",
        "![mae](mae_by_horizon.png) ![coverage](coverage_by_horizon.png)",
        "",
    ]
    lines += [
        "| horizon | " + " | ".join(METHODS) + " | coverage |",
        "|---" * (len(METHODS) + 2) + "|",
    ]
    for h in order:
        cells = [_fmt(s["mae_by_horizon"][m].get(h)) for m in METHODS]
        lines.append(f"| {h} | " + " | ".join(cells) + f" | {_fmt(cov.get(h))} |")
    lines += ["", "## Per metric (MASE against seasonal naive, coverage)", ""]
    bm = result["by_metric"]
    lines += [
        "| metric | " + " | ".join(f"MASE {h}" for h in order) + " | coverage 8h |",
        "|---" * (len(order) + 2) + "|",
    ]
    for m in METRIC_NAMES:
        if m not in bm.index.get_level_values(0):
            continue
        cells = [_fmt(bm.loc[(m, h), "mase"]) if (m, h) in bm.index else "n/a" for h in order]
        lines.append(
            f"| {m} | " + " | ".join(cells) + f" | {_fmt(bm.loc[(m, '8h'), 'coverage'])} |"
        )
    lines += ["", "## Per profile (MASE, pooled over metrics)", ""]
    bp = result["by_profile"]
    lines += ["| profile | " + " | ".join(order) + " |", "|---" * (len(order) + 1) + "|"]
    for p in sorted(set(bp.index.get_level_values(0))):
        cells = [_fmt(bp.loc[(p, h), "mase"]) if (p, h) in bp.index else "n/a" for h in order]
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
    if "incidents_tft" in s:
        lines += ["", f"## Incidents (risk threshold {s['risk_threshold']:g})", ""]
        lines += ["| | TFT risk score | predict_linear |", "|---|---|---|"]
        t, lin = s["incidents_tft"], s["incidents_predict_linear"]
        for key in t:
            lines.append(f"| {key} | {_fmt(t[key])} | {_fmt(lin[key])} |")
        lines += [
            "",
            "Risk threshold sweep (the threshold is an alerting choice, not part of the model):",
            "",
            "| risk >= | recall 30 min | median lead (min) | false / 100 server-days |",
            "|---|---|---|---|",
        ]
        for thr, r in s["incidents_tft_by_threshold"].items():
            lines.append(
                f"| {thr} | {_fmt(r['recall_30m'])} | {_fmt(r['median_lead_minutes'], 0)} | "
                f"{_fmt(r['false_warnings_per_100_server_days'], 2)} |"
            )
    lines += [
        "",
        f"Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by `linborg evaluate`.",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
