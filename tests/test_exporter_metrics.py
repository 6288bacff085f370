"""What /metrics shows: a golden text checked by promtool, staleness and the series budget."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from fakes import FLEET, START, FakeModel, FakePrometheus, at
from prometheus_client.parser import text_string_to_metric_families
from realstack import require

from linborg import families as F
from linborg.contract import METRIC_NAMES, PROFILE_NAMES
from linborg.exporter.collector import MetricsPage
from linborg.exporter.config import config_from_dict, load_config_thresholds
from linborg.exporter.cycle import Exporter
from linborg.thresholds import LEVELS, load_thresholds

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


def test_an_exporter_with_a_thresholds_file_exposes_the_overridden_thresholds(world, tmp_path):
    override = tmp_path / "thresholds.yaml"
    override.write_text("profiles:\n  database:\n    cpu_iowait_pct: {warning: 33, critical: 44}\n")
    cfg = config_from_dict({"horizons": ["30m", "8h"], "thresholds_file": str(override)})
    exp = Exporter(cfg, FakePrometheus(world), FakeModel(), load_config_thresholds(cfg))
    page = MetricsPage(exp, clock=lambda: at(30), build="test")
    v = page.registry.get_sample_value

    def threshold(profile: str, metric: str, level: str) -> float | None:
        return v(F.THRESHOLD, {"profile": profile, "metric": metric, "level": level})

    # Before the first cycle already: the rules and dashboards need it, not the forecasts.
    assert exp.snapshot is None
    assert threshold("database", "cpu_iowait_pct", "warning") == 33
    assert threshold("database", "cpu_iowait_pct", "critical") == 44
    # What the file leaves out keeps the packaged value (linborg/thresholds.yaml).
    assert threshold("ml_compute", "cpu_iowait_pct", "warning") == 2
    assert threshold("database", "mem_used_pct", "critical") == 98.5
    # The same every cycle, and on the scraped text.
    exp.run_once(at(30))
    scraped = Samples(page.render().decode()).get_sample_value
    labels = {"profile": "database", "metric": "cpu_iowait_pct", "level": "critical"}
    assert scraped(F.THRESHOLD, labels) == 44


def test_every_profile_and_metric_has_both_threshold_levels_on_metrics(world):
    text, registry = scrape(world.iloc[: 2 * 288 * 2])
    thresholds = load_thresholds()
    count = 0
    for (profile, metric), t in thresholds.items():
        for level in LEVELS:
            labels = {"profile": profile, "metric": metric, "level": level}
            assert registry.get_sample_value(F.THRESHOLD, labels) == getattr(t, level), labels
            count += 1
    assert text.count(F.THRESHOLD + "{") == count == len(PROFILE_NAMES) * len(METRIC_NAMES) * 2
