"""The fleet overview: where is the risk now, and which predicted incidents fire."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from grafanalib import core as G

from linborg import families as F
from linborg.contract import METRICS_BY_NAME
from linborg.mixin import alert_rules
from linborg.mixin.dashboards.panels import BASE_STEPS, Kit, organize, override

CPU_IDLE = METRICS_BY_NAME["cpu_idle_pct"]

#: Every predicted alert: the incident alert and one per metric family.
PREDICTED_ALERTS = "|".join([alert_rules.INCIDENT, *(f.alertname for f in alert_rules.FAMILIES)])


def dashboard(cfg: Mapping[str, Any]) -> G.Dashboard:
    """Return the fleet overview."""
    k = Kit(cfg)
    top_n = cfg["top_servers"]
    window = cfg["risk_window"]
    risk = f"max by (server, profile, driver) ({k.exporter(F.RISK_SCORE, window=window)})"
    top = f"topk({top_n}, {risk})"
    ttb = k.exporter(F.TIME_TO_BREACH_SECONDS, q="0.5")
    predicted_firing = f'ALERTS{{alertname=~"{PREDICTED_ALERTS}", alertstate="firing"}}'
    items = [
        (k.stat("Servers forecast", [(f"sum({k.exporter(F.SERVERS_FORECAST)})", "")]), 4, 4),
        (
            k.stat(
                "Servers not forecast",
                [(f"count({k.exporter(F.SERVER_NOT_FORECAST)}) or vector(0)", "")],
                description="Servers the exporter saw but did not forecast (see Profiles).",
            ),
            4,
            4,
        ),
        (
            k.stat(
                "Predicted incidents firing",
                [(f"count({predicted_firing}) or vector(0)", "")],
                steps=[*BASE_STEPS, {"color": "red", "value": 1}],
            ),
            4,
            4,
        ),
        (
            k.stat(
                "Fleet CPU used",
                [(f"100 - avg({CPU_IDLE.wire_name})", "")],
                unit="percent",
                description="100 - average cpu_idle_pct over every server.",
            ),
            4,
            4,
        ),
        (
            k.timeseries(
                "CPU used by profile",
                [(f"100 - avg by (profile) ({CPU_IDLE.wire_name})", "{{profile}}")],
                unit="percent",
            ),
            8,
            4,
        ),
        (
            k.status_history(
                f"Risk ({window} window) by server",
                [(f"max by (server) ({k.exporter(F.RISK_SCORE, window=window)})", "{{server}}")],
                description=f"One row per server, coloured by its {window} risk score (0-100).",
                unit="none",
                thresholds=k.risk_colours(),
                maxDataPoints=200,
            ),
            24,
            12,
        ),
        (
            k.table(
                f"Top {top_n} servers at risk",
                [
                    (top, ""),
                    (f"min by (server) ({ttb})\nand on (server) {top}", ""),
                ],
                description=f"Risk in the {window} window, the metric driving it, and the time "
                "until the p50 forecast first crosses any threshold.",
                transformations=[
                    {"id": "merge", "options": {}},
                    organize(
                        ("Time",),
                        indexByName={
                            "server": 0,
                            "profile": 1,
                            "Value #A": 2,
                            "driver": 3,
                            "Value #B": 4,
                        },
                        renameByName={
                            "Value #A": "risk",
                            "Value #B": "predicted time to breach",
                        },
                    ),
                ],
                sortBy=[G.TableSortByField(displayName="risk", desc=True)],
                overrides=[
                    override("predicted time to breach", unit="s"),
                    override("server", links=k.server_link()),
                ],
            ),
            12,
            10,
        ),
        (
            k.table(
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
            k.table(
                "Predicted-incident alerts firing now",
                [(predicted_firing, "")],
                transformations=[
                    organize(
                        ("Time", "Value", "__name__", "alertstate", "job", "instance"),
                    )
                ],
                overrides=[override("server", links=k.server_link())],
            ),
            24,
            8,
        ),
    ]
    return k.dashboard(
        "fleet",
        "LINBORG / Fleet overview",
        "Risk across the fleet, the servers most at risk and the predicted incidents firing.",
        items,
        [],
        time=G.Time("now-12h", "now"),
    )
