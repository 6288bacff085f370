"""The six LINBORG Grafana dashboards as code (grafanalib); ``linborg dashboards`` writes them.

``render_all()`` returns ``{"<uid>.json": text}`` with deterministic JSON (sorted keys, indent 2,
panel ids numbered in layout order); the files are committed under grafana/dashboards/ and
tests/test_dashboards.py regenerates them into an empty folder and compares file set and bytes.
``panel_queries()`` lists every panel query with the template variables filled in, for tests
that run them against a real Prometheus.

Every metric name comes from linborg.contract, every threshold from linborg/thresholds.yaml,
every dashboard UID from linborg.dashboards, the alert names and runbook links from
linborg.alert_rules, the quality series from linborg.quality_rules and the routing matrix from
alertmanager/README.md. grafana/README.md describes the dashboards.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attr
from grafanalib import core as G
from grafanalib._gen import DashboardEncoder

from linborg import alert_rules, quality_rules
from linborg.contract import METRIC_NAMES, METRICS, METRICS_BY_NAME, PROFILE_NAMES, Metric
from linborg.dashboards import DASHBOARD_UIDS
from linborg.thresholds import LEVELS, Thresholds, load_thresholds

ROOT = Path(__file__).resolve().parent.parent

# --- knobs: change them here, run `linborg dashboards`, commit the regenerated JSON ------------

#: UIDs of the provisioned data sources (grafana/provisioning/datasources/linborg.yml).
PROMETHEUS_UID = "linborg-prometheus"
FORECASTS_UID = "linborg-forecasts"
#: Every dashboard has a data source variable of this name, defaulting to PROMETHEUS_UID; every
#: panel but the forecast fans reads from it. The fans read the exporter's forecast path API.
DATASOURCE_VAR = "datasource"
#: Tags of every dashboard (the dashboard links at the top of each one follow this tag).
TAGS = ["linborg"]
#: Auto-refresh of every dashboard. The exporter forecasts once per 5-minute step.
REFRESH = "1m"
#: Horizons the exporter exposes (its `horizons` setting), as in the quality rules.
HORIZONS: tuple[str, ...] = tuple(quality_rules.CONFIG["horizons"])
#: Horizon selected on the server and quality dashboards when they open.
DEFAULT_HORIZON = "1h"
#: Metric selected on the profiles and quality dashboards when they open.
DEFAULT_METRIC = METRICS_BY_NAME["mem_used_pct"].name
#: The server dashboard shows the past 6 hours and, for the forecast fans, the next 8: every
#: panel shares this x axis, so the fan continues where the actuals end.
SERVER_TIME = ("now-6h", "now+8h")
#: Relative time of the server dashboard's instant-query tables. Grafana runs an instant query
#: at the end of the panel's time range, which is now+8h on that dashboard, where Prometheus
#: has nothing; with this override the panel's range ends now.
SERVER_INSTANT_TIME = "1h"
#: Cost of one incident that was not prevented (the Impact dashboard's default; a textbox).
COST_PER_INCIDENT = "50000"
#: Servers listed in the fleet dashboard's "top at-risk" table.
TOP_SERVERS = 20
#: Threshold files the exporter runs with besides the packaged one (its `thresholds_file`);
#: they set the warning and critical lines of the server dashboard.
THRESHOLDS_FILES: tuple[str, ...] = ()
#: Source of the routing matrix shown on the Impact dashboard (its "## Routing matrix" table).
ALERTMANAGER_README = ROOT / "alertmanager" / "README.md"
#: Values put in for the template variables by ``panel_queries()`` unless told otherwise.
SAMPLE_VALUES: dict[str, str] = {
    DATASOURCE_VAR: PROMETHEUS_UID,
    "server": "ppml0001",
    "horizon": DEFAULT_HORIZON,
    "metric": DEFAULT_METRIC,
    "profile": PROFILE_NAMES[0],
    "cost_per_incident": COST_PER_INCIDENT,
    "__range": "1h",
    "__rate_interval": "1m",
    "__interval": "1m",
}

# --- names -------------------------------------------------------------------------------------

EXPORTER_JOB = alert_rules.CONFIG["exporter_job"]
#: The series of the exporter's forecast path API (future timestamps; FORECASTS_UID only).
FORECAST_PATH = "linborg_forecast_path"
#: One series per forecast server with its server and profile (the exporter's view of the
#: profile); the server dashboard's threshold lines use it to find the server's profile.
PER_SERVER = "linborg_data_completeness_ratio"
INCIDENT = alert_rules.INCIDENT
PREDICTED_ALERTS = 'alertname=~"Linborg.*Predicted.*|LinborgPredictedIncident"'
CPU_IDLE = METRICS_BY_NAME["cpu_idle_pct"]
IOWAIT = METRICS_BY_NAME["cpu_iowait_pct"]
Q_LOW, Q_MID, Q_HIGH = "0.1", "0.5", "0.9"

_UNITS = {
    "percent": "percent",
    "megabytes per second": "MBs",
    "connections": "short",
    "processes": "short",
    "days": "d",
}


def _unit(m: Metric) -> str:
    return _UNITS.get(m.unit, "short")


# --- small builders ----------------------------------------------------------------------------


def _ds(uid: str) -> dict[str, str]:
    return {"type": "prometheus", "uid": uid}


PROM = _ds(f"${{{DATASOURCE_VAR}}}")
FORECASTS = _ds(FORECASTS_UID)
BASE_STEPS = [{"color": "green", "value": None}]


@attr.s
class Target(G.Target):
    """A Prometheus query that says whether it is a range or an instant query."""

    def to_json_data(self):
        data = super().to_json_data()
        data["range"] = not self.instant
        data["editorMode"] = "code"
        return data


@attr.s
class StatusHistory(G.Panel):
    """Grafana's status history panel: one row per series, coloured by value over time."""

    unit = attr.ib(default="")
    rowHeight = attr.ib(default=0.9)

    def to_json_data(self):
        return self.panel_json(
            {
                "type": "status-history",
                "fieldConfig": {
                    "defaults": {
                        "color": {"mode": "thresholds"},
                        "custom": {"fillOpacity": 80, "lineWidth": 0},
                        "unit": self.unit,
                    },
                    "overrides": [],
                },
                "options": {
                    "rowHeight": self.rowHeight,
                    "showValue": "never",
                    "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "single", "sort": "none"},
                },
            }
        )


