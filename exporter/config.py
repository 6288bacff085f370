"""The exporter configuration: one YAML file, loaded by a pure function reporting every problem.

Every key, its default and its meaning are in SCHEMA; exporter/example.yml is the committed
example and the README table is tested against SCHEMA.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linborg.contract import (
    DEFAULT_HOSTNAME_PATTERNS,
    METRICS_BY_NAME,
    ContractError,
    ProfileMatcher,
)
from linborg.cpus import usable_cpus
from linborg.duration import parse_duration
from linborg.prom import connection_problems

DEFAULT_HORIZONS = ("30m", "1h", "2h", "4h", "8h")
DEFAULT_QUANTILES = (0.1, 0.5, 0.9)
MAX_HORIZON_SECONDS = 8 * 3600


class ConfigError(ContractError):
    """Raise with every problem of a configuration file, one per line."""


#: key path -> (default, meaning). The README's configuration table is generated from this.
SCHEMA: dict[str, tuple[Any, str]] = {
    "prometheus.url": (
        "http://127.0.0.1:9090",
        "Base URL of the Prometheus-compatible query API (no credentials in it: use the "
        "auth keys).",
    ),
    "prometheus.timeout": ("30s", "Timeout of one query."),
    "prometheus.bearer_token_file": (
        None,
        "File holding a bearer token sent with every query (not together with basic_auth).",
    ),
    "prometheus.basic_auth.username": (None, "Basic-auth user name."),
    "prometheus.basic_auth.password_file": (None, "File holding the basic-auth password."),
    "prometheus.ca_file": (None, "CA bundle to verify the server's TLS certificate."),
    "queries": ({}, "PromQL per LINBORG metric; unset metrics use linborg_<metric>."),
    "labels.server": ("server", "Label naming the server in query results."),
    "labels.profile": ("profile", "Label naming the profile; absent -> hostname_patterns."),
    "hostname_patterns": ([], "List of {regex, profile}, tried in order (default: conventions)."),
    "timezone": (
        "UTC",
        "IANA time zone of the fleet's business hours: the model's time features (morning "
        "spike, market hours, end of day, weekend) are computed on this clock.",
    ),
    "interval": ("5m", "How often a cycle runs."),
    "horizons": (list(DEFAULT_HORIZONS), "Forecast horizons exported (at most 8h)."),
    "quantiles": (list(DEFAULT_QUANTILES), "Quantiles exported, a subset of 0.1, 0.5, 0.9."),
    "thresholds_file": (
        None,
        "Threshold overrides in the shape of linborg/thresholds.yaml, read at start-up. Risk "
        "scores and times to breach use them, and the exporter exposes the result as "
        "linborg_threshold, which the alerts and dashboards read: this is the one place to "
        "change a threshold.",
    ),
    "model.bundle": (
        "models/default",
        "Model bundle directory. The default, where the working folder has no models/default, "
        "is the model shipped in the package.",
    ),
    "shard": ("0/1", "This replica's shard i/N of the fleet (by stable server hash)."),
    "threads": (
        "auto",
        "CPU threads for inference; auto: the CPUs this process may use (its CPU affinity, "
        "capped by the container's cgroup CPU quota), less those other processes kept busy "
        "since the last cycle, chosen again each cycle (at least 1).",
    ),
    "series_budget_per_server": (800, "Most series exported per server; the rest is dropped."),
    "state_file": (
        None,
        "File the rolling window is saved to after each cycle and read from at start, so a "
        "restarted exporter fetches only what it missed (unset: no file, a restart refills "
        "24 hours). Refused when stale or written under another configuration.",
    ),
    "max_servers": (
        20000,
        "Most servers this replica holds (about 16 KB of window each); samples of servers "
        "beyond it are not kept, and linborg_exporter_servers_over_limit counts them.",
    ),
    "cycle_deadline": (
        "4m",
        "A cycle's queries stop after this long (the rest count as failed and are fetched "
        "next cycle), so a slow Prometheus cannot make a cycle overrun the interval.",
    ),
    "api.timeout": (
        "10s",
        "Deadline of one forecast path API request (/api/v1/...): past it the request is "
        "answered 503 (errorType timeout). A request's own timeout parameter can only lower it.",
    ),
    "api.max_concurrency": (
        4,
        "Forecast path API requests evaluated at once; one more waits up to 1s for a slot, then "
        "is answered 503 (errorType unavailable). /metrics and /healthz never wait for it.",
    ),
    "api.max_samples": (
        250000,
        "Most samples (series x steps) in one forecast path API answer, which is built in the "
        "exporter's memory (about 250 bytes a sample, 1 KB a series of an instant query); a "
        "larger one is answered 422 (errorType execution).",
    ),
    "max_snapshot_age": ("15m", "Forecasts older than this are no longer exported."),
    "min_history": ("24h", "History a server needs before it is forecast."),
    "retry_backoff": (
        "15s",
        "After a failed cycle, retry after this, doubling per failure up to interval.",
    ),
}


@dataclass(frozen=True)
class Config:
    """A checked configuration."""

    prometheus_url: str = "http://127.0.0.1:9090"
    timeout_seconds: float = 30.0
    bearer_token_file: str | None = None
    basic_auth_username: str | None = None
    basic_auth_password_file: str | None = None
    ca_file: str | None = None
    queries: dict[str, str] = field(default_factory=dict)
    server_label: str = "server"
    profile_label: str = "profile"
    hostname_patterns: tuple[tuple[str, str], ...] = DEFAULT_HOSTNAME_PATTERNS
    timezone: str = "UTC"
    interval_seconds: int = 300
    horizons: tuple[str, ...] = DEFAULT_HORIZONS
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES
    thresholds_file: str | None = None
    model_bundle: str = "models/default"
    shard_index: int = 0
    shard_count: int = 1
    threads: int = field(default_factory=usable_cpus)
    #: threads: auto. Each cycle then runs inference on the usable CPUs that other processes
    #: left idle since the last cycle (linborg.cpus.inference_threads), at least one.
    threads_auto: bool = True
    series_budget_per_server: int = 800
    state_file: str | None = None
    max_servers: int = 20000
    cycle_deadline_seconds: int = 240
    api_timeout_seconds: int = 10
    api_max_concurrency: int = 4
    api_max_samples: int = 250_000
    max_snapshot_age_seconds: int = 900
    min_history_seconds: int = 86400
    retry_backoff_seconds: int = 15
    source: str = "<defaults>"

    def fingerprint(self) -> str:
        """Return a digest of what decides the window's contents (queries, labels, shard)."""
        import hashlib
        import json

        what = {
            "url": self.prometheus_url,
            "queries": {m: self.query(m) for m in METRICS_BY_NAME},
            "labels": [self.server_label, self.profile_label],
            "patterns": [list(p) for p in self.hostname_patterns],
            "shard": [self.shard_index, self.shard_count],
        }
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]

    def query(self, metric: str) -> str:
        """Return the PromQL expression of ``metric``."""
        return self.queries.get(metric, METRICS_BY_NAME[metric].wire_name)


