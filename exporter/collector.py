"""What /metrics shows, read from the snapshot of the last completed cycle.

A scrape never queries Prometheus or runs the model. The per-server families (forecast, risk,
time to breach, completeness, servers not forecast) are rendered to text once per snapshot,
right after the cycle, because at 10,000 servers they are about two million lines; a scrape
then only joins that text with the few self-metrics that prometheus-client renders.
"""

from __future__ import annotations

import functools
import gzip
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from linborg import families as F
from linborg.contract import CONTRACT_VERSION, METRIC_NAMES, NAMESPACE
from linborg.exporter.cycle import CONNECTION_DROP_REASONS, Exporter, Snapshot, horizon_steps
from linborg.exporter.promapi import API_LIMITS
from linborg.thresholds import LEVELS  # the level label of time to breach and thresholds

QUANTILE_INDEX = {0.1: 0, 0.5: 1, 0.9: 2}
#: Per-server text longer than this is gzip-compressed right after the cycle, so that no
#: scrape pays for it; shorter text is compressed at the first scrape that asks.
GZIP_AHEAD_BYTES = 1_000_000
TTB_QUANTILES = ("0.5", "pessimistic")

#: Name and HELP of each per-server family, in the order they appear on /metrics.
PER_SERVER_FAMILIES = {
    "forecast": "Forecast of a LINBORG metric for now + horizon, at quantile q, made by the TFT.",
    "risk_score": "Risk (0-100) of a metric being past its warning threshold in the window, "
    "sooner weighing more, above what healthy servers of the profile score (when the bundle "
    "has a risk_calibration).",
    "time_to_breach_seconds": "Seconds until the forecast at quantile q first crosses the "
    "threshold level.",
    "data_completeness_ratio": "Share of the 24-hour context actually present, over the metrics "
    "the server has.",
    "server_not_forecast": "1 for a server that is not forecast, with the reason.",
}