def _queries(targets: list[tuple], ds: dict) -> list[Target]:
    """Return targets from (expr, legend[, kind]) tuples; kind: "range", "instant" or "table"."""
    out = []
    for i, spec in enumerate(targets):
        expr, legend, kind = (*spec, "range")[:3]
        out.append(
            Target(
                expr=expr,
                legendFormat=legend,
                refId=chr(ord("A") + i),
                instant=kind != "range",
                format="table" if kind == "table" else "time_series",
                intervalFactor=1,
                datasource=ds,
            )
        )
    return out


def _timeseries(title, targets, unit="", ds=PROM, description=None, **kw) -> G.TimeSeries:
    kw.setdefault("legendDisplayMode", "list")
    kw.setdefault("tooltipMode", "multi")
    return G.TimeSeries(
        title=title,
        description=description,
        dataSource=ds,
        targets=_queries(targets, ds),
        unit=unit,
        thresholds=BASE_STEPS,
        **kw,
    )


def _stat(title, targets, unit="none", description=None, steps=None, **kw) -> G.Stat:
    return G.Stat(
        title=title,
        description=description,
        dataSource=PROM,
        targets=_queries(targets, PROM),
        format=unit,
        reduceCalc="lastNotNull",
        thresholds=steps or BASE_STEPS,
        graphMode=kw.pop("graphMode", "area"),
        noValue=kw.pop("noValue", "no data"),
        color={"mode": "thresholds"},
        **kw,
    )


def _table(title, targets, description=None, **kw) -> G.Table:
    return G.Table(
        title=title,
        description=description,
        dataSource=PROM,
        targets=_queries([(e, lg, "table") for e, lg in targets], PROM),
        thresholds=BASE_STEPS,
        **kw,
    )


def _text(title: str, content: str) -> G.Text:
    return G.Text(title=title, content=content, mode="markdown", dataSource=PROM)


def _row(title: str) -> G.RowPanel:
    return G.RowPanel(title=title, dataSource=PROM)


def _override(name: str, **props: Any) -> dict:
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": k.replace("__", "."), "value": v} for k, v in props.items()],
    }


def _fixed(color: str) -> dict:
    return {"mode": "fixed", "fixedColor": color}


DASHED = {"fill": "dash", "dash": [10, 10]}


def _band_overrides(mid: str = "p50") -> list[dict]:
    """Return overrides filling between the p10 and p90 series and colouring the quantiles."""
    return [
        _override(
            "p90",
            custom__fillBelowTo="p10",
            custom__fillOpacity=20,
            custom__lineWidth=0,
            color=_fixed("blue"),
        ),
        _override("p10", custom__lineWidth=0, color=_fixed("blue")),
        _override(mid, color=_fixed("blue")),
        _override("actual", color=_fixed("green"), custom__lineWidth=2),
        _override("warning", color=_fixed("orange"), custom__lineStyle=DASHED),
        _override("critical", color=_fixed("red"), custom__lineStyle=DASHED),
    ]


def _var_datasource() -> G.Template:
    return G.Template(
        name=DATASOURCE_VAR,
        label="Data source",
        query="prometheus",
        type="datasource",
        default=PROMETHEUS_UID,
    )


def _var_query(name: str, query: str, label: str, **kw) -> G.Template:
    return G.Template(name=name, label=label, query=query, dataSource=PROM, refresh=2, sort=1, **kw)


def _var_custom(name: str, values, default: str, label: str) -> G.Template:
    return G.Template(
        name=name, label=label, query=",".join(values), type="custom", default=default
    )


def _layout(items: list) -> list:
    """Place panels left to right in lines of 24 columns and number them in that order.

    ``items`` holds rows (placed on a line of their own) and (panel, width, height) tuples.
    """
    placed = []
    x = y = line_h = 0
    for item in items:
        if isinstance(item, G.RowPanel):
            y += line_h
            x = line_h = 0
            placed.append(attr.evolve(item, gridPos=G.GridPos(h=1, w=24, x=0, y=y)))
            y += 1
            continue
        panel, w, h = item
        if x + w > 24:
            y += line_h
            x = line_h = 0
        placed.append(attr.evolve(panel, gridPos=G.GridPos(h=h, w=w, x=x, y=y)))
        x += w
        line_h = max(line_h, h)
    return [attr.evolve(p, id=i) for i, p in enumerate(placed, start=1)]


