"""Training from Prometheus: history read back through the query API matches the generator."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from realstack import promtool_backfill, start_prometheus

from linborg.contract import METRIC_NAMES
from linborg.generator.fleet import build_fleet
from linborg.generator.output import simulate, write_openmetrics
from linborg.prom import PrometheusClient, PrometheusError
from linborg.sources import fetch_history
from linborg.validate import check


def backfilled(tmp_path, composition: dict, seed: int, hours: float):
    """Start a real Prometheus holding ``hours`` of a generated fleet's history, up to now.

    Returns (process, url, fleet, start, end, steps).
    """
    fleet = build_fleet(composition)
    end = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    end -= dt.timedelta(minutes=end.minute % 5)
    start = end - dt.timedelta(hours=hours)
    path, steps = write_openmetrics(tmp_path / "b.om", fleet, seed, start, end)
    promtool_backfill(path, tmp_path / "data")
    prom, url = start_prometheus(tmp_path, "global: {scrape_interval: 1m}\n", tmp_path / "data")
    return prom, url, fleet, start, end, steps


@pytest.mark.integration
def test_fetch_history_from_a_real_prometheus_matches_the_generator(tmp_path):
    prom, url, fleet, start, end, steps = backfilled(tmp_path, {"web_api": 2, "database": 1}, 5, 6)
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


@pytest.mark.integration
def test_train_reads_prometheus_as_the_exporter_config_says(tmp_path):
    # The tiny preset needs 40 hours per server.
    prom, url, fleet, *_ = backfilled(tmp_path, {"web_api": 1, "database": 1}, 5, 42)

    def train(config: dict, out: str) -> subprocess.CompletedProcess:
        cfg = tmp_path / f"{out}.yml"
        cfg.write_text(yaml.safe_dump(config))
        return subprocess.run(
            [sys.executable, "-m", "linborg", "train", "--config.file", str(cfg), "--days", "2",
             "--preset", "tiny", "--out", str(tmp_path / out), "--max-minutes", "2"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    try:
        # The servers are named by a label the queries make: read through the config or nothing.
        renamed = {
            m: f'label_replace(linborg_{m}, "host", "$1", "server", "(.*)")' for m in METRIC_NAMES
        }
        wrong = train({"prometheus": {"url": url}, "labels": {"server": "host"}}, "none")
        assert wrong.returncode == 2
        assert f"{url} has no LINBORG series in the last 2 days" in wrong.stderr
        assert "Traceback" not in wrong.stderr
        ok = train(
            {"prometheus": {"url": url}, "labels": {"server": "host"}, "queries": renamed},
            "bundle",
        )
        assert ok.returncode == 0, ok.stderr[-2000:]
        # Progress: a day per query, so 2 (or 3, when now falls on a step) windows per metric.
        assert re.search(r"reading history from .*: (28/28|42/42) queries", ok.stderr)
        spec = json.loads((tmp_path / "bundle" / "model.json").read_text())
        assert spec["training"]["server_names"] == sorted(s.name for s in fleet)
        assert spec["training"]["source"] == f"Prometheus {url}, 2 days"
    finally:
        prom.stop()


@pytest.mark.integration
def test_history_read_in_chunks_is_the_same_table(tmp_path):
    prom, url, _, start, end, _ = backfilled(tmp_path, {"web_api": 1, "generic": 1}, 3, 5)
    try:
        client = PrometheusClient(url)
        whole = fetch_history(client, start.timestamp(), end.timestamp())
        calls = []
        hourly = fetch_history(
            client, start.timestamp(), end.timestamp(), chunk_seconds=3600,
            progress=lambda done, total: calls.append((done, total)),
        )  # fmt: skip
        assert calls[-1] == (14 * 6, 14 * 6)  # 5 hours and one step: 6 windows per metric
        assert len(whole) == 2 * (5 * 12 + 1)
        pd.testing.assert_frame_equal(hourly, whole)
    finally:
        prom.stop()
