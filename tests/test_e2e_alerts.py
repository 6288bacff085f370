"""End to end on loopback: a developing incident becomes a page before its labelled onset.

Real Prometheus (26 hours of generator history backfilled with promtool, then the live
endpoint), the exporter serving the shipped default model, the generated alert rules, a real
Alertmanager with the repository's routing, and a webhook sink standing in for PagerDuty and
Slack. The only changes from the demo are speed: the exporter runs every 10 s, Prometheus
scrapes and evaluates every 2 s, and the alerts' ``for:`` guards are 20 s instead of 10-15 min.
"""

from __future__ import annotations

import datetime as dt

import pytest
import requests
from realstack import poll

from linborg.stack import Options, Script, Stack, fast, free_stack_ports

#: The demo's script: a connection leak on a web_api server, five hours of precursor, onset two
#: hours after the stack starts. The shipped model's p90 crosses the warning threshold of
#: front_close_wait from about 160 minutes before onset (the critical p50 crossing comes only
#: about 10 minutes before it), so the predicted incident is a warning, routed to Slack.
SCRIPT = Script(
    server="ppweb002",
    incident="connection_leak",
    precursor_minutes=300,
    onset_in_minutes=120,
    duration_minutes=120,
)


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


@pytest.mark.integration
def test_predicted_incident_reaches_its_channel_before_onset_and_healthy_servers_page_no_one(
    stack,
):
    onset = dt.datetime.fromisoformat(stack.incident["onset"])
    assert stack.incident["labelled"][0]["server"] == SCRIPT.server
    post = poll(lambda: incident_posts(stack, SCRIPT.server), 300, "the predicted incident")[0]
    arrived = dt.datetime.fromisoformat(post["received_at"])
    lead = (onset - arrived).total_seconds() / 60
    print(f"predicted-incident warning at the sink {lead:.1f} minutes before the labelled onset")
    assert arrived < onset
    # The right receiver: a warning goes to the profile's Slack channel.
    assert post["path"] == "/slack/linborg-web-api"
    assert post["body"]["channel"] == "#linborg-web-api"
    text = post["body"]["attachments"][0]["text"]
    assert f"*{SCRIPT.server}* (web_api, warning)" in text and "front_close_wait" in text

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
        "profile": "web_api",
        "metric": "front_close_wait",
    }
    for key in ("summary", "description", "runbook_url", "dashboard_url", "lead_time"):
        assert annotations.get(key), key
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
