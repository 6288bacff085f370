"""The early-warning scoreboard: every detector scored at the same checks on the same servers.

Five families of detectors, all but ``alert_rule`` swept over their knobs, so that each is
shown at its best and not as a strawman:

- ``tft_risk``: the TFT risk score (linborg.risk) at or above a threshold;
- ``tft_time_to_breach``: the TFT forecast (p50, or the pessimistic quantile) reaches the
  warning or critical level of any metric within N hours;
- ``static_threshold``: the current value is past a level, with no ``for`` or with
  ``for: 15m`` (past the level at this sample and every sample of the 15 minutes before it),
  which is what operators run today. The level is swept like the TFT's risk threshold: the
  warning level, the critical level, and 25%, 50% and 75% of the way from warning to critical
  (an operator who finds the packaged warning level too noisy for the fleet moves it towards
  critical; one knob for the whole fleet, as the risk threshold is one);
- ``alert_rule``: the shipped LinborgPredictedIncident rules' conditions (linborg.mixin's
  ``CONFIG``): the risk score at or above the level's ``risk_*``, its driver not an ignored
  one, and the driver's forecast (the level's quantile) past the level within its lead time;
  the critical rule alone and either severity, each as evaluated at a check and held at two
  consecutive checks (15 minutes, the rules' ``for:`` at this check interval). What the shipped
  alerts would send, not a sweep: this family is not tuned to the budget;
- ``predict_linear``: as the node-mixin writes it, ``predict_linear(metric[LOOKBACK], HORIZON)``
  past the critical or warning level, with no guard, or with ``and`` a guard on the current
  value: ``half`` (already at least halfway from the safe end of the metric's range to its
  warning level, like the node-mixin's "and less than 40% free") or ``warning`` (already
  past the warning level).

and one reference that no one can run, because it reads the future:

- ``perfect_forecast``: the risk score (linborg.risk) of a forecast that is exactly the actual
  future, with a band of zero width: at each check, 100 x the largest urgency of the steps in
  the next 8 hours where any metric is actually past the warning level (``past warning``) or
  the critical level (``past critical``), at or above the same thresholds as ``tft_risk``.
  What today's risk definition and thresholds would score with a perfect network: where it
  falls short of the targets, a better network cannot close the gap alone. Near the end of
  the data the future is cut short and the score reads only the steps that are there.

A detector warns a server at a check when any of the server's metrics triggers it. The scoring
rules are ``RULES`` below, word for word what the report prints. This module uses numpy and
pandas and linborg.risk only (no torch), so it is tested on hand-made arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from linborg.risk import HORIZON_STEPS, urgency

WARN_EARLIEST_SECONDS = 8 * 3600  # a warning counts from 8 hours before onset ...
WARN_LATEST_SECONDS = 30 * 60  # ... up to and including 30 minutes before onset
LIMIT_PRECURSOR_SECONDS = 45 * 60  # the limit: precursors that began at least this early
FALSE_BUDGET = 1.0  # false warnings per 100 server-days at the headline operating point
#: 1, 2, 5, then 10, 15, ..., 95: the low end is where a risk counted above healthy (linborg.risk)
#: is already unusual for the profile.
RISK_THRESHOLDS = (1, 2, 5, *range(10, 100, 5))
TTB_WITHIN_HOURS = (1, 2, 4, 8)
LEVELS = ("warning", "critical")  # the order of time_to_breach's level axis
TTB_QUANTILES = ("p50", "pessimistic")  # the order of time_to_breach's quantile axis
STATIC_FOR_STEPS = {"0m": 0, "15m": 3}  # `for: 15m`: this sample and the 3 before it
#: Static levels: this share of the way from the warning level (0) to the critical level (1).
STATIC_LEVEL_FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)
LINEAR_LOOKBACKS = {"1h": 12, "6h": 72}  # samples in (t - lookback, t]
LINEAR_HORIZONS = {"2h": 24, "4h": 48, "8h": 96}  # steps ahead of now
GUARDS = ("none", "half", "warning")
GUARD_FRACTION = 0.5  # "half": this share of the way from the safe end of the range to warning
FAMILIES = (
    "tft_risk",
    "tft_time_to_breach",
    "alert_rule",
    "static_threshold",
    "predict_linear",
    "perfect_forecast",
)
#: Families that read the future: references for the report, never compared as detectors.
REFERENCE_FAMILIES = ("perfect_forecast",)
ALERT_NAME = "LinborgPredictedIncident"
LINEAR_CHUNK = 32  # checks fitted at a time (bounds memory: servers x 32 x 72 x 14 floats)

RULES = (
    "Every detector is evaluated at the same checks (every {every} minutes on every server) and "
    "warns a server at a check when any of the server's metrics triggers it. A precursor "
    "incident counts as warned (true) when its server is warned at a check between 8 hours and "
    "30 minutes before onset, both ends included: a warning exactly 30 minutes before onset "
    "counts, one 29 minutes before does not. Only incidents whose whole window [onset - 8 h, "
    "onset - 30 min] lies within the checked span are scored. Lead time of a warned incident = "
    "onset minus the first warning check in that window; the median and 25th percentile are "
    "over warned incidents. A warning episode is a maximal run of consecutive warning checks on "
    "one server; it is a false warning when, at its first check t, no incident of that server "
    "has its onset in [t, t + 8 h] and none is in progress (onset <= t <= end). An episode "
    "counts once however long it lasts, and every episode on a server without incidents is "
    "false. Server-days = servers x (last check - first check + one check interval). Each "
    "family's best member is the one with the highest recall among members with at most "
    "{budget:g} false warning per 100 server-days (ties: fewer false warnings, then longer "
    "median lead); a family with no member within that budget has recall 0 there and its "
    "least-false member is shown. Minutes earlier than static: per scored precursor incident, "
    "the first warning check in [onset - 8 h, end] of the best static-threshold detector minus "
    "that of the detector (one that stays silent there counts as warning at the end). The "
    "limit is the share of scored precursor incidents whose precursor began at least 45 "
    "minutes before onset: no detector can reliably do better."
)


@dataclass(frozen=True)
class Detector:
    """One detector: its warnings per server and check."""

    name: str
    family: str
    params: dict
    #: (servers, checks) True where the detector warns the server at the check.
    warned: np.ndarray


@dataclass(frozen=True)
class Incident:
    """One labelled incident, times in Unix seconds."""

    server: int  # index into the servers list
    type: str
    metric: str
    precursor_start: int | None
    onset: int
    end: int


def past(values: np.ndarray, level: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Return True where ``values`` is past ``level`` (>= for direction +1, <= for -1).

    Missing values (NaN) are never past a level.
    """
    with np.errstate(invalid="ignore"):
        return np.where(direction > 0, values >= level, values <= level) & np.isfinite(values)


