"""What /metrics shows: a golden text checked by promtool, staleness and the series budget."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from fakes import FLEET, START, FakeModel, FakePrometheus, at
from prometheus_client.parser import text_string_to_metric_families
from realstack import require

from linborg.exporter.collector import MetricsPage
from linborg.exporter.config import config_from_dict
from linborg.exporter.cycle import Exporter
from linborg.thresholds import load_thresholds

GOLDEN = Path(__file__).parent / "golden" / "metrics.txt"


@pytest.fixture
def world():
    from linborg.generator.output import simulate

    frame, _, _ = simulate(FLEET, 3, START, 2 * 288)
    for col in ("server", "profile"):
        frame[col] = frame[col].astype(str)
    return frame


class Samples:
    """Values of a scraped /metrics text, looked up like prometheus-client's get_sample_value."""

    def __init__(self, text: str):
        self.values = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                self.values[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def get_sample_value(self, name, labels=None):
        return self.values.get((name, tuple(sorted((labels or {}).items()))))


def scrape(world, clock_offset=60.0, **config) -> tuple[str, Samples]:
    cfg = {"horizons": ["30m", "8h"], "threads": 2, **config}
    exp = Exporter(config_from_dict(cfg), FakePrometheus(world), FakeModel(), load_thresholds())
    exp.run_once(at(30))
    exp.stats.last_duration = 0.25  # durations vary run to run; fixed for the golden text
    exp.stats.query_seconds = 0.5
    page = MetricsPage(exp, clock=lambda: at(30) + clock_offset, build="test")
    text = page.render().decode()
    return text, Samples(text)


def test_metrics_text_matches_the_golden_file_and_passes_promtool(world, tmp_path):
    text, registry = scrape(world.iloc[: 2 * 288 * 2])  # two servers keep the file short
    if os.environ.get("LINBORG_UPDATE_GOLDEN") == "1":  # deliberate: review the diff, commit
        GOLDEN.write_text(text)
    assert GOLDEN.exists(), (
        "tests/golden/metrics.txt is missing (LINBORG_UPDATE_GOLDEN=1 writes it)"
    )
    assert text == GOLDEN.read_text(), (
        "exporter /metrics changed: review it and update tests/golden/metrics.txt "
        "(LINBORG_UPDATE_GOLDEN=1 pytest tests/test_exporter_metrics.py)"
    )
    result = subprocess.run(
        [require("promtool"), "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    v = registry.get_sample_value
    labels = {
        "server": "ppml0002",
        "profile": "ml_compute",
        "metric": "mem_used_pct",
        "horizon": "8h",
        "q": "0.9",
    }
    assert v("linborg_forecast", labels) is not None
    assert 'q="0.5"' in text and "quantile=" not in text
    assert v("linborg_servers_forecast") == 2


def test_stale_snapshot_stops_exporting_forecasts(world):
    text, registry = scrape(world, clock_offset=16 * 60)
    assert registry.get_sample_value("linborg_servers_forecast") == 0
    assert "linborg_forecast{" not in text and "linborg_risk_score{" not in text
    assert registry.get_sample_value("linborg_exporter_snapshot_age_seconds") > 900


def test_series_budget_is_enforced_and_counted(world):
    text, registry = scrape(world, series_budget_per_server=20)
    per_server = text.count('server="ppml0001"')
    assert per_server <= 20 + 1  # budgeted series plus nothing else per server but not_forecast
    assert (
        registry.get_sample_value("linborg_exporter_series_dropped", {"reason": "over_budget"}) > 0
    )


def test_gzipped_page_is_the_same_text(world):
    import gzip

    from test_exporter_cycle import make

    exp, _, _ = make(world)
    exp.run_once(at(30))
    page = MetricsPage(exp, clock=lambda: at(30) + 60, build="test")
    plain = page.render()
    zipped = page.render(gzipped=True)
    assert len(zipped) < len(plain) / 4
    assert gzip.decompress(zipped) == plain  # two members read as one stream
