"""Generator live mode: the HTTP endpoint, scenario control, and a real Prometheus with backfill."""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import requests
from realstack import poll, promtool_backfill, query_range, start_prometheus

from linborg.generator.fleet import DEFAULT_COMPOSITION, build_fleet
from linborg.generator.live import LiveFleet, default_origin, serve
from linborg.generator.output import simulate, write_openmetrics

START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
SMALL = {p: 2 for p in DEFAULT_COMPOSITION}


class Clock:
    """A settable clock for LiveFleet."""

    def __init__(self, t: dt.datetime):
        self.t = t

    def __call__(self) -> float:
        return self.t.timestamp()


def parse_exposition(text: str) -> dict[tuple[str, str], float]:
    out = {}
    for line in text.splitlines():
        if line.startswith("linborg_") and "{" in line:
            name, rest = line.split("{", 1)
            labels, value = rest.rsplit("} ", 1)
            server = labels.split('server="', 1)[1].split('"', 1)[0]
            out[(name, server)] = float(value)
    return out


@pytest.fixture
def live_server():
    clock = Clock(START + dt.timedelta(hours=3, minutes=2))
    live = LiveFleet(build_fleet(SMALL), 5, START, clock)
    httpd = serve(live, "127.0.0.1", 0)
    yield live, clock, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_live_values_continue_the_same_process_as_history(live_server):
    live, clock, url = live_server
    frame, _, _ = simulate(build_fleet(SMALL), 5, START, 38)
    body = requests.get(url + "/metrics", timeout=5).text
    samples = parse_exposition(body)
    # 03:02 falls in the 03:00 step, the 37th from the origin.
    want = frame[frame["timestamp"] == START + dt.timedelta(hours=3)].set_index("server")
    for server in ("ppml0001", "ppdb002", "ppweb001"):
        assert samples[("linborg_mem_used_pct", server)] == pytest.approx(
            want.loc[server, "mem_used_pct"]
        )
        assert samples[("linborg_cpu_idle_pct", server)] == pytest.approx(
            want.loc[server, "cpu_idle_pct"]
        )
    assert len([k for k in samples if k[0] == "linborg_cpu_user_pct"]) == 14
    clock.t += dt.timedelta(minutes=5)
    later = parse_exposition(requests.get(url + "/metrics", timeout=5).text)
    want = frame[frame["timestamp"] == START + dt.timedelta(hours=3, minutes=5)].set_index("server")
    assert later[("linborg_mem_used_pct", "ppml0001")] == pytest.approx(
        want.loc["ppml0001", "mem_used_pct"]
    )
    assert "linborg_generator_step_timestamp_seconds" in body


def host_of(url: str) -> str:
    return url.split("//", 1)[1].rsplit(":", 1)[0]


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_scenario_over_http_starts_an_incident_and_bad_requests_get_400(live_server):
    live, clock, url = live_server
    ok = requests.post(
        url + "/scenario",
        json={
            "server": "ppdb001",
            "scenario": "degrading",
            "incident": "disk_fill",
            "precursor_minutes": 30,
        },
        timeout=5,
    )
    assert ok.status_code == 200
    (started,) = ok.json()["started"]
    assert started["type"] == "disk_fill" and started["onset"] == "2026-01-05T03:35:00Z"
    assert any(i["server"] == "ppdb001" for i in requests.get(url + "/incidents", timeout=5).json())

    bad = {
        "not json": (b"{nope", "not valid JSON"),
        "no target": (
            b'{"scenario": "critical"}',
            "give exactly one of server, servers, profile or fleet",
        ),
        "unknown profile": (b'{"profile": "gpu", "scenario": "critical"}', "unknown profile 'gpu'"),
        "unknown server": (b'{"server": "x1", "scenario": "critical"}', "unknown servers: x1"),
        "bad scenario": (b'{"fleet": true, "scenario": "explode"}', "unknown scenario 'explode'"),
        "extra key": (
            b'{"fleet": true, "scenario": "healthy", "colour": 1}',
            "unknown keys ['colour']",
        ),
        "precursor of 1e30 minutes": (
            b'{"server": "ppdb001", "scenario": "degrading", "precursor_minutes": 1e30}',
            "precursor_minutes must be a whole number of minutes from 0 to 10080",
        ),
        "incident of 10^12 minutes": (
            b'{"server": "ppdb001", "scenario": "critical", "duration_minutes": 1000000000000}',
            "duration_minutes must be a whole number of minutes from 0 to 10080",
        ),
        "JSON nested 30,000 deep": (b"[" * 30_000 + b"]" * 30_000, "nested too deeply"),
        "body over 64 KiB": (b" " * 70_000, "over 65536"),
    }
    for name, (body, reason) in bad.items():
        resp = requests.post(url + "/scenario", data=body, timeout=5)
        assert resp.status_code == 400, name
        assert reason in resp.json()["error"], name
    # A Content-Length that is not a number, or negative: 400, and the body is not read.
    for length in ("abc", "-1"):
        with socket.create_connection((host_of(url), port_of(url)), timeout=5) as conn:
            conn.sendall(
                b"POST /scenario HTTP/1.1\r\nHost: x\r\nContent-Length: "
                + length.encode()
                + b"\r\n\r\n"
                + b"x" * 1000
            )
            answer = b""
            while chunk := conn.recv(4096):  # the server closes the connection after it
                answer += chunk
            answer = answer.decode()
        assert answer.startswith("HTTP/1.0 400") or answer.startswith("HTTP/1.1 400"), length
        assert "not a whole number of bytes" in answer, length
    # The generator keeps serving after bad input.
    assert requests.get(url + "/metrics", timeout=5).status_code == 200
    assert requests.get(url + "/nope", timeout=5).status_code == 404

    clock.t += dt.timedelta(minutes=40)
    samples = parse_exposition(requests.get(url + "/metrics", timeout=5).text)
    assert samples[("linborg_disk_usage_pct", "ppdb001")] >= 95


