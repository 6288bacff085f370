"""End to end on loopback: a developing incident becomes a warning before a threshold would fire.

Real Prometheus (26 hours of generator history backfilled with promtool, then the live
endpoint), the exporter serving the shipped default model, the generated alert rules, a real
Alertmanager with the repository's routing, and a webhook sink standing in for PagerDuty and
Slack. The only changes from the demo are speed: the exporter runs every 10 s, Prometheus
scrapes and evaluates every 2 s, and the alerts' ``for:`` guards are 20 s instead of 10-15 min.
"""

from __future__ import annotations

import datetime as dt
import math
import re

import pytest
import requests
from realstack import poll

from linborg.app.stack import Options, Script, Stack, fast, free_stack_ports, incident_notice
from linborg.contract import metric as contract_metric
from linborg.thresholds import load_thresholds

#: The demo's script (linborg.app.stack.Script): a disk filling up on a database server, a
#: five-hour precursor that began 120 minutes before the stack starts, onset 180 minutes after
#: it. disk_usage_pct is then well below its warning level (about 47% against 85% in this fleet)
#: and crosses it about 150 minutes after the start: the predicted incident must be a warning
#: routed to Slack before that, from the forecast alone.
SCRIPT = Script()
#: Seconds the tests wait for the predicted-incident warning at the sink.
WARNING_WAIT = 300


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    ports = free_stack_ports()
    opts = fast(
        Options(
            workdir=tmp_path_factory.mktemp("e2e") / "stack",
            ports=ports,
            composition={"ml_compute": 3, "database": 2, "web_api": 2},
            script=SCRIPT,
        )
    )
    s = Stack(opts, log=lambda line: None)
    s.start()
    yield s
    s.stop()


def incident_posts(stack, server):
    """Slack posts of the predicted-incident warning that name ``server``."""
    posts = []
    for r in stack.sink.received("/slack/"):
        attachment = r["body"]["attachments"][0]
        if (
            "LinborgPredictedIncident" in attachment["title"]
            and f"*{server}*" in attachment["text"]
        ):
            posts.append(r)
    return posts


def instant(stack, query: str, at: float | None = None) -> list[dict]:
    params = {"query": query} if at is None else {"query": query, "time": at}
    r = requests.get(stack.urls()["prometheus"] + "/api/v1/query", params=params, timeout=10)
    r.raise_for_status()
    return r.json()["data"]["result"]


def scripted_now(stack) -> str:
    """Say where the scripted metric and its forecast are now, for failure messages."""
    c = stack.incident["threshold_crossing"]
    now = stack.scripted_value(dt.datetime.now(dt.UTC))
    where = f'server="{c["server"]}"'
    risk = instant(stack, f'linborg_risk_score{{{where},window="8h"}}')
    ttb = instant(
        stack,
        f'linborg_time_to_breach_seconds{{{where},metric="{c["metric"]}",level="warning"}}',
    )
    p90 = instant(stack, f'linborg_forecast{{{where},metric="{c["metric"]}",q="0.9"}}')
    return (
        f"{c['metric']} on {c['server']} is now {now:g} (warning {c['threshold']:g}; the "
        f"script crosses it at {c['at']}); 8h risk "
        + ", ".join(f"{r['value'][1]} (driver {r['metric']['driver']})" for r in risk)
        + "; time to warning "
        + (", ".join(f"{r['metric']['q']}: {r['value'][1]}s" for r in ttb) or "none within 8h")
        + "; p90 forecast "
        + ", ".join(f"{r['metric']['horizon']}: {float(r['value'][1]):.0f}" for r in p90)
    )


@pytest.fixture(scope="module")
def warning_post(stack):
    """The first predicted-incident warning for the scripted server at the sink, or None."""
    try:
        return poll(lambda: incident_posts(stack, SCRIPT.server), WARNING_WAIT, "the warning")[0]
    except AssertionError:
        return None