def _dashboard(key: str, title: str, description: str, items: list, variables, **kw):
    return G.Dashboard(
        title=title,
        uid=DASHBOARD_UIDS[key],
        description=description,
        tags=list(TAGS),
        timezone="browser",
        refresh=REFRESH,
        editable=False,
        graphTooltip=1,
        panels=_layout(items),
        templating=G.Templating([_var_datasource(), *variables]),
        links=[
            {
                "type": "dashboards",
                "tags": list(TAGS),
                "asDropdown": True,
                "title": "LINBORG",
                "includeVars": False,
                "keepTime": True,
            }
        ],
        **kw,
    )


def _server_link(title: str = "Server detail") -> list[dict]:
    """Return a data link to the server dashboard for the clicked row's server."""
    return [
        {
            "title": title,
            "url": f"/d/{DASHBOARD_UIDS['server']}?var-server=${{__data.fields.server}}",
        }
    ]


# --- thresholds --------------------------------------------------------------------------------


def threshold_expr(metric: str, level: str, thresholds: Thresholds) -> str:
    """Return PromQL giving the ``level`` threshold of ``metric`` for the profile of $server.

    One term per distinct value: ``vector(value)`` kept only while the selected server belongs to
    one of the profiles with that value (``and on ()`` a series of the server with that profile).
    Exactly one term matches, so the line follows the exporter's profile of the server.
    """
    by_value: dict[float, list[str]] = {}
    for profile in PROFILE_NAMES:
        t = thresholds.get(profile, metric)
        by_value.setdefault(t.warning if level == "warning" else t.critical, []).append(profile)
    terms = [
        f'(vector({value:g}) and on () {PER_SERVER}{{server="$server", profile=~"{"|".join(ps)}"}})'
        for value, ps in by_value.items()
    ]
    return "\nor ".join(terms)


def _threshold_targets(metric: str, thresholds: Thresholds) -> list[tuple]:
    return [(threshold_expr(metric, level, thresholds), level) for level in LEVELS]


# --- fleet -------------------------------------------------------------------------------------


def fleet() -> G.Dashboard:
    """Return the fleet overview: where is risk now, and which predicted incidents fire."""
    risk = 'max by (server, profile, driver) (linborg_risk_score{window="8h"})'
    top = f"topk({TOP_SERVERS}, {risk})"
    items = [
        (_stat("Servers forecast", [("sum(linborg_servers_forecast)", "")]), 4, 4),
        (
            _stat(
                "Servers not forecast",
                [("count(linborg_server_not_forecast) or vector(0)", "")],
                description="Servers the exporter saw but did not forecast (see Profiles).",
            ),
            4,
            4,
        ),
        (
            _stat(
                "Predicted incidents firing",
                [(f'count(ALERTS{{{PREDICTED_ALERTS}, alertstate="firing"}}) or vector(0)', "")],
                steps=[*BASE_STEPS, {"color": "red", "value": 1}],
            ),
            4,
            4,
        ),
        (
            _stat(
                "Fleet CPU used",
                [(f"100 - avg({CPU_IDLE.wire_name})", "")],
                unit="percent",
                description="100 - average cpu_idle_pct over every server.",
            ),
            4,
            4,
        ),
        (
            _timeseries(
                "CPU used by profile",
                [(f"100 - avg by (profile) ({CPU_IDLE.wire_name})", "{{profile}}")],
                unit="percent",
            ),
            8,
            4,
        ),
        (
            StatusHistory(
                title="Risk (8h window) by server",
                description="One row per server, coloured by its 8h risk score (0-100).",
                dataSource=PROM,
                targets=_queries(
                    [('max by (server) (linborg_risk_score{window="8h"})', "{{server}}")], PROM
                ),
                unit="none",
                thresholds=[
                    *BASE_STEPS,
                    {"color": "yellow", "value": alert_rules.CONFIG["risk_warning"]},
                    {"color": "red", "value": alert_rules.CONFIG["risk_critical"]},
                ],
                maxDataPoints=200,
            ),
            24,
            12,
        ),
        (
            _table(
                f"Top {TOP_SERVERS} servers at risk",
                [
                    (top, ""),
                    (
                        'min by (server) (linborg_time_to_breach_seconds{q="0.5"})\n'
                        f"and on (server) {top}",
                        "",
                    ),
                ],
                description="Risk in the 8h window, the metric driving it, and the time until "
                "the p50 forecast first crosses any threshold.",
                transformations=[
                    {"id": "merge", "options": {}},
                    {
                        "id": "organize",
                        "options": {
                            "excludeByName": {"Time": True},
                            "indexByName": {
                                "server": 0,
                                "profile": 1,
                                "Value #A": 2,
                                "driver": 3,
                                "Value #B": 4,
                            },
                            "renameByName": {
                                "Value #A": "risk",
                                "Value #B": "predicted time to breach",
                            },
                        },
                    },
                ],
                sortBy=[G.TableSortByField(displayName="risk", desc=True)],
                overrides=[
                    _override("predicted time to breach", unit="s"),
                    _override("server", links=_server_link()),
                ],
            ),
            12,
            10,
        ),
        (
            _table(
                "Alerts firing by profile and severity",
                [
                    (
                        'count by (profile, severity) (ALERTS{alertname=~"Linborg.*", '
                        'alertstate="firing"})',
                        "",
                    )
                ],
                transformations=[
                    {
                        "id": "groupingToMatrix",
                        "options": {
                            "columnField": "severity",
                            "rowField": "profile",
                            "valueField": "Value",
                        },
                    }
                ],
            ),
            12,
            10,
        ),
        (
            _table(
                "Predicted-incident alerts firing now",
                [(f'ALERTS{{{PREDICTED_ALERTS}, alertstate="firing"}}', "")],
                transformations=[
                    {
                        "id": "organize",
                        "options": {
                            "excludeByName": {
                                "Time": True,
                                "Value": True,
                                "__name__": True,
                                "alertstate": True,
                                "job": True,
                                "instance": True,
                            }
                        },
                    }
                ],
                overrides=[_override("server", links=_server_link())],
            ),
            24,
            8,
        ),
    ]
    return _dashboard(
        "fleet",
        "LINBORG / Fleet overview",
        "Risk across the fleet, the servers most at risk and the predicted incidents firing.",
        items,
        [],
        time=G.Time("now-12h", "now"),
    )