def test_profile_wide_critical_scenario(live_server):
    live, clock, url = live_server
    resp = requests.post(
        url + "/scenario", json={"profile": "web_api", "scenario": "critical"}, timeout=5
    )
    assert resp.status_code == 200
    started = resp.json()["started"]
    assert sorted(i["server"] for i in started) == ["ppweb001", "ppweb002"]
    assert all(i["precursor_start"] is None for i in started)


def test_scenario_command_line_client(live_server):
    live, clock, url = live_server
    cmd = [sys.executable, "-m", "linborg", "generate", "scenario", "--url", url]
    good = subprocess.run(
        cmd + ["--server", "ppml0002", "degrading", "--incident", "memory_leak"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert good.returncode == 0, good.stderr
    assert '"memory_leak"' in good.stdout
    bad = subprocess.run(
        cmd + ["--profile", "gpu", "critical"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2
    assert "unknown profile 'gpu'" in bad.stderr and "Traceback" not in bad.stderr


def test_default_origin_is_stable_within_a_day():
    a = default_origin(dt.datetime(2026, 3, 2, 0, 5, tzinfo=dt.UTC))
    b = default_origin(dt.datetime(2026, 3, 2, 23, 55, tzinfo=dt.UTC))
    assert a == b == dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


@pytest.mark.integration
def test_prometheus_ingests_backfill_then_scrapes_live_with_no_gap(tmp_path):
    """Backfill 24 h+ with promtool, start Prometheus, scrape live: one series, no gap."""
    fleet = build_fleet({"web_api": 2, "database": 2, "ml_compute": 2})
    now = dt.datetime.now(dt.UTC)
    origin = default_origin(now)
    live = LiveFleet(fleet, 21, origin)
    httpd = serve(live, "127.0.0.1", 0)
    backfill_end = live.step_time
    try:
        path, steps = write_openmetrics(tmp_path / "backfill.om", fleet, 21, origin, backfill_end)
        assert steps >= 288
        promtool_backfill(path, tmp_path / "data")
        config = f"""
global:
  scrape_interval: 2s
scrape_configs:
  - job_name: linborg-generator
    static_configs:
      - targets: ["127.0.0.1:{httpd.server_address[1]}"]
    metric_relabel_configs:
      - action: labeldrop
        regex: instance
"""
        prom, url = start_prometheus(tmp_path, config, tmp_path / "data")
        try:
            scraped_after = time.time()

            def scraped():
                r = requests.get(
                    url + "/api/v1/query",
                    params={"query": "timestamp(linborg_cpu_user_pct)"},
                    timeout=5,
                ).json()["data"]["result"]
                return r and min(float(x["value"][1]) for x in r) > scraped_after

            poll(scraped, 60, "Prometheus to scrape the live endpoint")
            end = time.time()
            start = origin.timestamp()
            series = query_range(url, 'linborg_mem_used_pct{server="ppdb001"}', start, end, 300)
            assert len(series) == 1, series  # backfill and live are one series: same labels
            assert series[0]["metric"] == {
                "__name__": "linborg_mem_used_pct",
                "job": "linborg-generator",
                "profile": "database",
                "server": "ppdb001",
            }
            points = series[0]["values"]
            stamps = np.array([p[0] for p in points])
            assert stamps[0] == start and len(points) == int((end - start) // 300) + 1  # no gap
            # Raw samples: backfill every 5 minutes, then live scrapes that carry on the value.
            raw = requests.get(
                url + "/api/v1/query",
                params={"query": 'linborg_mem_used_pct{server="ppdb001"}[30m]', "time": end},
                timeout=5,
            ).json()["data"]["result"][0]["values"]
            # Each sample equals the process's value for the 5-minute step it falls in.
            frame, _, _ = simulate(fleet, 21, origin, int((end - start) // 300) + 1)
            want = frame[frame["server"] == "ppdb001"].set_index("timestamp")["mem_used_pct"]
            for t, v in raw:
                step = dt.datetime.fromtimestamp(int(t) // 300 * 300, dt.UTC)
                assert float(v) == pytest.approx(want[step]), t
            assert any(t == backfill_end.timestamp() for t, _ in raw)  # the backfill's last
            assert any(t > backfill_end.timestamp() for t, _ in raw)  # then live scrapes
            every = query_range(url, "count(linborg_uptime_days)", start, end, 300)
            assert {int(v) for _, v in every[0]["values"]} == {len(fleet)}
        finally:
            prom.stop()
    finally:
        httpd.shutdown()
