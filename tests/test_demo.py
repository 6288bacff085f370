"""The demo as a user runs it: `linborg demo --fast` starts, forecasts, pages, stops on Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import requests
from realstack import poll

from linborg.stack import Ports, free_stack_ports

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
        posts = poll(
            lambda: [
                r
                for r in requests.get(sink, timeout=5).json()
                if r["path"].startswith("/slack/")
                and "LinborgPredictedIncident" in r["body"]["attachments"][0]["title"]
            ],
            300,
            "the predicted-incident warning at the sink",
        )
        assert "*ppweb002*" in posts[0]["body"]["attachments"][0]["text"]
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
