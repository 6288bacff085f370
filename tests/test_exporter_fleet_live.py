"""Fleet changes against a real Prometheus: servers appear and vanish with no restart.

The history is backfilled with promtool in three parts: servers that stay, one that stops
reporting and one that is new. One Exporter (real Prometheus client, the shipped default model)
runs cycles at chosen past times, as the scheduler would, without being restarted.
"""

from __future__ import annotations

import datetime as dt

import pytest
from realstack import promtool_backfill, start_prometheus

from linborg.bundle import load_bundle
from linborg.exporter.collector import MetricsPage
from linborg.exporter.config import config_from_dict
from linborg.exporter.cycle import Exporter
from linborg.generator.fleet import build_fleet
from linborg.generator.output import write_openmetrics
from linborg.prom import PrometheusClient
from linborg.thresholds import load_thresholds

STAY = build_fleet({"web_api": 2, "database": 1})
GONE = build_fleet({"database": 1}, first=2)  # ppdb002
NEW = build_fleet({"ml_compute": 1})  # ppml0001


@pytest.mark.integration
def test_servers_appear_and_vanish_between_cycles_without_restart(tmp_path):
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    t = now - dt.timedelta(hours=2, minutes=now.minute % 5)  # a step boundary in the past
    h = dt.timedelta(hours=1)
    parts = [
        (STAY, t - 30 * h, t),
        (GONE, t - 30 * h, t - dt.timedelta(minutes=30)),
        (NEW, t - h, t),
    ]
    for k, (fleet, start, end) in enumerate(parts):
        path, _ = write_openmetrics(tmp_path / f"part{k}.om", fleet, 5 + k, start, end)
        promtool_backfill(path, tmp_path / "data")
    prom, url = start_prometheus(tmp_path, "global: {scrape_interval: 1m}\n", tmp_path / "data")
    try:
        cfg = config_from_dict(
            {"prometheus": {"url": url, "timeout": "20s"}, "min_history": "1h", "threads": 1}
        )
        exp = Exporter(
            cfg, PrometheusClient(url, 20), load_bundle("models/default"), load_thresholds()
        )
        clock = {"now": 0.0}
        page = MetricsPage(exp, clock=lambda: clock["now"])

        def cycle(at: dt.datetime):
            clock["now"] = at.timestamp() + 30
            snap = exp.run_once(clock["now"])
            assert snap is not None
            return snap, page.render().decode()

        # t - 45m: ppdb002 still reports; ppml0001 has 15 minutes of history.
        snap, text = cycle(t - dt.timedelta(minutes=45))
        assert "ppdb002" in snap.servers
        assert snap.not_forecast["ppml0001"] == ("ml_compute", "too_little_history")
        assert 'server="ppdb002"' in text
        assert (
            'linborg_server_not_forecast{profile="ml_compute",reason="too_little_history",'
            'server="ppml0001"} 1.0' in text
        )
        # t: ppdb002 stopped 30 minutes ago and is gone; ppml0001 has an hour and is forecast.
        snap, text = cycle(t)
        assert "ppdb002" not in snap.servers and "ppdb002" not in snap.not_forecast
        assert 'server="ppdb002"' not in text
        assert "ppml0001" in snap.servers
        assert (
            'linborg_forecast{horizon="1h",metric="mem_used_pct",profile="ml_compute",q="0.5"'
            ',server="ppml0001"}' in text
        )
        assert sorted(snap.servers) == sorted(s.name for s in [*STAY, *NEW])
        assert exp.stats.cycles == 2 and exp.stats.cycle_failures == 0
    finally:
        prom.stop()
