"""The LINBORG monitoring mixin's one config: every knob of the rules and dashboards, commented.

Like the ``_config`` of kubernetes-mixin or node-mixin's config.libsonnet: the alert rules
(linborg/mixin/alert_rules.py), the forecast-quality recording rules
(linborg/mixin/quality_rules.py), the node_exporter recording rules (linborg/mixin/node_rules.py)
and the six dashboards (linborg/mixin/dashboards/) all read ``CONFIG``. Change a value here, run
``linborg rules``, ``linborg dashboards`` and ``linborg kubernetes``, and commit what they
regenerate; the drift tests fail until you do. Code that renders with other values passes overrides
to ``config()``, which refuses unknown keys.

Series family names come from linborg.families and metric names from linborg.contract; neither
is repeated here. Thresholds are not here either: the alerts and dashboards read the exporter's
``linborg_threshold`` series (linborg/thresholds.yaml with the exporter's ``thresholds_file``
applied), so a threshold changed in the exporter's config reaches them without regenerating
anything. Imports only the contract: importing it is cheap and has no side effects.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from linborg.contract import METRICS, METRICS_BY_NAME

_M = METRICS_BY_NAME  # a lookup, so a renamed metric fails here instead of in Prometheus

CONFIG: dict[str, Any] = {
    # === selectors ===============================================================================
    # PromQL label matchers of the exporter's scrape job (prometheus/prometheus.yml, and the
    # Service name under prometheus-operator). Every selector of an exporter family in the rules
    # and dashboards carries them, and the exporter-health alerts watch `up{<these>}`. The
    # exporter must be scraped with honor_labels: true (its server/profile/metric labels).
    "exporter_selector": 'job="linborg-exporter"',
    # Label matchers of the node_exporter and process-exporter series the node_exporter
    # recording rules read (e.g. 'job="node"'); empty: every such series, whichever job.
    "node_exporter_selector": "",
    "process_exporter_selector": "",
    # === links in the alerts and dashboards ======================================================
    # runbook_url of each alert: this base + "#" + the alert name in lower case, the anchor of
    # the alert's section in docs/runbooks.md. The default is that file's path in this
    # repository (it exists in every checkout and source tree; a test checks every anchor).
    # Set it to where your organisation serves the file, e.g.
    # "https://git.example.com/ops/linborg/-/blob/main/docs/runbooks.md", to get clickable
    # links in Slack, PagerDuty and Grafana; with a relative path they show as text.
    "runbook_base_url": "docs/runbooks.md",
    # Grafana's external URL, e.g. "https://grafana.example.com". When set, every alert gets a
    # dashboard_url annotation: the server detail dashboard ({grafana}/d/linborg-server
    # ?var-server=...) for per-server alerts, the exporter dashboard for exporter-health alerts.
    # None: no dashboard_url (a link to a Grafana nobody can reach is worse than none).
    "grafana_url": None,
    # Dashboard key -> UID. Grafana URLs and the alerts' dashboard_url use them; changing a UID
    # breaks every link already sent in a notification.
    "dashboard_uids": {
        "fleet": "linborg-fleet",
        "server": "linborg-server",
        "profiles": "linborg-profiles",
        "quality": "linborg-quality",
        "exporter": "linborg-exporter",
        "impact": "linborg-impact",
    },
    # === what the exporter runs with ==============================================================
    # Horizons the exporter exposes (its `horizons` setting): the alerts' annotations report the
    # worst forecast within their lead time over these, the quality rules get one rule pair per
    # horizon, and the dashboards offer them in their `horizon` variable.
    "horizons": ("30m", "1h", "2h", "4h", "8h"),
    # PromQL of each metric's actual values, by metric name: the same expressions as the
    # exporter's `queries` setting. The default is the contract's source series,
    # `linborg_<metric>`, from whichever job (the generator's, or a node_exporter-style one),
    # as the exporter reads by default; with node_exporter give e.g. the recording rules'
    # `instance:linborg_cpu_user_pct:rate5m`. Every result series must carry `server`. The
    # quality rules record them per server; the alerts quote the current value from that record.
    "actuals": {m.name: m.wire_name for m in METRICS},
    # === predicted breaches (time to breach from the exporter) ===================================
    # Critical: the p50 forecast crosses the critical threshold within this lead time.
    "critical_lead_time": "2h",
    "critical_quantile": "0.5",
    # Warning: the pessimistic forecast (p90, or p10 for cpu_idle_pct where low is bad) crosses
    # the warning threshold within this lead time. 8h is the exporter's whole window: any
    # predicted warning breach counts.
    "warning_lead_time": "8h",
    "warning_quantile": "pessimistic",
    # How long a condition must hold before the alert fires. The exporter updates every 5 min,
    # so 10m means the prediction survived at least two more cycles, 15m three.
    "for_critical": "10m",
    "for_warning": "15m",
    # === predicted incident (risk score) ==========================================================
    # Window of the risk score the incident alert reads (its `driver` becomes `metric`).
    "risk_window": "8h",
    # Risk is max over steps of P(warning) * urgency, urgency falling from 1 now to 0.6 at 8h
    # (linborg/risk.py), counted above the bundle's healthy ceiling for the profile and metric
    # when the bundle has one (`risk_calibration`, fitted by `linborg calibrate-risk`; the
    # shipped bundle has): 0 is as high as healthy servers of the profile ever scored, so any
    # positive risk is unusual for the profile. Both severities read the same 10. Chosen on the
    # dev fleet (generator seed 4242, 96 servers x 6 days, 33 scored precursor incidents; never
    # the held-out one) as the lowest of 2, 5, 10, 15, 20, 25, 30, 35 and 40 whose alerts,
    # either severity held two 15-minute checks, stay well within 1 false warning per 100
    # server-days. With the bundle shipped since 2026-12-03 (level inputs;
    # benchmarks/alert_rule_sweep.py --data out/dev.parquet): at 2, 2.29 false warnings
    # per 100 server-days and recall 0.55; at 5, 1.46 and 0.48; at 10, 0.42 and 0.48; at 15,
    # 0.42 and 0.45; at 40, 0.42 and 0.36. The bundle shipped before it had chosen 5 (0.42 and
    # 0.52 there). On the held-out fleet (scored after the choice): 0.00 and 0.50 held two
    # checks, 0.88 and 0.57 at the first check. Without a calibration the raw risk is read: a
    # p50 critical breach within 2h then scores >= 45 by construction, so 10 never vetoes it;
    # with one, the risk term vetoes a breach forecast that healthy servers of the profile
    # also get.
    # The dashboards colour risk red from here.
    "risk_critical": 10,
    # The same as critical, so critical implies warning (p50 past critical implies the
    # pessimistic quantile past warning), which the warning rule then withdraws while the
    # critical one fires. The demo's disk fill (linborg.app.stack.Script) holds the warning
    # condition at its first forecast, before disk_usage_pct crosses warning, whatever the
    # hour the demo starts (tests/test_early_warning.py); the connection leak it replaced
    # cleared 5 only about 20 minutes before its crossing, and at 07:00 UTC not before it.
    # The dashboards colour risk yellow from here.
    "risk_warning": 10,
    # Drivers that never raise an incident: uptime_days crosses its thresholds by age alone
    # (kernel patching overdue); that is a ticket, not a predicted incident.
    "incident_ignored_drivers": (_M["uptime_days"].name,),
    # === exporter health ==========================================================================
    # Severity of the exporter-health alerts: losing the forecasts loses early warnings, while
    # the reactive node alerts keep working, so nobody is woken up for it.
    "health_severity": "warning",
    # `profile` label of exporter-health alerts; `server` is the exporter's instance label, or
    # this value where there is no instance (absent()).
    "health_profile": "exporter",
    "absent_server": "exporter",
    # The exporter target is down (up == 0), or there is no target of the job at all.
    "for_exporter_down": "10m",
    "for_exporter_absent": "15m",
    # The exporter is up but serves no model (it refuses to start without one, so this means a
    # bundle was removed or failed to load on reload).
    "for_no_model": "10m",
    # Forecasts are stale when the last successful cycle is older than this. It matches the
    # exporter's default max_snapshot_age (15m), after which the exporter drops its forecasts
    # and every predicted alert above goes quiet. The exporter dashboard's snapshot age turns
    # red from here.
    "staleness_max": "15m",
    "for_stale": "5m",
    # Share of cycles that got no data from Prometheus, over the window (6 cycles in 30m).
    "cycle_failure_ratio": 0.25,
    "cycle_failure_window": "30m",
    "for_cycles_failing": "15m",
    # Share of the exporter's queries to Prometheus that failed (14 queries per cycle).
    "query_failure_ratio": 0.1,
    "query_failure_window": "10m",
    "for_queries_failing": "15m",
    # A server's forecasts are not trusted when less than this share of its 24h context exists.
    # The server dashboard's completeness turns green from here.
    "completeness_min": 0.75,
    "for_low_completeness": "30m",
    # === forecast-quality recording rules =========================================================
    # Name of the one rule group of prometheus/rules/linborg.quality.rules.yml.
    "quality_group": "linborg-forecast-quality",
    # Evaluation interval of that group. Quality moves slowly (the exporter forecasts once per
    # 5-minute step); 1m keeps the 140 per-server rules cheap and the 1h averages smooth.
    "quality_interval": "1m",
    # Window of the rolling per-profile averages; it is part of their record names.
    "quality_window": "1h",
    # === node_exporter recording rules (docs/node-exporter.md explains each) =====================
    # Name of the one rule group of prometheus/rules/node_exporter.rules.yml.
    "node_group": "linborg-node-exporter",
    # Range of every rate() (CPU modes, Java CPU, network). It is part of the record names
    # (`:rate5m`), so changing it renames those series. Keep it at least four scrape intervals.
    "node_rate_window": "5m",
    # Regex cutting `server` out of `instance` (Prometheus anchors it): the host without
    # `:port` and IPv6 brackets; `ppml0001:9100` -> `ppml0001`, `[::1]:9100` -> `::1`.
    "node_server_from_instance": r"\[?(.+?)\]?(?::[0-9]+)?",
    # node_cpu_seconds_total modes (regex over `mode`) summed into each CPU metric, as a share
    # of all CPU time. They cover every mode node_exporter reports on Linux, so the four add up
    # to 100 as in the training data: nice is user-space time, irq and softirq are kernel time
    # (as in `sar -u`), and steal (time the hypervisor gave to others) counts as idle.
    "node_cpu_modes": {
        _M["cpu_user_pct"].name: "user|nice",
        _M["cpu_sys_pct"].name: "system|irq|softirq",
        _M["cpu_iowait_pct"].name: "iowait",
        _M["cpu_idle_pct"].name: "idle|steal",
    },
    # Mount point whose usage is disk_usage_pct, exactly as node_exporter reports it. Run
    # node_exporter with `--path.rootfs=/host` in a container so that `/` is the host's root.
    "node_disk_mountpoint": "/",
    # File system types never taken as the data disk (regex over `fstype`). overlay is the
    # container's own view, not the host's disk.
    "node_disk_fstype_exclude": "tmpfs|ramfs|devtmpfs|overlay|squashfs|nsfs|autofs|fuse.lxcfs",
    # Network devices left out of net_in_mb_s and net_out_mb_s (regex over `device`): loopback,
    # and virtual devices whose traffic also crosses a physical one (container and VM bridges,
    # overlays, tunnels, ifb shaping mirrors). Add bond members (or the bond) here.
    "node_net_device_exclude": (
        "lo|veth.*|docker.*|br-.*|virbr.*|cali.*|flannel.*|cni.*|vxlan.*|kube-.*|ifb.*|tun.*"
        "|tap.*|wg.*"
    ),
    # process-exporter (ncabatoff/process-exporter) name groups counted as Java (regex over
    # `groupname`); java_cpu_pct is absent where no such group is scraped.
    "node_java_groupname_regex": ".*java.*",
    # process-exporter CPU modes counted (regex over `mode`). "user" keeps java_cpu_pct a part
    # of cpu_user_pct, as the contract says; "user|system" adds the JVM's kernel time.
    "node_java_cpu_modes": "user",
    # LINBORG metrics that get the host's total of CLOSE_WAIT sockets. node_exporter's tcpstat
    # collector cannot tell client from backend connections, so one metric gets the total and
    # the other stays absent (missing) instead of double-counting. tcpstat leaves out states
    # with no sockets; the rule reads that as 0 while tcpstat reports any state, and as absent
    # without it.
    "node_close_wait_metrics": (_M["front_close_wait"].name,),
    # === dashboards ===============================================================================
    # UIDs of the provisioned data sources (grafana/provisioning/datasources/linborg.yml and
    # deploy/kubernetes/base/grafana-datasource.yaml): Prometheus, and the exporter's forecast
    # path API, which only the forecast fans read.
    "prometheus_datasource_uid": "linborg-prometheus",
    "forecasts_datasource_uid": "linborg-forecasts",
    # Every dashboard has a data source variable of this name, defaulting to the Prometheus
    # UID above; every panel but the forecast fans reads from it.
    "datasource_variable": "datasource",
    # Tags of every dashboard (the link menu at the top of each one lists the others by tag).
    "dashboard_tags": ("linborg",),
    # Auto-refresh of every dashboard. The exporter forecasts once per 5-minute step.
    "dashboard_refresh": "1m",
    # Horizon selected on the server and quality dashboards when they open.
    "default_horizon": "1h",
    # Metric selected on the profiles and quality dashboards when they open.
    "default_metric": _M["mem_used_pct"].name,
    # The server dashboard shows the past 6 hours and, for the forecast fans, the next 8: every
    # panel shares this x axis, so the fan continues where the actuals end.
    "server_time": ("now-6h", "now+8h"),
    # Relative time of the server dashboard's instant-query tables. Grafana runs an instant
    # query at the end of the panel's time range, which is now+8h on that dashboard, where
    # Prometheus has nothing; with this override the panel's range ends now.
    "server_instant_time": "1h",
    # Servers listed in the fleet dashboard's "top at-risk" table.
    "top_servers": 20,
    # Cost of one incident that was not prevented (the Impact dashboard's default; a textbox).
    "cost_per_incident": "50000",
}

#: A label matcher list as the selectors above take it: name, operator, quoted value, ...
_MATCHERS = re.compile(
    r'^\s*(?:[a-zA-Z_]\w*\s*(?:=|!=|=~|!~)\s*"[^"\\\']*"\s*'
    r'(?:,\s*[a-zA-Z_]\w*\s*(?:=|!=|=~|!~)\s*"[^"\\\']*"\s*)*)?$'
)
_SELECTORS = ("exporter_selector", "node_exporter_selector", "process_exporter_selector")


def config(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return CONFIG with ``overrides`` applied; refuse unknown keys and malformed selectors."""
    cfg = {**CONFIG, **(overrides or {})}
    unknown = set(cfg) - set(CONFIG)
    if unknown:
        raise KeyError(f"unknown mixin settings: {', '.join(sorted(unknown))}")
    for key in _SELECTORS:
        # Quotes in values are refused: the alert annotations embed the selectors in Go
        # template strings (with single quotes), and a test names each series' matchers.
        if not _MATCHERS.match(cfg[key]):
            raise ValueError(f'{key}: {cfg[key]!r} is not a list of matchers like job="x"')
    if not cfg["exporter_selector"].strip():
        raise ValueError("exporter_selector: empty; the exporter-health alerts need its job")
    return cfg


