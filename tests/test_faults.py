"""Fault injection against real processes on loopback: the exporter keeps serving through them.

One stack serves every case: a real Prometheus (history backfilled with promtool, up to an hour
ahead so every new step has samples), a small HTTP proxy in front of it that injects one fault
at a time, and a real ``linborg serve`` process (the shipped default model, a 10-second
interval) that queries Prometheus through the proxy. Prometheus is killed during the exporter's
first 24-hour fill, then started again. Each case then checks the three promises of a hardened
exporter: ``/healthz`` answers 200 within a second throughout, nothing correct is lost (the
servers and metrics that were fine keep their forecasts, and everything recovers once the fault
ends), and ``/metrics`` says what happened. Every wait is a poll with a deadline; every fault is
bounded in count and time and is cleared by the case that set it.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from realstack import Process, free_port, poll, promtool_backfill, start_prometheus

from linborg.contract import METRIC_NAMES, METRICS_BY_NAME
from linborg.exporter.cycle import FILL_CHUNK_STEPS
from linborg.features import ENCODER_STEPS
from linborg.generator.fleet import build_fleet
from linborg.generator.output import write_openmetrics

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
FLEET = build_fleet({"web_api": 2, "database": 2, "ml_compute": 2})
SERVERS = sorted(s.name for s in FLEET)
#: Room in the window for this many servers beyond the fleet (max_servers).
HEADROOM = 20
#: The exporter's interval (the shortest it accepts) and its query timeout (loopback queries
#: take milliseconds; 5 s leaves room for a loaded machine, so only the delay case times out).
INTERVAL_S = 10
QUERY_TIMEOUT_S = 5
#: Long enough for any one case's faulty cycle and its recovery, with a loaded machine.
CYCLE_WAIT_S = 60
#: The first fill asks for each metric's 24 hours in chunks (8 queries of 3 hours). Prometheus
#: dies at this query: the first five metrics are complete, the sixth has half its chunks.
CHUNKS_PER_METRIC = -(-ENCODER_STEPS // FILL_CHUNK_STEPS)
KILL_AT_QUERY = 5 * CHUNKS_PER_METRIC + CHUNKS_PER_METRIC // 2 + 1


def wire(metric: str) -> str:
    return METRICS_BY_NAME[metric].wire_name


# --- The fault proxy ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """What the proxy does to the queries it matches (``metric`` None: every query).

    kind: ``delay`` (answer after ``seconds``), ``drop`` (close without an answer), ``error``
    (HTTP 500 with a Prometheus error body), ``duplicate`` (a second series for ``server``) or
    ``bomb`` (``count`` extra series for servers nobody has).
    """

    kind: str
    metric: str | None = None
    seconds: float = 0.0
    server: str | None = None
    count: int = 0

    def matches(self, query: str) -> bool:
        return self.metric is None or query == wire(self.metric)


class FaultProxy(ThreadingHTTPServer):
    """A loopback HTTP proxy in front of Prometheus' query API that injects one fault at a time.

    ``before_forward(n)`` is called with the running count of forwarded queries (the mid-fill
    kill uses it). Counters say how often the fault was applied, so no case passes because its
    fault never happened.
    """

    daemon_threads = True

    def __init__(self, upstream: str):
        super().__init__(("127.0.0.1", free_port()), ProxyHandler)
        self.upstream = upstream
        self.fault: Fault | None = None
        self.applied = 0
        self.queries = 0
        self.before_forward: Callable[[int], None] | None = None
        self.closing = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @contextlib.contextmanager
    def injecting(self, fault: Fault):
        """Apply ``fault`` inside the block; it is cleared however the block ends."""
        with self.lock:
            self.fault, self.applied = fault, 0
        try:
            yield
        finally:
            with self.lock:
                self.fault = None

    def stop(self) -> None:
        self.closing.set()
        if self.thread.is_alive():
            self.shutdown()
            self.thread.join(10)
        self.server_close()


class ProxyHandler(BaseHTTPRequestHandler):
    server: FaultProxy
    timeout = 30

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass

    def do_POST(self):  # noqa: N802 - the stdlib's name
        proxy = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        query = parse_qs(body.decode()).get("query", [""])[0]
        with proxy.lock:
            proxy.queries += 1
            n = proxy.queries
            fault = proxy.fault if proxy.fault and proxy.fault.matches(query) else None
            if fault:
                proxy.applied += 1
            hook = proxy.before_forward
        if hook is not None:
            hook(n)
        if fault and fault.kind == "drop":
            self.close_connection = True
            return  # the client reads the end of the connection, no answer
        if fault and fault.kind == "error":
            self._send(500, {"status": "error", "errorType": "internal", "error": "injected"})
            return
        if fault and fault.kind == "delay":
            proxy.closing.wait(fault.seconds)
        try:
            upstream = requests.post(
                proxy.upstream + self.path,
                data=body,
                headers={"Content-Type": self.headers.get("Content-Type", "")},
                timeout=30,
            )
        except requests.RequestException:
            self.close_connection = True  # Prometheus is down: so is the answer
            return
        doc = upstream.json()
        if fault and doc.get("status") == "success":
            doc["data"]["result"] = inflate(doc["data"]["result"], fault)
        self._send(upstream.status_code, doc)

    def _send(self, code: int, doc: dict) -> None:
        data = json.dumps(doc).encode()
        with contextlib.suppress(OSError):  # the client may have given up (delay)
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)


def inflate(result: list[dict], fault: Fault) -> list[dict]:
    """Return a query result with the duplicate or the bomb of ``fault`` added."""
    extra = []
    if fault.kind == "duplicate":
        for series in result:
            if series["metric"].get("server") == fault.server:
                twin = copy.deepcopy(series)
                twin["metric"]["instance"] = "a-second-exporter:9100"
                extra.append(twin)
    elif fault.kind == "bomb" and result:
        for i in range(fault.count):
            series = {"metric": dict(result[0]["metric"]), "values": result[0]["values"]}
            series["metric"]["server"] = f"ppbomb{i:05d}"
            extra.append(series)
    return result + extra


# --- Watching the exporter ---------------------------------------------------------------------


class HealthWatch:
    """Probe /healthz every 0.2 s in a thread; record each answer's status and latency."""

    def __init__(self, url: str):
        self.url = url
        self.probes: list[tuple[float, int | None, float]] = []  # (when, status, seconds)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.wait(0.2):
            began = time.monotonic()
            try:
                status = requests.get(self.url + "/healthz", timeout=2).status_code
            except requests.RequestException:
                status = None
            self.probes.append((began, status, time.monotonic() - began))

    def mark(self) -> float:
        return time.monotonic()

    def assert_healthy_since(self, mark: float) -> None:
        """Fail unless every probe since ``mark`` got 200 within a second (at least 3 probes)."""
        poll(lambda: sum(p[0] >= mark for p in self.probes) >= 3, 10, "three /healthz probes")
        probes = [p for p in self.probes if p[0] >= mark]
        bad = [(status, round(took, 2)) for _, status, took in probes if status != 200 or took > 1]
        assert not bad, f"/healthz failed or took over 1s in {len(bad)}/{len(probes)}: {bad[:5]}"

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(10)


