"""Training from Prometheus: history read back through the query API matches the generator."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from realstack import promtool_backfill, start_prometheus

from generator.fleet import build_fleet
from generator.output import simulate, write_openmetrics
from linborg.contract import METRIC_NAMES
from linborg.prom import PrometheusClient, PrometheusError
from linborg.sources import fetch_history
from linborg.validate import check


@pytest.mark.integration
def test_fetch_history_from_a_real_prometheus_matches_the_generator(tmp_path):
    fleet = build_fleet({"web_api": 2, "database": 1})
    end = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    end -= dt.timedelta(minutes=end.minute % 5)
    start = end - dt.timedelta(hours=6)
    path, steps = write_openmetrics(tmp_path / "b.om", fleet, 5, start, end)
    promtool_backfill(path, tmp_path / "data")
    prom, url = start_prometheus(tmp_path, "global: {scrape_interval: 1m}\n", tmp_path / "data")
    try:
        client = PrometheusClient(url)
        frame = fetch_history(client, start.timestamp(), end.timestamp())
        assert check(frame) == []
        want, _, _ = simulate(fleet, 5, start, steps)
        got = frame.set_index(["server", "timestamp"]).sort_index()
        want = want.set_index(["server", "timestamp"]).sort_index()
        assert len(got) == len(want) == 3 * steps
        for m in METRIC_NAMES:
            np.testing.assert_allclose(got[m].to_numpy(), want[m].to_numpy(), rtol=1e-9)
        assert set(got["profile"]) == {"web_api", "database"}
        assert client.bytes_received > 0
        with pytest.raises(PrometheusError, match="parse error"):
            client.query_range("linborg_cpu_user_pct{", start.timestamp(), end.timestamp(), 300)
    finally:
        prom.stop()
    with pytest.raises(PrometheusError, match="cannot reach"):
        PrometheusClient(url, timeout=2).query("up", end.timestamp())
