"""A report a person can look at: per-profile daily profiles and incidents with their precursors."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from linborg.contract import METRICS_BY_NAME, PROFILE_NAMES, STEP_SECONDS
from linborg.generator.fleet import DEFAULT_COMPOSITION, build_fleet
from linborg.generator.output import simulate
from linborg.thresholds import load_thresholds

REPORT_START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)  # a Monday


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
    lines += ["", "## Ground-truth states (% of samples)", "", "| state | % |", "|---|---|"]
    for state, share in state_share.items():
        lines.append(f"| {state} | {share} |")
    readme = out / "README.md"
    readme.write_text("\n".join(lines) + "\n")
    return readme