def selector(name: str, matchers: str, **labels: str) -> str:
    """Return ``name{<matchers>, k="v", ...}``; a value starting with '=~' or '!~' is a regex.

    ``matchers`` is one of the config's selectors; without matchers or labels, ``name`` alone.
    """
    parts = [matchers.strip()] if matchers.strip() else []
    for key, value in labels.items():
        op = "="
        if value[:2] in ("=~", "!~"):
            op, value = value[:2], value[2:]
        parts.append(f'{key}{op}"{value}"')
    return f"{name}{{{', '.join(parts)}}}" if parts else name


def exporter(name: str, cfg: Mapping[str, Any], **labels: str) -> str:
    """Return a selector of the exporter family ``name`` (linborg.families) in ``cfg``'s job."""
    return selector(name, cfg["exporter_selector"], **labels)


def runbook_url(cfg: Mapping[str, Any], alertname: str) -> str:
    """Return the runbook link of an alert: the base URL and its section's anchor."""
    return f"{cfg['runbook_base_url']}#{alertname.lower()}"


def is_absolute(url: str) -> bool:
    """Return whether ``url`` is an absolute http(s) URL (a link), not a path in the repo."""
    return url.startswith(("http://", "https://"))


def dashboard_url(cfg: Mapping[str, Any], key: str, query: str = "") -> str | None:
    """Return the Grafana URL of a dashboard, or None where no ``grafana_url`` is configured."""
    if not cfg["grafana_url"]:
        return None
    url = f"{cfg['grafana_url'].rstrip('/')}/d/{cfg['dashboard_uids'][key]}"
    return f"{url}?{query}" if query else url