def fit_line(windows: np.ndarray, valid: np.ndarray | None = None):
    """Return (value at now, slope per step) of the least-squares line through ``windows``.

    ``windows``: (..., points, metrics), the last point being now; missing samples are NaN and
    left out, as Prometheus leaves out absent samples. Fewer than 2 samples give NaN. This is
    PromQL's ``predict_linear`` fit: intercept taken at the evaluation time.
    """
    y = np.asarray(windows, np.float64)
    points = y.shape[-2]
    x = np.arange(-points + 1, 1, dtype=np.float64)[:, None]
    m = np.isfinite(y)
    if valid is not None:
        m &= valid
    y = np.where(m, y, 0.0)
    n = m.sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        xm = (m * x).sum(axis=-2) / n
        ym = y.sum(axis=-2) / n
        dx = np.where(m, x - xm[..., None, :], 0.0)
        sxx = (dx * dx).sum(axis=-2)
        slope = (dx * (y - ym[..., None, :])).sum(axis=-2) / sxx
        at_now = ym - slope * xm
    ok = (n >= 2) & (sxx > 0)
    return np.where(ok, at_now, np.nan), np.where(ok, slope, np.nan)


def linear_at_checks(values: np.ndarray, checks: np.ndarray, lookback: int):
    """Return (value at now, slope) of the line over ``lookback`` samples at each check.

    ``values``: (servers, steps, metrics); ``checks``: step indices. Results (servers, checks,
    metrics). Samples before the first step are missing.
    """
    s, _, m = values.shape
    at_now = np.full((s, len(checks), m), np.nan)
    slope = np.full_like(at_now, np.nan)
    offs = np.arange(-lookback + 1, 1)
    for a in range(0, len(checks), LINEAR_CHUNK):
        idx = checks[a : a + LINEAR_CHUNK, None] + offs[None, :]  # (c, lookback)
        inside = idx >= 0
        win = values[:, np.clip(idx, 0, None)]  # (servers, c, lookback, metrics)
        at_now[:, a : a + LINEAR_CHUNK], slope[:, a : a + LINEAR_CHUNK] = fit_line(
            win, inside[None, :, :, None]
        )
    return at_now, slope


