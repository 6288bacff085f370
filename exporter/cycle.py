"""One exporter cycle: pull new samples, forecast every eligible server in one batch, snapshot.

``Exporter.run_once(now)`` is the whole job; the scheduler calls it, tests call it directly
with a fake clock, a fake Prometheus client and a fake model.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from linborg.contract import METRIC_NAMES, PROFILE_NAMES, STEP_SECONDS, ProfileMatcher, shard_of
from linborg.cpus import CpuLoad, inference_threads
from linborg.exporter.config import Config, parse_duration
from linborg.exporter.window import RollingWindow, load_window, save_window
from linborg.features import ENCODER_STEPS, UNKNOWN_PROFILE, network_profiles, presence
from linborg.prom import PrometheusError
from linborg.risk import assess, healthy_risk
from linborg.thresholds import Thresholds

log = logging.getLogger("linborg.exporter")

#: Steps fetched again each cycle so late samples still land.
LATE_STEPS = 2
#: The first fill of the 24-hour window is split into queries of at most this many steps
#: (3 hours), so a 10,000-server fleet never parses one huge JSON answer.
FILL_CHUNK_STEPS = 36
#: A server, or one of its metrics, with no sample in this many latest steps (15 minutes) has
#: vanished: it is no longer forecast or exported. Its window stays until it ages out, so a
#: server that comes back within 24 hours keeps its history.
VANISHED_STEPS = 3


@dataclass(frozen=True)
class Snapshot:
    """Everything /metrics shows, from the last completed cycle. Never modified after creation."""

    time: float
    end_step: int
    servers: tuple[str, ...] = ()
    profiles: tuple[str, ...] = ()
    forecast: np.ndarray | None = None  # (S, 14, 96, 3)
    present: np.ndarray | None = None  # (S, 14)
    completeness: np.ndarray | None = None  # (S, 14)
    risk: dict[str, tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict
    )  # window -> (score, driver)
    time_to_breach: np.ndarray | None = None  # (S, 14, 2 levels, 2 quantiles)
    not_forecast: dict[str, tuple[str, str]] = field(
        default_factory=dict
    )  # server -> (profile, reason)
    profile_fallbacks: int = 0
    #: Servers forecast by the bundle's plain-host network (``Forecaster.plain``).
    plain_hosts: int = 0
    #: Metrics whose queries failed in this cycle (their newest steps are fetched again next
    #: cycle); a cycle with any is partial.
    failed_metrics: tuple[str, ...] = ()


#: Why the HTTP front closed a connection before answering a request (exporter/server.py), as the
#: reason label of linborg_exporter_connections_dropped_total.
CONNECTION_DROP_REASONS = ("idle_timeout", "max_connections", "max_waiting")


@dataclass
class Stats:
    """Self-metrics of the exporter, updated by each cycle."""

    cycles: int = 0
    cycle_failures: int = 0
    last_success: float = 0.0
    last_duration: float = 0.0
    queries: int = 0
    query_failures: int = 0
    query_seconds: float = 0.0
    bytes_received: int = 0
    invalid_samples: int = 0
    last_pull_seconds: float = 0.0
    consecutive_failures: int = 0
    model_reloads: int = 0
    model_reload_failures: int = 0
    partial_cycles: int = 0
    duplicate_series: int = 0
    servers_over_limit: int = 0
    state_write_failures: int = 0
    #: CPU threads the last cycle's inference ran on.
    inference_threads: int = 0
    #: Forecast path API requests answered, and those refused at a limit, by the api.* key.
    api_requests: int = 0
    api_refused: dict[str, int] = field(default_factory=dict)
    #: HTTP connections closed before a request was answered, by reason (the HTTP front).
    connections_dropped: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(CONNECTION_DROP_REASONS, 0)
    )


class Exporter:
    """Holds the rolling window, the model and the last snapshot."""

    def __init__(self, config: Config, client, forecaster, thresholds: Thresholds):
        self.config = config
        self.client = client
        self.forecaster = forecaster
        self.thresholds = thresholds
        self.cpu_load = CpuLoad() if config.threads_auto else None
        self.matcher = ProfileMatcher(config.hostname_patterns)
        self.window: RollingWindow | None = None
        self.fetched_until: dict[str, int] = {}
        self.snapshot: Snapshot | None = None
        self.stats = Stats()
        self._unreachable = False
        self._deadline = float("inf")
        self._deadline_logged = False
        #: Servers that had two or more series for one metric in this cycle's answers.
        self.duplicates: set[str] = set()
        self.failed_metrics: tuple[str, ...] = ()

    def restore(self, now: float) -> bool:
        """Read the window saved by an earlier run (``state_file``); return whether it was used.

        The first cycle then fetches only the steps since it was saved, so a restart exports
        fresh forecasts within one steady cycle instead of refilling 24 hours.
        """
        path = self.config.state_file
        if not path:
            return False
        from pathlib import Path

        if not Path(path).exists():
            log.info("no saved window at %s: the first cycle fills 24 hours", path)
            return False
        try:
            self.window, self.fetched_until = load_window(
                path, self.config.fingerprint(), int(now // STEP_SECONDS), self.config.max_servers
            )
        except ValueError as err:
            log.warning("saved window refused, filling 24 hours instead: %s", err)
            return False
        log.info("restored the window of %d servers from %s", len(self.window.servers), path)
        return True

    def persist(self) -> None:
        """Save the window to ``state_file`` (if set); a failure is logged, never raised."""
        path = self.config.state_file
        if not path or self.window is None:
            return
        try:
            save_window(path, self.window, self.fetched_until, self.config.fingerprint())
        except OSError as err:
            self.stats.state_write_failures += 1
            log.warning("cannot save the window to %s: %s", path, err)

    def retry_after(self) -> float | None:
        """Return seconds until the next attempt after failed cycles, or None when healthy.

        The back-off starts at retry_backoff and doubles per consecutive failure, never beyond
        the interval, so the first attempt after Prometheus returns recovers.
        """
        k = self.stats.consecutive_failures
        if k == 0:
            return None
        cfg = self.config
        return float(min(cfg.retry_backoff_seconds * 2 ** (k - 1), cfg.interval_seconds))

    def _profile(self, labels: dict[str, str], server: str) -> tuple[str, str]:
        prof = labels.get(self.config.profile_label)
        if prof in PROFILE_NAMES:
            return prof, "label"
        found = self.matcher.match(server)
        return found.profile, "hostname" if found.matched else "fallback"

    def _query(self, metric: str, first: int, last: int):
        """Return one query_range answer for steps first..last, or None if it failed.

        Once Prometheus has not answered at all in this cycle, the remaining queries are not
        sent: a Prometheus that is down is not asked 14 more times. Each one not sent still
        counts as a query and as a failed one (what linborg_exporter_query_failures_total
        documents), so the failure ratio reads 1 during an outage.
        """
        self.stats.queries += 1
        if self._unreachable:
            self.stats.query_failures += 1
            return None  # not sent: the cycle already knows Prometheus is not answering
        if time.monotonic() > self._deadline:
            self.stats.query_failures += 1
            if not self._deadline_logged:
                self._deadline_logged = True
                log.warning(
                    "cycle deadline (%ds) reached: the remaining queries are not sent this "
                    "cycle; their steps are fetched next cycle",
                    self.config.cycle_deadline_seconds,
                )
            return None
        began = time.perf_counter()
        before = getattr(self.client, "bytes_received", 0)
        try:
            return self.client.query_range(
                self.config.query(metric), first * STEP_SECONDS, last * STEP_SECONDS, STEP_SECONDS
            )
        except PrometheusError as err:
            self.stats.query_failures += 1
            self._unreachable = err.unreachable
            log.warning("query for %s failed: %s", metric, err)
            return None
        finally:
            self.stats.query_seconds += time.perf_counter() - began
            self.stats.bytes_received += getattr(self.client, "bytes_received", 0) - before

    def pull(self, end_step: int) -> int:
        """Fetch the steps each metric lacks up to ``end_step``; return how many metrics failed."""
        if self.window is None:
            self.window = RollingWindow(end_step, self.config.max_servers)
        self.window.advance(end_step)
        self.window.over_limit = set()
        self._unreachable = False
        self._deadline = time.monotonic() + self.config.cycle_deadline_seconds
        self._deadline_logged = False
        self.duplicates = set()
        failed = []
        for j, metric in enumerate(METRIC_NAMES):
            since = self.fetched_until.get(metric)
            first = (
                self.window.start_step
                if since is None
                else max(since - LATE_STEPS, self.window.start_step)
            )
            ok = True
            for a, b in _chunks(first, end_step, FILL_CHUNK_STEPS):
                result = self._query(metric, a, b)
                if result is None:
                    ok = False
                    break
                by_server: dict[str, list] = {}
                for s in result:
                    server = s.labels.get(self.config.server_label)
                    if server:
                        by_server.setdefault(server, []).append(s)
                for server, series in by_server.items():
                    if len(series) > 1:
                        # Two series claim one server's metric (a relabelling mistake, two
                        # jobs): neither is trusted, none is averaged or overwritten.
                        self._duplicate(server, metric, series)
                        continue
                    (s,) = series
                    prof, reason = self._profile(s.labels, server)
                    self.window.add(server, prof, reason, j, s.timestamps, s.values)
            if not ok:
                failed.append(metric)
                continue
            self.fetched_until[metric] = end_step
        self.stats.invalid_samples = self.window.invalid_samples
        self.stats.servers_over_limit = len(self.window.over_limit)
        if self.window.over_limit:
            log.warning(
                "%d servers beyond max_servers (%d) were not kept, e.g. %s",
                len(self.window.over_limit),
                self.config.max_servers,
                ", ".join(sorted(self.window.over_limit)[:3]),
            )
        self.failed_metrics = tuple(failed)
        return len(failed)

    def _duplicate(self, server: str, metric: str, series: list) -> None:
        """Count and log duplicate series for one server and metric; drop their samples."""
        self.stats.duplicate_series += len(series) - 1
        self.duplicates.add(server)
        labels = "; ".join(
            ", ".join(f"{k}={v}" for k, v in sorted(s.labels.items())) for s in series[:3]
        )
        log.warning(
            "%d series for %s of server %s (dropped, not forecast this cycle): %s",
            len(series),
            metric,
            server,
            labels,
        )

    def _choose_threads(self) -> None:
        """Set the inference threads: the configured count, or with ``threads: auto`` the
        usable CPUs that other processes left idle since the last cycle."""
        import torch

        n = self.config.threads
        if self.cpu_load is not None:
            others = self.cpu_load.others(n)
            n = inference_threads(n, others)
            if n != self.stats.inference_threads and self.stats.inference_threads:
                log.info(
                    "inference on %d thread(s): other processes kept %.1f of %d CPUs busy",
                    n,
                    others,
                    self.config.threads,
                )
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
        self.stats.inference_threads = n

    def run_once(self, now: float) -> Snapshot | None:
        """Run one cycle at Unix time ``now``; return the new snapshot, or None if it failed."""
        began = time.perf_counter()
        self.stats.cycles += 1
        end_step = int(now // STEP_SECONDS)
        failed = self.pull(end_step)
        self.stats.last_pull_seconds = time.perf_counter() - began
        if failed == len(METRIC_NAMES):
            # Prometheus gave nothing: keep the last snapshot (it ages out at max_snapshot_age).
            self.stats.cycle_failures += 1
            self.stats.consecutive_failures += 1
            self.stats.last_duration = time.perf_counter() - began
            return None
        snap = self.forecast(now, end_step)
        self.persist()
        self.snapshot = snap
        # Counted once the snapshot that names the failed metrics is published: a scrape in
        # between saw the partial count beside the previous snapshot's (empty) failures.
        if failed:
            self.stats.partial_cycles += 1
        self.stats.consecutive_failures = 0
        self.stats.last_success = now
        self.stats.last_duration = time.perf_counter() - began
        return snap

    def forecast(self, now: float, end_step: int) -> Snapshot:
        """Forecast every eligible server in one batch and return the snapshot."""
        cfg = self.config
        w = self.window
        not_forecast: dict[str, tuple[str, str]] = {}
        eligible = []
        fallbacks = 0  # servers of this shard whose profile fell back to generic
        min_steps = cfg.min_history_seconds // STEP_SECONDS
        unfilled = [m for m in METRIC_NAMES if m not in self.fetched_until]
        for server, sw in sorted(w.servers.items()):
            have = ~np.isnan(sw.values)
            seen = have.any(axis=1)
            if not seen[-VANISHED_STEPS:].any():
                continue  # vanished (or never seen): not forecast, not exported
            if shard_of(server, cfg.shard_count) != cfg.shard_index:
                not_forecast[server] = (sw.profile, "outside_shard")
                continue
            if server in self.duplicates:
                not_forecast[server] = (sw.profile, "duplicate_series")
                continue
            if unfilled:
                # A metric never fetched is not absent, it is unknown: forecasting without it
                # would change every other metric's forecast. Wait for the fill to complete.
                not_forecast[server] = (sw.profile, "incomplete_fill")
                continue
            fallbacks += sw.profile_reason == "fallback"
            history = ENCODER_STEPS - int(np.argmax(seen))
            if history < min(min_steps, ENCODER_STEPS):
                not_forecast[server] = (sw.profile, "too_little_history")
                continue
            if not presence(sw.values[None])[0].any():
                not_forecast[server] = (sw.profile, "missing_series")
                continue
            eligible.append(server)
        if self.forecaster is None:
            for s in eligible:
                not_forecast[s] = (w.servers[s].profile, "no_model")
        if self.forecaster is None or not eligible:
            return Snapshot(
                now,
                end_step,
                not_forecast=not_forecast,
                profile_fallbacks=fallbacks,
                failed_metrics=self.failed_metrics,
            )
        profiles = [w.servers[s].profile for s in eligible]
        plain_hosts = 0
        if getattr(self.forecaster, "plain", None) is not None:
            plain_hosts = network_profiles(eligible, profiles).count(UNKNOWN_PROFILE)
        windows = w.arrays(eligible)
        self._choose_threads()
        fc = self.forecaster.predict(
            windows, profiles, end_step, timezone=cfg.timezone, servers=list(eligible)
        )
        # A metric whose series vanished is no longer exported for that server.
        recent = ~np.isnan(windows[:, -VANISHED_STEPS:, :]).all(axis=1)
        present = fc.present & recent
        risk = {}
        calibration = getattr(self.forecaster, "spec", {}).get("risk_calibration")
        for name, seconds in (("30m", 1800), ("8h", 8 * 3600)):
            healthy = healthy_risk(calibration, profiles, list(METRIC_NAMES), name)
            r = assess(
                fc.values,
                profiles,
                list(METRIC_NAMES),
                self.thresholds,
                window_steps=seconds // STEP_SECONDS,
                present=present,
                healthy=healthy,
            )
            risk[name] = (r.score, r.driver)
            if name == "8h":
                ttb = r.time_to_breach
        for f in (fc.values, present, fc.completeness, ttb):
            f.setflags(write=False)
        return Snapshot(
            time=now,
            end_step=end_step,
            servers=tuple(eligible),
            profiles=tuple(profiles),
            forecast=fc.values,
            present=present,
            completeness=fc.completeness,
            risk=risk,
            time_to_breach=ttb,
            not_forecast=not_forecast,
            profile_fallbacks=fallbacks,
            plain_hosts=plain_hosts,
            failed_metrics=self.failed_metrics,
        )


def _chunks(first: int, last: int, size: int):
    """Yield (a, b) step ranges covering first..last, each at most ``size`` steps."""
    a = first
    while a <= last:
        b = min(last, a + size - 1)
        yield a, b
        a = b + 1


def horizon_steps(config: Config) -> list[tuple[str, int]]:
    """Return (label, step index into the 96-step forecast) of each exported horizon."""
    return [(h, parse_duration(h) // STEP_SECONDS - 1) for h in config.horizons]
