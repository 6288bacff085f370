"""The exporter's cycle against real query APIs: VictoriaMetrics, and three shards on Prometheus."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import requests
from realstack import Process, free_port, poll, promtool_backfill, require, start_prometheus

from linborg.exporter.config import config_from_dict
from linborg.exporter.cycle import Exporter
from linborg.generator.fleet import build_fleet
from linborg.generator.output import simulate, write_openmetrics
from linborg.model import Forecaster
from linborg.prom import PrometheusClient
from linborg.thresholds import load_thresholds
from linborg.trainer.train import train

FLEET = build_fleet({"web_api": 3, "database": 3, "ml_compute": 3})


@pytest.fixture(scope="module")
def forecaster():
    history, _, _ = simulate(FLEET, 9, dt.datetime(2026, 1, 5, tzinfo=dt.UTC), 3 * 288)
    model, _ = train(history, "tiny", seed=1, progress=False, log=lambda m: None)
    return Forecaster(model, {})


def recent():
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    end = now - dt.timedelta(minutes=now.minute % 5)
    return end - dt.timedelta(hours=25), end


@pytest.mark.integration
def test_cycle_against_victoriametrics(tmp_path, forecaster):
    start, end = recent()
    path, steps = write_openmetrics(tmp_path / "b.om", FLEET, 6, start, end)
    port = free_port()
    vm = Process(
        [
            require("victoria-metrics"),
            f"-httpListenAddr=127.0.0.1:{port}",
            f"-storageDataPath={tmp_path / 'vm'}",
            "-retentionPeriod=30d",
            "-search.latencyOffset=0s",
        ],
        tmp_path / "vm.log",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        poll(
            lambda: requests.get(url + "/health", timeout=2).status_code == 200,
            60,
            "VictoriaMetrics",
        )
        # VictoriaMetrics imports Prometheus text with millisecond timestamps.
        lines = []
        for line in path.read_text().splitlines():
            if line.startswith("linborg_"):
                head, value, stamp = line.rsplit(" ", 2)
                lines.append(f"{head} {value} {int(stamp) * 1000}")
        requests.post(
            url + "/api/v1/import/prometheus", data="\n".join(lines), timeout=60
        ).raise_for_status()
        requests.get(url + "/internal/force_flush", timeout=10)
        client = PrometheusClient(url)
        poll(
            lambda: len(client.query("linborg_mem_used_pct", end.timestamp())) == len(FLEET),
            60,
            "VictoriaMetrics to serve the imported series",
        )
        exp = Exporter(config_from_dict({}), client, forecaster, load_thresholds())
        snap = exp.run_once(end.timestamp() + 30)
        assert snap is not None and len(snap.servers) == len(FLEET), snap.not_forecast
        assert snap.completeness.min() > 0.95
        assert np.isfinite(snap.forecast).all()
        assert exp.stats.query_failures == 0 and exp.stats.bytes_received > 0
    finally:
        vm.stop()


@pytest.mark.integration
def test_three_shards_on_prometheus_cover_the_fleet_exactly_once(tmp_path, forecaster):
    start, end = recent()
    path, _ = write_openmetrics(tmp_path / "b.om", FLEET, 6, start, end)
    promtool_backfill(path, tmp_path / "data")
    prom, url = start_prometheus(tmp_path, "global: {scrape_interval: 1m}\n", tmp_path / "data")
    try:
        forecast = []
        for i in range(3):
            exp = Exporter(
                config_from_dict({"shard": f"{i}/3"}),
                PrometheusClient(url),
                forecaster,
                load_thresholds(),
            )
            snap = exp.run_once(end.timestamp() + 30)
            forecast += list(snap.servers)
            assert {r for _, r in snap.not_forecast.values()} <= {"outside_shard"}
        assert sorted(forecast) == sorted(s.name for s in FLEET)
        assert len(set(forecast)) == len(forecast)
    finally:
        prom.stop()