def static_warned(values, checks, level, direction, for_steps: int = 0) -> np.ndarray:
    """Return (servers, checks): some metric past ``level`` now and for ``for_steps`` before.

    ``values`` (servers, steps, metrics); ``level`` and ``direction`` (servers, metrics).
    A missing sample breaks the ``for`` (Prometheus resets a pending alert without a sample).
    """
    lv, d = level[:, None, :], direction[:, None, :]
    ok = np.ones((values.shape[0], len(checks), values.shape[2]), bool)
    for k in range(for_steps + 1):
        idx = checks - k
        ok &= past(values[:, np.clip(idx, 0, None)], lv, d) & (idx >= 0)[None, :, None]
    return ok.any(axis=2)


def tft_detectors(risk: np.ndarray, ttb: np.ndarray, thresholds=RISK_THRESHOLDS) -> list:
    """Return the TFT detectors from the risk score and time to breach at every check.

    ``risk``: (servers, checks) 0-100. ``ttb``: (servers, checks, 2 levels, 2 quantiles)
    seconds to the first breach over all metrics (the minimum), NaN when none within 8 h.
    """
    out = [
        Detector(f"tft_risk >= {t:g}", "tft_risk", {"threshold": t}, risk >= t) for t in thresholds
    ]
    for li, level in enumerate(LEVELS):
        for qi, q in enumerate(TTB_QUANTILES):
            for h in TTB_WITHIN_HOURS:
                with np.errstate(invalid="ignore"):
                    warned = ttb[:, :, li, qi] <= h * 3600
                out.append(
                    Detector(
                        f"tft {q} reaches {level} within {h} h",
                        "tft_time_to_breach",
                        {"quantile": q, "level": level, "within_hours": h},
                        warned,
                    )
                )
    return out


def alert_rule_detectors(risk, driver_ttb, eligible, rule) -> list:
    """Return the shipped predicted-incident alert rules' conditions at every check.

    ``risk``: (servers, checks) 0-100. ``driver_ttb``: (servers, checks, 2 levels, 2
    quantiles) the time to breach of the metric driving the risk, NaN when none within 8 h.
    ``eligible``: (servers, checks) whether that driver may raise an incident. ``rule``: per
    level, (risk at least, quantile index into TTB_QUANTILES, lead time in seconds).
    """
    fired = {}
    for li, level in enumerate(LEVELS):
        risk_min, qi, lead = rule[level]
        with np.errstate(invalid="ignore"):
            fired[level] = eligible & (risk >= risk_min) & (driver_ttb[:, :, li, qi] <= lead)
    fired["any severity"] = fired["critical"] | fired["warning"]
    out = []
    for severity in ("critical", "any severity"):
        now = fired[severity]
        held = now.copy()
        held[:, 1:] &= now[:, :-1]
        held[:, 0] = False  # nothing before the first check
        name = f"{ALERT_NAME} {severity}"
        out.append(Detector(name, "alert_rule", {"severity": severity, "held": 1}, now))
        out.append(
            Detector(f"{name} held 2 checks", "alert_rule", {"severity": severity, "held": 2}, held)
        )
    return out