# --- server ------------------------------------------------------------------------------------


def _metric_panels(m: Metric, thresholds: Thresholds) -> list:
    sel = f'server="$server", metric="{m.name}"'
    forecast = [
        (f'linborg_forecast{{{sel}, horizon="$horizon", q="{q}"}} offset $horizon', f"p{q[2:]}0")
        for q in (Q_LOW, Q_MID, Q_HIGH)
    ]
    fan = [(f'{FORECAST_PATH}{{{sel}, q="{q}"}}', f"p{q[2:]}0") for q in (Q_LOW, Q_MID, Q_HIGH)]
    return [
        _row(f"{m.name} ({m.unit}, worse when {m.direction})"),
        (
            _timeseries(
                f"{m.name}: actual and the forecast issued $horizon earlier",
                [
                    (f'{m.wire_name}{{server="$server"}}', "actual"),
                    *forecast,
                    *_threshold_targets(m.name, thresholds),
                ],
                unit=_unit(m),
                description=f"{m.help} The band is p10-p90 of the forecast made one horizon "
                "before each point; dashed lines are the warning and critical thresholds of "
                "the server's profile.",
                overrides=_band_overrides(),
            ),
            12,
            8,
        ),
        (
            _timeseries(
                f"{m.name}: forecast fan, next 8h",
                fan,
                unit=_unit(m),
                ds=FORECASTS,
                description="The latest forecast path from the exporter (future timestamps), "
                "p10-p90 band around p50.",
                overrides=_band_overrides(),
            ),
            12,
            8,
        ),
    ]


def server(thresholds: Thresholds) -> G.Dashboard:
    """Return the server detail: actuals against forecasts and thresholds, metric by metric."""
    items: list = [
        _row("Summary"),
        (
            _stat(
                "Risk by window",
                [('max by (window) (linborg_risk_score{server="$server"})', "{{window}}")],
                steps=[
                    *BASE_STEPS,
                    {"color": "yellow", "value": alert_rules.CONFIG["risk_warning"]},
                    {"color": "red", "value": alert_rules.CONFIG["risk_critical"]},
                ],
            ),
            6,
            5,
        ),
        (
            _stat(
                "Data completeness",
                [(f'{PER_SERVER}{{server="$server"}}', "")],
                unit="percentunit",
                description="Share of the 24-hour context the model read.",
                steps=[
                    {"color": "red", "value": None},
                    {"color": "green", "value": alert_rules.CONFIG["completeness_min"]},
                ],
            ),
            4,
            5,
        ),
        (
            _stat(
                "CPU used",
                [(f'100 - {CPU_IDLE.wire_name}{{server="$server"}}', "")],
                unit="percent",
                description="100 - cpu_idle_pct.",
            ),
            4,
            5,
        ),
        (
            _stat(
                "Not forecast because",
                [('linborg_server_not_forecast{server="$server"}', "{{reason}}")],
                textMode="name",
                graphMode="none",
                noValue="forecast",
            ),
            4,
            5,
        ),
        (
            _table(
                "Time to breach",
                [
                    (
                        "min by (metric, level, q) "
                        '(linborg_time_to_breach_seconds{server="$server"})',
                        "",
                    )
                ],
                description="Seconds until the forecast at q first crosses the level; absent "
                "when it does not within 8h.",
                timeFrom=SERVER_INSTANT_TIME,
                transformations=[
                    {"id": "organize", "options": {"excludeByName": {"Time": True}}},
                ],
                sortBy=[G.TableSortByField(displayName="Value", desc=False)],
                overrides=[_override("Value", unit="s", displayName="time to breach")],
            ),
            6,
            5,
        ),
        (
            _timeseries(
                "I/O wait against this profile's thresholds",
                [
                    (f'{IOWAIT.wire_name}{{server="$server"}}', "actual"),
                    (
                        f'linborg_forecast{{server="$server", metric="{IOWAIT.name}", '
                        f'horizon="$horizon", q="{Q_MID}"}} offset $horizon',
                        "p50",
                    ),
                    *_threshold_targets(IOWAIT.name, thresholds),
                ],
                unit=_unit(IOWAIT),
                description="The thresholds follow the server's profile (from "
                "linborg/thresholds.yaml): a database at 15% is normal, an ml_compute worker "
                "at 5% is critical.",
                overrides=_band_overrides(),
            ),
            24,
            7,
        ),
    ]
    for m in METRICS:
        items += _metric_panels(m, thresholds)
    return _dashboard(
        "server",
        "LINBORG / Server detail",
        "One server: risk, time to breach, completeness, and each metric's actuals beside the "
        "forecast issued one horizon earlier and the forecast fan for the next 8 hours.",
        items,
        [
            _var_query("server", "label_values(linborg_risk_score, server)", "Server"),
            _var_custom("horizon", HORIZONS, DEFAULT_HORIZON, "Horizon"),
        ],
        time=G.Time(*SERVER_TIME),
    )


