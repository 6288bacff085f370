"""The impact dashboard: incidents predicted ahead of time, what they would cost, who is told."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from grafanalib import core as G

from linborg import families as F
from linborg import mixin
from linborg.contract import PROFILE_NAMES
from linborg.mixin import alert_rules, routing
from linborg.mixin.dashboards.panels import Kit
from linborg.thresholds import Thresholds


def runbook_link(cfg: Mapping[str, Any], alertname: str) -> str:
    """Return Markdown naming an alert's runbook: a link, or its path where that is relative."""
    url = mixin.runbook_url(cfg, alertname)
    return f"[{alertname}]({url})" if mixin.is_absolute(url) else f"{alertname} (`{url}`)"


def alertnames(cfg: Mapping[str, Any]) -> list[str]:
    """Return every alert name of the alert rules, in rule order."""
    groups = alert_rules.rule_groups(cfg)["groups"]
    names = [r["alert"] for g in groups for r in g["rules"] if "alert" in r]
    return list(dict.fromkeys(names))


def runbook_table(cfg: Mapping[str, Any], thresholds: Thresholds) -> str:
    """Return Markdown: per profile, its own thresholds and the runbooks of the alerts on them."""
    lines = [
        "| profile | thresholds of its own (warning / critical) | runbooks |",
        "|---|---|---|",
    ]
    for profile in PROFILE_NAMES:
        own, alerts = [], [alert_rules.INCIDENT]
        for fam in alert_rules.FAMILIES:
            for m in fam.metrics:
                t, g = thresholds.get(profile, m.name), thresholds.get("generic", m.name)
                if (t.warning, t.critical) != (g.warning, g.critical):
                    own.append(f"`{m.name}` {t.warning:g} / {t.critical:g}")
                    if fam.alertname not in alerts:
                        alerts.append(fam.alertname)
        lines.append(
            f"| `{profile}` | {', '.join(own) or 'the defaults'} | "
            f"{', '.join(runbook_link(cfg, a) for a in alerts)} |"
        )
    every = ", ".join(runbook_link(cfg, a) for a in alertnames(cfg))
    lines += ["", f"Every alert: {every}."]
    return "\n".join(lines)


def dashboard(cfg: Mapping[str, Any], thresholds: Thresholds) -> G.Dashboard:
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
            k.text("Runbooks per profile", runbook_table(cfg, thresholds)),
            12,
            12,
        ),
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
