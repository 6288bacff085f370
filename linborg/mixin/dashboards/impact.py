"""The impact dashboard: incidents predicted ahead of time, what they would cost, who is told."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from grafanalib import core as G

from linborg import families as F
from linborg import mixin
from linborg.mixin import alert_rules, routing
from linborg.mixin.dashboards.panels import Kit, organize
from linborg.thresholds import LEVELS


def runbook_link(cfg: Mapping[str, Any], alertname: str) -> str:
    """Return Markdown naming an alert's runbook: a link, or its path where that is relative."""
    url = mixin.runbook_url(cfg, alertname)
    return f"[{alertname}]({url})" if mixin.is_absolute(url) else f"{alertname} (`{url}`)"


def alertnames(cfg: Mapping[str, Any]) -> list[str]:
    """Return every alert name of the alert rules, in rule order."""
    groups = alert_rules.rule_groups(cfg)["groups"]
    names = [r["alert"] for g in groups for r in g["rules"] if "alert" in r]
    return list(dict.fromkeys(names))


def runbook_table(cfg: Mapping[str, Any]) -> str:
    """Return Markdown: per predicted alert, the metrics it watches and its runbook.

    Each runbook has what to do per profile; the profiles' thresholds are in the table below it
    (from linborg_threshold, so they are the ones the exporter runs with).
    """
    lines = [
        "| runbook: what to do, per profile | metrics it watches |",
        "|---|---|",
        f"| {runbook_link(cfg, alert_rules.INCIDENT)} | the risk score's driver |",
    ]
    for fam in alert_rules.FAMILIES:
        metrics = ", ".join(f"`{m.name}`" for m in fam.metrics)
        lines.append(f"| {runbook_link(cfg, fam.alertname)} | {metrics} |")
    every = ", ".join(runbook_link(cfg, a) for a in alertnames(cfg))
    lines += ["", f"Every alert: {every}."]
    return "\n".join(lines)


def threshold_table(k: Kit) -> G.Table:
    """Return a table of the thresholds in use: per profile and metric, warning and critical.

    From the exporters' linborg_threshold (the packaged thresholds with their thresholds_file
    applied), one instant query per level merged into one row per profile and metric.
    """
    targets = [
        (f"max by (profile, metric) ({k.exporter(F.THRESHOLD, level=level)})", level)
        for level in LEVELS
    ]
    values = {f"Value #{chr(ord('A') + i)}": level for i, level in enumerate(LEVELS)}
    return k.table(
        "Thresholds in use, per profile",
        targets,
        description="The warning and critical thresholds the exporters compare forecasts with "
        "(linborg_threshold: linborg/thresholds.yaml with the exporter's thresholds_file "
        "applied; the highest where exporters disagree). The risk scores, the alerts and the "
        "server dashboard's threshold lines all use these.",
        transformations=[
            {"id": "merge", "options": {}},
            organize(("Time",), renameByName=values),
        ],
        sortBy=[G.TableSortByField(displayName="profile")],
    )


def dashboard(cfg: Mapping[str, Any]) -> G.Dashboard:
    """Return the impact dashboard."""
    k = Kit(cfg)
    incident = alert_rules.INCIDENT
    firing = f'ALERTS{{alertname="{incident}", alertstate="firing"}}'
    caught = f"count(count by (server, metric) (count_over_time({firing}[$__range]))) or vector(0)"
    # Each firing incident alert with the time to breach its own rule reads: the p50 forecast
    # to the critical threshold for critical, the pessimistic one to the warning threshold for
    # warning (the warning rule skips servers with a critical incident firing).
    lead = "\nor\n".join(
        "(\n"
        "  min by (server, metric) ("
        + k.exporter(F.TIME_TO_BREACH_SECONDS, level=level, q=cfg[f"{level}_quantile"])
        + ")\n"
        f'  and on (server, metric) ALERTS{{alertname="{incident}", alertstate="firing", '
        f'severity="{level}"}}\n)'
        for level in alert_rules.LEVELS
    )
    items = [
        (
            k.stat(
                "Predicted incidents caught (time range)",
                [(caught, "")],
                description=f"Servers and metrics for which {incident} fired in the "
                "dashboard's time range, each counted once.",
                graphMode="none",
            ),
            6,
            5,
        ),
        (
            k.stat(
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
            k.stat(
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
            k.stat(
                "Predicted incidents firing now",
                [(f"count({firing}) or vector(0)", "")],
                graphMode="area",
            ),
            6,
            5,
        ),
        (
            k.timeseries(
                "Predicted incidents firing, by severity",
                [(f"count by (severity) ({firing})", "{{severity}}")],
                drawStyle="bars",
                fillOpacity=60,
            ),
            12,
            8,
        ),
        (
            k.timeseries(
                "New predicted incidents per hour",
                [
                    (
                        "sum by (severity) "
                        f'(changes(ALERTS_FOR_STATE{{alertname="{incident}"}}[1h]))',
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
            k.text(
                "Alert routing",
                "The routing matrix of `alertmanager/alertmanager.yml` "
                "(`linborg/mixin/routing.py`)."
                "\n\n" + routing.markdown(),
            ),
            12,
            12,
        ),
        (
            k.text("Runbooks", runbook_table(cfg)),
            12,
            12,
        ),
        (threshold_table(k), 24, 12),
    ]
    return k.dashboard(
        "impact",
        "LINBORG / Impact",
        "Incidents predicted ahead of time, what they would have cost, and who gets told.",
        items,
        [
            G.Template(
                name="cost_per_incident",
                label="Cost per incident",
                query=cfg["cost_per_incident"],
                type="textbox",
                default=cfg["cost_per_incident"],
            )
        ],
        time=G.Time("now-7d", "now"),
    )
