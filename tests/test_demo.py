"""The demo as a user runs it: `linborg demo --fast` starts, forecasts, pages, stops on Ctrl-C."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import socket
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import requests
from realstack import poll

from linborg.app.stack import (
    Options,
    Ports,
    Script,
    Stack,
    demo_script,
    free_stack_ports,
    incident_notice,
    lead_over_threshold,
    scripted_crossing,
)

REPO = Path(__file__).resolve().parent.parent


def demo_args(ports: Ports, workdir: Path) -> list[str]:
    args = [sys.executable, "-m", "linborg", "demo", "--fast", f"--workdir={workdir}"]
    for name, port in asdict(ports).items():
        args.append(f"--{name.replace('_', '-')}-port={port}")
    return args


@pytest.mark.integration
def test_demo_starts_forecasts_pages_and_stops_cleanly_on_ctrl_c(tmp_path):
    ports = free_stack_ports()
    workdir = tmp_path / "demo"
    log = (tmp_path / "demo.log").open("wb")
    proc = subprocess.Popen(
        demo_args(ports, workdir), stdout=log, stderr=subprocess.STDOUT, cwd=REPO
    )
    output = lambda: (tmp_path / "demo.log").read_text(errors="replace")  # noqa: E731
    try:
        poll(lambda: "Ctrl-C stops everything" in output(), 300, "the demo to start")
        text = output()
        assert f"http://127.0.0.1:{ports.prometheus}" in text and "webhook sink" in text
        assert re.search(r"Its disk_usage_pct reaches the warning level 85 at \d\d:\d\d UTC", text)
        status = subprocess.run(
            [sys.executable, "-m", "linborg", "status", f"--workdir={workdir}"],
            capture_output=True, text=True, cwd=REPO, timeout=60,
        )  # fmt: skip
        assert status.returncode == 0, status.stdout + status.stderr
        assert "models/default" in status.stdout and f":{ports.exporter}" in status.stdout
        assert "DOWN" not in status.stdout

        prom = f"http://127.0.0.1:{ports.prometheus}"

        def forecasts():
            r = requests.get(
                prom + "/api/v1/query", params={"query": "count(linborg_forecast)"}, timeout=5
            ).json()["data"]["result"]
            return r and float(r[0]["value"][1]) > 0

        poll(forecasts, 120, "forecasts in Prometheus")
        sink = f"http://127.0.0.1:{ports.sink}/received"
        # The scripted server's warning; a healthy server of the 16 may warn too (the rule's
        # false warnings are measured by the scoreboard, not here), so its post may come first.
        posts = poll(
            lambda: [
                r
                for r in requests.get(sink, timeout=5).json()
                if r["path"].startswith("/slack/")
                and "LinborgPredictedIncident" in r["body"]["attachments"][0]["title"]
                and "*ppdb001*" in r["body"]["attachments"][0]["text"]
            ],
            420,
            "the predicted-incident warning for ppdb001 at the sink",
        )
        assert "disk_usage_pct" in posts[0]["body"]["attachments"][0]["text"]
        # The demo says how much earlier than a plain threshold alert the warning came: the
        # disk fill starts below warning, so the warning comes before the metric reaches it.
        line = poll(
            lambda: re.search(
                r"demo: the predicted-incident alert for ppdb001 reached Slack at \S+ UTC with "
                r"disk_usage_pct at [0-9.]+, \d+ minutes before disk_usage_pct "
                r"reaches its warning level 85 \(",
                output(),
            ),
            60,
            "the demo's comparison with a threshold alert",
        )
        assert line
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        try:
            code = proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        log.close()
    assert code == 0, output()[-3000:]
    assert "stack: stopping" in output()
    assert "Traceback" not in output(), output()[-3000:]
    assert not (workdir / "stack.json").exists()
    for port in asdict(ports).values():  # every service is gone: nothing listens
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen()


def test_demo_reports_a_busy_port_and_exits_2(tmp_path):
    ports = free_stack_ports()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", ports.prometheus))
        busy.listen()
        result = subprocess.run(
            demo_args(ports, tmp_path / "demo"), capture_output=True, text=True, cwd=REPO,
            timeout=120,
        )  # fmt: skip
    assert result.returncode == 2
    assert f"port {ports.prometheus} (prometheus) is in use" in result.stderr
    assert "--prometheus-port" in result.stderr
    assert "stack: stopping" not in result.stdout  # nothing was started, nothing to stop


def test_demo_names_the_missing_programs_and_their_packages(tmp_path):
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # python, but no Prometheus
    result = subprocess.run(
        demo_args(Ports(), tmp_path / "demo"), capture_output=True, text=True, cwd=REPO,
        env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    for program, package in (
        ("prometheus", "prometheus"),
        ("alertmanager", "prometheus-alertmanager"),
        ("node_exporter", "prometheus-node-exporter"),
    ):
        assert f"{program} (Debian/Ubuntu package '{package}')" in result.stderr
    assert "stack: stopping" not in result.stdout


def test_demo_help_shows_the_defaults_and_status_works_from_any_folder(tmp_path):
    linborg = [sys.executable, "-m", "linborg"]
    env = {**os.environ, "COLUMNS": "400"}  # one line per option, however long the path
    result = subprocess.run([*linborg, "demo", "--help"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60, env=env)  # fmt: skip
    assert f"(default: {Ports().prometheus})" in result.stdout
    assert f"(default: {REPO / 'out' / 'demo'})" in result.stdout
    result = subprocess.run([*linborg, "status"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60)  # fmt: skip
    # From another folder, status still looks at the checkout's out/demo, not ./out/demo.
    assert str(REPO / "out" / "demo") in result.stdout


def test_free_stack_ports_are_distinct_bindable_and_outside_the_ephemeral_range():
    low, high = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    seen: set[int] = set()
    for _ in range(20):
        ports = list(asdict(free_stack_ports()).values())
        assert len(set(ports)) == len(ports)
        assert not seen & set(ports), "a port was handed out twice"
        seen.update(ports)
        for port in ports:
            assert not low <= port <= high
            with socket.socket() as s:
                s.bind(("127.0.0.1", port))


# --- the demo's comparison with a threshold alert -----------------------------------------------


NOW = dt.datetime(2026, 3, 4, 10, 2, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "composition",
    [Options().composition, {"ml_compute": 3, "database": 2, "web_api": 2}],
    ids=["demo fleet", "end-to-end fleet"],
)
def test_the_demo_script_starts_below_warning_and_crosses_it_well_after_the_start(composition):
    """A warning can beat a threshold alert only if the metric is below warning at the start."""
    opts = Options(composition=composition)
    _, origin, precursor, onset, script = demo_script(opts, NOW)
    crossing, samples = scripted_crossing(
        composition, opts.seed, origin, script, opts.script.server, onset
    )
    assert crossing["metric"] == "disk_usage_pct" and crossing["threshold"] == 85
    at = dt.datetime.fromisoformat(crossing["at"])
    start = max(v for t, v in samples if t <= NOW)  # served when the stack starts
    assert start < 75, start  # well below warning
    # The crossing leaves the demo's alert (its `for:`, the exporter's cycles) an hour or more.
    assert precursor < NOW + dt.timedelta(minutes=60) < at < onset, (precursor, at, onset)
    # The crossing is the first step at or past 85 since the precursor began.
    before = [v for t, v in samples if precursor <= t < at]
    assert before and max(before) < 85 <= dict(samples)[at]


def _stack_with_crossing(at: str | None) -> Stack:
    stack = Stack(Options(script=Script(server="ppweb002", incident="connection_leak")))
    stack.incident = {
        "threshold_crossing": {
            "server": "ppweb002",
            "profile": "web_api",
            "metric": "front_close_wait",
            "level": "warning",
            "threshold": 150.0,
            "at": at,
        }
    }
    step = dt.timedelta(minutes=5)
    grid = NOW.replace(minute=0, second=0)  # the generator's 5-minute steps from 10:00
    stack.scripted_samples = [(grid + k * step, 70.0 + 10 * k) for k in range(20)]
    return stack


def test_the_demo_says_how_many_minutes_before_the_threshold_crossing_the_warning_came():
    stack = _stack_with_crossing("2026-03-04T10:45:00+00:00")
    notice = {"received_at": "2026-03-04T10:07:10.000+00:00", "path": "/slack/linborg-web-api"}
    assert lead_over_threshold(stack, notice) == (
        "demo: the predicted-incident alert for ppweb002 reached Slack at 10:07:10 UTC with "
        "front_close_wait at 80, 38 minutes before front_close_wait reaches its warning level "
        "150 (10:45 UTC, from the generator's script): 38 minutes earlier than a plain "
        "threshold alert (front_close_wait at or past warning 150, no `for:`)."
    )


def test_the_demo_says_so_when_the_warning_came_after_the_threshold_crossing():
    stack = _stack_with_crossing("2026-03-04T10:45:00+00:00")
    notice = {"received_at": "2026-03-04T10:57:00.000+00:00", "path": "/slack/linborg-web-api"}
    assert lead_over_threshold(stack, notice) == (
        "demo: the predicted-incident alert for ppweb002 reached Slack at 10:57:00 UTC with "
        "front_close_wait at 180, 12 minutes AFTER front_close_wait reached its warning level "
        "150 (10:45 UTC, from the generator's script): no earlier than a plain threshold alert "
        "(front_close_wait at or past warning 150, no `for:`)."
    )


def test_incident_notice_is_the_first_firing_post_or_trigger_naming_the_server():
    def slack(title, text):
        return {
            "path": "/slack/linborg-web-api",
            "body": {"attachments": [{"title": title, "text": text}]},
        }

    def pagerduty(action, summary):
        return {
            "path": "/pagerduty",
            "body": {"event_action": action, "payload": {"summary": summary}},
        }

    records = [
        {"path": "/other", "body": "text"},
        slack("[FIRING:1] LinborgPredictedIncident · web_api", "*ppweb001* (web_api, warning)"),
        slack("[RESOLVED] LinborgPredictedIncident · web_api", "*ppweb002* (web_api, warning)"),
        slack("[FIRING:1] LinborgDiskFullPredicted · web_api", "*ppweb002* (web_api, warning)"),
        pagerduty("trigger", "[FIRING:1] LinborgPredictedIncident · web_api: ppweb0021 ..."),
        pagerduty("trigger", "[FIRING:1] LinborgPredictedIncident · web_api: ppweb002 ..."),
        slack("[FIRING:1] LinborgPredictedIncident · web_api", "*ppweb002* (web_api, warning)"),
    ]
    assert incident_notice(records, "ppweb002") is records[5]
    assert incident_notice(records[:5] + records[6:], "ppweb002") is records[-1]
    assert incident_notice(records[:5], "ppweb002") is None
