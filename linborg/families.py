"""Every series family the exporter exposes, by the name PromQL selects it with.

The alert, recording and quality rules and the dashboards select these names from here, never
as literals, so a renamed family fails at import instead of in Prometheus. Names are the wire
names as they appear on ``/metrics``: counters with ``_total``, info metrics with ``_info``
(``prometheus_client``'s ``CounterMetricFamily`` drops a trailing ``_total`` from the name it is
given and adds it back on the wire; ``InfoMetricFamily`` adds ``_info``).
tests/test_families.py checks that ``ON_METRICS`` is exactly the set of families in the
exporter's golden ``/metrics`` text (tests/golden/metrics.txt).

The source series the exporter reads by default, ``linborg_<metric>``, are the contract's
(``linborg.contract.Metric.wire_name``), not the exporter's, and are not listed here.
Imports only the contract: importing it is cheap and has no side effects.
"""

from __future__ import annotations

from linborg.contract import NAMESPACE

# --- per server (labels server and profile, from the exporter's view of the server) ------------

#: Gauge {metric, horizon, q}: the forecast of ``metric`` for now + ``horizon`` at quantile q.
FORECAST = f"{NAMESPACE}_forecast"
#: Gauge {window, driver}: risk (0-100) of a breach within the window, and the metric driving it.
RISK_SCORE = f"{NAMESPACE}_risk_score"
#: Gauge {metric, level, q}: seconds until the forecast at q first crosses the level's
#: threshold; absent when it does not within the exporter's window.
TIME_TO_BREACH_SECONDS = f"{NAMESPACE}_time_to_breach_seconds"
#: Gauge: share of the 24-hour context present. One series per forecast server, which is why
#: dashboards join on it to learn a server's profile.
DATA_COMPLETENESS_RATIO = f"{NAMESPACE}_data_completeness_ratio"
#: Gauge {reason}: 1 for a server the exporter saw but did not forecast.
SERVER_NOT_FORECAST = f"{NAMESPACE}_server_not_forecast"

# --- the exporter itself ------------------------------------------------------------------------

#: Gauge: servers forecast in the last cycle (0 once the snapshot is too old).
SERVERS_FORECAST = f"{NAMESPACE}_servers_forecast"
#: Gauge: seconds since the last completed cycle.
SNAPSHOT_AGE_SECONDS = f"{NAMESPACE}_exporter_snapshot_age_seconds"
#: Gauge: servers whose profile fell back to generic.
PROFILE_FALLBACKS = f"{NAMESPACE}_exporter_profile_fallbacks"
#: Gauge: servers forecast by the bundle's plain-host network in the last cycle.
PLAIN_HOSTS = f"{NAMESPACE}_exporter_plain_hosts"
#: Counter: cycles started.
CYCLES_TOTAL = f"{NAMESPACE}_exporter_cycles_total"
#: Counter: cycles that got no data from Prometheus.
CYCLE_FAILURES_TOTAL = f"{NAMESPACE}_exporter_cycle_failures_total"
#: Counter: Prometheus queries due.
QUERIES_TOTAL = f"{NAMESPACE}_exporter_queries_total"
#: Counter: Prometheus queries that failed or were not sent.
QUERY_FAILURES_TOTAL = f"{NAMESPACE}_exporter_query_failures_total"
#: Counter: cycles in which the queries of some metrics failed.
PARTIAL_CYCLES_TOTAL = f"{NAMESPACE}_exporter_partial_cycles_total"
#: Counter: failed writes of the state file.
STATE_WRITE_FAILURES_TOTAL = f"{NAMESPACE}_exporter_state_write_failures_total"
#: Counter: extra series found for one server and metric (dropped).
DUPLICATE_SERIES_TOTAL = f"{NAMESPACE}_exporter_duplicate_series_total"
#: Counter: seconds spent in Prometheus queries.
QUERY_DURATION_SECONDS_TOTAL = f"{NAMESPACE}_exporter_query_duration_seconds_total"
#: Counter: bytes received from Prometheus.
RECEIVED_BYTES_TOTAL = f"{NAMESPACE}_exporter_received_bytes_total"
#: Counter: model bundles reloaded.
MODEL_RELOADS_TOTAL = f"{NAMESPACE}_model_reloads_total"
#: Counter: model reloads refused (the previous model kept serving).
MODEL_RELOAD_FAILURES_TOTAL = f"{NAMESPACE}_model_reload_failures_total"
#: Counter: NaN, infinite or out-of-range samples treated as missing.
INVALID_SAMPLES_TOTAL = f"{NAMESPACE}_exporter_invalid_samples_total"
#: Counter: forecast path API requests answered.
API_REQUESTS_TOTAL = f"{NAMESPACE}_exporter_api_requests_total"
#: Counter {reason}: forecast path API requests refused at a limit.
API_REQUESTS_REFUSED_TOTAL = f"{NAMESPACE}_exporter_api_requests_refused_total"
#: Counter {reason}: HTTP connections closed before a request was answered.
CONNECTIONS_DROPPED_TOTAL = f"{NAMESPACE}_exporter_connections_dropped_total"
#: Gauge {reason}: series of the current snapshot not exported.
SERIES_DROPPED = f"{NAMESPACE}_exporter_series_dropped"
#: Gauge: per-server series exported from the current snapshot.
SERIES = f"{NAMESPACE}_exporter_series"
#: Gauge: the most series exported per server (the series_budget_per_server setting).
SERIES_BUDGET_PER_SERVER = f"{NAMESPACE}_exporter_series_budget_per_server"
#: Gauge: servers whose samples were not kept because the window was full.
SERVERS_OVER_LIMIT = f"{NAMESPACE}_exporter_servers_over_limit"
#: Gauge {metric}: 1 for a metric whose queries failed in the last cycle.
METRIC_QUERY_FAILED = f"{NAMESPACE}_exporter_metric_query_failed"
#: Gauge: cycles failed in a row.
CONSECUTIVE_FAILURES = f"{NAMESPACE}_exporter_consecutive_failures"
#: Gauge: duration of the last cycle.
CYCLE_DURATION_SECONDS = f"{NAMESPACE}_exporter_cycle_duration_seconds"
#: Gauge: Unix time of the last cycle that produced a snapshot.
LAST_SUCCESS_TIMESTAMP_SECONDS = f"{NAMESPACE}_exporter_last_success_timestamp_seconds"
#: Gauge: CPU threads the last cycle's inference ran on.
INFERENCE_THREADS = f"{NAMESPACE}_exporter_inference_threads"
#: Gauge {profile, metric, level}: the warning or critical threshold of ``metric`` for ``profile``
#: that the exporter compares forecasts with (linborg/thresholds.yaml with its ``thresholds_file``
#: applied). The alert annotations and the dashboards' threshold lines read it, so an override
#: in the exporter's config reaches them without regenerating anything.
THRESHOLD = f"{NAMESPACE}_threshold"
#: Info {bundle, created, code_revision, contract_version, preset}: the model being served;
#: absent while no model is loaded.
MODEL_INFO = f"{NAMESPACE}_model_info"
#: Info {version, contract_version}: the exporter build.
BUILD_INFO = f"{NAMESPACE}_build_info"