def static_level_name(fraction: float) -> str:
    """Return the name of the static level ``fraction`` of the way from warning to critical."""
    if fraction == 0:
        return "warning"
    if fraction == 1:
        return "critical"
    return f"{fraction:.0%} warning to critical"


def baseline_detectors(values, checks, warn, crit, direction, safe) -> list:
    """Return the static-threshold and predict_linear detectors at ``checks``.

    ``values``: (servers, steps, metrics) raw with NaN; ``checks``: step indices; ``warn``,
    ``crit``, ``direction`` and ``safe`` (the harmless end of each metric's range: its minimum
    when higher is worse, its maximum when lower is worse): (servers, metrics).
    """
    levels = {"warning": warn, "critical": crit}
    out = []
    for fraction in STATIC_LEVEL_FRACTIONS:
        level = static_level_name(fraction)
        lv = warn + fraction * (crit - warn)
        for name, steps in STATIC_FOR_STEPS.items():
            w = static_warned(values, checks, lv, direction, steps)
            rule = f"static {level}" + (f" for {name}" if steps else "")
            params = {"level": level, "fraction": fraction, "for": name}
            out.append(Detector(rule, "static_threshold", params, w))
    current = values[:, checks]  # (servers, checks, metrics)
    d = direction[:, None, :]
    guards = {
        "none": np.ones(current.shape, bool),
        "half": past(current, (safe + GUARD_FRACTION * (warn - safe))[:, None, :], d),
        "warning": past(current, warn[:, None, :], d),
    }
    for lb, points in LINEAR_LOOKBACKS.items():
        at_now, slope = linear_at_checks(values, checks, points)
        for hz, ahead in LINEAR_HORIZONS.items():
            pred = at_now + slope * ahead
            for level, lv in levels.items():
                crosses = past(pred, lv[:, None, :], d)
                for g in GUARDS:
                    w = (crosses & guards[g]).any(axis=2)
                    out.append(
                        Detector(
                            f"predict_linear[{lb}] {hz} {level}"
                            + ("" if g == "none" else f" guard {g}"),
                            "predict_linear",
                            {"lookback": lb, "horizon": hz, "level": level, "guard": g},
                            w,
                        )
                    )
    return out


def _seconds(text) -> int | None:
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return None
    t = pd.Timestamp(text)
    if t.tzinfo is None:
        t = t.tz_localize("UTC")
    return int(t.timestamp())


def parse_incidents(labels: list[dict], servers: list[str]) -> list[Incident]:
    """Return the labels of ``servers`` with times in seconds (others are left out)."""
    index = {s: i for i, s in enumerate(servers)}
    out = []
    for x in labels or []:
        if x.get("server") not in index or x.get("onset") is None:
            continue
        onset = _seconds(x["onset"])
        end = _seconds(x.get("end"))
        pre = _seconds(x.get("precursor_start")) if x.get("has_precursor", True) else None
        out.append(
            Incident(
                server=index[x["server"]],
                type=str(x.get("type", "")),
                metric=str(x.get("metric", "")),
                precursor_start=pre,
                onset=onset,
                end=onset if end is None else end,
            )
        )
    return out


def _quantile(xs, q) -> float:
    return float(np.percentile(xs, q)) if len(xs) else float("nan")


