"""The LINBORG data contract: metric names, units, ranges, profiles, states and server ids.

Every stage (generator, trainer, exporter, rules, dashboards) imports its names from here.
This module imports only the standard library, so importing it is cheap and has no side effects.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

#: Version of this contract. It is written into every Parquet file and every model bundle.
#: Files and bundles whose major version differs are refused (see ``check_contract_version``).
CONTRACT_VERSION = "1.0.0"

#: Prefix of every series name this project puts on the wire.
NAMESPACE = "linborg"

#: The sampling step of every LINBORG series.
STEP_SECONDS = 300

#: Names of the non-metric columns of the long-format metrics table.
TIMESTAMP = "timestamp"
SERVER = "server"
PROFILE = "profile"
STATE = "state"

#: Columns every metrics table has besides the metrics.
KEY_COLUMNS = (TIMESTAMP, SERVER, PROFILE)
#: Columns a metrics table may carry besides keys and metrics (ground truth, never a model input).
OPTIONAL_COLUMNS = (STATE,)


class ContractError(ValueError):
    """Raise when input does not follow the LINBORG contract; the message says what and where."""


@dataclass(frozen=True)
class Metric:
    """One LINBORG metric: its name, unit, valid range and meaning."""

    name: str
    unit: str
    min: float
    max: float
    #: "above": higher is worse (breach when value >= threshold); "below": lower is worse.
    direction: str
    help: str

    @property
    def wire_name(self) -> str:
        """Return the Prometheus series name, e.g. ``linborg_cpu_user_pct``."""
        return f"{NAMESPACE}_{self.name}"


METRICS: tuple[Metric, ...] = (
    Metric("cpu_user_pct", "percent", 0, 100, "above", "CPU time spent in user space."),
    Metric("cpu_sys_pct", "percent", 0, 100, "above", "CPU time spent in the kernel."),
    Metric("cpu_iowait_pct", "percent", 0, 100, "above", "CPU time spent waiting for I/O."),
    Metric(
        "cpu_idle_pct",
        "percent",
        0,
        100,
        "below",
        "CPU time spent idle; people see CPU used = 100 - cpu_idle_pct.",
    ),
    Metric(
        "java_cpu_pct",
        "percent",
        0,
        100,
        "above",
        "CPU time used by Java processes, part of cpu_user_pct.",
    ),
    Metric("mem_used_pct", "percent", 0, 100, "above", "Memory in use, excluding caches."),
    Metric("swap_used_pct", "percent", 0, 100, "above", "Swap space in use."),
    Metric(
        "disk_usage_pct",
        "percent",
        0,
        100,
        "above",
        "Space used on the data filesystem.",
    ),
    Metric(
        "net_in_mb_s",
        "megabytes per second",
        0,
        12500,
        "above",
        "Network bytes received, in MB/s.",
    ),
    Metric(
        "net_out_mb_s",
        "megabytes per second",
        0,
        12500,
        "above",
        "Network bytes sent, in MB/s.",
    ),
    Metric(
        "back_close_wait",
        "connections",
        0,
        100000,
        "above",
        "TCP connections to backends stuck in CLOSE_WAIT.",
    ),
    Metric(
        "front_close_wait",
        "connections",
        0,
        100000,
        "above",
        "TCP connections from clients stuck in CLOSE_WAIT.",
    ),
    Metric(
        "load_average",
        "processes",
        0,
        10000,
        "above",
        "One-minute load average: runnable plus uninterruptible processes.",
    ),
    Metric(
        "uptime_days",
        "days",
        0,
        3650,
        "above",
        "Days since the last boot; drops to 0 at a reboot.",
    ),
)

METRIC_NAMES: tuple[str, ...] = tuple(m.name for m in METRICS)
METRICS_BY_NAME: Mapping[str, Metric] = {m.name: m for m in METRICS}

#: Names from older schemas and what replaces them (None: there is no LINBORG replacement).
DEPRECATED_NAMES: Mapping[str, str | None] = {
    "cpu_pct": "100 - cpu_idle_pct (split into cpu_user_pct, cpu_sys_pct, cpu_iowait_pct)",
    "cpu_percent": "100 - cpu_idle_pct (split into cpu_user_pct, cpu_sys_pct, cpu_iowait_pct)",
    "mem_pct": "mem_used_pct",
    "memory_percent": "mem_used_pct",
    "disk_percent": "disk_usage_pct",
    "disk_io_mb_s": None,
    "latency_ms": None,
    "status": "state (ground truth written by the generator, never a model input)",
}


def deprecation_message(name: str) -> str:
    """Return the error text for a deprecated column or metric name."""
    replacement = DEPRECATED_NAMES[name]
    if replacement is None:
        return f"'{name}' is a deprecated name with no LINBORG replacement; drop it"
    return f"'{name}' is a deprecated name; use {replacement}"


def metric(name: str) -> Metric:
    """Return the metric called ``name``; reject deprecated and unknown names clearly."""
    if name in METRICS_BY_NAME:
        return METRICS_BY_NAME[name]
    if name in DEPRECATED_NAMES:
        raise ContractError(deprecation_message(name))
    raise ContractError(f"unknown metric '{name}'; LINBORG metrics are: {', '.join(METRIC_NAMES)}")


# --- profiles -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """A server type: its name, hostname convention and what it runs."""

    name: str
    hostname_prefix: str
    digits: int
    help: str

    @property
    def hostname_pattern(self) -> str:
        """Return the default hostname regex; a domain or port suffix is allowed."""
        return rf"^{self.hostname_prefix}\d{{{self.digits}}}(?:[.:].*)?$"

    def hostname(self, number: int) -> str:
        """Return the conventional hostname of server ``number`` (e.g. ``ppml0007``)."""
        if not 0 <= number < 10**self.digits:
            raise ContractError(
                f"server number {number} does not fit the {self.digits}-digit "
                f"{self.name} convention {self.hostname_prefix}{'#' * self.digits}"
            )
        return f"{self.hostname_prefix}{number:0{self.digits}d}"


PROFILES: tuple[Profile, ...] = (
    Profile("ml_compute", "ppml", 4, "Spark and Java ML training workers."),
    Profile("database", "ppdb", 3, "Database servers."),
    Profile("web_api", "ppweb", 3, "Web and API front ends."),
    Profile("conductor_mgmt", "ppcon", 2, "Job conductors and management nodes."),
    Profile("data_ingest", "ppetl", 3, "ETL and data ingestion."),
    Profile("risk_analytics", "pprisk", 3, "Risk analytics batch and reports."),
    Profile("generic", "ppgen", 3, "Anything else."),
)

PROFILE_NAMES: tuple[str, ...] = tuple(p.name for p in PROFILES)
PROFILES_BY_NAME: Mapping[str, Profile] = {p.name: p for p in PROFILES}
FALLBACK_PROFILE = "generic"


def profile(name: str) -> Profile:
    """Return the profile called ``name`` or raise a ContractError listing the known ones."""
    try:
        return PROFILES_BY_NAME[name]
    except KeyError:
        raise ContractError(
            f"unknown profile '{name}'; known profiles are: {', '.join(PROFILE_NAMES)}"
        ) from None


class ProfileMatch(NamedTuple):
    """The profile inferred for a hostname and why."""

    profile: str
    #: True when a pattern matched; False when the fallback profile was used.
    matched: bool
    reason: str


#: The default hostname patterns, in the order they are tried.
DEFAULT_HOSTNAME_PATTERNS: tuple[tuple[str, str], ...] = tuple(
    (p.hostname_pattern, p.name) for p in PROFILES
)


class ProfileMatcher:
    """Infer a server's profile from its hostname with (regex, profile) patterns tried in order.

    Hostnames are matched case-insensitively, as DNS names are.
    """

    def __init__(self, patterns: Iterable[tuple[str, str]] = DEFAULT_HOSTNAME_PATTERNS):
        pairs = list(patterns)
        problems = []
        compiled = []
        for i, pair in enumerate(pairs):
            try:
                regex, name = pair
            except (TypeError, ValueError):
                problems.append(f"pattern {i}: expected a (regex, profile) pair, got {pair!r}")
                continue
            if name not in PROFILES_BY_NAME:
                problems.append(
                    f"pattern {i} ({regex!r}): unknown profile '{name}'; "
                    f"known profiles are: {', '.join(PROFILE_NAMES)}"
                )
            try:
                compiled.append((re.compile(regex, re.IGNORECASE), name))
            except (re.error, TypeError) as err:
                problems.append(f"pattern {i} ({regex!r}): invalid regular expression: {err}")
        if problems:
            raise ContractError("bad hostname patterns:\n  " + "\n  ".join(problems))
        self._patterns = tuple(compiled)

    def match(self, hostname: str) -> ProfileMatch:
        """Return the profile of ``hostname``; fall back to ``generic`` and say so."""
        for regex, name in self._patterns:
            if regex.search(hostname):
                return ProfileMatch(name, True, f"hostname matches {regex.pattern!r}")
        return ProfileMatch(
            FALLBACK_PROFILE,
            False,
            f"hostname '{hostname}' matches no pattern; fell back to '{FALLBACK_PROFILE}'",
        )


def infer_profile(
    hostname: str, patterns: Iterable[tuple[str, str]] = DEFAULT_HOSTNAME_PATTERNS
) -> ProfileMatch:
    """Return the profile of ``hostname`` from ``patterns``, with the reason."""
    return ProfileMatcher(patterns).match(hostname)


# --- states ---------------------------------------------------------------------------------

#: Ground-truth server states written by the generator and used as evaluation labels.
#: They are never a model input: a production Prometheus has no such series.
STATES: tuple[str, ...] = (
    "critical_issue",
    "healthy",
    "heavy_load",
    "idle",
    "maintenance",
    "morning_spike",
    "offline",
    "recovery",
)

# --- server ids and shards ------------------------------------------------------------------


def server_id(server: str) -> str:
    """Return the stable id of a server: the first 16 hex digits of SHA-256 of its name."""
    return hashlib.sha256(server.encode("utf-8")).hexdigest()[:16]


def server_hash(server: str) -> int:
    """Return the stable 64-bit hash of a server name (SHA-256, first 8 bytes, big-endian)."""
    return int.from_bytes(hashlib.sha256(server.encode("utf-8")).digest()[:8], "big")


def shard_of(server: str, shards: int) -> int:
    """Return the shard (0..shards-1) that owns ``server``; it depends on the name alone."""
    if shards < 1:
        raise ContractError(f"shard count must be at least 1, got {shards}")
    return server_hash(server) % shards


# --- versions -------------------------------------------------------------------------------


def check_contract_version(found: str | None, where: str) -> None:
    """Refuse data or a bundle written under another major contract version."""
    if found is None:
        raise ContractError(
            f"{where} has no LINBORG contract version; it was not written by this project "
            f"(expected contract {CONTRACT_VERSION})"
        )
    if str(found).split(".")[0] != CONTRACT_VERSION.split(".")[0]:
        raise ContractError(
            f"{where} was written under LINBORG contract {found}, "
            f"but this is contract {CONTRACT_VERSION}; regenerate or retrain it"
        )


def describe() -> dict:
    """Return the contract as plain data (for `linborg contract` and bundle metadata)."""
    return {
        "contract_version": CONTRACT_VERSION,
        "step_seconds": STEP_SECONDS,
        "metrics": [
            {
                "name": m.name,
                "unit": m.unit,
                "min": m.min,
                "max": m.max,
                "direction": m.direction,
                "help": m.help,
            }
            for m in METRICS
        ],
        "profiles": [
            {"name": p.name, "hostname_pattern": p.hostname_pattern, "help": p.help}
            for p in PROFILES
        ],
        "states": list(STATES),
        "deprecated": dict(DEPRECATED_NAMES),
    }
