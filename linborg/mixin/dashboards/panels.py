"""Panel helpers shared by the six dashboards: data sources, panels, variables and the layout.

``Kit(cfg)`` binds the helpers to the mixin config (the data source variable, the exporter's
selector, the dashboard UIDs and tags); the module-level helpers need no config. Panels are
grafanalib objects; ``layout`` places them on Grafana's 24-column grid and numbers them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attr
from grafanalib import core as G

from linborg import families as F
from linborg import mixin
from linborg.contract import Metric

#: The quantiles the exporter exposes, and the legend each one gets.
Q_LOW, Q_MID, Q_HIGH = "0.1", "0.5", "0.9"
QUANTILES = ((Q_LOW, "p10"), (Q_MID, "p50"), (Q_HIGH, "p90"))

#: Grafana unit of each contract unit.
_UNITS = {
    "percent": "percent",
    "megabytes per second": "MBs",
    "connections": "short",
    "processes": "short",
    "days": "d",
}

BASE_STEPS = [{"color": "green", "value": None}]
DASHED = {"fill": "dash", "dash": [10, 10]}


def unit(m: Metric) -> str:
    """Return the Grafana unit of a contract metric."""
    return _UNITS.get(m.unit, "short")


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


def override(name: str, **props: Any) -> dict:
    """Return a field override of the field ``name``; ``a__b`` in a property name is ``a.b``."""
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": k.replace("__", "."), "value": v} for k, v in props.items()],
    }


def fixed(color: str) -> dict:
    return {"mode": "fixed", "fixedColor": color}


def band_overrides(mid: str = "p50") -> list[dict]:
    """Return overrides filling between the p10 and p90 series and colouring the quantiles."""
    return [
        override(
            "p90",
            custom__fillBelowTo="p10",
            custom__fillOpacity=20,
            custom__lineWidth=0,
            color=fixed("blue"),
        ),
        override("p10", custom__lineWidth=0, color=fixed("blue")),
        override(mid, color=fixed("blue")),
        override("actual", color=fixed("green"), custom__lineWidth=2),
        override("warning", color=fixed("orange"), custom__lineStyle=DASHED),
        override("critical", color=fixed("red"), custom__lineStyle=DASHED),
    ]


def organize(exclude: tuple[str, ...] = (), **options: Any) -> dict:
    """Return an "organize fields" transformation hiding the fields ``exclude``."""
    return {"id": "organize", "options": {"excludeByName": dict.fromkeys(exclude, True), **options}}


def layout(items: list) -> list:
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


class Kit:
    """Panel, variable and dashboard builders for one mixin config."""

    def __init__(self, cfg: Mapping[str, Any]):
        self.cfg = cfg
        #: Every panel but the forecast fans reads the data source variable.
        self.prom = {"type": "prometheus", "uid": f"${{{cfg['datasource_variable']}}}"}
        #: The exporter's forecast path API (the fans).
        self.forecasts = {"type": "prometheus", "uid": cfg["forecasts_datasource_uid"]}

    # --- PromQL ---------------------------------------------------------------------------------

    def exporter(self, name: str, **labels: str) -> str:
        """Return a selector of an exporter family in the exporter's job (mixin.exporter)."""
        return mixin.exporter(name, self.cfg, **labels)

    def risk_colours(self) -> list[dict]:
        """Return threshold steps colouring a risk score at the alerts' risk levels."""
        return [
            *BASE_STEPS,
            {"color": "yellow", "value": self.cfg["risk_warning"]},
            {"color": "red", "value": self.cfg["risk_critical"]},
        ]

    def threshold_expr(self, metric: str) -> str:
        """Return PromQL giving the warning and critical thresholds of ``metric`` for $server.

        The exporter exposes the thresholds it compares forecasts with (linborg_threshold, its
        thresholds_file applied); ``and on (instance, profile)`` a series of $server keeps those
        of the exporter that forecasts the server, for the profile it gave the server. The lines
        follow the exporter's config and the server's profile with no regeneration.
        """
        thresholds = self.exporter(F.THRESHOLD, metric=metric)
        of_server = self.exporter(F.DATA_COMPLETENESS_RATIO, server="$server")
        return f"{thresholds}\nand on (instance, profile)\n  {of_server}"

    def threshold_targets(self, metric: str) -> list[tuple]:
        """Return the warning and critical lines of ``metric`` for $server: one query, one
        series per level, named after it (band_overrides dashes them)."""
        return [(self.threshold_expr(metric), "{{level}}")]

    # --- panels ---------------------------------------------------------------------------------

    def queries(self, targets: list[tuple], ds: dict) -> list[Target]:
        """Return targets from (expr, legend[, kind]); kind: "range", "instant" or "table"."""
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

    def timeseries(self, title, targets, unit="", ds=None, description=None, **kw):
        ds = ds or self.prom
        kw.setdefault("legendDisplayMode", "list")
        kw.setdefault("tooltipMode", "multi")
        return G.TimeSeries(
            title=title,
            description=description,
            dataSource=ds,
            targets=self.queries(targets, ds),
            unit=unit,
            thresholds=BASE_STEPS,
            **kw,
        )

    def stat(self, title, targets, unit="none", description=None, steps=None, **kw) -> G.Stat:
        return G.Stat(
            title=title,
            description=description,
            dataSource=self.prom,
            targets=self.queries(targets, self.prom),
            format=unit,
            reduceCalc="lastNotNull",
            thresholds=steps or BASE_STEPS,
            graphMode=kw.pop("graphMode", "area"),
            noValue=kw.pop("noValue", "no data"),
            color={"mode": "thresholds"},
            **kw,
        )

    def table(self, title, targets, description=None, **kw) -> G.Table:
        return G.Table(
            title=title,
            description=description,
            dataSource=self.prom,
            targets=self.queries([(e, lg, "table") for e, lg in targets], self.prom),
            thresholds=BASE_STEPS,
            **kw,
        )

    def status_history(self, title, targets, description=None, **kw) -> StatusHistory:
        return StatusHistory(
            title=title,
            description=description,
            dataSource=self.prom,
            targets=self.queries(targets, self.prom),
            **kw,
        )

    def histogram(self, title, targets, **kw) -> G.Histogram:
        return G.Histogram(
            title=title,
            dataSource=self.prom,
            targets=self.queries(targets, self.prom),
            thresholds=BASE_STEPS,
            **kw,
        )

    def text(self, title: str, content: str) -> G.Text:
        return G.Text(title=title, content=content, mode="markdown", dataSource=self.prom)

    def row(self, title: str) -> G.RowPanel:
        return G.RowPanel(title=title, dataSource=self.prom)

    def server_link(self, title: str = "Server detail") -> list[dict]:
        """Return a data link to the server dashboard for the clicked row's server."""
        uid = self.cfg["dashboard_uids"]["server"]
        return [{"title": title, "url": f"/d/{uid}?var-server=${{__data.fields.server}}"}]

    # --- variables ------------------------------------------------------------------------------

    def var_datasource(self) -> G.Template:
        return G.Template(
            name=self.cfg["datasource_variable"],
            label="Data source",
            query="prometheus",
            type="datasource",
            default=self.cfg["prometheus_datasource_uid"],
        )

    def var_query(self, name: str, query: str, label: str, **kw) -> G.Template:
        return G.Template(
            name=name, label=label, query=query, dataSource=self.prom, refresh=2, sort=1, **kw
        )

    def var_custom(self, name: str, values, default: str, label: str) -> G.Template:
        return G.Template(
            name=name, label=label, query=",".join(values), type="custom", default=default
        )

    # --- the dashboard --------------------------------------------------------------------------

    def dashboard(self, key: str, title: str, description: str, items: list, variables, **kw):
        """Return dashboard ``key`` (a key of the config's dashboard_uids) laid out from items."""
        tags = list(self.cfg["dashboard_tags"])
        return G.Dashboard(
            title=title,
            uid=self.cfg["dashboard_uids"][key],
            description=description,
            tags=tags,
            timezone="browser",
            refresh=self.cfg["dashboard_refresh"],
            editable=False,
            graphTooltip=1,
            panels=layout(items),
            templating=G.Templating([self.var_datasource(), *variables]),
            links=[
                {
                    "type": "dashboards",
                    "tags": tags,
                    "asDropdown": True,
                    "title": "LINBORG",
                    "includeVars": False,
                    "keepTime": True,
                }
            ],
            **kw,
        )