# --- profiles ----------------------------------------------------------------------------------


def _with_profile(expr: str) -> str:
    """Return ``expr`` (one value per server) with the exporter's ``profile`` of each server."""
    return (
        f"max by (server) ({expr})\n"
        f"* on (server) group_left (profile)\n"
        f"max by (server, profile) ({PER_SERVER} * 0 + 1)"
    )


def profiles() -> G.Dashboard:
    """Return the profiles dashboard: risk and metric distributions, and new servers."""
    risk = 'max by (server, profile) (linborg_risk_score{window="8h"})'
    actual = _with_profile("linborg_$metric")
    items = [
        (
            _stat(
                "Servers forecast per profile",
                [(f"count by (profile) ({PER_SERVER})", "{{profile}}")],
                graphMode="none",
            ),
            16,
            4,
        ),
        (
            _stat(
                "Profile fell back to generic",
                [("sum(linborg_exporter_profile_fallbacks)", "")],
                description="Servers whose hostname matched no pattern and had no profile label.",
                graphMode="none",
            ),
            8,
            4,
        ),
        (
            _timeseries(
                "Risk (8h) by profile: median",
                [(f"quantile by (profile) (0.5, {risk})", "{{profile}}")],
            ),
            8,
            8,
        ),
        (
            _timeseries(
                "Risk (8h) by profile: p90",
                [(f"quantile by (profile) (0.9, {risk})", "{{profile}}")],
            ),
            8,
            8,
        ),
        (
            G.Histogram(
                title="Risk (8h) now, distribution over servers",
                dataSource=PROM,
                targets=_queries([(risk, "{{profile}} {{server}}", "instant")], PROM),
                combine=True,
                bucketSize=5,
                thresholds=BASE_STEPS,
            ),
            8,
            8,
        ),
        (
            _timeseries(
                "$metric by profile: median",
                [(f"quantile by (profile) (0.5, {actual})", "{{profile}}")],
            ),
            12,
            8,
        ),
        (
            _timeseries(
                "$metric by profile: p90",
                [(f"quantile by (profile) (0.9, {actual})", "{{profile}}")],
            ),
            12,
            8,
        ),
        (
            _table(
                "Servers recently added (too little history to forecast)",
                [('linborg_server_not_forecast{reason="too_little_history"}', "")],
                transformations=[
                    {
                        "id": "organize",
                        "options": {
                            "excludeByName": {
                                "Time": True,
                                "Value": True,
                                "__name__": True,
                                "job": True,
                                "instance": True,
                            }
                        },
                    }
                ],
            ),
            12,
            8,
        ),
        (
            _table(
                "Servers with incomplete history",
                [(f"{PER_SERVER} < 1", "")],
                description="Share of the 24-hour context present; a server added less than a "
                "day ago shows how far it has come.",
                transformations=[
                    {
                        "id": "organize",
                        "options": {
                            "excludeByName": {
                                "Time": True,
                                "__name__": True,
                                "job": True,
                                "instance": True,
                            },
                            "renameByName": {"Value": "completeness"},
                        },
                    }
                ],
                sortBy=[G.TableSortByField(displayName="completeness", desc=False)],
                overrides=[
                    _override("completeness", unit="percentunit"),
                    _override("server", links=_server_link()),
                ],
            ),
            12,
            8,
        ),
    ]
    return _dashboard(
        "profiles",
        "LINBORG / Profiles",
        "Risk and metric distributions per profile, and the servers not forecast yet.",
        items,
        [_var_custom("metric", METRIC_NAMES, DEFAULT_METRIC, "Metric")],
        time=G.Time("now-24h", "now"),
    )


# --- quality -----------------------------------------------------------------------------------


