"""The fleet simulator: one deterministic process per seed, stepped 5 minutes at a time.

All servers advance together (numpy arrays over the fleet), so a 10,000-server fleet steps in
milliseconds. History, backfill and the live endpoint all run this same process from the same
origin, so the live mode continues the backfill with no seam.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from linborg.contract import METRIC_NAMES, PROFILE_NAMES, STATES, STEP_SECONDS, ContractError
from linborg.generator.behaviour import (
    BEHAVIOURS,
    INCIDENT_MINUTES,
    INCIDENT_TYPES,
    PRECURSOR_TYPES,
    SUDDEN_SHARE,
    SUDDEN_TYPES,
)
from linborg.generator.fleet import Server
from linborg.thresholds import load_thresholds
from linborg.timefeatures import MORNING_SPIKE_HOURS

STEPS_PER_DAY = 86400 // STEP_SECONDS
STATE_CODE = {name: i for i, name in enumerate(STATES)}
NO_INCIDENT = -1
#: Longest precursor or incident a scenario may ask for (7 days): a longer one would hold a
#: server in a state the fleet's history never shows (1e12 minutes once grew a disk forever).
MAX_SCENARIO_MINUTES = 7 * 24 * 60
TYPE_CODE = {name: i for i, name in enumerate(INCIDENT_TYPES)}
SCENARIOS = ("healthy", "degrading", "critical")

# Rare events outside incidents, per server per day.
MAINTENANCE_PER_DAY = 1 / 30  # only on weekend nights, 01:00-05:00
OFFLINE_PER_DAY = 1 / 90
# Memory use above which the kernel starts swapping.
SWAP_PRESSURE_PCT = 93.0
# Noise processes: AR(1) coefficient per channel.
CHANNELS = ("cpu", "sys", "io", "mem", "net_in", "net_out", "back", "front", "load")
PHI = np.array([0.85, 0.7, 0.8, 0.97, 0.8, 0.8, 0.6, 0.6, 0.5])


@dataclass
class Incident:
    """A labelled incident: precursor (if any) up to ``onset``, then critical until ``end``."""

    server: str
    profile: str
    type: str
    metric: str
    precursor_start: dt.datetime | None
    onset: dt.datetime
    end: dt.datetime
    source: str  # "random" or "scenario"

    @property
    def has_precursor(self) -> bool:
        return self.precursor_start is not None

    def as_dict(self) -> dict:
        """Return the label as JSON-ready data (ISO-8601 UTC times)."""

        def iso(t):
            return None if t is None else t.strftime("%Y-%m-%dT%H:%M:%SZ")

        return {
            "server": self.server,
            "profile": self.profile,
            "type": self.type,
            "metric": self.metric,
            "has_precursor": self.has_precursor,
            "precursor_start": iso(self.precursor_start),
            "onset": iso(self.onset),
            "end": iso(self.end),
            "source": self.source,
        }


def align(t: dt.datetime) -> dt.datetime:
    """Return ``t`` (UTC) rounded down to the 5-minute step grid."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    seconds = int(t.timestamp()) // STEP_SECONDS * STEP_SECONDS
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


#: The largest ``incident_rate`` multiplier: beyond it a server spends most of its time in
#: incidents, recoveries and precursors, and normal behaviour is what becomes rare.
MAX_INCIDENT_RATE = 10.0


def _ramp(p: np.ndarray) -> np.ndarray:
    """Return how far a precursor has built up (0 at its start, 1 at onset), accelerating."""
    return np.clip(p, 0.0, 1.0) ** 1.6


