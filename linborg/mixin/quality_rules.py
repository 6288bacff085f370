"""Forecast-quality recording rules; ``render()`` returns linborg.quality.rules.yml's text.

The exporter exposes, now, the forecast for now + h (``linborg_forecast{horizon="h"}``). The
forecast *for* now was therefore exposed h ago: ``linborg_forecast{horizon="h"} offset h`` lines
up with the actual value now. The rules compare the two, per server, metric and horizon, and
then average per profile, metric and horizon over an hour. ``linborg rules`` writes the file;
tests/test_dashboards.py checks it is current, passes ``promtool check rules`` and the unit
tests in prometheus/tests/quality_rules_test.yml. The Forecast quality dashboard plots them.

Record names follow ``level:metric:operations``:

- ``server_metric:linborg_actual:max`` with ``server`` and ``metric``: each metric's actual
  value, one series per server (the max over duplicates, e.g. two scrape jobs), so that the
  rules below can match every metric at once on ``(server, metric)``.
- ``server:linborg_forecast_abs_error:p50`` with ``server``, ``profile``, ``metric``,
  ``horizon``: |p50 forecast issued ``horizon`` ago - actual now|, in the metric's unit.
- ``server:linborg_forecast_in_band:p10_p90``, same labels: 1 when p10 <= actual <= p90 of the
  forecast issued ``horizon`` ago (both ends included), else 0.
- ``profile_metric_horizon:linborg_forecast_abs_error:avg_1h``: the per-server error averaged
  over the window, then over the profile's servers (mean absolute error).
- ``profile_metric_horizon:linborg_forecast_coverage:avg_1h``: the share of servers and
  evaluations whose actual fell inside the p10-p90 band; a calibrated model keeps it near 0.8.

Actuals are matched on ``server`` (and ``metric``) alone and the result keeps the forecast's
``profile`` (the exporter's view), so actuals without a ``profile`` label (node_exporter) work
as well. One rule per metric copies the actuals (each metric is its own series), then one pair
per horizon (each horizon is its own ``offset``): 14 + 5 x 2 + 2 rules. Rules with the same
record name carry the metric or horizon as a static label, which is also what the result has.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from linborg import families as F
from linborg import mixin
from linborg.contract import METRICS

# The knobs (group name, evaluation interval, window, horizons, the actuals' PromQL, the
# exporter's job selector) are in CONFIG of linborg/mixin/__init__.py.

ACTUAL = "server_metric:linborg_actual:max"
ABS_ERROR = "server:linborg_forecast_abs_error:p50"
IN_BAND = "server:linborg_forecast_in_band:p10_p90"


def mae_record(window: str = mixin.CONFIG["quality_window"]) -> str:
    """Return the record name of the per-profile mean absolute error."""
    return f"profile_metric_horizon:linborg_forecast_abs_error:avg_{window}"


def coverage_record(window: str = mixin.CONFIG["quality_window"]) -> str:
    """Return the record name of the per-profile p10-p90 coverage."""
    return f"profile_metric_horizon:linborg_forecast_coverage:avg_{window}"


def _indent(text: str, by: str = "  ") -> str:
    return "\n".join(by + line for line in text.splitlines())


def _forecast(cfg: Mapping[str, Any], horizon: str, q: str) -> str:
    """Return the forecasts for now issued ``horizon`` ago, one series per server and metric."""
    selector = mixin.exporter(F.FORECAST, cfg, horizon=horizon, q=q)
    return f"max by (server, profile, metric, horizon) (\n  {selector} offset {horizon}\n)"


def _abs_error(cfg: Mapping[str, Any], horizon: str) -> str:
    return (
        "abs(\n"
        f"{_indent(_forecast(cfg, horizon, '0.5'))}\n"
        f"  - on (server, metric) group_left ()\n  {ACTUAL}\n"
        ")"
    )


def _in_band(cfg: Mapping[str, Any], horizon: str) -> str:
    return (
        "(\n"
        f"{_indent(_forecast(cfg, horizon, '0.1'))}\n"
        f"  <= bool on (server, metric) group_left ()\n  {ACTUAL}\n"
        ")\n"
        "* on (server, profile, metric, horizon)\n"
        "(\n"
        f"{_indent(_forecast(cfg, horizon, '0.9'))}\n"
        f"  >= bool on (server, metric) group_left ()\n  {ACTUAL}\n"
        ")"
    )


def rule_groups(config: Mapping[str, Any] | None = None) -> dict:
    """Return the rule file as data; ``config`` overrides keys of the mixin's CONFIG."""
    cfg = mixin.config(config)
    missing = [m.name for m in METRICS if m.name not in cfg["actuals"]]
    if missing:
        raise KeyError(f"actuals: no expression for {', '.join(missing)}")
    # Rules of a group run in order, so the later ones read this evaluation's actuals.
    rules: list[dict] = [
        {
            "record": ACTUAL,
            "expr": f"max by (server) ({cfg['actuals'][m.name]})",
            "labels": {"metric": m.name},
        }
        for m in METRICS
    ]
    for horizon in cfg["horizons"]:
        for record, expr in (
            (ABS_ERROR, _abs_error(cfg, horizon)),
            (IN_BAND, _in_band(cfg, horizon)),
        ):
            rules.append({"record": record, "expr": expr, "labels": {"horizon": horizon}})
    window = cfg["quality_window"]
    for record, source in ((mae_record(window), ABS_ERROR), (coverage_record(window), IN_BAND)):
        rules.append(
            {
                "record": record,
                "expr": (
                    f"avg by (profile, metric, horizon) (\n  avg_over_time({source}[{window}])\n)"
                ),
            }
        )
    group = {"name": cfg["quality_group"], "interval": cfg["quality_interval"], "rules": rules}
    return {"groups": [group]}


def render(config: Mapping[str, Any] | None = None) -> str:
    """Return the YAML text of prometheus/rules/linborg.quality.rules.yml."""
    from linborg.mixin.rulefiles import dump_rules

    return dump_rules(rule_groups(config))