class Metrics:
    """One scrape of the exporter's /metrics, read like prometheus-client's get_sample_value."""

    def __init__(self, url: str):
        text = requests.get(url + "/metrics", timeout=5).text
        self.values: dict[tuple[str, frozenset], float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                self.values[(s.name, frozenset(s.labels.items()))] = s.value

    def get(self, name: str, **labels) -> float | None:
        return self.values.get((name, frozenset(labels.items())))

    def series(self, name: str, **labels) -> list[dict[str, str]]:
        """Return the label sets of ``name`` that carry all of ``labels``."""
        want = set(labels.items())
        return [dict(lab) for (n, lab) in self.values if n == name and want <= lab]

    def forecast_servers(self, metric: str = "mem_used_pct") -> set[str]:
        """Return the servers with a 1h median forecast of ``metric``."""
        return {
            s["server"]
            for s in self.series("linborg_forecast", metric=metric, horizon="1h", q="0.5")
        }


class Stack:
    """The running processes of the module, and the waits every case needs."""

    def __init__(self, work: Path, bundle: Path):
        self.work = work
        self.bundle = bundle
        self.data = work / "data"
        self.prom_port = free_port()
        self.prometheus: list[Process] = []  # every start; the last one is running
        self.proxy: FaultProxy | None = None
        self.exporter: Process | None = None
        self.url = f"http://127.0.0.1:{free_port()}"
        self.health: HealthWatch | None = None
        self.fill_kill: dict = {}

    def start_prometheus(self) -> str:
        proc, url = start_prometheus(
            self.work, "global: {scrape_interval: 1m}\n", self.data, self.prom_port
        )
        self.prometheus.append(proc)
        return url

    def start_exporter(self) -> None:
        cfg = self.work / "exporter.yml"
        cfg.write_text(
            f"prometheus: {{url: '{self.proxy.url}', timeout: {QUERY_TIMEOUT_S}s}}\n"
            f"model: {{bundle: '{self.bundle}'}}\n"
            f"interval: {INTERVAL_S}s\nretry_backoff: 1s\nthreads: 1\n"
            f"max_servers: {len(FLEET) + HEADROOM}\n"
        )
        self.exporter = Process(
            [
                sys.executable,
                "-m",
                "linborg",
                "serve",
                f"--config.file={cfg}",
                f"--web.listen-address={self.url.removeprefix('http://')}",
            ],
            self.work / "exporter.log",
        )

    def stop(self) -> None:
        if self.health is not None:
            self.health.stop()
        if self.exporter is not None:
            self.exporter.stop()
        if self.proxy is not None:
            self.proxy.stop()
        for proc in self.prometheus:
            proc.stop()

    def metrics(self) -> Metrics:
        return Metrics(self.url)

    def value(self, name: str, **labels) -> float:
        value = self.metrics().get(name, **labels)
        assert value is not None, f"{name}{labels} is not on /metrics"
        return value

    def next_cycle(self, what: str, check: Callable[[Metrics], bool] = lambda m: True) -> Metrics:
        """Wait for a successful cycle that started from now on, after which ``check`` holds."""
        since = time.time()

        def done():
            m = self.metrics()
            ok = m.get("linborg_exporter_last_success_timestamp_seconds") > since and check(m)
            return m if ok else None

        return poll(done, CYCLE_WAIT_S, what, interval=0.25)

    def check_since(self, mark: float) -> None:
        """Fail unless /healthz was fine since ``mark`` and the exporter logged no traceback."""
        self.health.assert_healthy_since(mark)
        log = self.exporter.output()
        assert "Traceback" not in log, log[-3000:]
        assert self.exporter.proc.poll() is None, "the exporter exited"


def failed_metrics(m: Metrics) -> set[str]:
    return {s["metric"] for s in m.series("linborg_exporter_metric_query_failed")}


def not_forecast(m: Metrics) -> dict[str, str]:
    return {s["server"]: s["reason"] for s in m.series("linborg_server_not_forecast")}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Start Prometheus, the proxy and the exporter; kill Prometheus during the first fill."""
    work = tmp_path_factory.mktemp("faults")
    bundle = work / "bundle"
    shutil.copytree(
        ROOT / "models" / "default", bundle, ignore=shutil.ignore_patterns("evaluation")
    )
    now = dt.datetime.now(dt.UTC)
    path, _ = write_openmetrics(
        work / "history.om", FLEET, 11, now - dt.timedelta(hours=25), now + dt.timedelta(hours=1)
    )
    st = Stack(work, bundle)
    promtool_backfill(path, st.data)
    try:
        st.proxy = FaultProxy(st.start_prometheus())
        killed = threading.Event()

        def kill_prometheus_at(n: int) -> None:
            if n == KILL_AT_QUERY:
                proc = st.prometheus[-1].proc
                proc.kill()
                proc.wait(10)
                killed.set()

        st.proxy.before_forward = kill_prometheus_at
        st.proxy.thread.start()
        st.start_exporter()
        poll(lambda: requests.get(st.url + "/healthz", timeout=1).ok, 120, "the exporter")
        st.health = HealthWatch(st.url)
        mark = st.health.mark()
        assert killed.wait(120), "the first fill never reached the kill"
        st.proxy.before_forward = None
        # The cycle Prometheus died in ends partial: what it had fetched is kept.
        first = poll(
            lambda: (m := st.metrics()).get("linborg_exporter_partial_cycles_total") and m,
            CYCLE_WAIT_S,
            "the cycle Prometheus died in to end",
        )
        ready = requests.get(st.url + "/readyz", timeout=5)
        st.fill_kill = {"mark": mark, "metrics": first, "readyz": (ready.status_code, ready.text)}
        st.start_prometheus()
        poll(
            lambda: requests.get(st.url + "/readyz", timeout=5).status_code == 200,
            CYCLE_WAIT_S,
            "the exporter to finish its fill once Prometheus is back",
        )
        yield st
    finally:
        st.stop()


# --- The cases ---------------------------------------------------------------------------------


def test_prometheus_killed_mid_fill_then_the_fill_completes_with_nothing_missing(stack):
    kill = stack.fill_kill
    code, text = kill["readyz"]
    assert code == 503 and "24-hour fill incomplete" in text, (code, text)
    m = kill["metrics"]
    # Five metrics were complete when Prometheus died during the sixth; that one and those
    # after it failed, and no server was forecast from an incomplete window.
    assert failed_metrics(m) == set(METRIC_NAMES[5:]), stack.exporter.output()[-3000:]
    assert m.get("linborg_exporter_query_failures_total") >= len(METRIC_NAMES[5:])
    assert m.get("linborg_servers_forecast") == 0
    assert not_forecast(m) == dict.fromkeys(SERVERS, "incomplete_fill")
    # Once Prometheus is back: every server forecast from a complete 24-hour window.
    now = poll(
        lambda: (m := stack.metrics()).forecast_servers() == set(SERVERS) and m,
        CYCLE_WAIT_S,
        "the forecasts after the fill",
    )
    assert not failed_metrics(now)
    assert now.get("linborg_servers_forecast") == len(SERVERS)
    completeness = {
        s["server"]: now.get("linborg_data_completeness_ratio", **s)
        for s in now.series("linborg_data_completeness_ratio")
    }
    assert completeness == dict.fromkeys(SERVERS, 1.0)
    assert now.get("linborg_exporter_consecutive_failures") == 0
    stack.check_since(kill["mark"])


def test_a_500_for_one_metric_is_a_partial_cycle_and_every_server_keeps_its_forecasts(stack):
    mark = stack.health.mark()
    before = stack.metrics()
    with stack.proxy.injecting(Fault("error", metric="disk_usage_pct")):
        m = stack.next_cycle(
            "a cycle with disk_usage_pct failing",
            lambda m: failed_metrics(m) == {"disk_usage_pct"},
        )
        assert stack.proxy.applied >= 1
    assert m.get("linborg_exporter_partial_cycles_total") > before.get(
        "linborg_exporter_partial_cycles_total"
    )
    assert m.get("linborg_exporter_query_failures_total") > before.get(
        "linborg_exporter_query_failures_total"
    )
    # The failed metric's history is still in the window: its forecasts go on too.
    for metric in ("mem_used_pct", "disk_usage_pct"):
        assert m.forecast_servers(metric) == set(SERVERS), metric
    after = stack.next_cycle("the next cycle to fetch it", lambda m: not failed_metrics(m))
    assert after.forecast_servers("disk_usage_pct") == set(SERVERS)
    stack.check_since(mark)


def test_a_prometheus_slower_than_the_timeout_fails_cycles_and_the_last_forecasts_stay(stack):
    mark = stack.health.mark()
    failures = stack.value("linborg_exporter_cycle_failures_total")
    with stack.proxy.injecting(Fault("delay", seconds=QUERY_TIMEOUT_S + 2)):
        m = poll(
            lambda: (
                (m := stack.metrics()).get("linborg_exporter_cycle_failures_total") > failures and m
            ),
            CYCLE_WAIT_S,
            "a cycle to fail on the slow Prometheus",
        )
        # The first query timed out; the rest of that cycle was not sent.
        assert stack.proxy.applied >= 1
        assert m.get("linborg_exporter_consecutive_failures") >= 1
        assert m.forecast_servers() == set(SERVERS)
        assert m.get("linborg_servers_forecast") == len(SERVERS)
        paths = requests.get(
            stack.url + "/api/v1/query",
            params={
                "query": 'linborg_forecast_path{metric="mem_used_pct",q="0.5"}',
                "time": time.time() + 1800,  # the paths lie ahead of now
            },
            timeout=5,
        ).json()["data"]["result"]
        assert {p["metric"]["server"] for p in paths} == set(SERVERS)
    after = stack.next_cycle(
        "recovery once Prometheus is fast again",
        lambda m: m.get("linborg_exporter_consecutive_failures") == 0,
    )
    assert after.forecast_servers() == set(SERVERS) and not failed_metrics(after)
    stack.check_since(mark)


def test_dropped_connections_fail_that_metric_and_the_rest_of_the_cycle_then_recover(stack):
    mark = stack.health.mark()
    k = METRIC_NAMES.index("net_in_mb_s")
    with stack.proxy.injecting(Fault("drop", metric="net_in_mb_s")):
        # No answer at all: the exporter stops asking for the rest of the cycle.
        m = stack.next_cycle(
            "a cycle cut off at net_in_mb_s",
            lambda m: failed_metrics(m) == set(METRIC_NAMES[k:]),
        )
        assert stack.proxy.applied >= 1
    assert m.forecast_servers() == set(SERVERS)
    assert m.get("linborg_servers_forecast") == len(SERVERS)
    after = stack.next_cycle("recovery", lambda m: not failed_metrics(m))
    assert after.forecast_servers("net_in_mb_s") == set(SERVERS)
    stack.check_since(mark)


def test_duplicate_series_stop_only_their_server_from_being_forecast(stack):
    mark = stack.health.mark()
    victim = "ppdb001"
    duplicates = stack.value("linborg_exporter_duplicate_series_total")
    with stack.proxy.injecting(Fault("duplicate", metric="load_average", server=victim)):
        m = stack.next_cycle(
            f"{victim} to be refused for duplicate series",
            lambda m: not_forecast(m).get(victim) == "duplicate_series",
        )
        assert stack.proxy.applied >= 1
    assert m.get("linborg_exporter_duplicate_series_total") > duplicates
    assert m.forecast_servers() == set(SERVERS) - {victim}
    assert m.get("linborg_servers_forecast") == len(SERVERS) - 1
    after = stack.next_cycle(
        f"{victim} forecast again", lambda m: m.forecast_servers() == set(SERVERS)
    )
    assert victim not in not_forecast(after)
    stack.check_since(mark)


def test_a_cardinality_bomb_is_held_at_max_servers_and_the_fleet_keeps_its_forecasts(stack):
    mark = stack.health.mark()
    bomb = 1000
    with stack.proxy.injecting(Fault("bomb", count=bomb)):
        m = stack.next_cycle(
            "the bomb to reach the window",
            lambda m: m.get("linborg_exporter_servers_over_limit") > 0,
        )
        assert stack.proxy.applied >= len(METRIC_NAMES)
    # The window had room for HEADROOM more servers; the rest of the bomb was not kept.
    assert m.get("linborg_exporter_servers_over_limit") == bomb - HEADROOM
    assert m.forecast_servers() == set(SERVERS)
    assert m.get("linborg_servers_forecast") == len(SERVERS)
    # /metrics grows by the HEADROOM servers let in (too new to forecast), not by the bomb.
    bombs = not_forecast(m)
    assert len(bombs) == HEADROOM and all(s.startswith("ppbomb") for s in bombs)
    assert set(bombs.values()) == {"too_little_history"}
    after = stack.next_cycle(
        "the bomb to be over", lambda m: m.get("linborg_exporter_servers_over_limit") == 0
    )
    assert after.forecast_servers() == set(SERVERS)
    stack.check_since(mark)


def _replace(path: Path, data: bytes, keep_stamp: bool = False) -> None:
    """Put ``data`` at ``path`` in one rename, so no cycle sees a half-written file.

    With ``keep_stamp`` the file keeps its modification time: the exporter's file watcher sees
    no change, and only SIGHUP reloads.
    """
    st = path.stat()
    tmp = path.parent.parent / (path.name + ".new")  # outside the bundle: it is watched too
    tmp.write_bytes(data)
    if keep_stamp:
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, path)


def test_a_bad_bundle_on_sighup_is_refused_and_the_old_model_keeps_forecasting(stack):
    mark = stack.health.mark()
    spec = stack.bundle / "model.json"
    good = spec.read_bytes()
    doc = json.loads(good)
    doc["hparams"]["hidden_size"] = 1_000_000
    failures = stack.value("linborg_model_reload_failures_total")
    reloads = stack.value("linborg_model_reloads_total")
    info = stack.metrics().series("linborg_model_info")
    try:
        _replace(spec, json.dumps(doc).encode(), keep_stamp=True)
        os.kill(stack.exporter.proc.pid, signal.SIGHUP)
        poll(
            lambda: stack.value("linborg_model_reload_failures_total") == failures + 1,
            30,
            "the SIGHUP reload to be refused",
        )
        m = stack.next_cycle("a cycle with the old model")
    finally:
        _replace(spec, good, keep_stamp=True)
    assert m.forecast_servers() == set(SERVERS)
    assert m.series("linborg_model_info") == info
    assert m.get("linborg_model_reload_failures_total") == failures + 1  # SIGHUP only
    os.kill(stack.exporter.proc.pid, signal.SIGHUP)
    poll(
        lambda: stack.value("linborg_model_reloads_total") == reloads + 1,
        30,
        "the good bundle to load on SIGHUP",
    )
    assert "hidden_size 1000000" in stack.exporter.output()
    stack.check_since(mark)


def test_a_bad_bundle_written_in_place_is_refused_at_the_next_cycle(stack):
    mark = stack.health.mark()
    weights = stack.bundle / "model.safetensors"
    good = weights.read_bytes()
    failures = stack.value("linborg_model_reload_failures_total")
    reloads = stack.value("linborg_model_reloads_total")
    try:
        _replace(weights, good[: len(good) // 2])  # a copy cut short
        m = stack.next_cycle(
            "the changed bundle to be refused",
            lambda m: m.get("linborg_model_reload_failures_total") == failures + 1,
        )
    finally:
        _replace(weights, good)
    assert m.forecast_servers() == set(SERVERS)
    assert m.get("linborg_model_reloads_total") == reloads
    after = stack.next_cycle(
        "the restored bundle to load",
        lambda m: m.get("linborg_model_reloads_total") == reloads + 1,
    )
    assert after.forecast_servers() == set(SERVERS)
    assert after.get("linborg_model_reload_failures_total") == failures + 1
    stack.check_since(mark)


def test_a_backtracking_regex_and_oversized_queries_are_answered_at_once(stack):
    mark = stack.health.mark()
    requests_before = stack.value("linborg_exporter_api_requests_total")
    capped = stack.value("linborg_exporter_api_requests_refused_total", reason="max_samples")
    sent = 0
    for query in (
        '{__name__=~"linbo(.*.*)*x"}',
        'linborg_forecast_path{server=~"(p|pp|ppd)*(.*.*)*x"}',
        'linborg_forecast_path{metric=~"(((m.*)*)*)*z",q="0.5"}',
    ):
        began = time.monotonic()
        r = requests.get(stack.url + "/api/v1/query", params={"query": query}, timeout=10)
        sent += 1
        assert time.monotonic() - began < 1, query
        assert r.status_code == 200 and r.json()["data"]["result"] == [], r.text
    # 11,001 one-second steps over every path: more samples than api.max_samples allows.
    start = time.time() + 600
    r = requests.get(
        stack.url + "/api/v1/query_range",
        params={"query": "linborg_forecast_path", "start": start, "end": start + 11_000, "step": 1},
        timeout=10,
    )
    sent += 1
    assert r.status_code == 422 and r.json()["errorType"] == "execution", r.text
    m = stack.metrics()
    assert m.get("linborg_exporter_api_requests_total") == requests_before + sent
    assert m.get("linborg_exporter_api_requests_refused_total", reason="max_samples") == capped + 1
    stack.check_since(mark)


def test_300_silent_connections_keep_neither_healthz_nor_scrapes_from_answering(stack):
    mark = stack.health.mark()
    dropped = stack.value("linborg_exporter_connections_dropped_total", reason="idle_timeout")
    host, port = stack.url.removeprefix("http://").split(":")
    silent = []
    try:
        for _ in range(300):
            silent.append(socket.create_connection((host, int(port)), timeout=5))
        for _ in range(5):
            began = time.monotonic()
            assert requests.get(stack.url + "/healthz", timeout=2).status_code == 200
            assert time.monotonic() - began < 1
            time.sleep(0.2)
        assert stack.metrics().forecast_servers() == set(SERVERS)
        r = requests.get(
            stack.url + "/api/v1/query",
            params={"query": SELECTOR_OF_ONE, "time": time.time() + 1800},
            timeout=5,
        )
        assert r.status_code == 200 and len(r.json()["data"]["result"]) == 1
        # The exporter closes them once they have been silent for its idle timeout.
        poll(
            lambda: (
                stack.value("linborg_exporter_connections_dropped_total", reason="idle_timeout")
                >= dropped + 300
            ),
            30,
            "the silent connections to be closed",
        )
        for s in silent:
            assert s.recv(16) == b""
    finally:
        for s in silent:
            s.close()
    stack.check_since(mark)


SELECTOR_OF_ONE = 'linborg_forecast_path{server="ppweb001",metric="mem_used_pct",q="0.5"}'