class Simulator:
    """Step a fleet forward from ``origin``; ``step()`` returns the 14 metrics for every server."""

    def __init__(
        self, fleet: list[Server], seed: int, origin: dt.datetime, incident_rate: float = 1.0
    ):
        """``incident_rate`` multiplies every profile's random incidents per day (1: as set)."""
        if not fleet:
            raise ContractError("impossible fleet spec: the fleet has no servers")
        if not 0 <= incident_rate <= MAX_INCIDENT_RATE:
            raise ContractError(
                f"incident rate {incident_rate:g} out of range: use 0 to {MAX_INCIDENT_RATE:g}"
            )
        self.fleet = list(fleet)
        self.index = {s.name: i for i, s in enumerate(self.fleet)}
        self.seed = int(seed)
        self.origin = align(origin)
        self.k = 0  # index of the next step to produce
        self.incidents: list[Incident] = []
        n = len(self.fleet)
        self.rng = np.random.default_rng([self.seed, 0x11B0])
        prof = np.array([PROFILE_NAMES.index(s.profile) for s in self.fleet])
        self.prof = prof
        beh = [BEHAVIOURS[p] for p in PROFILE_NAMES]

        def per_profile(attr):
            return np.array([getattr(b, attr) for b in beh], float)[prof]

        r = self.rng
        self.weekday = np.array([b.weekday for b in beh])[prof]  # (n, 24)
        self.weekend = np.array([b.weekend for b in beh])[prof]
        self.act_mean = (5 * self.weekday.mean(1) + 2 * self.weekend.mean(1)) / 7
        self.spike = per_profile("morning_spike")
        self.cpu_std = per_profile("cpu_std")
        self.cpu = np.clip(per_profile("cpu_mean") + r.normal(0, 0.35, n) * self.cpu_std, 3, 95)
        self.mem_std = per_profile("mem_std")
        self.mem = np.clip(per_profile("mem_mean") + r.normal(0, 0.4, n) * self.mem_std, 8, 90)
        self.iowait = per_profile("iowait") * r.uniform(0.7, 1.3, n)
        self.sys_share = per_profile("sys_share") * r.uniform(0.8, 1.2, n)
        self.java_share = np.clip(per_profile("java_share") * r.uniform(0.85, 1.1, n), 0, 0.97)
        self.net_in = per_profile("net_in") * r.uniform(0.6, 1.4, n)
        self.net_out = per_profile("net_out") * r.uniform(0.6, 1.4, n)
        self.close_wait = per_profile("close_wait") * r.uniform(0.5, 1.5, n)
        self.cores = per_profile("cores")
        self.disk_growth = per_profile("disk_growth") * r.uniform(0.6, 1.4, n)
        self.disk_floor = r.uniform(30, 68, n)
        self.disk_logs = r.uniform(0, 1, n) * self.disk_growth
        self.rotate_hour = r.integers(0, 24, n)
        self.swap_base = r.uniform(0.0, 3.0, n)
        self.swap = self.swap_base.copy()
        self.uptime = r.uniform(1, 120, n)
        self.ar = np.zeros((n, len(CHANNELS)))
        self.incident_rate = float(incident_rate)
        self.rate = self.incident_rate * per_profile("incidents_per_day") / STEPS_PER_DAY
        self.type_p = np.zeros((len(PROFILE_NAMES), len(PRECURSOR_TYPES)))
        for i, b in enumerate(beh):
            for name, w in b.incident_types.items():
                self.type_p[i, list(PRECURSOR_TYPES).index(name)] = w
        self.type_p /= self.type_p.sum(1, keepdims=True)
        # Per-server thresholds the incidents are drawn to cross.
        th = load_thresholds()
        self.crit = {
            m: np.array([th.get(p, m).critical for p in PROFILE_NAMES])[prof] for m in METRIC_NAMES
        }
        # Modes, as step indices (exclusive ends); -1 when not set.
        self.offline_until = np.full(n, -1)
        self.maint_until = np.full(n, -1)
        self.recover_until = np.full(n, -1)
        self.inc_type = np.full(n, NO_INCIDENT)
        self.inc_start = np.zeros(n, int)
        self.inc_onset = np.zeros(n, int)
        self.inc_end = np.zeros(n, int)
        self.inc_label = [None] * n
        self.forced_healthy_until = np.full(n, -1)
        self.scheduled: list[tuple[int, dict]] = []

    # --- time ---------------------------------------------------------------------------------

    def time_of(self, k: int) -> dt.datetime:
        """Return the timestamp of step ``k``."""
        return self.origin + dt.timedelta(seconds=k * STEP_SECONDS)

    def step_of(self, t: dt.datetime) -> int:
        """Return the index of the step at or before ``t``."""
        return int((align(t) - self.origin).total_seconds()) // STEP_SECONDS

    # --- incidents ----------------------------------------------------------------------------

    def _start_incident(
        self,
        i: int,
        kind: str,
        precursor_steps: int,
        duration_steps: int,
        source: str,
    ) -> Incident:
        k = self.k
        metric = PRECURSOR_TYPES[kind][2] if kind in PRECURSOR_TYPES else SUDDEN_TYPES[kind]
        if kind == "connection_leak" and self.fleet[i].profile == "web_api":
            metric = "front_close_wait"
        self.inc_type[i] = TYPE_CODE[kind]
        self.inc_start[i] = k
        self.inc_onset[i] = k + precursor_steps
        self.inc_end[i] = k + precursor_steps + duration_steps
        label = Incident(
            server=self.fleet[i].name,
            profile=self.fleet[i].profile,
            type=kind,
            metric=metric,
            precursor_start=self.time_of(k) if precursor_steps > 0 else None,
            onset=self.time_of(k + precursor_steps),
            end=self.time_of(k + precursor_steps + duration_steps),
            source=source,
        )
        self.inc_label[i] = label
        self.incidents.append(label)
        return label

    def _random_incident(self, i: int, source: str, at_onset: bool = False) -> Incident:
        """Start an incident typical of the server's profile (``at_onset``: no precursor)."""
        r = self.rng
        sudden = r.random() < SUDDEN_SHARE
        duration = int(r.integers(INCIDENT_MINUTES[0], INCIDENT_MINUTES[1] + 1)) // 5
        if sudden and not at_onset:
            kind = list(SUDDEN_TYPES)[int(r.integers(len(SUDDEN_TYPES)))]
            return self._start_incident(i, kind, 0, duration, source)
        choice = int(r.choice(len(PRECURSOR_TYPES), p=self.type_p[self.prof[i]]))
        kind = list(PRECURSOR_TYPES)[choice]
        lo, hi, _ = PRECURSOR_TYPES[kind]
        precursor = 0 if at_onset else int(r.integers(lo, hi + 1)) // 5
        return self._start_incident(i, kind, precursor, duration, source)

    def apply_scenario(
        self,
        servers: list[str],
        scenario: str,
        incident: str | None = None,
        precursor_minutes: int | None = None,
        duration_minutes: int | None = None,
    ) -> list[Incident]:
        """Change the named servers from the next step on; return the incidents it started.

        ``healthy`` ends incidents and outages; ``degrading`` starts an incident with a
        precursor (``incident`` names its type, else one typical of the profile); ``critical``
        starts one whose onset is now.
        """
        problems = []
        if scenario not in SCENARIOS:
            problems.append(f"unknown scenario '{scenario}'; use one of: {', '.join(SCENARIOS)}")
        if incident is not None and incident not in INCIDENT_TYPES:
            problems.append(
                f"unknown incident type '{incident}'; use one of: {', '.join(INCIDENT_TYPES)}"
            )
        if scenario == "healthy" and incident is not None:
            problems.append("scenario 'healthy' takes no incident type")
        for name, value in (
            ("precursor_minutes", precursor_minutes),
            ("duration_minutes", duration_minutes),
        ):
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int)
                or not 0 <= value <= MAX_SCENARIO_MINUTES
            ):
                problems.append(
                    f"{name} must be a whole number of minutes from 0 to {MAX_SCENARIO_MINUTES} "
                    f"(7 days), got {value!r}"
                )
        if duration_minutes == 0:
            problems.append("duration_minutes must be at least 5")
        missing = [s for s in servers if s not in self.index]
        if missing:
            problems.append(f"unknown servers: {', '.join(missing[:5])}")
        if not servers:
            problems.append("no servers selected")
        if problems:
            raise ContractError("bad scenario request: " + "; ".join(problems))
        started = []
        for name in servers:
            i = self.index[name]
            self._end_incident(i)
            self.offline_until[i] = self.maint_until[i] = self.recover_until[i] = -1
            if scenario == "healthy":
                self.forced_healthy_until[i] = self.k + STEPS_PER_DAY
                continue
            self.forced_healthy_until[i] = -1
            if incident is None:
                label = self._random_incident(i, "scenario", at_onset=scenario == "critical")
            else:
                if scenario == "critical":
                    precursor = 0
                elif precursor_minutes is not None:
                    precursor = precursor_minutes // 5
                else:
                    precursor = PRECURSOR_TYPES.get(incident, (60, 60, ""))[0] // 5
                if incident in SUDDEN_TYPES:
                    precursor = 0
                duration = (duration_minutes or 60) // 5
                label = self._start_incident(i, incident, precursor, max(duration, 1), "scenario")
            if duration_minutes is not None and label.type not in SUDDEN_TYPES:
                self.inc_end[i] = self.inc_onset[i] + max(duration_minutes // 5, 1)
                label.end = self.time_of(int(self.inc_end[i]))
            started.append(label)
        return started

    def _end_incident(self, i: int) -> None:
        if self.inc_type[i] == NO_INCIDENT:
            return
        label = self.inc_label[i]
        if label is not None and self.k < self.inc_end[i]:
            # Ended early by a scenario: the label says when it really ended.
            label.end = self.time_of(max(self.k, int(self.inc_onset[i])))
            if self.k < self.inc_onset[i]:
                self.incidents.remove(label)  # it never happened
        self.inc_type[i] = NO_INCIDENT
        self.inc_label[i] = None

    # --- one step -----------------------------------------------------------------------------

    def schedule(self, at: dt.datetime, request: dict) -> None:
        """Apply a scenario when the simulation reaches ``at`` (a scripted incident).

        ``request`` holds ``servers`` (names) and ``scenario``, and optionally ``incident``,
        ``precursor_minutes`` and ``duration_minutes``, as for ``apply_scenario``. It is checked
        now, so a bad script fails before any step is simulated.
        """
        known = {"servers", "scenario", "incident", "precursor_minutes", "duration_minutes"}
        extra = sorted(set(request) - known)
        if extra or "servers" not in request or "scenario" not in request:
            raise ContractError(
                f"bad scheduled scenario {request!r}: needs servers and scenario"
                + (f"; unknown keys {extra}" if extra else "")
            )
        k = int((align(at) - self.origin).total_seconds()) // STEP_SECONDS
        if k < self.k:
            raise ContractError(f"scheduled scenario at {at} is before the simulation's now")
        missing = [s for s in request["servers"] if s not in self.index]
        if missing:
            raise ContractError(f"bad scheduled scenario: unknown servers {missing}")
        self.scheduled.append((k, dict(request)))
        self.scheduled.sort(key=lambda item: item[0])

    def step(self) -> tuple[dt.datetime, dict[str, np.ndarray], np.ndarray]:
        """Advance one step; return (timestamp, {metric: values}, state codes)."""
        k = self.k
        while self.scheduled and self.scheduled[0][0] <= k:
            _, req = self.scheduled.pop(0)
            self.apply_scenario(
                req["servers"],
                req["scenario"],
                req.get("incident"),
                req.get("precursor_minutes"),
                req.get("duration_minutes"),
            )
        t = self.time_of(k)
        n = len(self.fleet)
        r = self.rng
        hour = t.hour + t.minute / 60.0
        weekend = t.weekday() >= 5
        rows = np.arange(n)
        table = self.weekend if weekend else self.weekday
        h0 = int(hour)
        frac = hour - h0
        act = table[rows, h0] * (1 - frac) + table[rows, (h0 + 1) % 24] * frac
        in_morning = not weekend and MORNING_SPIKE_HOURS[0] <= hour < MORNING_SPIKE_HOURS[1]
        if in_morning:
            mid = sum(MORNING_SPIKE_HOURS) / 2
            half = (MORNING_SPIKE_HOURS[1] - MORNING_SPIKE_HOURS[0]) / 2
            act = act + self.spike * (1 - abs(hour - mid) / half)
        act = np.clip(act, 0.0, 1.3)

        # Random events. Draws happen in the same order every step, so a seed replays exactly.
        eps = r.standard_normal((n, len(CHANNELS)))
        u = r.random((n, 3))
        calm = (
            (self.inc_type == NO_INCIDENT)
            & (self.offline_until <= k)
            & (self.maint_until <= k)
            & (self.recover_until <= k)
            & (self.forced_healthy_until <= k)
        )
        for i in np.flatnonzero(calm & (u[:, 0] < self.rate)):
            self._random_incident(int(i), "random")
        if weekend and 1 <= hour < 5:
            rate = MAINTENANCE_PER_DAY / (2 * 4 * 12) * 7  # spread over the weekend window
            for i in np.flatnonzero(calm & (u[:, 1] < rate) & (self.inc_type == NO_INCIDENT)):
                self.maint_until[i] = k + int(r.integers(6, 25))
        for i in np.flatnonzero(calm & (u[:, 2] < OFFLINE_PER_DAY / STEPS_PER_DAY)):
            if self.inc_type[i] == NO_INCIDENT and self.maint_until[i] <= k:
                self.offline_until[i] = k + int(r.integers(3, 13))

        # Incident bookkeeping: finished incidents lead to recovery.
        active = self.inc_type != NO_INCIDENT
        done = active & (self.inc_end <= k)
        for i in np.flatnonzero(done):
            kind = INCIDENT_TYPES[self.inc_type[i]]
            if kind == "disk_fill":
                self.disk_logs[i] = 0.0  # someone cleaned up
            if kind == "hardware_fault":
                self.uptime[i] = 0.0
            self.inc_type[i] = NO_INCIDENT
            self.inc_label[i] = None
            self.recover_until[i] = k + int(r.integers(6, 13))
        inc = self.inc_type
        span = np.maximum(self.inc_onset - self.inc_start, 1)
        progress = np.where(inc != NO_INCIDENT, (k - self.inc_start) / span, 0.0)
        critical = (inc != NO_INCIDENT) & (k >= self.inc_onset)
        ramp = np.where(inc != NO_INCIDENT, _ramp(progress), 0.0)
        # Past onset the metric stays at or beyond its target, with some jitter.
        ramp = np.where(critical, 1.0 + 0.04 * np.abs(eps[:, 0]).clip(0, 2), ramp)

        def of(kind):
            return inc == TYPE_CODE[kind]

        # Baseline behaviour with AR(1) noise.
        self.ar = PHI * self.ar + np.sqrt(1 - PHI**2) * eps
        ar = self.ar
        dev = act - self.act_mean
        recovering = self.recover_until > k
        busy = self.cpu + 2.0 * self.cpu_std * dev + 0.35 * self.cpu_std * ar[:, 0]
        busy = np.where(recovering, busy * 0.7, busy)
        busy = np.clip(busy, 1.0, 97.0)
        iowait = np.clip(self.iowait * (0.5 + act) * (1 + 0.25 * ar[:, 2]), 0.0, 60.0)
        sys_ = np.clip(busy * self.sys_share * (1 + 0.15 * ar[:, 1]), 0.2, 40.0)
        mem = self.mem + 0.8 * self.mem_std * dev + 0.25 * self.mem_std * ar[:, 3]
        mem = np.clip(mem, 3.0, 94.0)
        net_in = self.net_in * (0.1 + 0.9 * act) * np.exp(0.15 * ar[:, 4])
        net_out = self.net_out * (0.1 + 0.9 * act) * np.exp(0.15 * ar[:, 5])
        back = self.close_wait * (0.5 + act) * (1 + 0.4 * ar[:, 6])
        front = self.close_wait * (0.5 + act) * (1 + 0.4 * ar[:, 7])

        # Disk: logs grow with activity and are rotated once a day; the floor creeps up.
        self.disk_logs += self.disk_growth / STEPS_PER_DAY * (0.5 + act)
        rotate = (t.minute == 0) & (self.rotate_hour == t.hour)
        self.disk_logs = np.where(rotate, 0.0, self.disk_logs)
        self.disk_floor = np.minimum(self.disk_floor + 0.03 / STEPS_PER_DAY, 80.0)
        disk = self.disk_floor + self.disk_logs

        # Incident precursors and critical phases, drawn to cross the profile's critical level.
        m = of("memory_leak")
        mem = np.where(m, mem + (self.crit["mem_used_pct"] + 0.8 - mem) * ramp, mem)
        thrash = m & critical
        iowait = np.where(thrash, iowait + 8 + 4 * ar[:, 2].clip(-1, 1), iowait)
        m = of("disk_fill")
        disk = np.where(m, disk + (self.crit["disk_usage_pct"] + 1.5 - disk) * ramp, disk)
        m = of("io_bottleneck")
        iowait = np.where(m, iowait + (self.crit["cpu_iowait_pct"] + 4 - iowait) * ramp, iowait)
        m = of("connection_leak")
        target = np.where(
            self.prof == PROFILE_NAMES.index("web_api"),
            self.crit["front_close_wait"],
            self.crit["back_close_wait"],
        )
        leak = (target * 1.3) * ramp
        is_web = self.prof == PROFILE_NAMES.index("web_api")
        front = np.where(m & is_web, front + leak, front)
        back = np.where(m & ~is_web, back + leak, back)
        back = np.where(m & is_web, back + 0.2 * leak, back)
        m = of("runaway_cpu")
        idle_now = 100.0 - busy
        idle_target = self.crit["cpu_idle_pct"] * 0.5
        busy = np.where(m, 100.0 - (idle_now + (idle_target - idle_now) * ramp), busy)
        gc = of("gc_storm")
        # GC threads saturate user CPU: kernel and I/O time shrink while user time takes over.
        sys_ = np.where(gc, sys_ * (1 - 0.8 * ramp.clip(0, 1)), sys_)
        iowait = np.where(gc, iowait * (1 - 0.8 * ramp.clip(0, 1)), iowait)
        user_needed = (self.crit["java_cpu_pct"] + 1.5) / 0.99
        busy = np.where(gc, busy + np.maximum(user_needed + sys_ + iowait - busy, 0) * ramp, busy)
        m = gc
        mem = np.where(m, mem + (self.crit["mem_used_pct"] - 3 - mem).clip(0) * 0.5 * ramp, mem)
        m = of("traffic_surge") & critical
        net_in = np.where(m, net_in * 4 + 200, net_in)
        net_out = np.where(m, net_out * 3 + 150, net_out)
        front = np.where(m, front + self.crit["front_close_wait"] * 1.4, front)
        busy = np.where(m, np.maximum(busy, 90.0), busy)

        # Swap fills only once memory is near full, and drains slowly after.
        pressure = np.clip(mem - SWAP_PRESSURE_PCT, 0.0, None)
        self.swap = np.where(
            pressure > 0,
            self.swap + 0.1 * pressure * (1 + 6 * thrash),
            self.swap + np.minimum(self.swap_base - self.swap, 0.0) * 0.02,
        )
        self.swap = np.clip(self.swap, 0.0, 99.0)

        # CPU parts: busy = user + sys + iowait, idle = 100 - busy.
        busy = np.clip(np.maximum(busy, iowait + sys_ + 1.0), 1.0, 99.7)
        iowait = np.clip(iowait, 0.0, 95.0)
        sys_ = np.minimum(sys_, np.maximum(busy - iowait - 0.5, 0.0))
        iowait = np.minimum(iowait, np.maximum(busy - sys_ - 0.5, 0.0))
        user = np.maximum(busy - sys_ - iowait, 0.0)
        java_ratio = np.where(gc, 0.9 + 0.09 * ramp.clip(0, 1), self.java_share)
        java_ratio = np.minimum(np.maximum(java_ratio, self.java_share), 0.99)
        jitter = np.where(gc, 1.0, 1 - 0.03 * np.abs(ar[:, 0]).clip(0, 1))
        java = user * java_ratio * jitter
        load = self.cores * (user + sys_) / 100 * (1 + 0.08 * ar[:, 8]) + self.cores * iowait / 60

        # Outages and maintenance: the host is down, counters reset, uptime restarts.
        down = (self.offline_until > k) | (of("hardware_fault") & critical)
        maint = (self.maint_until > k) & ~down
        reboot_now = ((self.offline_until == k) | (self.maint_until == k)) & ~down
        self.recover_until = np.where(reboot_now, k + 6, self.recover_until)
        user = np.where(maint, user * 0.15, user)
        java = np.where(maint, 0.0, java)
        sys_ = np.where(maint, sys_ * 0.5, sys_)
        iowait = np.where(maint, iowait * 0.3, iowait)
        net_in = np.where(maint, net_in * 0.05, net_in)
        net_out = np.where(maint, net_out * 0.05, net_out)
        load = np.where(maint, load * 0.15, load)
        self.uptime = np.where(down | maint, 0.0, self.uptime + STEP_SECONDS / 86400)
        for arr in (user, sys_, iowait, java, mem, net_in, net_out, back, front, load):
            arr[down] = 0.0
        self.swap = np.where(down, 0.0, self.swap)

        # Round as an agent would report, then derive idle so the CPU parts sum to 100.
        user = np.round(user, 2)
        sys_ = np.round(sys_, 2)
        iowait = np.round(iowait, 2)
        idle = np.round(100.0 - user - sys_ - iowait, 2)
        values = {
            "cpu_user_pct": user,
            "cpu_sys_pct": sys_,
            "cpu_iowait_pct": iowait,
            "cpu_idle_pct": np.clip(idle, 0.0, 100.0),
            "java_cpu_pct": np.round(np.minimum(java, user), 2),
            "mem_used_pct": np.round(np.clip(mem, 0.0, 99.9), 2),
            "swap_used_pct": np.round(self.swap, 2),
            "disk_usage_pct": np.round(np.clip(disk, 0.0, 99.9), 2),
            "net_in_mb_s": np.round(np.clip(net_in, 0.0, 12500.0), 3),
            "net_out_mb_s": np.round(np.clip(net_out, 0.0, 12500.0), 3),
            "back_close_wait": np.round(np.clip(back, 0.0, 100000.0)),
            "front_close_wait": np.round(np.clip(front, 0.0, 100000.0)),
            "load_average": np.round(np.clip(load, 0.0, 10000.0), 2),
            "uptime_days": np.round(self.uptime, 5),
        }

        # Ground-truth state, most severe first.
        state = np.full(n, STATE_CODE["healthy"])
        state = np.where(act < 0.2, STATE_CODE["idle"], state)
        state = np.where(busy >= self.cpu + self.cpu_std, STATE_CODE["heavy_load"], state)
        if in_morning:
            state = np.where(self.spike >= 0.15, STATE_CODE["morning_spike"], state)
        state = np.where(recovering | reboot_now, STATE_CODE["recovery"], state)
        state = np.where(critical, STATE_CODE["critical_issue"], state)
        state = np.where(maint, STATE_CODE["maintenance"], state)
        state = np.where(down, STATE_CODE["offline"], state)
        self.k += 1
        return t, values, state

    def advance_to(self, t: dt.datetime) -> None:
        """Step without keeping output until the next step is the one at ``t``."""
        target = self.step_of(t)
        if target < self.k:
            raise ContractError(f"cannot go back in time to {t:%Y-%m-%dT%H:%M:%SZ}")
        while self.k < target:
            self.step()