class _Incidents:
    """The scored incidents and their check ranges, computed once for every detector."""

    def __init__(self, incidents: list[Incident], check_times: np.ndarray):
        ct = check_times
        first, last = ct[0], ct[-1]
        self.all = incidents
        self.scored = [
            inc
            for inc in incidents
            if inc.onset - WARN_EARLIEST_SECONDS >= first
            and inc.onset - WARN_LATEST_SECONDS <= last
        ]
        self.precursor = [i for i in self.scored if i.precursor_start is not None]
        self.sudden = [i for i in self.scored if i.precursor_start is None]

        def ranges(incs, upto):
            a = np.searchsorted(ct, [i.onset - WARN_EARLIEST_SECONDS for i in incs], "left")
            b = np.searchsorted(ct, [upto(i) for i in incs], "right")
            return list(zip(a.tolist(), b.tolist(), strict=True))

        self.window = ranges(self.precursor, lambda i: i.onset - WARN_LATEST_SECONDS)
        self.sudden_window = ranges(self.sudden, lambda i: i.onset - WARN_LATEST_SECONDS)
        self.until_end = ranges(self.precursor, lambda i: i.end)
        self.by_server: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for inc in incidents:
            on, en = self.by_server.get(inc.server, (np.empty(0, int), np.empty(0, int)))
            self.by_server[inc.server] = (np.append(on, inc.onset), np.append(en, inc.end))


def _first_warning(w: np.ndarray, ct: np.ndarray, a: int, b: int) -> int | None:
    part = w[a:b]
    return int(ct[a + int(part.argmax())]) if part.any() else None


def score_detector(warned: np.ndarray, check_times: np.ndarray, incs: _Incidents, server_days):
    """Return (scoreboard row, first warning check in [onset - 8 h, end] per precursor incident).

    The first warnings are Unix seconds, NaN where the detector stays silent.
    """
    ct = check_times
    leads, hits = [], []
    for inc, (a, b) in zip(incs.precursor, incs.window, strict=True):
        t = _first_warning(warned[inc.server], ct, a, b)
        hits.append(t is not None)
        if t is not None:
            leads.append((inc.onset - t) / 60)
    sudden_hits = sum(
        bool(warned[inc.server, a:b].any())
        for inc, (a, b) in zip(incs.sudden, incs.sudden_window, strict=True)
    )
    false = 0
    for i in range(warned.shape[0]):
        w = warned[i]
        starts = ct[np.flatnonzero(w & ~np.concatenate([[False], w[:-1]]))]
        if not len(starts):
            continue
        on, en = incs.by_server.get(i, (np.empty(0, int), np.empty(0, int)))
        t = starts[:, None]
        justified = ((on <= t + WARN_EARLIEST_SECONDS) & (on >= t)) | ((on <= t) & (t <= en))
        false += int((~justified.any(axis=1)).sum())
    first_until_end = np.array(
        [
            np.nan if (t := _first_warning(warned[inc.server], ct, a, b)) is None else t
            for inc, (a, b) in zip(incs.precursor, incs.until_end, strict=True)
        ],
        np.float64,
    )
    by_type: dict[str, dict] = {}
    for inc, hit in zip(incs.precursor, hits, strict=True):
        r = by_type.setdefault(inc.type, {"warned": 0, "incidents": 0})
        r["warned"] += int(hit)
        r["incidents"] += 1
    for r in by_type.values():
        r["recall"] = r["warned"] / r["incidents"]
    n = len(incs.precursor)
    row = {
        "incidents": n,
        "warned": int(sum(hits)),
        "recall": sum(hits) / n if n else float("nan"),
        "lead_median_minutes": _quantile(leads, 50),
        "lead_p25_minutes": _quantile(leads, 25),
        "incidents_without_precursor": len(incs.sudden),
        "recall_without_precursor": sudden_hits / len(incs.sudden) if incs.sudden else None,
        "false_warnings": false,
        "false_per_100_server_days": 100 * false / server_days if server_days else float("nan"),
        "recall_by_type": dict(sorted(by_type.items())),
    }
    return row, first_until_end


