"""The six LINBORG Grafana dashboards as code (grafanalib); ``linborg dashboards`` writes them.

One module per dashboard (fleet, server, profiles, quality, exporter, impact), each with a
``dashboard(cfg)`` function; linborg.mixin.dashboards.panels holds what they share. Every knob
(data source UIDs, dashboard UIDs, the exporter's job selector, risk and staleness levels,
horizons) comes from the mixin config (linborg/mixin/__init__.py), every series name from
linborg.families and linborg.contract, the alert names from linborg.mixin.alert_rules, the
quality series from linborg.mixin.quality_rules and the routing matrix from
linborg.mixin.routing. Thresholds are queried from the exporter's linborg_threshold series, never
written into a dashboard. grafana/README.md describes the dashboards.

``render_all()`` returns ``{"<uid>.json": text}`` with deterministic JSON (sorted keys, indent
2, panel ids numbered in layout order); the files are committed under grafana/dashboards/ and
tests/test_dashboards.py regenerates them into an empty folder and compares file set and bytes.
``panel_queries()`` lists every panel query with the template variables filled in, for tests
and previews that run them against a real Prometheus.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from grafanalib import core as G

from linborg import mixin
from linborg.contract import PROFILE_NAMES
from linborg.mixin.dashboards import exporter, fleet, impact, profiles, quality, server

#: Values put in for the template variables by ``panel_queries()`` unless told otherwise.
SAMPLE_VALUES: dict[str, str] = {
    mixin.CONFIG["datasource_variable"]: mixin.CONFIG["prometheus_datasource_uid"],
    "server": "ppml0001",
    "horizon": mixin.CONFIG["default_horizon"],
    "metric": mixin.CONFIG["default_metric"],
    "profile": PROFILE_NAMES[0],
    "cost_per_incident": mixin.CONFIG["cost_per_incident"],
    "__range": "1h",
    "__rate_interval": "1m",
    "__interval": "1m",
}


class _Encoder(json.JSONEncoder):
    """Encode grafanalib objects by their ``to_json_data()``."""

    def default(self, o: Any) -> Any:
        to_json_data = getattr(o, "to_json_data", None)
        return to_json_data() if to_json_data else super().default(o)


def dashboards(config: Mapping[str, Any] | None = None) -> dict[str, G.Dashboard]:
    """Return dashboard key (as in the config's dashboard_uids) -> dashboard.

    ``config`` overrides keys of the mixin's CONFIG.
    """
    cfg = mixin.config(config)
    builders: dict[str, Callable[[], G.Dashboard]] = {
        "fleet": lambda: fleet.dashboard(cfg),
        "server": lambda: server.dashboard(cfg),
        "profiles": lambda: profiles.dashboard(cfg),
        "quality": lambda: quality.dashboard(cfg),
        "exporter": lambda: exporter.dashboard(cfg),
        "impact": lambda: impact.dashboard(cfg),
    }
    return {key: builders[key]() for key in cfg["dashboard_uids"]}


def render_all(config: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Return file name (``<uid>.json``) -> JSON text of every dashboard."""
    out = {}
    for dash in dashboards(config).values():
        text = json.dumps(dash.to_json_data(), cls=_Encoder, sort_keys=True, indent=2)
        out[f"{dash.uid}.json"] = text + "\n"
    return out


def write_all(out_dir: Path) -> list[Path]:
    """Write every dashboard into ``out_dir`` and return the paths written."""
    from linborg.mixin.rulefiles import write_texts

    return write_texts(render_all(), out_dir)


# --- queries, for tests and previews -------------------------------------------------------------

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
