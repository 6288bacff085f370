"""Alertmanager routing, templates and notifications: amtool, the sink and a real Alertmanager."""

from __future__ import annotations

import datetime as dt
import io
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
import yaml
from realstack import Process, free_port, poll, require

from linborg import contract
from linborg.app.amconfig import DUMMY_ROUTING_KEY, PRODUCTION_CONFIG, local_config
from linborg.app.cli import build_parser, cmd_sink, main
from linborg.app.sink import WebhookSink
from linborg.mixin import routing

REPO = Path(__file__).resolve().parent.parent
CONFIG_REL = "alertmanager/alertmanager.yml"
ROUTES = REPO / "alertmanager" / "routes.tsv"
TEMPLATES = REPO / "alertmanager" / "templates"


def amtool(*args: str) -> subprocess.CompletedProcess:
    """Run amtool from the repository root."""
    return subprocess.run(
        [require("amtool"), *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )


def read_routes() -> list[tuple[list[str], dict[str, str], str]]:
    """Return (receivers, labels, why) for each row of alertmanager/routes.tsv."""
    rows = []
    lines = [line for line in ROUTES.read_text().splitlines() if not line.startswith("#")]
    assert lines[0].split("\t") == ["receivers", "labels", "why"]
    for line in lines[1:]:
        receivers, labels, why = line.split("\t")
        rows.append((receivers.split(","), dict(kv.split("=", 1) for kv in labels.split()), why))
    return rows


ROUTE_ROWS = read_routes()


def row_id(row) -> str:
    receivers, labels, _ = row
    return f"{labels.get('severity', '-')}/{labels.get('profile', '-')}/{labels['alertname']}"


# ------------------------------------------------------------------ the production config


def test_production_config_passes_amtool_check_config_from_the_repo_root():
    result = amtool("check-config", CONFIG_REL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    # A template glob that matches nothing passes check-config silently: make sure it matches.
    doc = yaml.safe_load((REPO / CONFIG_REL).read_text())
    matched = [p for glob in doc["templates"] for p in (REPO / "alertmanager").glob(glob)]
    assert matched == [TEMPLATES / "linborg.tmpl"]


def test_production_config_takes_secrets_only_from_files():
    doc = yaml.safe_load((REPO / CONFIG_REL).read_text())
    for receiver in doc["receivers"]:
        for pd in receiver.get("pagerduty_configs", []):
            assert "routing_key" not in pd and "service_key" not in pd
            assert pd["routing_key_file"].startswith("/etc/alertmanager/secrets/")
        for slack in receiver.get("slack_configs", []):
            assert "api_url" not in slack
            assert slack["api_url_file"].startswith("/etc/alertmanager/secrets/")
    assert not {"slack_api_url", "pagerduty_url"} & set(doc.get("global", {}))


@pytest.mark.parametrize("row", ROUTE_ROWS, ids=[row_id(r) for r in ROUTE_ROWS])
def test_route(row):
    receivers, labels, why = row
    result = amtool(
        "config",
        "routes",
        "test",
        f"--config.file={CONFIG_REL}",
        f"--verify.receivers={','.join(receivers)}",
        *(f"{k}={v}" for k, v in labels.items()),
    )
    assert result.returncode == 0, (
        f"{labels} should go to {receivers} ({why}); amtool says: {result.stdout.strip()}"
    )


def test_routes_table_covers_every_severity_profile_and_receiver():
    severities = {labels.get("severity") for _, labels, _ in ROUTE_ROWS}
    assert {"critical", "warning", "info"} <= severities
    assert severities - {"critical", "warning", "info"}, "no row for an unknown severity"
    assert None in severities, "no row for a missing severity"
    warning_profiles = {
        labels.get("profile") for _, labels, _ in ROUTE_ROWS if labels.get("severity") == "warning"
    }
    assert set(contract.PROFILE_NAMES) | {"exporter"} <= warning_profiles
    doc = yaml.safe_load((REPO / CONFIG_REL).read_text())
    configured = {r["name"] for r in doc["receivers"]}
    expected = {name for receivers, _, _ in ROUTE_ROWS for name in receivers}
    assert configured == expected, "every receiver is reached by some row, and only those"


def test_readme_routing_matrix_is_the_one_in_code():
    readme = (REPO / "alertmanager" / "README.md").read_text()
    assert f"## Routing matrix\n\n{routing.markdown()}\n\n" in readme, (
        "alertmanager/README.md's routing matrix differs from linborg/mixin/routing.py: paste "
        "linborg.mixin.routing.markdown() under '## Routing matrix'"
    )


@pytest.mark.parametrize("route", routing.ROUTES, ids=[r.receiver for r in routing.ROUTES])
def test_every_row_of_the_routing_matrix_is_what_the_config_does(route):
    result = amtool(
        "config",
        "routes",
        "test",
        f"--config.file={CONFIG_REL}",
        f"--verify.receivers={route.receiver}",
        "alertname=LinborgDiskFullPredicted",
        *(f"{k}={v}" for k, v in route.example),
    )
    assert result.returncode == 0, f"{route}: amtool says {result.stdout.strip()}"


def test_the_routing_matrix_names_every_receiver_of_the_config():
    doc = yaml.safe_load((REPO / CONFIG_REL).read_text())
    assert {r["name"] for r in doc["receivers"]} == {r.receiver for r in routing.ROUTES}


# ---------------------------------------------------------------------------- templates

PREDICTED = {
    "status": "firing",
    "labels": {
        "alertname": "LinborgMemoryExhaustionPredicted",
        "severity": "critical",
        "server": "ppdb001",
        "profile": "database",
        "metric": "mem_used_pct",
    },
    "annotations": {
        "summary": "Memory on ppdb001 is predicted to reach 97.2%.",
        "description": "mem_used_pct is forecast above its critical threshold.",
        "runbook_url": "https://runbooks.example/linborg/memory-exhaustion",
        "dashboard_url": "https://grafana.example/d/linborg-server?var-server=ppdb001",
        "current_value": "88.1%",
        "predicted_value": "97.2",
        "threshold": "95",
        "lead_time": "1h 25m",
    },
    "startsAt": "2026-05-04T10:00:00Z",
    "endsAt": "0001-01-01T00:00:00Z",
    "generatorURL": "http://prometheus.example/graph",
    "fingerprint": "1",
}
EXPORTER = {
    **PREDICTED,
    "labels": {"alertname": "LinborgNoModelLoaded", "severity": "warning", "profile": "exporter"},
    "annotations": {
        "summary": "The exporter has no model loaded.",
        "runbook_url": "https://runbooks.example/linborg/no-model",
        "dashboard_url": "https://grafana.example/d/linborg-exporter",
    },
}


def render(tmp_path: Path, alert: dict, template: str, arg: str = ".") -> str:
    """Render ``{{ template "<template>" <arg> }}`` for a group holding ``alert`` with amtool."""
    data = {
        "receiver": "test",
        "status": "firing",
        "alerts": [alert],
        "groupLabels": {k: alert["labels"][k] for k in ("alertname", "profile")},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://alertmanager.example",
    }
    path = tmp_path / "data.json"
    path.write_text(json.dumps(data))
    result = amtool(
        "template",
        "render",
        f"--template.glob={TEMPLATES}/*.tmpl",
        f"--template.data={path}",
        f'--template.text={{{{ template "{template}" {arg} }}}}',
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(
    "template", ["linborg.slack.text", "linborg.pagerduty.description", "linborg.slack.title"]
)
def test_templates_show_what_an_on_call_engineer_needs(tmp_path, template):
    text = render(tmp_path, PREDICTED, template)
    assert "LinborgMemoryExhaustionPredicted" in text or "ppdb001" in text
    if template == "linborg.slack.title":
        assert text == "[FIRING:1] LinborgMemoryExhaustionPredicted · database"
        return
    needed_parts = ("ppdb001", "mem_used_pct", "now 88.1%", "predicted 97.2", "threshold 95")
    for needed in (*needed_parts, "in 1h 25m"):
        assert needed in text, f"{needed!r} missing from {template}: {text!r}"
    if template == "linborg.slack.text":
        assert "(database, critical)" in text
        assert f"<{PREDICTED['annotations']['runbook_url']}|Runbook>" in text
        assert f"<{PREDICTED['annotations']['dashboard_url']}|Dashboard>" in text


def test_a_metric_already_past_the_threshold_is_not_said_to_reach_it_in_0s(tmp_path):
    past = {
        **PREDICTED,
        "annotations": {**PREDICTED["annotations"], "current_value": "96.0%", "lead_time": "0s"},
    }
    text = render(tmp_path, past, "linborg.slack.text")
    assert "mem_used_pct now 96.0%, predicted 97.2 (threshold 95), already past the threshold" in (
        text
    )
    assert "in 0s" not in text


def test_pagerduty_details_list_every_field(tmp_path):
    text = render(tmp_path, PREDICTED, "linborg.pagerduty.alerts", ".Alerts.Firing")
    for line in (
        "server: ppdb001",
        "profile: database",
        "metric: mem_used_pct",
        "current_value: 88.1%",
        "predicted_value: 97.2",
        "threshold: 95",
        "lead_time: 1h 25m",
        f"runbook: {PREDICTED['annotations']['runbook_url']}",
        f"dashboard: {PREDICTED['annotations']['dashboard_url']}",
        "since: 2026-05-04 10:00:00 UTC",
    ):
        assert line in text.splitlines(), f"{line!r} missing: {text!r}"


def test_a_runbook_path_is_shown_as_text_and_a_missing_dashboard_left_out(tmp_path):
    """The rules' defaults: runbook_url is a path in the repository, no grafana_url."""
    annotations = {**PREDICTED["annotations"], "runbook_url": "docs/runbooks.md#linborgx"}
    del annotations["dashboard_url"]
    alert = {**PREDICTED, "annotations": annotations}
    text = render(tmp_path, alert, "linborg.slack.text")
    assert "runbook `docs/runbooks.md#linborgx` · no dashboard" in text, text
    assert "|Runbook>" not in text
    details = render(tmp_path, alert, "linborg.pagerduty.alerts", ".Alerts.Firing").splitlines()
    assert "runbook: docs/runbooks.md#linborgx" in details
    assert not [line for line in details if line.startswith("dashboard")], details


def test_exporter_alert_renders_without_a_forecast_line(tmp_path):
    text = render(tmp_path, EXPORTER, "linborg.slack.text")
    assert text.startswith("*(no server)* (exporter, warning): The exporter has no model loaded.")
    assert "predicted" not in text
    assert "<https://runbooks.example/linborg/no-model|Runbook>" in text


# ------------------------------------------------------------------------- local config


def test_local_config_passes_check_config_and_sends_only_to_the_sink(tmp_path):
    sink_url = "http://127.0.0.1:9099"
    text = local_config(PRODUCTION_CONFIG.read_text(), sink_url, tmp_path / "secrets")
    path = tmp_path / "alertmanager.yml"
    path.write_text(text)
    result = amtool("check-config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "/etc/alertmanager" not in text and "pagerduty.com" not in text
    doc = yaml.safe_load(text)
    assert doc["templates"] == [str(TEMPLATES / "*.tmpl")]
    secrets = {p.name: p.read_text() for p in (tmp_path / "secrets").iterdir()}
    assert secrets["pagerduty-routing-key"] == DUMMY_ROUTING_KEY
    assert secrets["slack-linborg-database.url"] == f"{sink_url}/slack/linborg-database"
    assert len(secrets) == 1 + 8  # one routing key, one webhook per Slack channel
    for receiver in doc["receivers"]:
        for pd in receiver.get("pagerduty_configs", []):
            assert pd["url"] == f"{sink_url}/pagerduty"


def test_local_config_keeps_routes_and_inhibitions(tmp_path):
    production = yaml.safe_load(PRODUCTION_CONFIG.read_text())
    same = yaml.safe_load(local_config(PRODUCTION_CONFIG.read_text(), "http://x", tmp_path))
    assert same["route"] == production["route"]
    assert same["inhibit_rules"] == production["inhibit_rules"]
    fast = yaml.safe_load(
        local_config(PRODUCTION_CONFIG.read_text(), "http://x", tmp_path, group_wait="1s")
    )
    assert fast["route"]["group_wait"] == "1s"
    fast["route"]["group_wait"] = production["route"]["group_wait"]
    assert fast["route"] == production["route"]


def test_local_config_refuses_integrations_it_cannot_redirect(tmp_path):
    text = PRODUCTION_CONFIG.read_text() + (
        "  - name: mail\n    email_configs:\n      - to: oncall@example.com\n"
    )
    with pytest.raises(ValueError, match="mail: email_configs"):
        local_config(text, "http://x", tmp_path)


# -------------------------------------------------------------------------------- sink


def test_sink_records_posts_and_serves_them(tmp_path):
    out = io.StringIO()
    with WebhookSink(log_path=tmp_path / "sink.jsonl", stream=out) as sink:
        pd = {"event_action": "trigger", "payload": {"summary": "disk full soon"}}
        assert requests.post(sink.url + "/pagerduty", json=pd, timeout=5).status_code == 200
        assert requests.post(sink.url + "/x/y", data=b"not json", timeout=5).status_code == 200
        assert requests.get(sink.url + "/healthz", timeout=5).status_code == 200
        assert requests.get(sink.url + "/nope", timeout=5).status_code == 404
        served = requests.get(sink.url + "/received", timeout=5).json()
        assert [(r["path"], r["body"]) for r in served] == [
            ("/pagerduty", pd),
            ("/x/y", "not json"),
        ]
        assert [r["path"] for r in sink.received("/pagerduty")] == ["/pagerduty"]
    logged = [json.loads(line) for line in (tmp_path / "sink.jsonl").read_text().splitlines()]
    assert logged == served
    assert list(logged[0]) == ["received_at", "path", "body"]
    lines = out.getvalue().splitlines()
    size = len(json.dumps(pd))
    assert len(lines) == 2
    assert lines[0].endswith(f"POST /pagerduty ({size} bytes) trigger: disk full soon")
    assert lines[1].endswith("POST /x/y (8 bytes) not json")


def test_sink_bounds_bodies_and_escapes_control_characters(tmp_path):
    import socket

    from linborg.app.sink import MAX_BODY_BYTES

    out = io.StringIO()
    with WebhookSink(log_path=tmp_path / "sink.jsonl", stream=out) as sink:
        big = requests.post(sink.url + "/slack", data=b"x" * (MAX_BODY_BYTES + 1), timeout=5)
        assert big.status_code == 413
        host, port = sink.url.split("//")[1].split(":")
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            conn.sendall(b"POST /slack HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\nabc")
            answer = b""
            while chunk := conn.recv(4096):  # the sink closes the connection after it
                answer += chunk
            assert b" 400 " in answer and b"Content-Length is not a number" in answer
        summary = "ok\n2026-01-01 POST /pagerduty trigger: fake page\x1b[2J"
        forged = {"event_action": "trigger", "payload": {"summary": summary}}
        assert requests.post(sink.url + "/pagerduty", json=forged, timeout=5).status_code == 200
        assert [r["path"] for r in sink.received()] == ["/pagerduty"]  # nothing else stored
        assert sink.received()[0]["body"] == forged  # the record itself is kept as sent
    (line,) = out.getvalue().splitlines()  # one line: the newline in the text did not split it
    assert "\x1b" not in line and "\\x1b" in line
    assert "\\n2026-01-01 POST /pagerduty" in line


def test_cli_has_a_sink_subcommand(capsys):
    args = build_parser().parse_args(["sink", "--listen", "127.0.0.1:0", "--log", "x.jsonl"])
    assert args.func is cmd_sink and args.listen == "127.0.0.1:0" and args.log == "x.jsonl"
    assert main(["sink", "--listen", "no-port"]) == 2
    assert "expected HOST:PORT" in capsys.readouterr().err


# ------------------------------------------------------------------ a real Alertmanager


def never(check: Callable[[], object], duration: float, what: str) -> None:
    """Fail if ``check`` returns something truthy within ``duration`` seconds."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        found = check()
        assert not found, f"{what}: {found}"
        time.sleep(0.2)


def predicted_alert(name: str, severity: str, server: str, profile: str, metric: str) -> dict:
    return {
        "labels": {
            "alertname": name,
            "severity": severity,
            "server": server,
            "profile": profile,
            "metric": metric,
        },
        "annotations": {
            "summary": f"{metric} on {server} is predicted to breach its {severity} threshold.",
            "description": f"The forecast of {metric} crosses the threshold.",
            "runbook_url": f"https://runbooks.example/linborg/{name}",
            "dashboard_url": f"https://grafana.example/d/linborg-server?var-server={server}",
            "predicted_value": "97.2",
            "threshold": "95",
            "lead_time": "1h 25m",
        },
    }


@pytest.fixture
def alertmanager(tmp_path):
    """A real Alertmanager with the local config, sending to an in-process sink."""
    binary = require("prometheus-alertmanager")
    sink = WebhookSink().start()
    proc = None
    try:
        config = tmp_path / "alertmanager.yml"
        config.write_text(
            local_config(
                PRODUCTION_CONFIG.read_text(),
                sink.url,
                tmp_path / "secrets",
                group_wait="1s",
                group_interval="1s",
            )
        )
        port = free_port()
        proc = Process(
            [
                binary,
                f"--config.file={config}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
                f"--storage.path={tmp_path / 'data'}",
            ],
            tmp_path / "alertmanager.log",
        )
        url = f"http://127.0.0.1:{port}"

        def ready():
            if proc.proc.poll() is not None:
                raise AssertionError("alertmanager exited:\n" + proc.output())
            return requests.get(url + "/-/ready", timeout=2).status_code == 200

        poll(ready, 30, "alertmanager to be ready")
        yield url, sink
    finally:
        if proc is not None:
            proc.stop()
        sink.stop()


@pytest.mark.integration
def test_alertmanager_pages_posts_and_inhibits_through_the_sink(alertmanager):
    url, sink = alertmanager
    critical = predicted_alert(
        "LinborgMemoryExhaustionPredicted", "critical", "ppdb001", "database", "mem_used_pct"
    )
    held_back = predicted_alert(
        "LinborgDiskFullPredicted", "warning", "ppdb001", "database", "disk_usage_pct"
    )
    web = predicted_alert(
        "LinborgDiskFullPredicted", "warning", "ppweb001", "web_api", "disk_usage_pct"
    )
    resp = requests.post(url + "/api/v2/alerts", json=[critical, held_back, web], timeout=5)
    assert resp.status_code == 200, resp.text

    # The critical alert pages, with a PagerDuty Events v2 payload that says it all.
    [page] = poll(lambda: sink.received("/pagerduty"), 15, "the PagerDuty event")
    event = page["body"]
    assert event["event_action"] == "trigger"
    assert event["routing_key"] == DUMMY_ROUTING_KEY
    payload = event["payload"]
    assert payload["severity"] == "critical" and payload["source"] == "ppdb001"
    assert payload["component"] == "database"
    for needed in ("ppdb001", "database", "mem_used_pct", "97.2", "threshold 95", "1h 25m"):
        assert needed in payload["summary"], payload["summary"]
    assert "lead_time: 1h 25m" in payload["custom_details"]["firing"]
    runbook = critical["annotations"]["runbook_url"]
    assert payload["custom_details"]["runbook_url"] == runbook
    assert {"href": runbook, "text": "Runbook"} in event["links"]

    # The warning of another server goes to its profile's Slack channel.
    [post] = poll(lambda: sink.received("/slack/linborg-web-api"), 15, "the web_api Slack post")
    attachment = post["body"]["attachments"][0]
    assert post["body"]["channel"] == "#linborg-web-api"
    assert attachment["title"] == "[FIRING:1] LinborgDiskFullPredicted · web_api"
    assert "*ppweb001* (web_api, warning)" in attachment["text"]
    assert "in 1h 25m" in attachment["text"]
    assert f"<{web['annotations']['runbook_url']}|Runbook>" in attachment["text"]

    # The warning of the paged server is inhibited: Alertmanager says so, and it never arrives.
    def inhibited():
        alerts = requests.get(
            url + "/api/v2/alerts", params={"filter": 'server="ppdb001"'}, timeout=5
        ).json()
        [warning] = [a for a in alerts if a["labels"]["severity"] == "warning"]
        return warning["status"]["inhibitedBy"]

    poll(inhibited, 10, "the ppdb001 warning to be inhibited")
    never(lambda: sink.received("/slack/linborg-database"), 3, "inhibited warning was sent")
    assert sink.received("/slack") == [post]

    # Once the critical alert resolves, the held-back warning is delivered.
    now = dt.datetime.now(dt.UTC).isoformat()
    resp = requests.post(url + "/api/v2/alerts", json=[{**critical, "endsAt": now}], timeout=5)
    assert resp.status_code == 200, resp.text
    [late] = poll(lambda: sink.received("/slack/linborg-database"), 15, "the released warning")
    assert "*ppdb001* (database, warning)" in late["body"]["attachments"][0]["text"]
    resolved = poll(
        lambda: [r for r in sink.received("/pagerduty") if r["body"]["event_action"] == "resolve"],
        15,
        "the PagerDuty resolve event",
    )
    assert resolved[0]["body"]["dedup_key"] == event["dedup_key"]
