"""The LINBORG alert rules: ``render()`` returns the text of prometheus/rules/linborg.alerts.yml.

``linborg rules`` writes the file with a header; tests/test_alert_rules.py checks that the
committed file is current, passes ``promtool check rules`` and the unit tests in
prometheus/tests/alerts_test.yml. docs/runbooks.md has one section per alert.

Three kinds of alert, each carrying ``severity``, ``server`` and ``profile`` labels:

- ``LinborgPredictedIncident``: the server's 8 h risk score is high and its driving metric is
  forecast to cross a threshold (critical: critical level at p50 within 2 h; warning: warning
  level at the pessimistic quantile within 8 h).
- ``Linborg*Predicted``: one alert name per metric family, from the exporter's time-to-breach
  gauges, in two rules (critical, warning). The exporter compares forecasts with each profile's
  own thresholds, so the expressions are profile-aware already; the annotations read the
  threshold values from the exporter's ``linborg_threshold`` series (see "thresholds on the
  wire" below), so nothing here depends on linborg/thresholds.yaml or a ``thresholds_file``.
  Every predicted alert says where its metric is now (below, or already past, which level) and
  what the forecast says next, from the current value Prometheus records (see "what the metric
  does now" below): never "reaches warning in 5m" for a metric past warning already.
- Exporter health: down, absent, no model, stale forecasts, failing cycles or queries, and
  servers whose history is too incomplete to trust their forecasts.

A warning is withdrawn while the critical alert of the same name fires for the same server
(and metric): the rule reads ``ALERTS``, so the warning stays up while the critical alert is
still pending and the hand-over leaves no gap. The critical rule comes first in its group, so
the warning sees it in the same evaluation.

Every knob (the exporter's job selector, lead times, quantiles, ``for`` durations, risk levels,
limits, runbook and Grafana links) is in ``CONFIG`` of linborg/mixin/__init__.py, which the
recording rules and the dashboards read too; series names come from linborg.families.
``runbook_url`` is the runbook base URL + the alert's anchor in docs/runbooks.md; ``dashboard_url``
is there only when a ``grafana_url`` is configured.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from linborg import families as F
from linborg import mixin
from linborg.contract import METRICS, METRICS_BY_NAME, NAMESPACE, Metric
from linborg.duration import parse_duration
from linborg.mixin import CONFIG as CONFIG  # the knobs; benchmarks/incident_lead.py reads them here
from linborg.mixin.quality_rules import ACTUAL

_M = METRICS_BY_NAME  # a lookup, so a renamed metric fails here instead of in Prometheus


@dataclass(frozen=True)
class Family:
    """One predicted-breach alert: its name, what it is about and the metrics it watches."""

    alertname: str
    title: str
    metrics: tuple[Metric, ...]
    note: str


FAMILIES: tuple[Family, ...] = (
    Family(
        "LinborgMemoryExhaustionPredicted",
        "Memory exhaustion",
        (_M["mem_used_pct"],),
        "Memory (excluding caches) running out ends in swapping or the OOM killer.",
    ),
    Family(
        "LinborgSwapThrashingPredicted",
        "Swap thrashing",
        (_M["swap_used_pct"],),
        "Growing swap use means memory pressure; past it the host spends its time paging.",
    ),
    Family(
        "LinborgDiskFullPredicted",
        "Disk full",
        (_M["disk_usage_pct"],),
        "A full data filesystem stops writes: databases, logs and ingestion fail.",
    ),
    Family(
        "LinborgIOBottleneckPredicted",
        "I/O bottleneck",
        (_M["cpu_iowait_pct"],),
        "Thresholds are per profile (the exporter's linborg_threshold) and the exporter "
        "computes the time to breach against the server's own profile, so a database at its "
        "usual 15% iowait stays quiet while an ml_compute worker at a few percent does not.",
    ),
    Family(
        "LinborgConnectionLeakPredicted",
        "Connection leak",
        (_M["back_close_wait"], _M["front_close_wait"]),
        "Connections piling up in CLOSE_WAIT mean the application does not close sockets; file "
        "descriptors or ports run out next.",
    ),
    Family(
        "LinborgCPUSaturationPredicted",
        "CPU saturation",
        (_M["cpu_idle_pct"], _M["cpu_user_pct"], _M["load_average"]),
        "A saturated CPU queues work: latency grows and batch deadlines slip.",
    ),
)

INCIDENT = "LinborgPredictedIncident"
EXPORTER_DOWN = "LinborgExporterDown"
EXPORTER_ABSENT = "LinborgExporterAbsent"
NO_MODEL = "LinborgNoModelLoaded"
STALE = "LinborgForecastsStale"
CYCLES_FAILING = "LinborgExporterCyclesFailing"
QUERIES_FAILING = "LinborgPrometheusQueriesFailing"
LOW_COMPLETENESS = "LinborgLowDataCompleteness"

LEVELS = ("critical", "warning")  # order of the rules: critical first (the warning reads ALERTS)

# --- small builders -----------------------------------------------------------------------------


def _in_template(promql: str) -> str:
    """Return ``promql`` with single-quoted strings, to sit inside a Go template string.

    The mixin refuses quotes inside selector values, so swapping them is exact.
    """
    return promql.replace('"', "'")


def _regex(values: list[str] | tuple[str, ...]) -> str:
    return "|".join(values)


def _value_fmt(m: Metric) -> str:
    """Return the Go printf format of a forecast value of ``m``."""
    return "%.1f%%" if m.unit == "percent" else f"%.1f {m.unit}"


def _below(m: Metric) -> bool:
    return m.direction == "below"


def _pessimistic(m: Metric) -> str:
    return "0.1" if _below(m) else "0.9"


def _quantile(q: str, m: Metric) -> str:
    return _pessimistic(m) if q == "pessimistic" else q


def _quantile_name(q: str, m: Metric) -> str:
    if q == "pessimistic":
        return f"pessimistic (p{round(float(_pessimistic(m)) * 100)})"
    return f"p{round(float(q) * 100)}"


def _horizons_within(cfg: Mapping[str, Any], lead: str) -> str:
    return _regex([h for h in cfg["horizons"] if parse_duration(h) <= parse_duration(lead)])


def _links(cfg: Mapping[str, Any], alertname: str, dashboard: str) -> dict[str, str]:
    """Return the runbook_url and, where Grafana is configured, dashboard_url annotations.

    ``dashboard``: "server" (the server detail dashboard, for the alert's server) or "exporter".
    """
    links = {"runbook_url": mixin.runbook_url(cfg, alertname)}
    query = "var-server={{ $labels.server }}" if dashboard == "server" else ""
    url = mixin.dashboard_url(cfg, dashboard, query)
    if url:
        links["dashboard_url"] = url
    return links


def _query_value(promql: str, args: str, fmt: str) -> str:
    """Return a template printing the first value of a PromQL query built with printf."""
    return (
        f'{{{{ with printf "{promql}" {args} | query }}}}'
        f"{{{{ . | first | value | {fmt} }}}}{{{{ else }}}}unknown{{{{ end }}}}"
    )


def _level_for(level: str, cfg: Mapping[str, Any]) -> tuple[str, str, str]:
    """Return (quantile, lead time, for) of a severity."""
    return cfg[f"{level}_quantile"], cfg[f"{level}_lead_time"], cfg[f"for_{level}"]


def _unless_critical_fires(alertname: str, on: str) -> str:
    return (
        f"unless on({on})\n"
        f'  ALERTS{{alertname="{alertname}",severity="critical",alertstate="firing"}}'
    )


# --- predicted breaches -------------------------------------------------------------------------


def _choose(branches: list[tuple[list[str], str]], label: str) -> str:
    """Return a Go template printing the text of the branch whose names hold ``$labels.<label>``.

    The last branch is the ``else``: the expression already limits the label to the names given.
    """
    if len(branches) == 1:
        return branches[0][1]
    out = ""
    for i, (names, text) in enumerate(branches[:-1]):
        test = (
            f'eq $labels.{label} "{names[0]}"'
            if len(names) == 1
            else f'match "^({_regex(names)})$" $labels.{label}'
        )
        out += f"{{{{ {'if' if i == 0 else 'else if'} {test} }}}}{text}"
    return out + f"{{{{ else }}}}{branches[-1][1]}{{{{ end }}}}"


def _per_metric(metrics: list[Metric], text: Callable[[Metric], str]) -> str:
    """Return a Go template printing ``text(m)`` for the metric in ``$labels.metric``."""
    groups: dict[str, list[str]] = {}
    for m in metrics:
        groups.setdefault(text(m), []).append(m.name)
    return _choose([(names, t) for t, names in groups.items()], "metric")


def _threshold_of(cfg: Mapping[str, Any], level: str) -> Callable[[Metric], str]:
    """Return m -> a template printing the alert's ``level`` threshold of m, with its unit."""

    def text(m: Metric) -> str:
        return _query_value(
            _threshold_query(cfg, level), THRESHOLD_ARGS, f'printf "{_threshold_fmt(m, True)}"'
        )

    return text


def _peak_of(cfg: Mapping[str, Any], q: str, lead: str) -> Callable[[Metric], str]:
    """Return m -> a template printing the worst forecast of m at quantile q within ``lead``."""

    def text(m: Metric) -> str:
        return _query_value(
            f"{'min' if _below(m) else 'max'}("
            + _in_template(
                mixin.exporter(
                    F.FORECAST,
                    cfg,
                    server="%s",
                    metric="%s",
                    q=_quantile(q, m),
                    horizon="=~" + _horizons_within(cfg, lead),
                )
            )
            + ")",
            "$labels.server $labels.metric",
            f'printf "{_value_fmt(m)}"',
        )

    return text


# --- what the metric does now, and what the forecast says next ----------------------------------
#
# A predicted alert on a metric that is already past its warning level must say so (issue 12):
# "front_close_wait 398, above warning 150; forecast to reach critical 600 in about 1h 40m",
# never "reaches warning in 5m". The annotations therefore read the metric's current value
# (CURRENT_VALUE_QUERY) and compare it with the thresholds in the template.
#
# Thresholds on the wire: the exporter exposes the thresholds it compares forecasts with as
# linborg_threshold{profile, metric, level} (linborg/thresholds.yaml with its thresholds_file
# applied), and the annotations query that series for the alert's own exporter (`instance`),
# profile and metric (THRESHOLD_QUERY). A thresholds_file changed in the exporter's config moves
# the risk scores, the times to breach and these texts together, with no `linborg rules`.
#
# Every annotation is its own template, so each one starts with the same prelude that sets:
#   $now, $known       the current value, and whether Prometheus has one (else "unknown")
#   $warn, $crit       the warning and critical thresholds from linborg_threshold (floats)
#   $warnText, $critText  the same formatted with $tfmt, or "unknown" without linborg_threshold
#   $limits            whether linborg_threshold gave both
#   $pastWarn/$pastCrit  whether $now is already at or past them (direction-aware; false when
#                      the current value or a threshold is unknown)
#   $past, $short, $verb "above"/"below"/"reach" (or "below"/"above"/"fall to" where low is bad)
#   $vfmt, $tfmt, $qname printf formats of the value and thresholds, the quantile's name


def _now_fmt(m: Metric, units: bool) -> str:
    """Return the Go printf format of the current value of ``m``: '398', '92.3%', '2.4 days'."""
    if m.unit == "percent":
        return "%.1f%%"
    number = "%.0f" if m.unit == "connections" else "%.1f"
    return f"{number} {m.unit}" if units else number


def _threshold_fmt(m: Metric, units: bool) -> str:
    """Return the Go printf format of a threshold of ``m``: '95%', '150' ('150 connections')."""
    if m.unit == "percent":
        return "%g%%"
    return f"%g {m.unit}" if units else "%g"


def _set(**values: str) -> str:
    return "".join(f"{{{{ ${name} = {value} }}}}" for name, value in values.items())


def _metric_vars(m: Metric, q: str, units: bool) -> str:
    """Return template actions setting the prelude's per-metric variables for ``m``."""
    text = _set(
        vfmt=f'"{_now_fmt(m, units)}"',
        tfmt=f'"{_threshold_fmt(m, units)}"',
        qname=f'"{_quantile_name(q, m)}"',
    )
    if _below(m):
        text += _set(up="false", past='"below"', short='"above"', verb='"fall to"')
    return text


def _with_query(
    promql: str, then: str, otherwise: str = "", args: str = "$labels.server $labels.metric"
) -> str:
    """Return a template running ``promql``, a printf format of ``args``.

    ``then`` sees the result as ``.``; ``otherwise`` is printed when the result is empty.
    """
    otherwise = f"{{{{ else }}}}{otherwise}" if otherwise else ""
    return f'{{{{ with printf "{promql}" {args} | query }}}}{then}{otherwise}{{{{ end }}}}'


#: The current value of $labels.metric on $labels.server: the quality rules' per-server actual
#: (it follows their `actuals`, the exporter's source queries) or, where that is not recorded
#: (yet: a fresh Prometheus evaluates the quality group only after its first interval), the
#: contract's default source series ``linborg_<metric>``.
CURRENT_VALUE_QUERY = (
    f"max({ACTUAL}{{server='%s',metric='%s'}}) or max({NAMESPACE}_%s{{server='%s'}})"
)


#: Arguments of THRESHOLD_QUERY: the alert's exporter (the one that made the forecast, with its
#: thresholds_file), the server's profile as that exporter saw it, and the metric.
THRESHOLD_ARGS = "$labels.instance $labels.profile $labels.metric"


def _threshold_query(cfg: Mapping[str, Any], level: str | None = None) -> str:
    """Return PromQL (a printf format of THRESHOLD_ARGS) of the alert's thresholds.

    Both levels, or only ``level``: linborg_threshold of the exporter's job, for the alert's
    instance, profile and metric.
    """
    labels = {"instance": "%s", "profile": "%s", "metric": "%s"}
    if level:
        labels["level"] = level
    return _in_template(mixin.exporter(F.THRESHOLD, cfg, **labels))


#: THRESHOLD_QUERY of the default config, both levels (tests and docs quote it).
THRESHOLD_QUERY = _threshold_query(CONFIG)


def _thresholds_from_the_exporter(cfg: Mapping[str, Any]) -> str:
    """Return template actions setting $warn, $crit and their texts from linborg_threshold."""
    each = (
        '{{ if eq .Labels.level "warning" }}'
        "{{ $warn = .Value }}{{ $warnText = printf $tfmt .Value }}{{ $hasWarn = true }}"
        '{{ else if eq .Labels.level "critical" }}'
        "{{ $crit = .Value }}{{ $critText = printf $tfmt .Value }}{{ $hasCrit = true }}"
        "{{ end }}"
    )
    return (
        f'{{{{ range printf "{_threshold_query(cfg)}" {THRESHOLD_ARGS} | query }}}}'
        f"{each}{{{{ end }}}}"
    )


#: A duration from a query result as "1h 40m" or "5m" (humanizeDuration, less " 0m 0s").
_DURATION_NOW = '{{ . | first | value | humanizeDuration | reReplaceAll "( 0m)? 0s$" "" }}'


def _prelude(
    metrics: list[Metric], q: str, cfg: Mapping[str, Any], units: bool, thresholds: bool = True
) -> str:
    """Return the template actions that set the prelude's variables (see above).

    Without ``thresholds`` (an annotation that prints the current value only) linborg_threshold
    is not queried and $pastWarn/$pastCrit stay false.
    """
    mixed = any(_below(m) for m in metrics) and not all(_below(m) for m in metrics)
    current = _with_query(
        CURRENT_VALUE_QUERY,
        "{{ $now = . | first | value }}{{ $known = true }}",
        args="$labels.server $labels.metric $labels.metric $labels.server",
    )
    if mixed:
        compare = (
            "{{ if $up }}{{ $pastWarn = ge $now $warn }}{{ $pastCrit = ge $now $crit }}"
            "{{ else }}{{ $pastWarn = le $now $warn }}{{ $pastCrit = le $now $crit }}{{ end }}"
        )
    else:
        op = "le" if _below(metrics[0]) else "ge"
        compare = f"{{{{ $pastWarn = {op} $now $warn }}}}{{{{ $pastCrit = {op} $now $crit }}}}"
    return (
        "{{ $now := 0.0 }}{{ $known := false }}{{ $warn := 0.0 }}{{ $crit := 0.0 }}"
        '{{ $warnText := "unknown" }}{{ $critText := "unknown" }}'
        "{{ $hasWarn := false }}{{ $hasCrit := false }}"
        '{{ $up := true }}{{ $past := "above" }}{{ $short := "below" }}{{ $verb := "reach" }}'
        '{{ $vfmt := "" }}{{ $tfmt := "" }}{{ $qname := "" }}'
        + current
        + _per_metric(metrics, lambda m: _metric_vars(m, q, units))
        + (_thresholds_from_the_exporter(cfg) if thresholds else "")
        + "{{ $limits := and $hasWarn $hasCrit }}{{ $pastWarn := false }}{{ $pastCrit := false }}"
        + (f"{{{{ if and $known $limits }}}}{compare}{{{{ end }}}}" if thresholds else "")
    )


def _ttb_query(cfg: Mapping[str, Any], level: str, q: str) -> str:
    ttb = mixin.exporter(F.TIME_TO_BREACH_SECONDS, cfg, server="%s", metric="%s", level=level, q=q)
    return f"min({_in_template(ttb)})"


def _window(cfg: Mapping[str, Any]) -> str:
    """Return the exporter's longest horizon: no time to breach lies beyond it."""
    return max(cfg["horizons"], key=parse_duration)


def _state(metrics: list[Metric], level: str, cfg: Mapping, units: bool) -> str:
    """Return a template saying what the metric does now and what the forecast says next.

    Past critical: "front_close_wait 650, above critical 600". Past warning: "front_close_wait
    398, above warning 150; forecast to reach critical 600 in about 1h 40m" (or "forecast stays
    below critical 600 for 8h"). Below warning: "front_close_wait 95, below warning 150; forecast
    to reach warning 150 in about 50m and critical 600 in about 3h". No current value:
    "front_close_wait current value unknown; forecast above warning 150 in about 5m"; no
    linborg_threshold to compare it with: "front_close_wait 95; forecast above warning unknown
    in about 5m". The forecast is the alert's own quantile. With ``units`` (the description): no
    metric name ("now 398 connections, above warning 150 connections; pessimistic (p90) ...").
    """
    q, _, _ = _level_for(level, cfg)
    window = _window(cfg)
    fc = "{{ $qname }} forecast" if units else "forecast"
    warn, crit = "{{ $warnText }}", "{{ $critText }}"

    def at(lv: str, then: str, otherwise: str = "") -> str:
        return _with_query(_ttb_query(cfg, lv, q), then, otherwise)

    def in_about(verb: str) -> tuple[str, str]:
        """Return (warning clause, critical clause) with ``verb``: 'to reach' or 'above'."""
        to_crit = f"{fc} {verb} critical {crit} in about {_DURATION_NOW}"
        and_crit = at("critical", f" and critical {crit} in about {_DURATION_NOW}")
        return f"{fc} {verb} warning {warn} in about {_DURATION_NOW}{and_crit}", to_crit

    def stays(lv: str, value: str) -> str:
        return f"{fc} stays {{{{ $short }}}} {lv} {value} for {window}"

    to_warn, to_crit = in_about("to {{ $verb }}")
    # Below warning, the warning time first; the critical one alone where the exporter has no
    # warning crossing (the critical rule's own condition then still shows).
    below = at("warning", to_warn, at("critical", to_crit, stays("warning", warn)))
    past_warn = at("critical", to_crit, stays("critical", crit))
    seen_warn, seen_crit = in_about("{{ $past }}")
    unknown = at("warning", seen_warn, at("critical", seen_crit, stays("warning", warn)))
    now = ("now " if units else "") + "{{ printf $vfmt $now }}"
    return (
        _prelude(metrics, q, cfg, units)
        + ("" if units else "{{ $labels.metric }} ")
        + f"{{{{ if and $known $limits }}}}{now}, "
        + f"{{{{ if $pastCrit }}}}{{{{ $past }}}} critical {crit}"
        + f"{{{{ else if $pastWarn }}}}{{{{ $past }}}} warning {warn}; {past_warn}"
        + f"{{{{ else }}}}{{{{ $short }}}} warning {warn}; {below}{{{{ end }}}}"
        + f"{{{{ else }}}}{{{{ if $known }}}}{now}{{{{ else }}}}current value unknown{{{{ end }}}}"
        + f"; {unknown}{{{{ end }}}}"
    )


def _lead_time(metrics: list[Metric], level: str, cfg: Mapping) -> str:
    """Return a template of the time until the forecast reaches ``level``: 0s if already past."""
    q, _, _ = _level_for(level, cfg)
    past = "$pastCrit" if level == "critical" else "$pastWarn"
    return (
        _prelude(metrics, q, cfg, units=False)
        + f"{{{{ if {past} }}}}0s{{{{ else }}}}"
        + _with_query(_ttb_query(cfg, level, q), _DURATION_NOW, "unknown")
        + "{{ end }}"
    )


def _current_value(metrics: list[Metric], level: str, cfg: Mapping) -> str:
    q, _, _ = _level_for(level, cfg)
    return (
        _prelude(metrics, q, cfg, units=True, thresholds=False)
        + "{{ if $known }}{{ printf $vfmt $now }}{{ else }}unknown{{ end }}"
    )


@dataclass(frozen=True)
class _Texts:
    """Annotation pieces of a predicted alert, each a Go template over $labels.metric."""

    state: str  # the summary's "front_close_wait 398, above warning 150; forecast to ..."
    state_units: str  # the same with units and the quantile's name, for the description
    rule: str  # "the pessimistic (p90) forecast above warning within 8h"
    threshold: str
    peak: str
    worst: str
    lead_time: str
    current_value: str


def _texts(metrics: list[Metric], level: str, cfg: Mapping) -> _Texts:
    q, lead, _ = _level_for(level, cfg)
    return _Texts(
        state=_state(metrics, level, cfg, units=False),
        state_units=_state(metrics, level, cfg, units=True),
        rule=f"{{{{ $qname }}}} forecast {{{{ $past }}}} {level} within {lead}",
        threshold=_per_metric(metrics, _threshold_of(cfg, level)),
        peak=_per_metric(metrics, _peak_of(cfg, q, lead)),
        worst=_per_metric(metrics, lambda m: "Lowest" if _below(m) else "Highest"),
        lead_time=_lead_time(metrics, level, cfg),
        current_value=_current_value(metrics, level, cfg),
    )


def _metric_matcher(metrics: list[Metric]) -> str:
    names = [m.name for m in metrics]
    return names[0] if len(names) == 1 else "=~" + _regex(names)


def _family_rule(fam: Family, level: str, cfg: Mapping) -> dict:
    q, lead, for_ = _level_for(level, cfg)
    metrics = list(fam.metrics)
    ttb = mixin.exporter(
        F.TIME_TO_BREACH_SECONDS, cfg, metric=_metric_matcher(metrics), level=level, q=q
    )
    expr = f"{ttb} <= {parse_duration(lead)}"
    if level == "warning":
        expr += "\n" + _unless_critical_fires(fam.alertname, "server, metric") + "\n"
    t = _texts(metrics, level, cfg)
    return {
        "alert": fam.alertname,
        "expr": expr,
        "for": for_,
        "labels": {"severity": level},
        "annotations": {
            "summary": f"{fam.title} predicted on {{{{ $labels.server }}}}: {t.state}.",
            "description": (
                f"{{{{ $labels.metric }}}} on {{{{ $labels.server }}}} (profile "
                f"{{{{ $labels.profile }}}}): {t.state_units}. Alerting on the {t.rule}. "
                f"{t.worst} {{{{ $qname }}}} forecast within {lead}: {t.peak}. {fam.note}"
            ),
            "current_value": t.current_value,
            "predicted_value": t.peak,
            "threshold": t.threshold,
            "lead_time": t.lead_time,
            **_links(cfg, fam.alertname, "server"),
        },
    }


def family_rules(cfg: Mapping[str, Any]) -> list[dict]:
    """Return the predicted-breach rules: per family a critical rule, then a warning rule."""
    return [_family_rule(fam, level, cfg) for fam in FAMILIES for level in LEVELS]


def _incident_rule(level: str, cfg: Mapping[str, Any]) -> dict:
    q, lead, for_ = _level_for(level, cfg)
    metrics = [m for m in METRICS if m.name not in cfg["incident_ignored_drivers"]]
    risk_min = cfg[f"risk_{level}"]
    risk = mixin.exporter(
        F.RISK_SCORE,
        cfg,
        window=cfg["risk_window"],
        driver="!~" + _regex(cfg["incident_ignored_drivers"]),
    )
    ttb = mixin.exporter(F.TIME_TO_BREACH_SECONDS, cfg, level=level, q=q)
    expr = (
        f'label_replace({risk}, "metric", "$1", "driver", "(.*)") >= {risk_min}\n'
        f"and on(server, metric)\n"
        f"  {ttb} <= {parse_duration(lead)}\n"
    )
    if level == "warning":
        expr += _unless_critical_fires(INCIDENT, "server") + "\n"
    t = _texts(metrics, level, cfg)
    score = '{{ $value | printf "%.0f" }}'
    return {
        "alert": INCIDENT,
        "expr": expr,
        "for": for_,
        "labels": {"severity": level},
        "annotations": {
            "summary": f"Predicted incident on {{{{ $labels.server }}}} (risk {score}): {t.state}.",
            "description": (
                f"The {cfg['risk_window']} risk score of {{{{ $labels.server }}}} (profile "
                f"{{{{ $labels.profile }}}}) is {score}, driven by {{{{ $labels.metric }}}}: "
                f"{t.state_units}. Alerting on risk >= {risk_min} and the {t.rule}. {t.worst} "
                f"{{{{ $qname }}}} forecast within {lead}: {t.peak}."
            ),
            "current_value": t.current_value,
            "predicted_value": t.peak,
            "threshold": t.threshold,
            "lead_time": t.lead_time,
            **_links(cfg, INCIDENT, "server"),
        },
    }


def incident_rules(cfg: Mapping[str, Any]) -> list[dict]:
    """Return the two LinborgPredictedIncident rules, critical first."""
    return [_incident_rule(level, cfg) for level in LEVELS]


# --- exporter health ----------------------------------------------------------------------------


def _health_rule(
    alertname: str,
    expr: str,
    for_: str,
    cfg: Mapping[str, Any],
    summary: str,
    description: str,
    threshold: str,
    server: str = "{{ $labels.instance }}",
) -> dict:
    return {
        "alert": alertname,
        "expr": expr,
        "for": for_,
        "labels": {
            "severity": cfg["health_severity"],
            "server": server,
            "profile": cfg["health_profile"],
        },
        "annotations": {
            "summary": summary,
            "description": description,
            "threshold": threshold,
            **_links(cfg, alertname, "exporter"),
        },
    }


def health_rules(cfg: Mapping[str, Any]) -> list[dict]:
    """Return the exporter-health rules."""
    job = cfg["exporter_selector"]
    up = mixin.selector("up", job)

    def sel(name: str) -> str:
        return mixin.exporter(name, cfg)

    stale = cfg["staleness_max"]
    cycles_w, queries_w = cfg["cycle_failure_window"], cfg["query_failure_window"]
    cycle_ratio, query_ratio = cfg["cycle_failure_ratio"], cfg["query_failure_ratio"]
    pct = "{{ $value | humanizePercentage }}"
    return [
        _health_rule(
            EXPORTER_DOWN,
            f"{up} == 0",
            cfg["for_exporter_down"],
            cfg,
            "LINBORG exporter {{ $labels.instance }} is down.",
            f"Prometheus has not scraped the LINBORG exporter {{{{ $labels.instance }}}} ({up}) "
            f"for {cfg['for_exporter_down']}: the servers it forecasts have no forecasts, "
            f"risk scores or predicted alerts.",
            "up == 0",
        ),
        _health_rule(
            EXPORTER_ABSENT,
            f"absent({up})",
            cfg["for_exporter_absent"],
            cfg,
            f"No LINBORG exporter target ({up}) is being scraped.",
            f"Prometheus has no target matching {{{job}}} for {cfg['for_exporter_absent']}: "
            f"no server is forecast and no predicted alert can fire. The scrape configuration or "
            f"service discovery lost the exporter.",
            f"no {up} series",
            server=cfg["absent_server"],
        ),
        _health_rule(
            NO_MODEL,
            f"{up} == 1\nunless on(job, instance)\n  " + sel(F.MODEL_INFO) + "\n",
            cfg["for_no_model"],
            cfg,
            "LINBORG exporter {{ $labels.instance }} serves no model.",
            f"The exporter {{{{ $labels.instance }}}} answers scrapes but exposes no "
            f"{F.MODEL_INFO} for {cfg['for_no_model']}: no model is loaded, so it produces "
            f"no forecasts.",
            f"{F.MODEL_INFO} absent",
        ),
        _health_rule(
            STALE,
            f"time() - {sel(F.LAST_SUCCESS_TIMESTAMP_SECONDS)} > {parse_duration(stale)}",
            cfg["for_stale"],
            cfg,
            "LINBORG forecasts from {{ $labels.instance }} are stale.",
            f"The last successful cycle of the exporter {{{{ $labels.instance }}}} was "
            f"{{{{ $value | humanizeDuration }}}} ago (limit {stale}). Past its "
            f"max_snapshot_age the exporter stops exporting forecasts, and every predicted "
            f"alert for its servers goes quiet.",
            stale,
        ),
        _health_rule(
            CYCLES_FAILING,
            f"rate({sel(F.CYCLE_FAILURES_TOTAL)}[{cycles_w}])\n"
            f"/\nrate({sel(F.CYCLES_TOTAL)}[{cycles_w}])\n"
            f"> {cycle_ratio}\n",
            cfg["for_cycles_failing"],
            cfg,
            "LINBORG exporter {{ $labels.instance }} fails cycles.",
            f"{pct} of the exporter's cycles in the last {cycles_w} got no data from "
            f"Prometheus (limit {cycle_ratio:.0%}). Failed cycles keep the previous forecasts, "
            f"which age towards max_snapshot_age.",
            f"{cycle_ratio:.0%} of cycles over {cycles_w}",
        ),
        _health_rule(
            QUERIES_FAILING,
            f"rate({sel(F.QUERY_FAILURES_TOTAL)}[{queries_w}])\n"
            f"/\nrate({sel(F.QUERIES_TOTAL)}[{queries_w}])\n"
            f"> {query_ratio}\n",
            cfg["for_queries_failing"],
            cfg,
            "LINBORG exporter {{ $labels.instance }}: Prometheus queries failing.",
            f"{pct} of the exporter's queries to Prometheus failed over the last {queries_w} "
            f"(limit {query_ratio:.0%}). The metrics whose queries fail get no new history, so "
            f"their forecasts degrade.",
            f"{query_ratio:.0%} of queries over {queries_w}",
        ),
        {
            "alert": LOW_COMPLETENESS,
            "expr": f"{sel(F.DATA_COMPLETENESS_RATIO)} < {cfg['completeness_min']}",
            "for": cfg["for_low_completeness"],
            "labels": {"severity": cfg["health_severity"]},
            "annotations": {
                "summary": "Forecasts for {{ $labels.server }} rest on incomplete data.",
                "description": (
                    f"Only {pct} of the 24h history of {{{{ $labels.server }}}} (profile "
                    f"{{{{ $labels.profile }}}}) that the model reads is present (limit "
                    f"{cfg['completeness_min']:.0%}). Its forecasts, risk score and predicted "
                    f"alerts are less reliable; missing metrics may be absent altogether."
                ),
                "threshold": f"{cfg['completeness_min']:.0%}",
                **_links(cfg, LOW_COMPLETENESS, "server"),
            },
        },
    ]


# --- the file -----------------------------------------------------------------------------------


def rule_groups(config: Mapping[str, Any] | None = None) -> dict:
    """Return the rule file as data; ``config`` overrides keys of the mixin's CONFIG."""
    cfg = mixin.config(config)
    return {
        "groups": [
            {
                "name": "linborg-predicted",
                "rules": incident_rules(cfg) + family_rules(cfg),
            },
            {"name": "linborg-exporter", "rules": health_rules(cfg)},
        ]
    }


def render(config: Mapping[str, Any] | None = None) -> str:
    """Return the YAML text of prometheus/rules/linborg.alerts.yml."""
    from linborg.mixin.rulefiles import dump_rules

    return dump_rules(rule_groups(config))
