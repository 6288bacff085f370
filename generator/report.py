"""A report a person can look at: daily profiles, incidents and their precursors, and how often
healthy servers pass their warning level."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from linborg.contract import METRIC_NAMES, METRICS_BY_NAME, PROFILE_NAMES, STEP_SECONDS
from linborg.generator.fleet import DEFAULT_COMPOSITION, build_fleet
from linborg.generator.output import simulate
from linborg.thresholds import load_thresholds

REPORT_START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)  # a Monday
#: A step counts as healthy when no labelled incident on its server (precursor to end) lies
#: within this distance: the early-warning scoreboard looks 8 hours ahead.
HEALTHY_MARGIN = pd.Timedelta(hours=8)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_daily_profiles(frame: pd.DataFrame, path: Path) -> None:
    """Plot the mean of key metrics by hour of day, per profile, weekdays and weekends."""
    plt = _plt()
    f = frame.assign(
        cpu_used_pct=100.0 - frame["cpu_idle_pct"],
        hour=frame["timestamp"].dt.hour + frame["timestamp"].dt.minute / 60,
        weekend=frame["timestamp"].dt.dayofweek >= 5,
    )
    panels = [
        ("cpu_used_pct", "CPU used % (100 - idle)"),
        ("mem_used_pct", "memory used %"),
        ("cpu_iowait_pct", "I/O wait %"),
        ("net_in_mb_s", "network in MB/s"),
    ]
    fig, axes = plt.subplots(2, len(panels), figsize=(18, 8), sharex=True)
    for row, weekend in enumerate((False, True)):
        part = f[f["weekend"] == weekend]
        means = part.groupby(["profile", "hour"], observed=True)[[c for c, _ in panels]].mean()
        for col, (column, title) in enumerate(panels):
            ax = axes[row, col]
            for prof in PROFILE_NAMES:
                if prof in means.index.get_level_values(0):
                    series = means.loc[prof, column]
                    ax.plot(series.index, series.values, label=prof)
            ax.set_title(f"{title}, {'weekend' if weekend else 'weekdays'}")
            ax.set_xticks(range(0, 25, 3))
            ax.grid(alpha=0.3)
            if row == 1:
                ax.set_xlabel("hour of day (UTC)")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Mean by hour of day, per profile")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_incidents(frame: pd.DataFrame, incidents: list[dict], path: Path, count: int = 6) -> list:
    """Plot a few incidents' driving metric around onset, precursor and critical phase shaded."""
    plt = _plt()
    thresholds = load_thresholds()
    chosen, seen = [], set()
    for inc in incidents:
        if inc["has_precursor"] and inc["type"] not in seen:
            chosen.append(inc)
            seen.add(inc["type"])
    for inc in incidents:  # one incident with no precursor, for honesty
        if not inc["has_precursor"]:
            chosen.append(inc)
            break
    chosen = chosen[:count]
    cols = 3
    rows = max(1, (len(chosen) + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(18, 4.2 * rows), squeeze=False)
    for ax in axes.flat[len(chosen) :]:
        ax.axis("off")
    by_server = {s: g for s, g in frame.groupby("server", observed=True)}
    for ax, inc in zip(axes.flat, chosen, strict=False):
        onset = pd.Timestamp(inc["onset"])
        end = pd.Timestamp(inc["end"])
        begin = pd.Timestamp(inc["precursor_start"]) if inc["has_precursor"] else onset
        g = by_server[inc["server"]]
        window = g[
            (g["timestamp"] >= begin - pd.Timedelta(hours=4))
            & (g["timestamp"] <= end + pd.Timedelta(hours=1))
        ]
        metric = inc["metric"]
        ax.plot(window["timestamp"], window[metric], color="black", lw=1)
        if inc["has_precursor"]:
            ax.axvspan(begin, onset, color="gold", alpha=0.3, label="precursor")
        ax.axvspan(onset, end, color="red", alpha=0.2, label="incident (critical)")
        t = thresholds.get(inc["profile"], metric)
        ax.axhline(t.warning, color="orange", ls="--", lw=1, label="warning")
        ax.axhline(t.critical, color="red", ls="--", lw=1, label="critical")
        unit = METRICS_BY_NAME[metric].unit
        lead = (onset - begin).total_seconds() / 3600
        ax.set_title(
            f"{inc['server']} ({inc['profile']}): {inc['type']}, "
            + (f"precursor {lead:.1f} h" if inc["has_precursor"] else "no precursor"),
            fontsize=10,
        )
        ax.set_ylabel(f"{metric} ({unit})", fontsize=9)
        ax.tick_params(axis="x", labelsize=7, rotation=30)
        ax.grid(alpha=0.3)
    if chosen:
        axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return chosen


def healthy_crossings(frame: pd.DataFrame, incidents: list[dict], thresholds=None) -> pd.DataFrame:
    """Return, per (profile, metric), how often healthy servers are past their warning level.

    A step is healthy when it is more than ``HEALTHY_MARGIN`` from every labelled incident of its
    server. An episode is a run of consecutive healthy steps past warning. Columns: episodes,
    servers (with at least one), rate (episodes per 100 healthy server-days), share (of healthy
    steps past warning), extreme (the 99.9th percentile of healthy values, the 0.1th for a metric
    that is worse when lower); only pairs with at least one episode, most frequent first.
    """
    if thresholds is None:
        thresholds = load_thresholds()
    frame = frame.sort_values(["server", "timestamp"]).reset_index(drop=True)
    servers = frame["server"].astype(str).to_numpy()
    profiles = frame["profile"].astype(str).to_numpy()
    times = pd.to_datetime(frame["timestamp"], utc=True)
    healthy = np.ones(len(frame), bool)
    for inc in incidents:
        begin = pd.Timestamp(inc.get("precursor_start") or inc["onset"]) - HEALTHY_MARGIN
        end = pd.Timestamp(inc["end"]) + HEALTHY_MARGIN
        healthy &= ~((servers == inc["server"]) & times.between(begin, end).to_numpy())
    same_server = np.r_[False, servers[1:] == servers[:-1]]
    healthy_days = healthy.sum() * STEP_SECONDS / 86400
    rows = []
    for metric in METRIC_NAMES:
        if metric not in frame:
            continue
        values = frame[metric].to_numpy(float)
        for profile in np.unique(profiles):
            t = thresholds.get(profile, metric)
            mine = (profiles == profile) & healthy & np.isfinite(values)
            if not mine.any():
                continue
            below = t.direction == "below"
            past = mine & ((values <= t.warning) if below else (values >= t.warning))
            starts = past & ~(np.r_[False, past[:-1]] & same_server)
            if not starts.any():
                continue
            days = mine.sum() * STEP_SECONDS / 86400
            rows.append(
                {
                    "profile": profile,
                    "metric": metric,
                    "warning": t.warning,
                    "critical": t.critical,
                    "episodes": int(starts.sum()),
                    "servers": len(set(servers[starts])),
                    "rate": 100 * starts.sum() / days,
                    "share": past.sum() / mine.sum(),
                    "extreme": float(np.quantile(values[mine], 0.001 if below else 0.999)),
                }
            )
    columns = ["profile", "metric", "warning", "critical", "episodes", "servers", "rate", "share"]
    table = pd.DataFrame(rows, columns=[*columns, "extreme"])
    table.attrs["healthy_server_days"] = healthy_days
    return table.sort_values(["rate", "profile", "metric"], ascending=[False, True, True])


def write_report(out: str | Path, seed: int = 7, days: float = 14) -> Path:
    """Generate ``days`` of the default fleet and write PNGs plus README.md into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    steps = int(days * 86400 / STEP_SECONDS)
    fleet = build_fleet(DEFAULT_COMPOSITION)
    frame, incidents, _ = simulate(fleet, seed, REPORT_START, steps)
    labels = [i.as_dict() for i in incidents]
    plot_daily_profiles(frame, out / "daily_profiles.png")
    chosen = plot_incidents(frame, labels, out / "incidents.png")

    table = pd.DataFrame(labels)
    counts = table.groupby(["type", "has_precursor"]).size().unstack(fill_value=0)
    lead = table[table["has_precursor"]].assign(
        lead_h=lambda d: (
            (pd.to_datetime(d["onset"]) - pd.to_datetime(d["precursor_start"]))
            / pd.Timedelta(hours=1)
        )
    )
    state_share = frame["state"].value_counts(normalize=True).mul(100).round(2)
    lines = [
        "# Generator report",
        "",
        f"Generated by `linborg generate report --seed {seed} --days {days:g}`: the default "
        f"{len(fleet)}-server fleet from {REPORT_START:%Y-%m-%d} (a Monday) for {days:g} days.",
        "",
        "## Daily profiles",
        "",
        "![daily profiles](daily_profiles.png)",
        "",
        "## Incidents and their precursors",
        "",
        "Gold: the precursor the model can learn from. Red: the labelled incident. Dashed: the "
        "profile's warning and critical thresholds. The last panel is an incident with no "
        "precursor, which no model can see coming.",
        "",
        "![incidents](incidents.png)",
        "",
        f"{len(labels)} incidents in {len(fleet) * days:g} server-days "
        f"({len(lead)} with a precursor; precursor length median "
        f"{np.median(lead['lead_h']) if len(lead) else 0:.1f} h, "
        f"min {lead['lead_h'].min() if len(lead) else 0:.1f} h, "
        f"max {lead['lead_h'].max() if len(lead) else 0:.1f} h).",
        "",
        "| type | with precursor | without |",
        "|---|---|---|",
    ]
    for kind, row in counts.iterrows():
        lines.append(f"| {kind} | {row.get(True, 0)} | {row.get(False, 0)} |")
    lines += ["", "Incidents drawn above:", ""]
    for inc in chosen:
        lines.append(
            f"- {inc['server']} {inc['type']}: precursor from {inc['precursor_start'] or '-'}, "
            f"onset {inc['onset']}, end {inc['end']}"
        )
    crossings = healthy_crossings(frame, labels)
    lines += [
        "",
        "## Healthy servers past their warning level",
        "",
        f"Steps more than {HEALTHY_MARGIN / pd.Timedelta(hours=1):g} hours from every labelled "
        "incident of their server "
        f"({crossings.attrs['healthy_server_days']:.0f} of {len(fleet) * days:g} server-days), "
        "against the packaged warning levels (`linborg/thresholds.yaml`). An episode is a run of "
        "consecutive steps past warning; the rate is episodes per 100 healthy server-days of the "
        "profile. A forecast that reads these right still warns of them: the early-warning "
        "scoreboard's `perfect_forecast` reference, read against warning, counts them as false "
        "warnings. Extreme: the 99.9th percentile of healthy values (the 0.1th for "
        + ", ".join(m for m in METRIC_NAMES if METRICS_BY_NAME[m].direction == "below")
        + ").",
        "",
        "| profile | metric | warning | critical | episodes | servers | per 100 server-days "
        "| share of steps | extreme |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in crossings.itertuples():
        lines.append(
            f"| {row.profile} | {row.metric} | {row.warning:g} | {row.critical:g} | "
            f"{row.episodes} | {row.servers} | {row.rate:.1f} | {row.share:.2%} | "
            f"{row.extreme:.2f} |"
        )
    lines += ["", "## Ground-truth states (% of samples)", "", "| state | % |", "|---|---|"]
    for state, share in state_share.items():
        lines.append(f"| {state} | {share} |")
    readme = out / "README.md"
    readme.write_text("\n".join(lines) + "\n")
    return readme
