"""The exporter against a real Prometheus on loopback, with a real (tiny) TFT bundle."""

from __future__ import annotations

import datetime as dt
import sys

import pytest
import requests
from realstack import Process, free_port, poll, promtool_backfill, start_prometheus

from linborg.bundle import save_bundle
from linborg.generator.fleet import build_fleet
from linborg.generator.live import LiveFleet, serve
from linborg.generator.output import simulate, write_openmetrics
from linborg.trainer.train import train

FLEET = build_fleet({"web_api": 2, "database": 2, "ml_compute": 2})


def sample(url: str, name: str, labels: dict | None = None) -> float | None:
    for line in requests.get(url + "/metrics", timeout=5).text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in (labels or {}).items()):
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.mark.integration
def test_exporter_forecasts_from_prometheus_and_recovers(tmp_path):
    history, _, _ = simulate(FLEET, 9, dt.datetime(2026, 1, 5, tzinfo=dt.UTC), 3 * 288)
    model, summary = train(history, "tiny", seed=1, progress=False, log=lambda m: None)
    bundle = save_bundle(model, tmp_path / "bundle", summary)

    now = dt.datetime.now(dt.UTC)
    origin = (now - dt.timedelta(hours=26)).replace(minute=0, second=0, microsecond=0)
    live = LiveFleet(FLEET, 4, origin)
    gen = serve(live, "127.0.0.1", 0)
    path, _ = write_openmetrics(tmp_path / "b.om", FLEET, 4, origin, live.step_time)
    promtool_backfill(path, tmp_path / "data")
    prom_port, exp_port = free_port(), free_port()
    prom_config = f"""
global: {{scrape_interval: 2s}}
scrape_configs:
  - job_name: linborg-generator
    static_configs: [{{targets: ["127.0.0.1:{gen.server_address[1]}"]}}]
    metric_relabel_configs: [{{action: labeldrop, regex: instance}}]
  - job_name: linborg-exporter
    honor_labels: true
    static_configs: [{{targets: ["127.0.0.1:{exp_port}"]}}]
"""
    prom, prom_url = start_prometheus(tmp_path, prom_config, tmp_path / "data", prom_port)
    cfg = tmp_path / "exporter.yml"
    cfg.write_text(
        f"prometheus: {{url: '{prom_url}', timeout: 5s}}\n"
        f"model: {{bundle: '{bundle}'}}\ninterval: 10s\nthreads: 1\n"
    )
    exporter = Process(
        [
            sys.executable,
            "-m",
            "linborg",
            "serve",
            f"--config.file={cfg}",
            f"--web.listen-address=127.0.0.1:{exp_port}",
        ],
        tmp_path / "exporter.log",
    )
    exp_url = f"http://127.0.0.1:{exp_port}"
    try:
        poll(
            lambda: requests.get(exp_url + "/readyz", timeout=2).status_code == 200,
            120,
            "exporter ready",
        )
        assert sample(exp_url, "linborg_servers_forecast") == 6

        def forecast_in_prometheus():
            r = requests.get(
                prom_url + "/api/v1/query",
                params={
                    "query": 'linborg_forecast{server="ppdb001",metric="mem_used_pct",q="0.5"}'
                },
                timeout=5,
            ).json()["data"]["result"]
            return r

        result = poll(forecast_in_prometheus, 60, "Prometheus to scrape the exporter's forecasts")
        labels = result[0]["metric"]
        assert labels["profile"] == "database" and labels["job"] == "linborg-exporter"
        assert {x["metric"]["horizon"] for x in result} == {"30m", "1h", "2h", "4h", "8h"}
        assert not any(k.startswith("exported_") for k in labels)
        assert 0 <= float(result[0]["value"][1]) <= 100

        # Prometheus goes away: cycles fail, the last snapshot keeps being served.
        prom.stop()
        poll(
            lambda: (sample(exp_url, "linborg_exporter_cycle_failures_total") or 0) >= 1,
            60,
            "a failed cycle",
        )
        assert sample(exp_url, "linborg_servers_forecast") == 6
        before = sample(exp_url, "linborg_exporter_last_success_timestamp_seconds")
        # It comes back on the same port: the next cycle succeeds.
        prom, _ = start_prometheus(tmp_path, prom_config, tmp_path / "data", prom_port)
        poll(
            lambda: sample(exp_url, "linborg_exporter_last_success_timestamp_seconds") > before,
            60,
            "recovery after Prometheus returns",
        )
    finally:
        exporter.stop()
        prom.stop()
        gen.shutdown()
    assert "Traceback" not in exporter.output(), exporter.output()[-3000:]
