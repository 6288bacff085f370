"""One exporter cycle: pull new samples, forecast every eligible server in one batch, snapshot.

``Exporter.run_once(now)`` is the whole job; the scheduler calls it, tests call it directly
with a fake clock, a fake Prometheus client and a fake model.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from exporter.config import Config, parse_duration
from exporter.window import RollingWindow
from linborg.contract import METRIC_NAMES, PROFILE_NAMES, STEP_SECONDS, ProfileMatcher, shard_of
from linborg.features import ENCODER_STEPS
from linborg.prom import PrometheusError
from linborg.risk import assess
from linborg.thresholds import Thresholds

log = logging.getLogger("linborg.exporter")

#: Steps fetched again each cycle so late samples still land.
LATE_STEPS = 2


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


class Exporter:
    """Holds the rolling window, the model and the last snapshot."""

    def __init__(self, config: Config, client, forecaster, thresholds: Thresholds):
        self.config = config
        self.client = client
        self.forecaster = forecaster
        self.thresholds = thresholds
        self.matcher = ProfileMatcher(config.hostname_patterns)
        self.window: RollingWindow | None = None
        self.fetched_until: dict[str, int] = {}
        self.snapshot: Snapshot | None = None
        self.stats = Stats()

    def _profile(self, labels: dict[str, str], server: str) -> tuple[str, str]:
        prof = labels.get(self.config.profile_label)
        if prof in PROFILE_NAMES:
            return prof, "label"
        found = self.matcher.match(server)
        return found.profile, "hostname" if found.matched else "fallback"

    def pull(self, end_step: int) -> int:
        """Fetch the steps each metric lacks up to ``end_step``; return how many queries failed."""
        if self.window is None:
            self.window = RollingWindow(end_step)
        self.window.advance(end_step)
        failed = 0
        for j, metric in enumerate(METRIC_NAMES):
            since = self.fetched_until.get(metric)
            first = (
                self.window.start_step
                if since is None
                else max(since - LATE_STEPS, self.window.start_step)
            )
            began = time.perf_counter()
            before = getattr(self.client, "bytes_received", 0)
            self.stats.queries += 1
            try:
                result = self.client.query_range(
                    self.config.query(metric),
                    first * STEP_SECONDS,
                    end_step * STEP_SECONDS,
                    STEP_SECONDS,
                )
            except PrometheusError as err:
                self.stats.query_failures += 1
                log.warning("query for %s failed: %s", metric, err)
                failed += 1
                continue
            finally:
                self.stats.query_seconds += time.perf_counter() - began
                self.stats.bytes_received += getattr(self.client, "bytes_received", 0) - before
            for s in result:
                server = s.labels.get(self.config.server_label)
                if not server:
                    continue
                prof, reason = self._profile(s.labels, server)
                self.window.add(server, prof, reason, j, s.timestamps, s.values)
            self.fetched_until[metric] = end_step
        self.stats.invalid_samples = self.window.invalid_samples
        return failed

    def run_once(self, now: float) -> Snapshot | None:
        """Run one cycle at Unix time ``now``; return the new snapshot, or None if it failed."""
        began = time.perf_counter()
        self.stats.cycles += 1
        end_step = int(now // STEP_SECONDS)
        if self.pull(end_step) == len(METRIC_NAMES):
            # Prometheus gave nothing: keep the last snapshot (it ages out at max_snapshot_age).
            self.stats.cycle_failures += 1
            self.stats.last_duration = time.perf_counter() - began
            return None
        snap = self.forecast(now, end_step)
        self.snapshot = snap
        self.stats.last_success = now
        self.stats.last_duration = time.perf_counter() - began
        return snap

    def forecast(self, now: float, end_step: int) -> Snapshot:
        """Forecast every eligible server in one batch and return the snapshot."""
        cfg = self.config
        w = self.window
        not_forecast: dict[str, tuple[str, str]] = {}
        eligible = []
        min_steps = cfg.min_history_seconds // STEP_SECONDS
        for server, sw in sorted(w.servers.items()):
            if shard_of(server, cfg.shard_count) != cfg.shard_index:
                not_forecast[server] = (sw.profile, "outside_shard")
                continue
            have = ~np.isnan(sw.values)
            seen = have.any(axis=1)
            if not seen.any():
                continue
            history = ENCODER_STEPS - int(np.argmax(seen))
            if history < min(min_steps, ENCODER_STEPS):
                not_forecast[server] = (sw.profile, "too_little_history")
                continue
            if (have.mean(axis=0) < 0.5).all():
                not_forecast[server] = (sw.profile, "missing_series")
                continue
            eligible.append(server)
        fallbacks = sum(sw.profile_reason == "fallback" for sw in w.servers.values())
        if self.forecaster is None:
            for s in eligible:
                not_forecast[s] = (w.servers[s].profile, "no_model")
            return Snapshot(now, end_step, not_forecast=not_forecast, profile_fallbacks=fallbacks)
        profiles = [w.servers[s].profile for s in eligible]
        if not eligible:
            return Snapshot(now, end_step, not_forecast=not_forecast, profile_fallbacks=fallbacks)
        fc = self.forecaster.predict(w.arrays(eligible), profiles, end_step)
        risk = {}
        for name, seconds in (("30m", 1800), ("8h", 8 * 3600)):
            r = assess(
                fc.values,
                profiles,
                list(METRIC_NAMES),
                self.thresholds,
                window_steps=seconds // STEP_SECONDS,
                present=fc.present,
            )
            risk[name] = (r.score, r.driver)
            if name == "8h":
                ttb = r.time_to_breach
        for f in (fc.values, fc.present, fc.completeness, ttb):
            f.setflags(write=False)
        return Snapshot(
            time=now,
            end_step=end_step,
            servers=tuple(eligible),
            profiles=tuple(profiles),
            forecast=fc.values,
            present=fc.present,
            completeness=fc.completeness,
            risk=risk,
            time_to_breach=ttb,
            not_forecast=not_forecast,
            profile_fallbacks=fallbacks,
        )


def horizon_steps(config: Config) -> list[tuple[str, int]]:
    """Return (label, step index into the 96-step forecast) of each exported horizon."""
    return [(h, parse_duration(h) // STEP_SECONDS - 1) for h in config.horizons]