def _esc(value: str) -> str:
    """Escape a label value for the text format."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _header(name: str) -> str:
    return (
        f"# HELP {NAMESPACE}_{name} {PER_SERVER_FAMILIES[name]}\n# TYPE {NAMESPACE}_{name} gauge\n"
    )


def _fmt_esc(value: str) -> str:
    """Escape a label value for the text format and for str.format."""
    return _esc(value).replace("{", "{{").replace("}", "}}")


def _forecast_template(keep: list[int], horizons, qtext: list[str]) -> str:
    """Return a str.format template of one server's forecast lines, in exposition order.

    Profile and server are placeholders (\\x01, \\x02) replaced per server; each ``{}`` takes
    a value. Forecast values are finite and clipped to the metric's range (at most 100,000),
    where Python's repr of a float is what the text format expects.
    """
    lines = []
    for j in keep:
        m = METRIC_NAMES[j]
        for h, _ in horizons:
            for q in qtext:
                lines.append(
                    f'{NAMESPACE}_forecast{{{{horizon="{h}",metric="{m}",profile="\x01",'
                    f'q="{q}",server="\x02"}}}} {{!r}}\n'
                )
    return "".join(lines)


@dataclass
class Rendered:
    """The per-server families of one snapshot as exposition text."""

    text: bytes | bytearray
    dropped: int  # series over the per-server budget, not exported
    series: int  # series exported

    @functools.cached_property
    def gzipped(self) -> bytes:
        """The text as one gzip member (compressed once per snapshot, fast level)."""
        return gzip.compress(self.text, compresslevel=1)


def render_per_server(snap: Snapshot | None, horizons, quantiles, budget: int) -> Rendered:
    """Return the per-server families of ``snap`` as text; None renders empty families.

    Per server, the budget keeps risk and completeness first, then forecasts in metric,
    horizon and quantile order, then time to breach; the rest is dropped and counted.
    """
    n = NAMESPACE
    fam = {name: [] for name in PER_SERVER_FAMILIES}
    dropped = series = 0
    if snap is not None and snap.forecast is not None and len(snap.servers):
        steps = [step for _, step in horizons]
        qidx = [QUANTILE_INDEX[q] for q in quantiles]
        # (S, 14, H, Q) as nested lists: one conversion instead of millions of numpy reads.
        values = snap.forecast[:, :, steps, :][..., qidx].tolist()
        ttb = snap.time_to_breach.tolist()
        present = snap.present.tolist()
        fmt = floatToGoString
        prefix = [
            [f'{n}_forecast{{horizon="{h}",metric="{m}",profile="' for h, _ in horizons]
            for m in METRIC_NAMES
        ]
        qtext = [f"{q:g}" for q in quantiles]
        templates: dict[tuple[int, ...], str] = {}
        risk_rows = {}
        for window in ("30m", "8h"):
            score, driver = snap.risk[window]
            risk_rows[window] = (score.tolist(), driver.tolist())
        for i, (server, prof) in enumerate(zip(snap.servers, snap.profiles, strict=True)):
            s, p = _esc(server), _esc(prof)
            left = budget
            # Risk: 30m, 8h and overall (the larger of the two, with its driver).
            best = None
            lines = []
            for window in ("30m", "8h"):
                score, driver = risk_rows[window][0][i], risk_rows[window][1][i]
                lines.append((window, driver, score))
                if best is None or score > best[2]:
                    best = ("overall", driver, score)
            lines.append(best)
            for window, driver, score in lines[:left]:
                fam["risk_score"].append(
                    f'{n}_risk_score{{driver="{METRIC_NAMES[driver]}",profile="{p}",'
                    f'server="{s}",window="{window}"}} {fmt(score)}\n'
                )
            left -= min(left, len(lines))
            mask = present[i]
            comp = snap.completeness[i][snap.present[i]]
            if left > 0:
                ratio = float(comp.mean()) if comp.size else 0.0
                fam["data_completeness_ratio"].append(
                    f'{n}_data_completeness_ratio{{profile="{p}",server="{s}"}} {fmt(ratio)}\n'
                )
                left -= 1
            else:
                dropped += 1
            dropped += len(lines) - min(len(lines), budget)
            keep = [j for j in range(len(METRIC_NAMES)) if mask[j]]
            need = len(keep) * len(horizons) * len(quantiles)
            if need <= left:
                # The fast path: one format string per set of present metrics, filled per server.
                key = tuple(keep)
                tmpl = templates.get(key)
                if tmpl is None:
                    tmpl = templates[key] = _forecast_template(keep, horizons, qtext)
                flat = [v for j in keep for hv in values[i][j] for v in hv]
                fam["forecast"].append(
                    tmpl.replace("\x01", _fmt_esc(p))
                    .replace("\x02", _fmt_esc(s))
                    .format(*flat)
                    .encode()  # bytes now: the text is built once, never twice in memory
                )
                left -= need
            else:
                mids = [f'{p}",q="{q}",server="{s}"}} ' for q in qtext]
                out = fam["forecast"]
                for j in keep:
                    pre = prefix[j]
                    for hi, hv in enumerate(values[i][j]):
                        for qi, v in enumerate(hv):
                            if left > 0:
                                out.append(pre[hi] + mids[qi] + fmt(v) + "\n")
                                left -= 1
                            else:
                                dropped += 1
            out = fam["time_to_breach_seconds"]
            for j, metric in enumerate(METRIC_NAMES):
                if not mask[j]:
                    continue
                for li, level in enumerate(LEVELS):
                    for qi, qlabel in enumerate(TTB_QUANTILES):
                        v = ttb[i][j][li][qi]
                        if v != v:  # NaN: no breach within 8 hours
                            continue
                        if left > 0:
                            out.append(
                                f'{n}_time_to_breach_seconds{{level="{level}",metric="{metric}",'
                                f'profile="{p}",q="{qlabel}",server="{s}"}} {fmt(v)}\n'
                            )
                            left -= 1
                        else:
                            dropped += 1
            series += budget - left
    if snap is not None:
        for server, (prof, reason) in sorted(snap.not_forecast.items()):
            fam["server_not_forecast"].append(
                f'{n}_server_not_forecast{{profile="{_esc(prof)}",reason="{reason}",'
                f'server="{_esc(server)}"}} 1.0\n'
            )
    # One buffer, each line freed once copied in: at 10,000 servers the text is ~250 MB, and
    # joining a list would hold it twice.
    text = bytearray()
    for name, lines in fam.items():
        text += _header(name).encode()
        for k, x in enumerate(lines):
            text += x if isinstance(x, bytes) else x.encode()
            lines[k] = None
    return Rendered(text, dropped, series)


class MetricsPage:
    """The /metrics body: per-server families rendered once per snapshot, plus self-metrics."""

    def __init__(
        self, exporter: Exporter, clock: Callable[[], float] = time.time, build: str = "dev"
    ):
        self.exporter = exporter
        self.clock = clock
        self.registry = CollectorRegistry()
        self.registry.register(SelfCollector(exporter, self, clock, build))
        self._lock = threading.Lock()
        self._for: Snapshot | None = None
        self._rendered = render_per_server(None, [], [], 0)
        self._empty = self._rendered

    def fresh(self) -> bool:
        snap = self.exporter.snapshot
        cfg = self.exporter.config
        return snap is not None and self.clock() - snap.time <= cfg.max_snapshot_age_seconds

    def prepare(self) -> Rendered:
        """Render the current snapshot's per-server families, once per snapshot."""
        with self._lock:
            snap = self.exporter.snapshot
            if snap is not self._for:
                cfg = self.exporter.config
                # Let the old text go before the new one is built (a scrape waits on the lock).
                self._rendered, self._for = self._empty, None
                self._rendered = render_per_server(
                    snap, horizon_steps(cfg), cfg.quantiles, cfg.series_budget_per_server
                )
                self._for = snap
                if len(self._rendered.text) > GZIP_AHEAD_BYTES:
                    self._rendered.gzipped  # noqa: B018 - compress now, not in a scrape
            return self._rendered

    def current(self) -> Rendered:
        """Return what the next scrape shows: nothing per server once the snapshot is stale."""
        rendered = self.prepare()
        if self.fresh():
            return rendered
        snap = self.exporter.snapshot
        if snap is None or not snap.not_forecast:
            return self._empty
        # Stale: forecasts go, the reasons servers are not forecast stay.
        stale = Snapshot(snap.time, snap.end_step, not_forecast=snap.not_forecast)
        return render_per_server(stale, [], [], 0)

    def render_parts(self, gzipped: bool = False) -> list[bytes | bytearray]:
        """Return the /metrics body as parts to send one after the other (no copy of the text).

        Compressed, it is two gzip members (the per-server text compressed once per snapshot,
        then the self-metrics), which every gzip reader, Prometheus' included, reads as one.
        """
        rendered = self.current()
        rest = generate_latest(self.registry)
        if gzipped:
            return [rendered.gzipped, gzip.compress(rest, compresslevel=1)]
        return [rendered.text, rest]

    def render(self, gzipped: bool = False) -> bytes:
        """Return the whole /metrics text, or it gzip-compressed, as one bytes object."""
        return b"".join(self.render_parts(gzipped))