def _flatten(doc: dict, prefix: str = "") -> dict[str, Any]:
    """Return {'a.b': value} for nested mappings; 'queries' stays one mapping."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path != "queries":
            out.update(_flatten(value, path + "."))
        else:
            out[path] = value
    return out


#: 'i/N', or 'POD/N' with POD a StatefulSet pod name: a DNS label that ends in -<ordinal>.
_SHARD = re.compile(r"(?:(?P<pod>[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)-)?(?P<i>\d+)/(?P<n>\d+)")


def parse_shard(text: str) -> tuple[int, int]:
    """Return (index, count) of 'i/N', or of 'POD/N' where the index is POD's ordinal.

    A StatefulSet names its pods <set>-0 .. <set>-<replicas-1>, so each pod started with
    `--shard=$(POD_NAME)/N` takes the shard of its ordinal (deploy/kubernetes/). A pod whose
    ordinal is not below N (more replicas than N) is refused rather than left idle.
    """
    m = _SHARD.fullmatch(str(text).strip())
    if not m or int(m.group("n")) < 1:
        raise ValueError(
            f"shard '{text}' must be i/N with 0 <= i < N (i: a number, or a StatefulSet pod "
            "name ending in -i)"
        )
    i, n = int(m.group("i")), int(m.group("n"))
    if i >= n and m.group("pod"):
        raise ValueError(
            f"shard '{text}': the ordinal {i} of pod {m.group('pod')}-{i} is not below the "
            f"shard count {n}; N must equal the StatefulSet's replicas"
        )
    if i >= n:
        raise ValueError(f"shard '{text}' must be i/N with 0 <= i < N")
    return i, n


def config_from_dict(doc: Any, source: str = "<config>") -> Config:
    """Return the Config of a parsed YAML document; raise ConfigError listing every problem."""
    problems: list[str] = []
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    flat = _flatten(doc)
    for key in flat:
        if key not in SCHEMA:
            problems.append(f"{key}: unknown key")

    def get(key: str):
        return flat.get(key, SCHEMA[key][0])

    def text(key: str, allow_none: bool = False):
        value = get(key)
        if value is None and allow_none:
            return None
        if not isinstance(value, str) or not value:
            problems.append(f"{key}: expected text, got {value!r}")
            return SCHEMA[key][0]
        return value

    def duration(key: str) -> int:
        try:
            return parse_duration(get(key))
        except ValueError as err:
            problems.append(f"{key}: {err}")
            return parse_duration(SCHEMA[key][0])

    def whole(key: str, minimum: int) -> int:
        value = get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            problems.append(f"{key}: expected a whole number >= {minimum}, got {value!r}")
            return SCHEMA[key][0]
        return value

    url = text("prometheus.url")
    if not str(url).startswith(("http://", "https://")):
        problems.append(f"prometheus.url: '{url}' must start with http:// or https://")
    for key in (
        "prometheus.bearer_token_file",
        "prometheus.basic_auth.password_file",
        "prometheus.ca_file",
    ):
        value = get(key)
        if value is not None and not Path(str(value)).is_file():
            problems.append(f"{key}: no such file {value}")
    if get("prometheus.basic_auth.password_file") and not get("prometheus.basic_auth.username"):
        problems.append("prometheus.basic_auth.password_file: set username too")
    problems += connection_problems(
        url, get("prometheus.bearer_token_file"), get("prometheus.basic_auth.username")
    )

    queries = doc.get("queries") or {}
    if not isinstance(queries, dict):
        problems.append("queries: expected a mapping of metric -> PromQL")
        queries = {}
    for metric, query in queries.items():
        if metric not in METRICS_BY_NAME:
            from linborg.contract import DEPRECATED_NAMES, deprecation_message

            why = deprecation_message(metric) if metric in DEPRECATED_NAMES else "unknown metric"
            problems.append(f"queries.{metric}: {why}")
        elif not isinstance(query, str) or not query.strip():
            problems.append(f"queries.{metric}: expected a PromQL expression")

    patterns = get("hostname_patterns") or []
    pairs: list[tuple[str, str]] = []
    if not isinstance(patterns, list):
        problems.append("hostname_patterns: expected a list of {regex, profile}")
    else:
        for i, p in enumerate(patterns):
            if not isinstance(p, dict) or set(p) != {"regex", "profile"}:
                problems.append(f"hostname_patterns[{i}]: expected {{regex, profile}}, got {p!r}")
            else:
                pairs.append((p["regex"], p["profile"]))
        try:
            ProfileMatcher(pairs)
        except ContractError as err:
            problems.extend(
                f"hostname_patterns: {line.strip()}" for line in str(err).splitlines()[1:]
            )

    tz = text("timezone")
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(tz)
    except (KeyError, ValueError, OSError):
        problems.append(f"timezone: unknown time zone '{tz}'")

    horizons = get("horizons")
    if not isinstance(horizons, list) or not horizons:
        problems.append("horizons: expected a list of durations")
        horizons = list(DEFAULT_HORIZONS)
    for h in horizons:
        try:
            seconds = parse_duration(h)
            if seconds % 300 or not 300 <= seconds <= MAX_HORIZON_SECONDS:
                problems.append(f"horizons: {h} must be a multiple of 5m between 5m and 8h")
        except ValueError as err:
            problems.append(f"horizons: {err}")
    quantiles = get("quantiles")
    if (
        not isinstance(quantiles, list)
        or not quantiles
        or any(q not in DEFAULT_QUANTILES for q in quantiles)
    ):
        problems.append(f"quantiles: must be a non-empty subset of {list(DEFAULT_QUANTILES)}")
        quantiles = list(DEFAULT_QUANTILES)

    thresholds_file = get("thresholds_file")
    if thresholds_file is not None:
        from linborg.thresholds import load_thresholds

        try:
            load_thresholds(thresholds_file)
        except ContractError as err:
            problems.append(f"thresholds_file: {err}")

    try:
        shard = parse_shard(get("shard"))
    except ValueError as err:
        problems.append(f"shard: {err}")
        shard = (0, 1)

    interval = duration("interval")
    if interval < 10:
        problems.append("interval: must be at least 10s")
    api_timeout = duration("api.timeout")
    if api_timeout < 1:
        problems.append("api.timeout: must be at least 1s")
    cfg = Config(
        prometheus_url=str(url),
        timeout_seconds=float(duration("prometheus.timeout")),
        bearer_token_file=get("prometheus.bearer_token_file"),
        basic_auth_username=get("prometheus.basic_auth.username"),
        basic_auth_password_file=get("prometheus.basic_auth.password_file"),
        ca_file=get("prometheus.ca_file"),
        queries={k: v for k, v in queries.items() if k in METRICS_BY_NAME},
        server_label=text("labels.server"),
        profile_label=text("labels.profile"),
        hostname_patterns=tuple(pairs) if pairs else DEFAULT_HOSTNAME_PATTERNS,
        timezone=tz,
        interval_seconds=interval,
        horizons=tuple(str(h) for h in horizons),
        quantiles=tuple(float(q) for q in quantiles),
        thresholds_file=thresholds_file,
        model_bundle=text("model.bundle"),
        shard_index=shard[0],
        shard_count=shard[1],
        threads=usable_cpus() if get("threads") == "auto" else whole("threads", 1),
        threads_auto=get("threads") == "auto",
        series_budget_per_server=whole("series_budget_per_server", 1),
        state_file=text("state_file", allow_none=True),
        max_servers=whole("max_servers", 1),
        cycle_deadline_seconds=duration("cycle_deadline"),
        api_timeout_seconds=api_timeout,
        api_max_concurrency=whole("api.max_concurrency", 1),
        api_max_samples=whole("api.max_samples", 1),
        max_snapshot_age_seconds=duration("max_snapshot_age"),
        min_history_seconds=duration("min_history"),
        retry_backoff_seconds=duration("retry_backoff"),
        source=source,
    )
    if problems:
        raise ConfigError(f"{source}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return cfg


def load_config(path: str | Path) -> Config:
    """Load and check a YAML configuration file."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read configuration: {err.strerror}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return config_from_dict(doc, str(path))


def load_config_thresholds(config: Config):
    """Return the thresholds the exporter runs with: the packaged ones, ``thresholds_file`` over
    them. The exporter uses them and exposes them as linborg_threshold."""
    from linborg.thresholds import load_thresholds

    return load_thresholds(*([config.thresholds_file] if config.thresholds_file else []))


def make_client(config: Config, url: str | None = None):
    """Return the PrometheusClient the configuration describes (URL, credentials, CA, timeout)."""
    from linborg.prom import PrometheusClient

    return PrometheusClient(
        url or config.prometheus_url,
        timeout=config.timeout_seconds,
        bearer_token_file=config.bearer_token_file,
        basic_auth_user=config.basic_auth_username,
        basic_auth_password_file=config.basic_auth_password_file,
        ca_file=config.ca_file,
    )


def config_table() -> str:
    """Return the Markdown table of every configuration key, its default and meaning."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for key, (default, meaning) in SCHEMA.items():
        lines.append(f"| `{key}` | `{default!r}` | {meaning} |")
    return "\n".join(lines) + "\n"
