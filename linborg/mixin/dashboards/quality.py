"""The forecast quality dashboard, from the recording rules of linborg.mixin.quality_rules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from grafanalib import core as G

from linborg.contract import METRIC_NAMES
from linborg.mixin import quality_rules
from linborg.mixin.dashboards.panels import DASHED, Q_HIGH, Q_LOW, Kit, fixed, organize, override
from linborg.mixin.rulefiles import RULE_FILES

#: The rule file the quality records come from.
QUALITY_RULE_FILE = next(
    name for name, module in RULE_FILES.items() if module == quality_rules.__name__
)


def dashboard(cfg: Mapping[str, Any]) -> G.Dashboard:
    """Return the forecast quality dashboard."""
    k = Kit(cfg)
    window = cfg["quality_window"]
    mae, cov = quality_rules.mae_record(window), quality_rules.coverage_record(window)
    nominal = float(Q_HIGH) - float(Q_LOW)
    sel = 'metric="$metric", profile=~"$profile"'
    items = [
        (
            k.text(
                "How to read this",
                f"Each forecast is compared with what happened one horizon later. **Error**: "
                f"mean absolute error of the p50 forecast over the last {window}, in the "
                f"metric's unit. **Coverage**: share of servers and minutes whose actual fell "
                f"between p10 and p90; a calibrated model keeps it near {nominal:g}. Recording "
                f"rules: `prometheus/rules/{QUALITY_RULE_FILE}`.",
            ),
            24,
            3,
        ),
        (
            k.timeseries(
                "$metric: mean absolute error by horizon",
                [(f"avg by (horizon) ({mae}{{{sel}}})", "{{horizon}}")],
                description="In the metric's own unit.",
            ),
            12,
            8,
        ),
        (
            k.timeseries(
                "$metric: p10-p90 coverage by horizon",
                [
                    (f"avg by (horizon) ({cov}{{{sel}}})", "{{horizon}}"),
                    (f"vector({nominal:g})", "nominal"),
                ],
                unit="percentunit",
                overrides=[override("nominal", color=fixed("gray"), custom__lineStyle=DASHED)],
            ),
            12,
            8,
        ),
        (
            k.timeseries(
                "$metric, horizon $horizon: mean absolute error by profile",
                [(f'{mae}{{{sel}, horizon="$horizon"}}', "{{profile}}")],
            ),
            12,
            8,
        ),
        (
            k.timeseries(
                "$metric, horizon $horizon: coverage by profile",
                [(f'{cov}{{{sel}, horizon="$horizon"}}', "{{profile}}")],
                unit="percentunit",
            ),
            12,
            8,
        ),
        (
            k.table(
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
            k.table(
                "$metric, horizon $horizon: servers with the largest error",
                [
                    (
                        f"topk(20, avg_over_time({quality_rules.ABS_ERROR}"
                        f'{{{sel}, horizon="$horizon"}}[{window}]))',
                        "",
                    )
                ],
                transformations=[
                    organize(("Time",), renameByName={"Value": "mean absolute error"}),
                ],
                sortBy=[G.TableSortByField(displayName="mean absolute error", desc=True)],
                overrides=[override("server", links=k.server_link())],
            ),
            12,
            10,
        ),
    ]
    return k.dashboard(
        "quality",
        "LINBORG / Forecast quality",
        "How far the forecasts were from what happened, per metric, profile and horizon.",
        items,
        [
            k.var_custom("metric", METRIC_NAMES, cfg["default_metric"], "Metric"),
            k.var_custom("horizon", cfg["horizons"], cfg["default_horizon"], "Horizon"),
            k.var_query(
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
