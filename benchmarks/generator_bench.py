"""Benchmark the generator: history for 90 servers x 30 days, and live scrapes of 10,000 servers.

Run: .venv/bin/python benchmarks/generator_bench.py [--servers 10000] [--scrapes 20]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path

import requests

from linborg.generator.fleet import DEFAULT_COMPOSITION, build_fleet, scaled_composition
from linborg.generator.live import LiveFleet, serve
from linborg.generator.output import write_history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--servers", type=int, default=10_000)
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--days", type=float, default=30)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        write_history(
            Path(tmp) / "h.parquet",
            build_fleet(DEFAULT_COMPOSITION),
            7,
            dt.datetime(2026, 1, 5, tzinfo=dt.UTC),
            args.days,
        )
        took = time.perf_counter() - began
        print(f"history: 90 servers x {args.days:g} days written in {took:.2f} s")

    fleet = build_fleet(scaled_composition(args.servers))
    now = dt.datetime.now(dt.UTC)
    began = time.perf_counter()
    live = LiveFleet(fleet, 7, now - dt.timedelta(hours=1))
    print(
        f"live: {len(fleet)} servers, start-up (1 h fast-forward + render) "
        f"{time.perf_counter() - began:.2f} s, one render {live.render_seconds:.3f} s, "
        f"body {len(live.body) / 1e6:.1f} MB"
    )
    httpd = serve(live, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{httpd.server_address[1]}/metrics"
    times = []
    with requests.Session() as session:
        for _ in range(args.scrapes):
            t0 = time.perf_counter()
            resp = session.get(url, timeout=30)
            resp.raise_for_status()
            times.append(time.perf_counter() - t0)
    httpd.shutdown()
    print(
        f"scrape of {len(fleet)} servers ({args.scrapes} scrapes): "
        f"median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
