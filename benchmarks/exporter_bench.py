"""Benchmark the exporter: steady-state cycle time, memory, scrape time and bytes per cycle.

A small HTTP server on loopback answers Prometheus' query_range API (JSON, as Prometheus
formats it) from a simulated fleet, so the exporter's client, parsing, window, batched TFT
inference, risk and snapshot all run for real. The model is the shipped default bundle.

Run: .venv/bin/python benchmarks/exporter_bench.py --servers 90 1000 10000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import resource
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import numpy as np
import requests

from linborg.bundle import load_bundle
from linborg.contract import METRIC_NAMES, STEP_SECONDS
from linborg.exporter.collector import MetricsPage
from linborg.exporter.config import config_from_dict
from linborg.exporter.cycle import Exporter
from linborg.exporter.server import make_handler
from linborg.generator.fleet import build_fleet, scaled_composition
from linborg.generator.simulate import Simulator
from linborg.prom import PrometheusClient
from linborg.thresholds import load_thresholds


class FakeQueryAPI:
    """query_range over a simulated fleet's history held in memory."""

    def __init__(self, n_servers: int, end: dt.datetime, hours: int = 26):
        self.fleet = build_fleet(scaled_composition(n_servers))
        start = end - dt.timedelta(hours=hours)
        sim = Simulator(self.fleet, 1, start)
        steps = hours * 12 + 1
        self.first_step = int(start.timestamp()) // STEP_SECONDS
        self.values = {m: np.empty((len(self.fleet), steps)) for m in METRIC_NAMES}
        for k in range(steps):
            _, row, _ = sim.step()
            for m in METRIC_NAMES:
                self.values[m][:, k] = row[m]

    def answer(self, query: str, start: float, end: float, step: float) -> bytes:
        metric = query.removeprefix("linborg_")
        a = max(int(start) // STEP_SECONDS - self.first_step, 0)
        b = int(end) // STEP_SECONDS - self.first_step
        vals = self.values[metric][:, a : b + 1]
        stamps = [(self.first_step + a + k) * STEP_SECONDS for k in range(vals.shape[1])]
        result = [
            {
                "metric": {"__name__": query, "server": s.name, "profile": s.profile},
                "values": [[t, f"{v:.10g}"] for t, v in zip(stamps, vals[i], strict=True)],
            }
            for i, s in enumerate(self.fleet)
        ]
        doc = {"status": "success", "data": {"resultType": "matrix", "result": result}}
        return json.dumps(doc, separators=(",", ":")).encode()


def serve_forever(n: int, end: dt.datetime, port_out) -> None:
    """Build the fleet's history and answer query_range until killed (child process)."""
    api = FakeQueryAPI(n, end)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            q = {k: v[0] for k, v in parse_qs(body).items()}
            out = api.answer(q["query"], float(q["start"]), float(q["end"]), float(q["step"]))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port_out.send(httpd.server_address[1])
    httpd.serve_forever()


def bench(n: int, threads: int, scrapes: int) -> None:
    import torch

    torch.set_num_threads(threads)
    end = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    end -= dt.timedelta(minutes=end.minute % 5)
    # The fake query API runs in its own process so that RSS below is the exporter's alone.
    parent, child = mp.Pipe()
    api = mp.get_context("fork").Process(target=serve_forever, args=(n, end, child), daemon=True)
    api.start()
    port = parent.recv()
    client = PrometheusClient(f"http://127.0.0.1:{port}", timeout=600)
    cfg = config_from_dict({"threads": threads})
    exp = Exporter(cfg, client, load_bundle("models/default"), load_thresholds())
    clock = {"now": 0.0}
    page = MetricsPage(exp, clock=lambda: clock["now"])
    t0 = end.timestamp() - 3600 + 30  # the first cycle fills 24 h; then steady state
    clock["now"] = t0
    began = time.perf_counter()
    exp.run_once(t0)
    page.prepare()
    first = time.perf_counter() - began
    first_bytes = exp.stats.bytes_received
    steady, sizes, pulls, renders = [], [], [], []
    for k in range(1, 4):
        before = exp.stats.bytes_received
        clock["now"] = t0 + k * STEP_SECONDS
        began = time.perf_counter()
        exp.run_once(clock["now"])
        ran = time.perf_counter()
        page.prepare()
        steady.append(time.perf_counter() - began)
        renders.append(time.perf_counter() - ran)
        pulls.append(exp.stats.last_pull_seconds)
        sizes.append(exp.stats.bytes_received - before)
    clock["now"] += 30
    # Scrapes over HTTP through the exporter's own handler, as Prometheus does them (gzip),
    # and plain; the time is until the client holds the whole body as sent.
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(page, lambda: (True, "ok")))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/metrics"
    times = {"gzip": [], "identity": []}
    sizes_by: dict[str, int] = {}
    with requests.Session() as session:
        for _ in range(scrapes):
            for encoding, took in times.items():
                began = time.perf_counter()
                resp = session.get(url, headers={"Accept-Encoding": encoding}, stream=True)
                body = resp.raw.read(decode_content=False)
                took.append(time.perf_counter() - began)
                sizes_by[encoding] = len(body)
    httpd.shutdown()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    text = page.render()
    size = len(text)
    lines = text.count(b"\n")
    api.kill()
    print(
        f"{n:>6} servers: first cycle {first:.1f} s ({first_bytes / 1e6:.1f} MB); steady cycle "
        f"median {np.median(steady):.2f} s (pull {np.median(pulls):.2f} s, render "
        f"{np.median(renders):.2f} s), {np.median(sizes) / 1e6:.2f} MB from Prometheus per "
        f"cycle; scrape over HTTP max {max(times['gzip']):.3f} s gzip "
        f"({sizes_by['gzip'] / 1e6:.1f} MB), {max(times['identity']):.3f} s plain "
        f"({size / 1e6:.1f} MB, {lines / 1e6:.2f}M lines) over {scrapes}; peak RSS during "
        f"the cycles and scrapes {rss:.2f} GiB",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--servers", type=int, nargs="+", default=[90, 1000])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scrapes", type=int, default=5)
    args = parser.parse_args()
    for n in args.servers:
        bench(n, args.threads, args.scrapes)


if __name__ == "__main__":
    main()