def quality() -> G.Dashboard:
    """Return the forecast quality dashboard, from the recording rules of linborg.quality_rules."""
    mae, cov = quality_rules.mae_record(), quality_rules.coverage_record()
    nominal = float(Q_HIGH) - float(Q_LOW)
    sel = 'metric="$metric", profile=~"$profile"'
    items = [
        (
            _text(
                "How to read this",
                f"Each forecast is compared with what happened one horizon later. **Error**: "
                f"mean absolute error of the p50 forecast over the last "
                f"{quality_rules.CONFIG['window']}, in the metric's unit. **Coverage**: share of "
                f"servers and minutes whose actual fell between p10 and p90; a calibrated "
                f"model keeps it near {nominal:g}. Recording rules: "
                f"`prometheus/rules/linborg.quality.rules.yml`.",
            ),
            24,
            3,
        ),
        (
            _timeseries(
                "$metric: mean absolute error by horizon",
                [(f"avg by (horizon) ({mae}{{{sel}}})", "{{horizon}}")],
                description="In the metric's own unit.",
            ),
            12,
            8,
        ),
        (
            _timeseries(
                "$metric: p10-p90 coverage by horizon",
                [
                    (f"avg by (horizon) ({cov}{{{sel}}})", "{{horizon}}"),
                    (f"vector({nominal:g})", "nominal"),
                ],
                unit="percentunit",
                overrides=[_override("nominal", color=_fixed("gray"), custom__lineStyle=DASHED)],
            ),
            12,
            8,
        ),
        (
            _timeseries(
                "$metric, horizon $horizon: mean absolute error by profile",
                [(f'{mae}{{{sel}, horizon="$horizon"}}', "{{profile}}")],
            ),
            12,
            8,
        ),
        (
            _timeseries(
                "$metric, horizon $horizon: coverage by profile",
                [(f'{cov}{{{sel}, horizon="$horizon"}}', "{{profile}}")],
                unit="percentunit",
            ),
            12,
            8,
        ),
        (
            _table(
                "Coverage now, every metric and horizon",
                [(f'avg by (metric, horizon) ({cov}{{profile=~"$profile"}})', "")],
                transformations=[
                    {
                        "id": "groupingToMatrix",
                        "options": {
                            "columnField": "horizon",
                            "rowField": "metric",
                            "valueField": "Value",
                        },
                    }
                ],
                unit="percentunit",
            ),
            12,
            10,
        ),
        (
            _table(
                "$metric, horizon $horizon: servers with the largest error",
                [
                    (
                        f"topk(20, avg_over_time({quality_rules.ABS_ERROR}"
                        f'{{{sel}, horizon="$horizon"}}[{quality_rules.CONFIG["window"]}]))',
                        "",
                    )
                ],
                transformations=[
                    {
                        "id": "organize",
                        "options": {
                            "excludeByName": {"Time": True},
                            "renameByName": {"Value": "mean absolute error"},
                        },
                    }
                ],
                sortBy=[G.TableSortByField(displayName="mean absolute error", desc=True)],
                overrides=[_override("server", links=_server_link())],
            ),
            12,
            10,
        ),
    ]
    return _dashboard(
        "quality",
        "LINBORG / Forecast quality",
        "How far the forecasts were from what happened, per metric, profile and horizon.",
        items,
        [
            _var_custom("metric", METRIC_NAMES, DEFAULT_METRIC, "Metric"),
            _var_custom("horizon", HORIZONS, DEFAULT_HORIZON, "Horizon"),
            _var_query(
                "profile",
                f"label_values({mae}, profile)",
                "Profile",
                includeAll=True,
                multi=True,
                default="$__all",
                allValue=".*",
            ),
        ],
        time=G.Time("now-24h", "now"),
    )


# --- exporter ----------------------------------------------------------------------------------


