"""The one duration parser (linborg.duration), used by the config, the rules and the API."""

from __future__ import annotations

import pytest

from linborg.duration import duration_ms, parse_duration


def test_prometheus_durations_in_milliseconds():
    assert duration_ms("5m") == 300_000
    assert duration_ms("1h30m") == 5_400_000
    assert duration_ms("2w") == 14 * 86_400_000
    assert duration_ms("1y") == 365 * 86_400_000
    assert duration_ms("1s500ms") == 1500
    assert duration_ms("0s") == 0


@pytest.mark.parametrize("bad", ["", "5", "m", "30m1h", "1.5h", "5M", " 5m", "5m ", "-5m", "1d1d"])
def test_text_that_is_not_a_duration_is_refused(bad):
    with pytest.raises(ValueError):
        duration_ms(bad)


def test_whole_seconds_for_the_config_and_rules():
    assert parse_duration("30s") == 30
    assert parse_duration("8h") == 28_800
    assert parse_duration("1h30m") == 5400
    for bad in ("500ms", "soon", "", 15):
        with pytest.raises(ValueError, match=r"is not a duration like 30s, 5m, 2h or 1d"):
            parse_duration(bad)
