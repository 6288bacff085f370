"""Exporter configuration: defaults, the committed example, and every problem reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from linborg.exporter.config import SCHEMA, Config, ConfigError, config_from_dict, load_config

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_match_the_schema():
    cfg = config_from_dict({})
    assert cfg.prometheus_url == SCHEMA["prometheus.url"][0]
    assert cfg.interval_seconds == 300 and cfg.horizons == ("30m", "1h", "2h", "4h", "8h")
    assert cfg.quantiles == (0.1, 0.5, 0.9) and (cfg.shard_index, cfg.shard_count) == (0, 1)
    assert cfg.query("mem_used_pct") == "linborg_mem_used_pct"
    assert Config().min_history_seconds == cfg.min_history_seconds == 86400


def test_the_committed_example_loads():
    cfg = load_config(ROOT / "exporter" / "example.yml")
    assert cfg.query("cpu_idle_pct") == "linborg_cpu_idle_pct"
    assert ("^ppdb\\d{3}", "database") in cfg.hostname_patterns


def test_overrides_are_read(tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    cfg = config_from_dict(
        {
            "prometheus": {
                "url": "https://vm:8428",
                "timeout": "10s",
                "bearer_token_file": str(token),
            },
            "queries": {"mem_used_pct": "level:mem_used_pct"},
            "shard": "2/3",
            "interval": "1m",
            "horizons": ["1h"],
            "quantiles": [0.5],
            "timezone": "America/New_York",
        }
    )
    assert cfg.timeout_seconds == 10 and cfg.bearer_token_file == str(token)
    assert cfg.query("mem_used_pct") == "level:mem_used_pct"
    assert (cfg.shard_index, cfg.shard_count, cfg.interval_seconds) == (2, 3, 60)
    assert cfg.horizons == ("1h",) and cfg.quantiles == (0.5,)


def test_every_problem_is_reported_at_once(tmp_path):
    with pytest.raises(ConfigError) as err:
        config_from_dict(
            {
                "prometheus": {"url": "localhost:9090", "bearer_token_file": "/nope/token"},
                "queries": {"mem_pct": "x", "gpu_temp": "y"},
                "hostname_patterns": [{"regex": "([", "profile": "gpu"}],
                "timezone": "Mars/Olympus",
                "horizons": ["12h", "7m", "soon"],
                "quantiles": [0.25],
                "shard": "3/3",
                "threads": 0,
                "interval": "5 minutes",
                "colour": "blue",
            },
            "bad.yml",
        )
    text = str(err.value)
    for fragment in (
        "bad.yml:",
        "prometheus.url: 'localhost:9090' must start with http:// or https://",
        "prometheus.bearer_token_file: no such file /nope/token",
        "queries.mem_pct: 'mem_pct' is a deprecated name; use mem_used_pct",
        "queries.gpu_temp: unknown metric",
        "unknown profile 'gpu'",
        "invalid regular expression",
        "timezone: unknown time zone 'Mars/Olympus'",
        "horizons: 12h must be a multiple of 5m between 5m and 8h",
        "horizons: 7m must be a multiple of 5m between 5m and 8h",
        "horizons: 'soon' is not a duration",
        "quantiles: must be a non-empty subset of [0.1, 0.5, 0.9]",
        "shard: shard '3/3' must be i/N with 0 <= i < N",
        "threads: expected a whole number >= 1, got 0",
        "interval: '5 minutes' is not a duration",
        "colour: unknown key",
    ):
        assert fragment in text, fragment


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_config(tmp_path / "missing.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("prometheus: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        load_config(bad)


def test_credentials_in_the_url_and_two_kinds_of_auth_are_refused(tmp_path):
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    with pytest.raises(ConfigError) as err:
        config_from_dict(
            {
                "prometheus": {
                    "url": "https://admin:hunter2@prom.example:9090",
                    "bearer_token_file": str(token),
                    "basic_auth": {"username": "linborg"},
                }
            },
            "auth.yml",
        )
    text = str(err.value)
    assert "prometheus.url: credentials in the URL are refused" in text
    assert "hunter2" not in text  # the refusal itself does not print the secret
    assert "bearer_token_file and prometheus.basic_auth are both set" in text
    from linborg.contract import ContractError
    from linborg.prom import PrometheusClient

    # The trainer's --prometheus URL goes through the client, which refuses it too.
    with pytest.raises(ContractError, match="credentials in the URL are refused"):
        PrometheusClient("http://u:p@127.0.0.1:9090")
    assert PrometheusClient("http://127.0.0.1:9090").url == "http://127.0.0.1:9090"


def test_the_forecast_path_api_limits_are_read_and_checked():
    cfg = config_from_dict({})
    assert (cfg.api_timeout_seconds, cfg.api_max_concurrency, cfg.api_max_samples) == (
        10,
        4,
        250_000,
    )
    cfg = config_from_dict({"api": {"timeout": "30s", "max_concurrency": 8, "max_samples": 10}})
    assert (cfg.api_timeout_seconds, cfg.api_max_concurrency, cfg.api_max_samples) == (30, 8, 10)
    with pytest.raises(ConfigError) as err:
        config_from_dict({"api": {"timeout": "0s", "max_concurrency": 0, "max_samples": "many"}})
    text = str(err.value)
    assert "3 problem(s)" in text
    assert "api.timeout: must be at least 1s" in text
    assert "api.max_concurrency: expected a whole number >= 1, got 0" in text
    assert "api.max_samples: expected a whole number >= 1, got 'many'" in text
