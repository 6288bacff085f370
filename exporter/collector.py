"""The Prometheus collector: reads the last snapshot; a scrape never queries or runs the model."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from exporter.cycle import Exporter, horizon_steps
from linborg.contract import CONTRACT_VERSION, METRIC_NAMES, NAMESPACE

QUANTILE_INDEX = {0.1: 0, 0.5: 1, 0.9: 2}
LEVELS = ("warning", "critical")


def _q(q: float) -> str:
    return f"{q:g}"


class SnapshotCollector(Collector):
    """Expose forecasts, risk, time to breach, completeness and self-metrics."""

    def __init__(
        self, exporter: Exporter, clock: Callable[[], float] = time.time, build: str = "dev"
    ):
        self.exporter = exporter
        self.clock = clock
        self.build = build

    def collect(self) -> Iterator:
        exp = self.exporter
        cfg = exp.config
        snap = exp.snapshot
        stats = exp.stats
        n = NAMESPACE
        now = self.clock()
        age = now - snap.time if snap else math.inf
        fresh = snap is not None and age <= cfg.max_snapshot_age_seconds

        forecast = GaugeMetricFamily(
            f"{n}_forecast",
            "Forecast of a LINBORG metric for now + horizon, at quantile q, made by the TFT.",
            labels=["server", "profile", "metric", "horizon", "q"],
        )
        risk = GaugeMetricFamily(
            f"{n}_risk_score",
            "Risk (0-100) of a metric crossing its warning or critical threshold in the window.",
            labels=["server", "profile", "window", "driver"],
        )
        ttb = GaugeMetricFamily(
            f"{n}_time_to_breach_seconds",
            "Seconds until the forecast at quantile q first crosses the threshold level.",
            labels=["server", "profile", "metric", "level", "q"],
        )
        completeness = GaugeMetricFamily(
            f"{n}_data_completeness_ratio",
            "Share of the 24-hour context actually present, over the metrics the server has.",
            labels=["server", "profile"],
        )
        dropped = 0
        if fresh and snap.forecast is not None:
            hsteps = horizon_steps(cfg)
            budget = cfg.series_budget_per_server
            for i, (server, prof) in enumerate(zip(snap.servers, snap.profiles, strict=True)):
                series = []
                overall = None
                for window in ("30m", "8h"):
                    score, driver = snap.risk[window]
                    series.append((risk, [server, prof, window, METRIC_NAMES[driver[i]]], score[i]))
                    if overall is None or score[i] > overall[0]:
                        overall = (score[i], METRIC_NAMES[driver[i]])
                series.append((risk, [server, prof, "overall", overall[1]], overall[0]))
                present = snap.present[i]
                done = snap.completeness[i][present]
                series.append(
                    (completeness, [server, prof], float(done.mean()) if done.size else 0.0)
                )
                for j, metric in enumerate(METRIC_NAMES):
                    if not present[j]:
                        continue
                    for h, step in hsteps:
                        for q in cfg.quantiles:
                            value = snap.forecast[i, j, step, QUANTILE_INDEX[q]]
                            series.append((forecast, [server, prof, metric, h, _q(q)], value))
                    for li, level in enumerate(LEVELS):
                        for qi, qlabel in enumerate(("0.5", "pessimistic")):
                            value = snap.time_to_breach[i, j, li, qi]
                            if np.isfinite(value):
                                series.append((ttb, [server, prof, metric, level, qlabel], value))
                if len(series) > budget:
                    dropped += len(series) - budget
                    series = series[:budget]
                for family, labels, value in series:
                    family.add_metric(labels, float(value))
        yield forecast
        yield risk
        yield ttb
        yield completeness

        not_forecast = GaugeMetricFamily(
            f"{n}_server_not_forecast",
            "1 for a server that is not forecast, with the reason.",
            labels=["server", "profile", "reason"],
        )
        if snap is not None:
            for server, (prof, reason) in sorted(snap.not_forecast.items()):
                not_forecast.add_metric([server, prof, reason], 1.0)
        yield not_forecast
        yield GaugeMetricFamily(
            f"{n}_servers_forecast",
            "Servers forecast in the last cycle (0 once older than max_snapshot_age).",
            value=len(snap.servers) if fresh else 0,
        )
        yield GaugeMetricFamily(
            f"{n}_exporter_snapshot_age_seconds",
            "Seconds since the last completed cycle.",
            value=age if snap else math.nan,
        )
        yield GaugeMetricFamily(
            f"{n}_exporter_profile_fallbacks",
            "Servers whose profile fell back to generic (no label, no hostname pattern matched).",
            value=snap.profile_fallbacks if snap else 0,
        )
        counters = [
            ("exporter_cycles", "Cycles started.", stats.cycles),
            (
                "exporter_cycle_failures",
                "Cycles that got no data from Prometheus.",
                stats.cycle_failures,
            ),
            ("exporter_queries", "Prometheus queries sent.", stats.queries),
            ("exporter_query_failures", "Prometheus queries that failed.", stats.query_failures),
            (
                "exporter_query_duration_seconds",
                "Time spent in Prometheus queries.",
                stats.query_seconds,
            ),
            ("exporter_received_bytes", "Bytes received from Prometheus.", stats.bytes_received),
            (
                "exporter_invalid_samples",
                "NaN, infinite or out-of-range samples treated as missing.",
                stats.invalid_samples,
            ),
        ]
        for name, help_text, value in counters:
            yield CounterMetricFamily(f"{n}_{name}", help_text, value=value)
        over = GaugeMetricFamily(
            f"{n}_exporter_series_dropped",
            "Series of the current snapshot not exported, by reason.",
            labels=["reason"],
        )
        over.add_metric(["over_budget"], dropped)
        yield over
        yield GaugeMetricFamily(
            f"{n}_exporter_cycle_duration_seconds",
            "Duration of the last cycle: pull, inference and snapshot.",
            value=stats.last_duration,
        )
        yield GaugeMetricFamily(
            f"{n}_exporter_last_success_timestamp_seconds",
            "Unix time of the last cycle that produced a snapshot.",
            value=stats.last_success,
        )
        spec = getattr(exp.forecaster, "spec", None) or {}
        model = InfoMetricFamily(f"{n}_model", "The model bundle being served.", labels=[])
        if exp.forecaster is not None:
            model.add_metric(
                [],
                {
                    "bundle": str(cfg.model_bundle),
                    "created": str(spec.get("created", "")),
                    "code_revision": str(spec.get("code_revision", "")),
                    "contract_version": str(spec.get("contract_version", "")),
                    "preset": str(spec.get("training", {}).get("preset", "")),
                },
            )
        yield model
        build = InfoMetricFamily(f"{n}_build", "Exporter build.", labels=[])
        build.add_metric([], {"version": self.build, "contract_version": CONTRACT_VERSION})
        yield build