def exporter() -> G.Dashboard:
    """Return the exporter health dashboard: cycles, queries, staleness, series, model."""
    items = [
        (
            _stat(
                "Exporter up",
                [(f'sum(up{{job="{EXPORTER_JOB}"}})', "")],
                steps=[{"color": "red", "value": None}, {"color": "green", "value": 1}],
                graphMode="none",
            ),
            4,
            4,
        ),
        (
            _stat(
                "Snapshot age",
                [("max(linborg_exporter_snapshot_age_seconds)", "")],
                unit="s",
                steps=[
                    *BASE_STEPS,
                    {
                        "color": "red",
                        "value": alert_rules.seconds(alert_rules.CONFIG["staleness_max"]),
                    },
                ],
            ),
            4,
            4,
        ),
        (
            _stat(
                "Consecutive failed cycles",
                [("max(linborg_exporter_consecutive_failures)", "")],
                steps=[*BASE_STEPS, {"color": "red", "value": 1}],
            ),
            4,
            4,
        ),
        (
            _stat("Servers forecast", [("sum(linborg_servers_forecast)", "")]),
            4,
            4,
        ),
        (
            _stat(
                "Model reloads (range)",
                [
                    ("sum(increase(linborg_model_reloads_total[$__range]))", "reloaded"),
                    ("sum(increase(linborg_model_reload_failures_total[$__range]))", "refused"),
                ],
                graphMode="none",
                textMode="value_and_name",
            ),
            8,
            4,
        ),
        (
            _timeseries(
                "Cycle duration",
                [("linborg_exporter_cycle_duration_seconds", "{{instance}}")],
                unit="s",
                description="Pull, inference and snapshot of the last cycle.",
            ),
            8,
            8,
        ),
        (
            _timeseries(
                "Prometheus query latency (mean)",
                [
                    (
                        "rate(linborg_exporter_query_duration_seconds_total[5m])\n"
                        "/ rate(linborg_exporter_queries_total[5m])",
                        "{{instance}}",
                    )
                ],
                unit="s",
            ),
            8,
            8,
        ),
        (
            _timeseries(
                "Failures",
                [
                    ("rate(linborg_exporter_cycle_failures_total[15m])", "cycles {{instance}}"),
                    ("rate(linborg_exporter_query_failures_total[5m])", "queries {{instance}}"),
                    (
                        "rate(linborg_exporter_invalid_samples_total[5m])",
                        "invalid samples {{instance}}",
                    ),
                ],
                unit="ops",
            ),
            8,
            8,
        ),
        (
            _timeseries(
                "Staleness",
                [
                    ("linborg_exporter_snapshot_age_seconds", "snapshot age {{instance}}"),
                    (
                        "time() - linborg_exporter_last_success_timestamp_seconds",
                        "since last success {{instance}}",
                    ),
                ],
                unit="s",
            ),
            8,
            8,
        ),
        (
            _timeseries(
                "Series exported and budget",
                [
                    ("linborg_exporter_series", "series {{instance}}"),
                    (
                        "linborg_exporter_series_budget_per_server * on (instance) "
                        "linborg_servers_forecast",
                        "budget {{instance}}",
                    ),
                    ("linborg_exporter_series_dropped", "dropped: {{reason}} {{instance}}"),
                ],
                description="Budget = series_budget_per_server x servers forecast.",
            ),
            8,
            8,
        ),
        (
            _timeseries(
                "Cycles, queries and bytes from Prometheus",
                [
                    ("rate(linborg_exporter_cycles_total[15m]) * 60", "cycles/min {{instance}}"),
                    ("rate(linborg_exporter_queries_total[5m])", "queries/s {{instance}}"),
                    ("rate(linborg_exporter_received_bytes_total[5m])", "bytes/s {{instance}}"),
                ],
            ),
            8,
            8,
        ),
        (
            _table(
                "Model and build",
                [("linborg_model_info", ""), ("linborg_build_info", "")],
                transformations=[
                    {
                        "id": "organize",
                        "options": {
                            "excludeByName": {
                                "Time": True,
                                "Value #A": True,
                                "Value #B": True,
                                "__name__": True,
                                "job": True,
                            }
                        },
                    }
                ],
            ),
            16,
            6,
        ),
        (
            _timeseries(
                "Model reloads",
                [
                    ("increase(linborg_model_reloads_total[1h])", "reloaded {{instance}}"),
                    ("increase(linborg_model_reload_failures_total[1h])", "refused {{instance}}"),
                ],
            ),
            8,
            6,
        ),
    ]
    return _dashboard(
        "exporter",
        "LINBORG / Exporter health",
        "The forecasting exporter itself: cycles, queries to Prometheus, staleness, series "
        "budget and the model it serves.",
        items,
        [],
        time=G.Time("now-6h", "now"),
    )


# --- impact ------------------------------------------------------------------------------------


def routing_matrix(readme: Path = ALERTMANAGER_README) -> str:
    """Return the "## Routing matrix" table of alertmanager/README.md."""
    lines = readme.read_text().splitlines()
    start = lines.index("## Routing matrix")
    table = []
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            table.append(line)
        elif table:
            break
    if not table:
        raise ValueError(f"{readme}: no table under '## Routing matrix'")
    return "\n".join(table)


def _runbook(alertname: str) -> str:
    url = f"{alert_rules.CONFIG['runbook_base_url']}#{alertname.lower()}"
    return f"[{alertname}]({url})"


def runbook_table(thresholds: Thresholds) -> str:
    """Return Markdown: per profile, its own thresholds and the runbooks of the alerts on them."""
    lines = [
        "| profile | thresholds of its own (warning / critical) | runbooks |",
        "|---|---|---|",
    ]
    for profile in PROFILE_NAMES:
        own, alerts = [], [INCIDENT]
        for fam in alert_rules.FAMILIES:
            for m in fam.metrics:
                t, g = thresholds.get(profile, m.name), thresholds.get("generic", m.name)
                if (t.warning, t.critical) != (g.warning, g.critical):
                    own.append(f"`{m.name}` {t.warning:g} / {t.critical:g}")
                    if fam.alertname not in alerts:
                        alerts.append(fam.alertname)
        lines.append(
            f"| `{profile}` | {', '.join(own) or 'the defaults'} | "
            f"{', '.join(_runbook(a) for a in alerts)} |"
        )
    lines += ["", "Every alert: " + ", ".join(_runbook(a) for a in _alertnames()) + "."]
    return "\n".join(lines)


def _alertnames() -> list[str]:
    groups = alert_rules.rule_groups()["groups"]
    names = [r["alert"] for g in groups for r in g["rules"] if "alert" in r]
    return list(dict.fromkeys(names))


