"""The server detail: one server's actuals beside its forecasts and thresholds, per metric."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from grafanalib import core as G

from linborg import families as F
from linborg.contract import METRICS, METRICS_BY_NAME, Metric
from linborg.mixin.dashboards.panels import (
    Q_MID,
    QUANTILES,
    Kit,
    band_overrides,
    organize,
    override,
    unit,
)

CPU_IDLE = METRICS_BY_NAME["cpu_idle_pct"]
IOWAIT = METRICS_BY_NAME["cpu_iowait_pct"]


def _forecast_then(k: Kit, m: Metric, q: str) -> str:
    """Return the forecast of ``m`` for each point, issued one $horizon before it."""
    forecast = k.exporter(F.FORECAST, server="$server", metric=m.name, horizon="$horizon", q=q)
    return f"{forecast} offset $horizon"


def _metric_panels(k: Kit, m: Metric) -> list:
    # The forecast path API answers plain selectors of its one series, no job label.
    fan = [
        (f'{F.FORECAST_PATH}{{server="$server", metric="{m.name}", q="{q}"}}', legend)
        for q, legend in QUANTILES
    ]
    return [
        k.row(f"{m.name} ({m.unit}, worse when {m.direction})"),
        (
            k.timeseries(
                f"{m.name}: actual and the forecast issued $horizon earlier",
                [
                    (f'{m.wire_name}{{server="$server"}}', "actual"),
                    *((_forecast_then(k, m, q), legend) for q, legend in QUANTILES),
                    *k.threshold_targets(m.name),
                ],
                unit=unit(m),
                description=f"{m.help} The band is p10-p90 of the forecast made one horizon "
                "before each point; dashed lines are the warning and critical thresholds of "
                "the server's profile, as its exporter exposes them (linborg_threshold).",
                overrides=band_overrides(),
            ),
            12,
            8,
        ),
        (
            k.timeseries(
                f"{m.name}: forecast fan, next 8h",
                fan,
                unit=unit(m),
                ds=k.forecasts,
                description="The latest forecast path from the exporter (future timestamps), "
                "p10-p90 band around p50.",
                overrides=band_overrides(),
            ),
            12,
            8,
        ),
    ]


def dashboard(cfg: Mapping[str, Any]) -> G.Dashboard:
    """Return the server detail dashboard."""
    k = Kit(cfg)
    items: list = [
        k.row("Summary"),
        (
            k.stat(
                "Risk by window",
                [
                    (
                        f"max by (window) ({k.exporter(F.RISK_SCORE, server='$server')})",
                        "{{window}}",
                    )
                ],
                steps=k.risk_colours(),
            ),
            6,
            5,
        ),
        (
            k.stat(
                "Data completeness",
                [(k.exporter(F.DATA_COMPLETENESS_RATIO, server="$server"), "")],
                unit="percentunit",
                description="Share of the 24-hour context the model read.",
                steps=[
                    {"color": "red", "value": None},
                    {"color": "green", "value": cfg["completeness_min"]},
                ],
            ),
            4,
            5,
        ),
        (
            k.stat(
                "CPU used",
                [(f'100 - {CPU_IDLE.wire_name}{{server="$server"}}', "")],
                unit="percent",
                description="100 - cpu_idle_pct.",
            ),
            4,
            5,
        ),
        (
            k.stat(
                "Not forecast because",
                [(k.exporter(F.SERVER_NOT_FORECAST, server="$server"), "{{reason}}")],
                textMode="name",
                graphMode="none",
                noValue="forecast",
            ),
            4,
            5,
        ),
        (
            k.table(
                "Time to breach",
                [
                    (
                        "min by (metric, level, q) "
                        f"({k.exporter(F.TIME_TO_BREACH_SECONDS, server='$server')})",
                        "",
                    )
                ],
                description="Seconds until the forecast at q first crosses the level; absent "
                "when it does not within 8h.",
                timeFrom=cfg["server_instant_time"],
                transformations=[organize(("Time",))],
                sortBy=[G.TableSortByField(displayName="Value", desc=False)],
                overrides=[override("Value", unit="s", displayName="time to breach")],
            ),
            6,
            5,
        ),
        (
            k.timeseries(
                "I/O wait against this profile's thresholds",
                [
                    (f'{IOWAIT.wire_name}{{server="$server"}}', "actual"),
                    (_forecast_then(k, IOWAIT, Q_MID), "p50"),
                    *k.threshold_targets(IOWAIT.name),
                ],
                unit=unit(IOWAIT),
                description="The thresholds follow the server's profile, as its exporter "
                "exposes them (linborg_threshold: linborg/thresholds.yaml with the exporter's "
                "thresholds_file applied): a database at 15% is normal, an ml_compute worker "
                "at 5% is critical.",
                overrides=band_overrides(),
            ),
            24,
            7,
        ),
    ]
    for m in METRICS:
        items += _metric_panels(k, m)
    return k.dashboard(
        "server",
        "LINBORG / Server detail",
        "One server: risk, time to breach, completeness, and each metric's actuals beside the "
        "forecast issued one horizon earlier and the forecast fan for the next 8 hours.",
        items,
        [
            k.var_query("server", f"label_values({k.exporter(F.RISK_SCORE)}, server)", "Server"),
            k.var_custom("horizon", cfg["horizons"], cfg["default_horizon"], "Horizon"),
        ],
        time=G.Time(*cfg["server_time"]),
    )
