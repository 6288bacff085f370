"""The exporter health dashboard: cycles, queries, staleness, series and the model it serves."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from grafanalib import core as G

from linborg import families as F
from linborg import mixin
from linborg.duration import parse_duration
from linborg.mixin.dashboards.panels import BASE_STEPS, Kit, organize


def dashboard(cfg: Mapping[str, Any]) -> G.Dashboard:
    """Return the exporter health dashboard."""
    k = Kit(cfg)
    e = k.exporter
    up = mixin.selector("up", cfg["exporter_selector"])
    items = [
        (
            k.stat(
                "Exporter up",
                [(f"sum({up})", "")],
                steps=[{"color": "red", "value": None}, {"color": "green", "value": 1}],
                graphMode="none",
            ),
            4,
            4,
        ),
        (
            k.stat(
                "Snapshot age",
                [(f"max({e(F.SNAPSHOT_AGE_SECONDS)})", "")],
                unit="s",
                steps=[
                    *BASE_STEPS,
                    {"color": "red", "value": parse_duration(cfg["staleness_max"])},
                ],
            ),
            4,
            4,
        ),
        (
            k.stat(
                "Consecutive failed cycles",
                [(f"max({e(F.CONSECUTIVE_FAILURES)})", "")],
                steps=[*BASE_STEPS, {"color": "red", "value": 1}],
            ),
            4,
            4,
        ),
        (
            k.stat("Servers forecast", [(f"sum({e(F.SERVERS_FORECAST)})", "")]),
            4,
            4,
        ),
        (
            k.stat(
                "Model reloads (range)",
                [
                    (f"sum(increase({e(F.MODEL_RELOADS_TOTAL)}[$__range]))", "reloaded"),
                    (f"sum(increase({e(F.MODEL_RELOAD_FAILURES_TOTAL)}[$__range]))", "refused"),
                ],
                graphMode="none",
                textMode="value_and_name",
            ),
            8,
            4,
        ),
        (
            k.timeseries(
                "Cycle duration",
                [(e(F.CYCLE_DURATION_SECONDS), "{{instance}}")],
                unit="s",
                description="Pull, inference and snapshot of the last cycle.",
            ),
            8,
            8,
        ),
        (
            k.timeseries(
                "Prometheus query latency (mean)",
                [
                    (
                        f"rate({e(F.QUERY_DURATION_SECONDS_TOTAL)}[5m])\n"
                        f"/ rate({e(F.QUERIES_TOTAL)}[5m])",
                        "{{instance}}",
                    )
                ],
                unit="s",
            ),
            8,
            8,
        ),
        (
            k.timeseries(
                "Failures",
                [
                    (f"rate({e(F.CYCLE_FAILURES_TOTAL)}[15m])", "cycles {{instance}}"),
                    (f"rate({e(F.QUERY_FAILURES_TOTAL)}[5m])", "queries {{instance}}"),
                    (
                        f"rate({e(F.INVALID_SAMPLES_TOTAL)}[5m])",
                        "invalid samples {{instance}}",
                    ),
                ],
                unit="ops",
            ),
            8,
            8,
        ),
        (
            k.timeseries(
                "Staleness",
                [
                    (e(F.SNAPSHOT_AGE_SECONDS), "snapshot age {{instance}}"),
                    (
                        f"time() - {e(F.LAST_SUCCESS_TIMESTAMP_SECONDS)}",
                        "since last success {{instance}}",
                    ),
                ],
                unit="s",
            ),
            8,
            8,
        ),
        (
            k.timeseries(
                "Series exported and budget",
                [
                    (e(F.SERIES), "series {{instance}}"),
                    (
                        f"{e(F.SERIES_BUDGET_PER_SERVER)} * on (instance) {e(F.SERVERS_FORECAST)}",
                        "budget {{instance}}",
                    ),
                    (e(F.SERIES_DROPPED), "dropped: {{reason}} {{instance}}"),
                ],
                description="Budget = series_budget_per_server x servers forecast.",
            ),
            8,
            8,
        ),
        (
            k.timeseries(
                "Cycles, queries and bytes from Prometheus",
                [
                    (f"rate({e(F.CYCLES_TOTAL)}[15m]) * 60", "cycles/min {{instance}}"),
                    (f"rate({e(F.QUERIES_TOTAL)}[5m])", "queries/s {{instance}}"),
                    (f"rate({e(F.RECEIVED_BYTES_TOTAL)}[5m])", "bytes/s {{instance}}"),
                ],
            ),
            8,
            8,
        ),
        (
            k.table(
                "Model and build",
                [(e(F.MODEL_INFO), ""), (e(F.BUILD_INFO), "")],
                transformations=[
                    organize(("Time", "Value #A", "Value #B", "__name__", "job")),
                ],
            ),
            16,
            6,
        ),
        (
            k.timeseries(
                "Model reloads",
                [
                    (f"increase({e(F.MODEL_RELOADS_TOTAL)}[1h])", "reloaded {{instance}}"),
                    (f"increase({e(F.MODEL_RELOAD_FAILURES_TOTAL)}[1h])", "refused {{instance}}"),
                ],
            ),
            8,
            6,
        ),
    ]
    return k.dashboard(
        "exporter",
        "LINBORG / Exporter health",
        "The forecasting exporter itself: cycles, queries to Prometheus, staleness, series "
        "budget and the model it serves.",
        items,
        [],
        time=G.Time("now-6h", "now"),
    )