def best_of_family(rows: dict[str, dict], budget: float = FALSE_BUDGET) -> dict[str, dict]:
    """Return each family's best member: highest recall within ``budget`` false warnings.

    Ties go to fewer false warnings, then the longer median lead, then the name. A family with
    no member within the budget gets its least-false member, ``within_budget`` False and
    ``recall_at_budget`` 0 (the only way to run it at that false rate is to switch it off).
    """
    out = {}
    for fam in FAMILIES:
        members = {k: r for k, r in rows.items() if r["family"] == fam}
        if not members:
            continue

        def rate(r):
            x = r["false_per_100_server_days"]
            return float("inf") if x is None or np.isnan(x) else x

        def lead(r):
            x = r["lead_median_minutes"]
            return 0.0 if x is None or np.isnan(x) else x

        def recall(r):
            x = r["recall"]
            return -1.0 if x is None or np.isnan(x) else x

        inside = {k: r for k, r in members.items() if rate(r) <= budget}
        if inside:
            name = min(
                inside, key=lambda k: (-recall(inside[k]), rate(inside[k]), -lead(inside[k]), k)
            )
            within = True
        else:
            name = min(members, key=lambda k: (rate(members[k]), -recall(members[k]), k))
            within = False
        r = members[name]
        out[fam] = {
            "detector": name,
            "within_budget": within,
            "recall_at_budget": (r["recall"] if within else 0.0) if r["incidents"] else None,
            **r,
        }
    return out


def limit_share(incs: list[Incident]) -> float:
    """Return the share of precursor incidents whose precursor began >= 45 min before onset."""
    pre = [i for i in incs if i.precursor_start is not None]
    if not pre:
        return float("nan")
    return sum(i.onset - i.precursor_start >= LIMIT_PRECURSOR_SECONDS for i in pre) / len(pre)