@pytest.mark.integration
def test_predicted_incident_reaches_its_channel_before_onset_and_healthy_servers_page_no_one(
    stack, warning_post
):
    onset = dt.datetime.fromisoformat(stack.incident["onset"])
    assert stack.incident["labelled"][0]["server"] == SCRIPT.server
    assert warning_post, f"no predicted-incident warning within {WARNING_WAIT}s; " + scripted_now(
        stack
    )
    post = warning_post
    arrived = dt.datetime.fromisoformat(post["received_at"])
    lead = (onset - arrived).total_seconds() / 60
    print(f"predicted-incident warning at the sink {lead:.1f} minutes before the labelled onset")
    assert arrived < onset
    # The right receiver: a warning goes to the profile's Slack channel.
    assert post["path"] == "/slack/linborg-database"
    assert post["body"]["channel"] == "#linborg-database"
    text = post["body"]["attachments"][0]["text"]
    assert f"*{SCRIPT.server}* (database, warning)" in text and "disk_usage_pct" in text
    assert incident_notice(stack.sink.received(), SCRIPT.server) is not None

    # Alertmanager holds the alert with exactly the labels the rules promise.
    am = stack.urls()["alertmanager"]
    alerts = requests.get(
        am + "/api/v2/alerts",
        params={"filter": ['alertname="LinborgPredictedIncident"']},
        timeout=5,
    ).json()
    mine = [a for a in alerts if a["labels"]["server"] == SCRIPT.server]
    assert mine, alerts
    labels, annotations = mine[0]["labels"], mine[0]["annotations"]
    assert {k: labels[k] for k in ("severity", "server", "profile", "metric")} == {
        "severity": "warning",
        "server": SCRIPT.server,
        "profile": "database",
        "metric": "disk_usage_pct",
    }
    for key in ("summary", "description", "runbook_url", "lead_time"):
        assert annotations.get(key), key
    assert "dashboard_url" not in annotations, "the stack runs no Grafana, so no link to one"
    assert annotations["runbook_url"].endswith("#linborgpredictedincident")

    # Healthy servers page no one: no PagerDuty event at all, and no alert of any other server
    # at critical severity.
    assert stack.sink.received("/pagerduty") == []
    everything = requests.get(am + "/api/v2/alerts", timeout=5).json()
    assert not [
        a
        for a in everything
        if a["labels"].get("severity") == "critical" and a["labels"].get("server") != SCRIPT.server
    ]


@pytest.mark.integration
def test_the_warning_reports_the_metrics_value_and_side_of_warning_truthfully(stack, warning_post):
    """The warning fires while the metric is still below its warning level, and says so.

    The demo's disk fill starts below warning (linborg.app.stack.Script): the warning comes from the
    forecast, before a plain threshold alert on the metric could fire, and the alert gives the
    metric's current value as Prometheus has it.
    """
    assert warning_post, f"no predicted-incident warning within {WARNING_WAIT}s; " + scripted_now(
        stack
    )
    # When the warning fired: the first evaluation that wrote its ALERTS series as firing.
    selector = (
        f'ALERTS{{alertname="LinborgPredictedIncident",server="{SCRIPT.server}",'
        f'severity="warning",alertstate="firing"}}'
    )
    series = instant(stack, f"{selector}[1h]")
    assert series, f"{selector} has no samples although the sink got the warning"
    labels = series[0]["metric"]
    fired_at = min(float(t) for s in series for t, _ in s["values"])
    m = contract_metric(labels["metric"])
    warning = load_thresholds().get(labels["profile"], m.name).warning
    found = instant(stack, f'max({m.wire_name}{{server="{SCRIPT.server}"}})', fired_at)
    assert found, f"Prometheus has no {m.wire_name} for {SCRIPT.server} at {fired_at}"
    value = float(found[0]["value"][1])

    fired = dt.datetime.fromtimestamp(fired_at, dt.UTC)
    crossing = stack.incident["threshold_crossing"]
    crosses = dt.datetime.fromisoformat(crossing["at"]) if crossing["at"] else None
    lead = (crosses - fired).total_seconds() / 60 if crosses else None
    when = (
        "never"
        if lead is None
        else f"{lead:.1f} minutes later"
        if lead > 0
        else f"{-lead:.1f} minutes before it fired"
    )
    print(
        f"warning fired at {fired:%H:%M:%S} UTC with {m.name}={value:g} in Prometheus (warning "
        f"{warning:g} for {labels['profile']}); the script reaches warning at "
        f"{crossing['at']}, {when}"
    )

    # The demo's "minutes earlier than a threshold alert" reads the generator's script; it is
    # what Prometheus got (the value of that 5-minute step or, right after a step, the last).
    step = dt.timedelta(minutes=5)
    scripted = [stack.scripted_value(fired), stack.scripted_value(fired - step)]
    assert any(math.isclose(value, v, rel_tol=1e-8) for v in scripted), (value, scripted)

    # The annotation reads the same current value, and says on which side of warning it is.
    matchers = ['alertname="LinborgPredictedIncident"', f'server="{SCRIPT.server}"']
    summary = requests.get(
        stack.urls()["alertmanager"] + "/api/v2/alerts",
        params={"filter": [*matchers, 'severity="warning"']},
        timeout=5,
    ).json()[0]["annotations"]["summary"]
    said = re.search(rf"{m.name} ([0-9.]+)%?, (above|below) (warning|critical) ", summary)
    assert said, f"the summary does not give the current value: {summary}"
    now, side, level = float(said.group(1)), said.group(2), said.group(3)
    limit = getattr(load_thresholds().get(labels["profile"], m.name), level)
    past = now >= limit if m.direction == "above" else now <= limit
    assert side == ("above" if past == (m.direction == "above") else "below"), summary
    # The point of the product: it fired before the metric reached warning, and says so.
    assert value < warning, f"{m.name} was {value:g} when the warning fired (warning {warning:g})"
    assert crosses is not None and fired < crosses, (fired, crossing)
    assert (side, level) == ("below", "warning"), (
        f"{m.name} was {value:g} (warning {warning:g}) but the summary reads: {summary}"
    )
