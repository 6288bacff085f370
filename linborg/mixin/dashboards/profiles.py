"""The profiles dashboard: risk and metric distributions per profile, and new servers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from grafanalib import core as G

from linborg import families as F
from linborg.contract import METRIC_NAMES, NAMESPACE
from linborg.mixin.dashboards.panels import Kit, organize, override

#: The source series of the metric picked in the `metric` variable (``linborg_<metric>``).
SOURCE_OF_METRIC_VARIABLE = f"{NAMESPACE}_$metric"


def with_profile(k: Kit, expr: str) -> str:
    """Return ``expr`` (one value per server) with the exporter's ``profile`` of each server."""
    return (
        f"max by (server) ({expr})\n"
        f"* on (server) group_left (profile)\n"
        f"max by (server, profile) ({k.exporter(F.DATA_COMPLETENESS_RATIO)} * 0 + 1)"
    )


def dashboard(cfg: Mapping[str, Any]) -> G.Dashboard:
    """Return the profiles dashboard."""
    k = Kit(cfg)
    window = cfg["risk_window"]
    risk = f"max by (server, profile) ({k.exporter(F.RISK_SCORE, window=window)})"
    actual = with_profile(k, SOURCE_OF_METRIC_VARIABLE)
    completeness = k.exporter(F.DATA_COMPLETENESS_RATIO)
    items = [
        (
            k.stat(
                "Servers forecast per profile",
                [(f"count by (profile) ({completeness})", "{{profile}}")],
                graphMode="none",
            ),
            16,
            4,
        ),
        (
            k.stat(
                "Profile fell back to generic",
                [(f"sum({k.exporter(F.PROFILE_FALLBACKS)})", "")],
                description="Servers whose hostname matched no pattern and had no profile label.",
                graphMode="none",
            ),
            8,
            4,
        ),
        (
            k.timeseries(
                f"Risk ({window}) by profile: median",
                [(f"quantile by (profile) (0.5, {risk})", "{{profile}}")],
            ),
            8,
            8,
        ),
        (
            k.timeseries(
                f"Risk ({window}) by profile: p90",
                [(f"quantile by (profile) (0.9, {risk})", "{{profile}}")],
            ),
            8,
            8,
        ),
        (
            k.histogram(
                f"Risk ({window}) now, distribution over servers",
                [(risk, "{{profile}} {{server}}", "instant")],
                combine=True,
                bucketSize=5,
            ),
            8,
            8,
        ),
        (
            k.timeseries(
                "$metric by profile: median",
                [(f"quantile by (profile) (0.5, {actual})", "{{profile}}")],
            ),
            12,
            8,
        ),
        (
            k.timeseries(
                "$metric by profile: p90",
                [(f"quantile by (profile) (0.9, {actual})", "{{profile}}")],
            ),
            12,
            8,
        ),
        (
            k.table(
                "Servers recently added (too little history to forecast)",
                [(k.exporter(F.SERVER_NOT_FORECAST, reason="too_little_history"), "")],
                transformations=[
                    organize(("Time", "Value", "__name__", "job", "instance")),
                ],
            ),
            12,
            8,
        ),
        (
            k.table(
                "Servers with incomplete history",
                [(f"{completeness} < 1", "")],
                description="Share of the 24-hour context present; a server added less than a "
                "day ago shows how far it has come.",
                transformations=[
                    organize(
                        ("Time", "__name__", "job", "instance"),
                        renameByName={"Value": "completeness"},
                    )
                ],
                sortBy=[G.TableSortByField(displayName="completeness", desc=False)],
                overrides=[
                    override("completeness", unit="percentunit"),
                    override("server", links=k.server_link()),
                ],
            ),
            12,
            8,
        ),
    ]
    return k.dashboard(
        "profiles",
        "LINBORG / Profiles",
        "Risk and metric distributions per profile, and the servers not forecast yet.",
        items,
        [k.var_custom("metric", METRIC_NAMES, cfg["default_metric"], "Metric")],
        time=G.Time("now-24h", "now"),
    )
