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
import resource
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

from exporter.collector import SnapshotCollector
from exporter.config import config_from_dict
from exporter.cycle import Exporter
from generator.fleet import build_fleet, scaled_composition
from generator.simulate import Simulator
from linborg.contract import METRIC_NAMES, STEP_SECONDS
from linborg.prom import PrometheusClient
from linborg.thresholds import load_thresholds
from trainer.bundle import load_bundle


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


def serve(api: FakeQueryAPI) -> ThreadingHTTPServer:
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
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def bench(n: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    end = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    end -= dt.timedelta(minutes=end.minute % 5)
    api = FakeQueryAPI(n, end)
    httpd = serve(api)
    client = PrometheusClient(f"http://127.0.0.1:{httpd.server_address[1]}", timeout=300)
    cfg = config_from_dict({"threads": threads})
    exp = Exporter(cfg, client, load_bundle("models/default"), load_thresholds())
    t0 = end.timestamp() - 3600 + 30  # the first cycle fills 24 h; then steady state
    began = time.perf_counter()
    exp.run_once(t0)
    first = time.perf_counter() - began
    first_bytes = exp.stats.bytes_received
    steady, sizes = [], []
    for k in range(1, 4):
        before = exp.stats.bytes_received
        began = time.perf_counter()
        exp.run_once(t0 + k * STEP_SECONDS)
        steady.append(time.perf_counter() - began)
        sizes.append(exp.stats.bytes_received - before)
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(exp, clock=lambda: t0 + 3 * STEP_SECONDS + 30))
    began = time.perf_counter()
    text = generate_latest(registry)
    scrape = time.perf_counter() - began
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    httpd.shutdown()
    print(
        f"{len(api.fleet):>6} servers: first cycle {first:.1f} s ({first_bytes / 1e6:.1f} MB), "
        f"steady cycle median {np.median(steady):.2f} s, {np.median(sizes) / 1e6:.2f} MB from "
        f"Prometheus per cycle, scrape {scrape:.2f} s ({len(text) / 1e6:.1f} MB), "
        f"peak RSS {rss:.2f} GiB (whole process)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--servers", type=int, nargs="+", default=[90, 1000])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    for n in args.servers:
        bench(n, args.threads)


if __name__ == "__main__":
    main()