def impact(thresholds: Thresholds) -> G.Dashboard:
    """Return the impact dashboard: incidents predicted ahead of time and what they would cost."""
    firing = f'ALERTS{{alertname="{INCIDENT}", alertstate="firing"}}'
    caught = f"count(count by (server, metric) (count_over_time({firing}[$__range]))) or vector(0)"
    # Each firing incident alert with the time to breach its own rule reads: the p50 forecast
    # to the critical threshold for critical, the pessimistic one to the warning threshold for
    # warning (the warning rule skips servers with a critical incident firing).
    lead = "\nor\n".join(
        f'(\n  min by (server, metric) (linborg_time_to_breach_seconds{{level="{level}", '
        f'q="{alert_rules.CONFIG[f"{level}_quantile"]}"}})\n'
        f'  and on (server, metric) ALERTS{{alertname="{INCIDENT}", alertstate="firing", '
        f'severity="{level}"}}\n)'
        for level in alert_rules.LEVELS
    )
    items = [
        (
            _stat(
                "Predicted incidents caught (time range)",
                [(caught, "")],
                description="Servers and metrics for which LinborgPredictedIncident fired in "
                "the dashboard's time range, each counted once.",
                graphMode="none",
            ),
            6,
            5,
        ),
        (
            _stat(
                "Cost avoided at $cost_per_incident per incident",
                [(f"({caught}) * $cost_per_incident", "")],
                description="Incidents caught x the cost_per_incident variable (a textbox at the "
                "top): what they would have cost had nobody acted on the warning.",
                graphMode="none",
                decimals=0,
            ),
            6,
            5,
        ),
        (
            _stat(
                "Median lead time of predicted incidents firing now",
                [(f"quantile(0.5, {lead})", "")],
                unit="s",
                description="Over the firing predicted-incident alerts: time until the forecast "
                "their rule reads crosses the threshold (critical: p50 to critical; warning: "
                "the pessimistic quantile to warning).",
                graphMode="none",
            ),
            6,
            5,
        ),
        (
            _stat(
                "Predicted incidents firing now",
                [(f"count({firing}) or vector(0)", "")],
                graphMode="area",
            ),
            6,
            5,
        ),
        (
            _timeseries(
                "Predicted incidents firing, by severity",
                [(f"count by (severity) ({firing})", "{{severity}}")],
                drawStyle="bars",
                fillOpacity=60,
            ),
            12,
            8,
        ),
        (
            _timeseries(
                "New predicted incidents per hour",
                [
                    (
                        "sum by (severity) "
                        f'(changes(ALERTS_FOR_STATE{{alertname="{INCIDENT}"}}[1h]))',
                        "{{severity}}",
                    )
                ],
                description="How often an incident alert (re)started: changes of its active-since "
                "time. A new server or metric firing counts from its second start only.",
            ),
            12,
            8,
        ),
        (
            _text(
                "Alert routing",
                "Generated from `alertmanager/README.md`.\n\n" + routing_matrix(),
            ),
            12,
            12,
        ),
        (
            _text("Runbooks per profile", runbook_table(thresholds)),
            12,
            12,
        ),
    ]
    return _dashboard(
        "impact",
        "LINBORG / Impact",
        "Incidents predicted ahead of time, what they would have cost, and who gets told.",
        items,
        [
            G.Template(
                name="cost_per_incident",
                label="Cost per incident",
                query=COST_PER_INCIDENT,
                type="textbox",
                default=COST_PER_INCIDENT,
            )
        ],
        time=G.Time("now-7d", "now"),
    )


# --- all of them -------------------------------------------------------------------------------


def dashboards() -> dict[str, G.Dashboard]:
    """Return dashboard key (as in DASHBOARD_UIDS) -> dashboard."""
    thresholds = load_thresholds(*THRESHOLDS_FILES)
    builders: dict[str, Callable[[], G.Dashboard]] = {
        "fleet": fleet,
        "server": lambda: server(thresholds),
        "profiles": profiles,
        "quality": quality,
        "exporter": exporter,
        "impact": lambda: impact(thresholds),
    }
    return {key: builders[key]() for key in DASHBOARD_UIDS}


def render_all() -> dict[str, str]:
    """Return file name (``<uid>.json``) -> JSON text of every dashboard."""
    out = {}
    for dash in dashboards().values():
        text = json.dumps(dash.to_json_data(), cls=DashboardEncoder, sort_keys=True, indent=2)
        out[f"{dash.uid}.json"] = text + "\n"
    return out


def write_all(out_dir: Path) -> list[Path]:
    """Write every dashboard into ``out_dir`` and return the paths written."""
    from linborg.rulefiles import write_texts

    return write_texts(render_all(), out_dir)


# --- queries, for tests --------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Return ``text`` with Grafana variables put in from ``values``; others are left as is."""

    def repl(match: re.Match) -> str:
        name = next(g for g in match.groups() if g is not None)
        return values.get(name, match.group(0))

    return _VARIABLE.sub(repl, text)


def iter_panels(panels: list[dict]):
    """Yield every panel of a dashboard's JSON, those inside collapsed rows too."""
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def panel_queries(values: Mapping[str, str] | None = None) -> list[tuple[str, str, str, str]]:
    """Return (dashboard uid, panel title, data source uid, expr) for every panel query.

    Template variables are replaced by SAMPLE_VALUES updated with ``values`` (e.g.
    ``{"server": "ppdb001"}``), the data source variable included.
    """
    vals = {**SAMPLE_VALUES, **(values or {})}
    out = []
    for text in render_all().values():
        doc = json.loads(text)
        for panel in iter_panels(doc["panels"]):
            for target in panel.get("targets", []):
                ds = (target.get("datasource") or panel.get("datasource") or {}).get("uid", "")
                out.append(
                    (
                        doc["uid"],
                        substitute(panel["title"], vals),
                        substitute(ds, vals),
                        substitute(target["expr"], vals),
                    )
                )
    return out