class SelfCollector(Collector):
    """The exporter's self-metrics, model and build info (small; rendered per scrape)."""

    def __init__(self, exporter: Exporter, page: MetricsPage, clock, build: str):
        self.exporter = exporter
        self.page = page
        self.clock = clock
        self.build = build

    def collect(self) -> Iterator:
        exp = self.exporter
        cfg = exp.config
        snap = exp.snapshot
        stats = exp.stats
        n = NAMESPACE
        age = self.clock() - snap.time if snap else math.inf
        fresh = snap is not None and age <= cfg.max_snapshot_age_seconds
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
        yield GaugeMetricFamily(
            f"{n}_exporter_plain_hosts",
            "Servers forecast in the last cycle by the model bundle's plain-host network (profile "
            "generic and a hostname of no profile's convention); 0 without one.",
            value=snap.plain_hosts if snap else 0,
        )
        counters = [
            ("exporter_cycles", "Cycles started.", stats.cycles),
            (
                "exporter_cycle_failures",
                "Cycles that got no data from Prometheus.",
                stats.cycle_failures,
            ),
            (
                "exporter_queries",
                "Prometheus queries due, including those not sent because Prometheus had "
                "stopped answering in that cycle.",
                stats.queries,
            ),
            (
                "exporter_query_failures",
                "Prometheus queries that failed or were not sent because Prometheus had "
                "stopped answering in that cycle.",
                stats.query_failures,
            ),
            (
                "exporter_partial_cycles",
                "Cycles in which the queries of some metrics failed (their steps are fetched "
                "again next cycle).",
                stats.partial_cycles,
            ),
            (
                "exporter_state_write_failures",
                "Times the window could not be saved to state_file.",
                stats.state_write_failures,
            ),
            (
                "exporter_duplicate_series",
                "Extra series found for one server and metric; their samples were dropped.",
                stats.duplicate_series,
            ),
            (
                "exporter_query_duration_seconds",
                "Time spent in Prometheus queries.",
                stats.query_seconds,
            ),
            ("exporter_received_bytes", "Bytes received from Prometheus.", stats.bytes_received),
            (
                "model_reloads",
                "Model bundles reloaded (SIGHUP or changed files).",
                stats.model_reloads,
            ),
            (
                "model_reload_failures",
                "Model reloads refused (bad bundle); the previous model kept serving.",
                stats.model_reload_failures,
            ),
            (
                "exporter_invalid_samples",
                "NaN, infinite or out-of-range samples treated as missing.",
                stats.invalid_samples,
            ),
            (
                "exporter_api_requests",
                "Forecast path API requests answered (/api/v1/...), refused ones included.",
                stats.api_requests,
            ),
        ]
        for name, help_text, value in counters:
            yield CounterMetricFamily(f"{n}_{name}", help_text, value=value)
        refused = CounterMetricFamily(
            f"{n}_exporter_api_requests_refused",
            "Forecast path API requests refused at a limit, by the api.* setting: "
            "max_concurrency (503), timeout (503) or max_samples (422).",
            labels=["reason"],
        )
        for reason in API_LIMITS:
            refused.add_metric([reason], stats.api_refused.get(reason, 0))
        yield refused
        dropped = CounterMetricFamily(
            f"{n}_exporter_connections_dropped",
            "HTTP connections closed before a request was answered, by reason: idle_timeout "
            "(nothing sent in time), max_waiting (the longest-waiting silent one, when too many "
            "wait) or max_connections (answered 503: too many requests in progress).",
            labels=["reason"],
        )
        for reason in CONNECTION_DROP_REASONS:
            dropped.add_metric([reason], stats.connections_dropped.get(reason, 0))
        yield dropped
        rendered = self.page.current()
        over = GaugeMetricFamily(
            f"{n}_exporter_series_dropped",
            "Series of the current snapshot not exported, by reason.",
            labels=["reason"],
        )
        over.add_metric(["over_budget"], rendered.dropped)
        yield over
        yield GaugeMetricFamily(
            f"{n}_exporter_series",
            "Per-server series exported from the current snapshot (forecast, risk, time to "
            "breach, completeness).",
            value=rendered.series,
        )
        yield GaugeMetricFamily(
            f"{n}_exporter_series_budget_per_server",
            "Most series exported per server (series_budget_per_server).",
            value=cfg.series_budget_per_server,
        )
        yield GaugeMetricFamily(
            f"{n}_exporter_servers_over_limit",
            "Servers seen in the last cycle whose samples were not kept: the window already "
            "held max_servers.",
            value=stats.servers_over_limit,
        )
        failed = GaugeMetricFamily(
            f"{n}_exporter_metric_query_failed",
            "1 for a metric whose queries failed in the last cycle (its newest steps are "
            "missing until the next cycle fetches them).",
            labels=["metric"],
        )
        for metric in snap.failed_metrics if snap else ():
            failed.add_metric([metric], 1)
        yield failed
        yield GaugeMetricFamily(
            f"{n}_exporter_consecutive_failures",
            "Cycles failed in a row; the exporter retries with back-off while it is above 0.",
            value=stats.consecutive_failures,
        )
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
        yield GaugeMetricFamily(
            f"{n}_exporter_inference_threads",
            "CPU threads the last cycle's inference ran on (threads: auto chooses them each "
            "cycle from the CPUs other processes left idle).",
            value=stats.inference_threads,
        )
        # Constant while the exporter runs, and there before the first cycle: the rules and
        # dashboards join on it instead of compiling thresholds in.
        thresholds = GaugeMetricFamily(
            F.THRESHOLD,
            "Warning or critical threshold of a LINBORG metric for a profile, the one this "
            "exporter compares forecasts with: linborg/thresholds.yaml with the thresholds_file "
            "setting applied.",
            labels=["profile", "metric", "level"],
        )
        for (profile, metric), t in exp.thresholds.items():
            for level in LEVELS:
                thresholds.add_metric([profile, metric, level], getattr(t, level))
        yield thresholds
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