#: Every family on the exporter's ``/metrics``, in the order it exposes them.
ON_METRICS: tuple[str, ...] = (
    FORECAST,
    RISK_SCORE,
    TIME_TO_BREACH_SECONDS,
    DATA_COMPLETENESS_RATIO,
    SERVER_NOT_FORECAST,
    SERVERS_FORECAST,
    SNAPSHOT_AGE_SECONDS,
    PROFILE_FALLBACKS,
    PLAIN_HOSTS,
    CYCLES_TOTAL,
    CYCLE_FAILURES_TOTAL,
    QUERIES_TOTAL,
    QUERY_FAILURES_TOTAL,
    PARTIAL_CYCLES_TOTAL,
    STATE_WRITE_FAILURES_TOTAL,
    DUPLICATE_SERIES_TOTAL,
    QUERY_DURATION_SECONDS_TOTAL,
    RECEIVED_BYTES_TOTAL,
    MODEL_RELOADS_TOTAL,
    MODEL_RELOAD_FAILURES_TOTAL,
    INVALID_SAMPLES_TOTAL,
    API_REQUESTS_TOTAL,
    API_REQUESTS_REFUSED_TOTAL,
    CONNECTIONS_DROPPED_TOTAL,
    SERIES_DROPPED,
    SERIES,
    SERIES_BUDGET_PER_SERVER,
    SERVERS_OVER_LIMIT,
    METRIC_QUERY_FAILED,
    CONSECUTIVE_FAILURES,
    CYCLE_DURATION_SECONDS,
    LAST_SUCCESS_TIMESTAMP_SECONDS,
    INFERENCE_THREADS,
    THRESHOLD,
    MODEL_INFO,
    BUILD_INFO,
)

# --- the forecast path API ----------------------------------------------------------------------

#: Series {server, profile, metric, q} of the exporter's forecast path API (/api/v1/query_range):
#: the latest forecast path with future timestamps. Not on ``/metrics`` (Prometheus cannot store
#: the future); Grafana reads it through its own data source.
FORECAST_PATH = f"{NAMESPACE}_forecast_path"