def scoreboard(
    detectors: list[Detector],
    check_times: np.ndarray,
    servers: list[str],
    labels: list[dict],
    every_seconds: int,
    budget: float = FALSE_BUDGET,
) -> dict:
    """Return the scoreboard (JSON-ready) of ``detectors`` against the incident ``labels``.

    ``check_times``: (checks,) Unix seconds, increasing; each detector's ``warned`` is
    (len(servers), checks).
    """
    ct = np.asarray(check_times, np.int64)
    incs = _Incidents(parse_incidents(labels, servers), ct)
    span = int(ct[-1] - ct[0] + every_seconds) if len(ct) else 0
    server_days = len(servers) * span / 86400
    rows, firsts = {}, {}
    for d in detectors:
        row, first = score_detector(np.asarray(d.warned, bool), ct, incs, server_days)
        rows[d.name] = {"family": d.family, "params": d.params, **row}
        firsts[d.name] = first
    best = best_of_family(rows, budget)
    static = best.get("static_threshold", {}).get("detector")
    ends = np.array([inc.end for inc in incs.precursor], np.float64)
    if static is not None:
        ref = np.where(np.isnan(firsts[static]), ends, firsts[static])
        for name, row in rows.items():
            # A detector silent until the end counts as warning at the end.
            earlier = (ref - np.where(np.isnan(firsts[name]), ends, firsts[name])) / 60
            row["vs_static"] = {
                "median_minutes_earlier": _quantile(earlier, 50),
                "share_earlier": float((earlier > 0).mean()) if len(earlier) else None,
            }
        for b in best.values():
            b["vs_static"] = rows[b["detector"]]["vs_static"]
    per_incident = []
    for k, inc in enumerate(incs.precursor):
        first = {f: firsts[b["detector"]][k] for f, b in best.items()}
        per_incident.append(
            {
                "server": servers[inc.server],
                "type": inc.type,
                "metric": inc.metric,
                "onset": _iso(inc.onset),
                "precursor_minutes": (inc.onset - inc.precursor_start) / 60,
                "first_warning_minutes_before_onset": {
                    f: None if np.isnan(t) else (inc.onset - t) / 60 for f, t in first.items()
                },
            }
        )
    return {
        "rules": RULES.format(every=every_seconds // 60, budget=budget),
        "check_every_minutes": every_seconds / 60,
        "checks": len(ct),
        "servers": len(servers),
        "server_days": server_days,
        "false_budget_per_100_server_days": budget,
        "incidents_with_precursor": len(incs.precursor),
        "incidents_without_precursor": len(incs.sudden),
        "limit_share_precursor_45m": limit_share(incs.scored),
        "static_reference": static,
        "best": best,
        "detectors": rows,
        "incidents": per_incident,
    }


def _iso(seconds: int) -> str:
    return pd.Timestamp(seconds, unit="s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def _fmt(x, digits=2):
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def perfect_forecast_detectors(values, checks, warn, crit, direction, thresholds=RISK_THRESHOLDS):
    """Return the ``perfect_forecast`` reference: the risk score read from the actual future.

    ``values``: (servers, steps, metrics) raw with NaN; ``checks``: step indices; ``warn``,
    ``crit`` and ``direction``: (servers, metrics). The future of a check is the
    HORIZON_STEPS steps after it (fewer at the end of the data).
    """
    weight = urgency(HORIZON_STEPS)
    out = []
    for level, lv in (("warning", warn), ("critical", crit)):
        hit = past(values, lv[:, None, :], direction[:, None, :]).any(axis=2)  # servers, steps
        score = np.zeros((values.shape[0], len(checks)))
        for c, o in enumerate(checks):
            future = hit[:, o + 1 : o + 1 + HORIZON_STEPS]
            if future.shape[1]:
                score[:, c] = 100.0 * (future * weight[: future.shape[1]]).max(axis=1)
        for t in thresholds:
            out.append(
                Detector(
                    f"perfect forecast past {level} >= {t:g}",
                    "perfect_forecast",
                    {"level": level, "threshold": t},
                    score >= t,
                )
            )
    return out


def _family_label(fam: str) -> str:
    return f"{fam} (reference: reads the actual future)" if fam in REFERENCE_FAMILIES else fam


def markdown(sb: dict) -> list[str]:
    """Return the scoreboard section of report.md as lines."""
    budget = sb["false_budget_per_100_server_days"]
    lines = [
        "## Early-warning scoreboard",
        "",
        f"{sb['servers']} servers, {sb['checks']} checks every {sb['check_every_minutes']:g} "
        f"minutes ({sb['server_days']:.1f} server-days), {sb['incidents_with_precursor']} "
        f"precursor incidents scored ({sb['incidents_without_precursor']} without precursor).",
        "",
        f"**What counts.** {sb['rules']}",
        "",
        f"**The limit:** {_fmt(sb['limit_share_precursor_45m'])} (share of the scored precursor "
        "incidents whose precursor began 45 minutes or more before onset; n/a when none is "
        "scored): the best recall any detector can be expected to reach.",
        "",
        *(
            [
                "**Reference, not a detector:** `perfect_forecast` is the risk score read from "
                "the actual future (a forecast that is exactly right, with a band of zero width) "
                "against the warning or the critical level: what a perfect network would score "
                "with today's risk definition and thresholds.",
                "",
            ]
            if any(fam in sb["best"] for fam in REFERENCE_FAMILIES)
            else []
        ),
        "![scoreboard](scoreboard.png)",
        "",
        f"Best member of each family at <= {budget:g} false warning per 100 server-days:",
        "",
        "| family | best detector | recall >= 30 min | (limit) | false / 100 server-days | "
        "median lead (min) | 25th pct lead (min) | min earlier than static (median) | "
        "share earlier than static |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for fam, b in sb["best"].items():
        note = "" if b["within_budget"] else " (none within budget; least false shown)"
        vs = b.get("vs_static", {})
        lines.append(
            f"| {_family_label(fam)} | `{b['detector']}`{note} | {_fmt(b['recall_at_budget'])} | "
            f"{_fmt(sb['limit_share_precursor_45m'])} | {_fmt(b['false_per_100_server_days'])} | "
            f"{_fmt(b['lead_median_minutes'], 0)} | {_fmt(b['lead_p25_minutes'], 0)} | "
            f"{_fmt(vs.get('median_minutes_earlier'), 0)} | {_fmt(vs.get('share_earlier'))} |"
        )
    types = sorted({t for b in sb["best"].values() for t in b["recall_by_type"]})
    if types:
        lines += [
            "",
            "Recall (>= 30 min) per incident type, best member of each family (warned/scored):",
            "",
            "| family | " + " | ".join(types) + " |",
            "|---" * (len(types) + 1) + "|",
        ]
        for fam, b in sb["best"].items():
            cells = []
            for t in types:
                r = b["recall_by_type"].get(t)
                cells.append(f"{r['warned']}/{r['incidents']}" if r else "n/a")
            lines.append(f"| {fam} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Every detector (the curve's points):",
        "",
        "| family | detector | recall >= 30 min | false episodes | false / 100 server-days | "
        "median lead (min) | 25th pct lead (min) | min earlier than static (median) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in sb["detectors"].items():
        vs = r.get("vs_static", {})
        lines.append(
            f"| {r['family']} | `{name}` | {_fmt(r['recall'])} | {r['false_warnings']} | "
            f"{_fmt(r['false_per_100_server_days'])} | {_fmt(r['lead_median_minutes'], 0)} | "
            f"{_fmt(r['lead_p25_minutes'], 0)} | {_fmt(vs.get('median_minutes_earlier'), 0)} |"
        )
    if sb["incidents"]:
        fams = list(sb["best"])
        lines += [
            "",
            "Per precursor incident: minutes before onset of the first warning of each family's "
            "best member (in [onset - 8 h, end]; negative = after onset; n/a = silent):",
            "",
            "| server | type | metric | onset | precursor (min) | " + " | ".join(fams) + " |",
            "|---" * (len(fams) + 5) + "|",
        ]
        for e in sb["incidents"]:
            cells = [_fmt(e["first_warning_minutes_before_onset"].get(f), 0) for f in fams]
            lines.append(
                f"| {e['server']} | {e['type']} | {e['metric']} | {e['onset']} | "
                f"{_fmt(e['precursor_minutes'], 0)} | " + " | ".join(cells) + " |"
            )
    return lines


def plot(sb: dict, path) -> None:
    """Write the recall / false-warning curve of every family to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for fam in FAMILIES:
        pts = sorted(
            (r["false_per_100_server_days"], r["recall"])
            for r in sb["detectors"].values()
            if r["family"] == fam and r["recall"] is not None and not np.isnan(r["recall"])
        )
        if not pts:
            continue
        x, y = zip(*pts, strict=True)
        (line,) = ax.plot([], [], label=_family_label(fam))
        ax.scatter(x, y, s=12, alpha=0.35, color=line.get_color())
        # The family's frontier: the best recall reachable at or below each false rate.
        front = np.maximum.accumulate(np.array(y))
        ax.step(x, front, where="post", color=line.get_color(), marker="o", markersize=3)
    limit = sb["limit_share_precursor_45m"]
    if limit is not None and not np.isnan(limit):
        ax.axhline(limit, color="grey", ls=":", label="limit: precursor >= 45 min")
    budget = sb["false_budget_per_100_server_days"]
    ax.axvline(budget, color="red", ls="--", alpha=0.6, label=f"{budget:g} false / 100 server-days")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(left=0)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false warnings per 100 server-days (episodes; symlog)")
    ax.set_ylabel("recall of precursor incidents warned >= 30 min ahead")
    ax.set_title("Early-warning scoreboard: every detector at the same checks")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
