"""time_features(): the time inputs training and serving share."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from linborg.timefeatures import TIME_FEATURES, time_features

MONDAY = "2026-01-05"  # a Monday in winter: New York is UTC-5
SATURDAY = "2026-01-10"
WINDOWS = ("is_morning_spike", "is_market_hours", "is_end_of_day")


def at(*stamps: str, timezone: str = "UTC") -> dict[str, np.ndarray]:
    """Return time_features of UTC timestamps given as text."""
    return time_features(pd.to_datetime(list(stamps), utc=True), timezone=timezone)


def one(stamp: str, timezone: str = "UTC") -> dict[str, float]:
    return {k: float(v[0]) for k, v in at(stamp, timezone=timezone).items()}


def test_returns_exactly_the_time_features_as_float32_arrays():
    stamps = pd.date_range(f"{MONDAY} 00:00", periods=37, freq="5min", tz="UTC")
    out = time_features(stamps)
    assert tuple(out) == TIME_FEATURES
    for name, values in out.items():
        assert isinstance(values, np.ndarray), name
        assert values.dtype == np.float32, name
        assert values.shape == (37,), name
        assert np.isfinite(values).all(), name


def test_time_feature_names():
    assert len(TIME_FEATURES) == len(set(TIME_FEATURES)) == 10
    assert {"hour_of_day", "day_of_week", "is_weekend", *WINDOWS} <= set(TIME_FEATURES)


def test_empty_input_gives_empty_arrays():
    out = time_features(pd.DatetimeIndex([], tz="UTC"))
    assert tuple(out) == TIME_FEATURES
    assert all(v.shape == (0,) and v.dtype == np.float32 for v in out.values())


def test_monday_10_utc_is_market_hours():
    f = one(f"{MONDAY} 10:00")
    assert f["hour_of_day"] == 10.0
    assert f["day_of_week"] == 0.0
    assert f["is_weekend"] == 0.0
    assert (f["is_morning_spike"], f["is_market_hours"], f["is_end_of_day"]) == (0, 1, 0)


def test_weekday_08_is_morning_spike():
    f = one("2026-01-07 08:00")  # Wednesday
    assert f["day_of_week"] == 2.0
    assert (f["is_morning_spike"], f["is_market_hours"], f["is_end_of_day"]) == (1, 0, 0)


def test_weekday_17_is_end_of_day():
    f = one("2026-01-09 17:00")  # Friday
    assert f["day_of_week"] == 4.0
    assert (f["is_morning_spike"], f["is_market_hours"], f["is_end_of_day"]) == (0, 0, 1)


@pytest.mark.parametrize(
    "clock, expected",
    [
        ("07:25", (0, 0, 0)),
        ("07:30", (1, 0, 0)),
        ("09:25", (1, 0, 0)),
        ("09:30", (0, 1, 0)),
        ("15:55", (0, 1, 0)),
        ("16:00", (0, 0, 1)),
        ("18:55", (0, 0, 1)),
        ("19:00", (0, 0, 0)),
        ("03:00", (0, 0, 0)),
    ],
)
def test_window_edges_start_inclusive_end_exclusive(clock, expected):
    f = one(f"{MONDAY} {clock}")
    assert tuple(f[w] for w in WINDOWS) == expected


def test_weekend_has_no_business_windows():
    stamps = pd.date_range(f"{SATURDAY} 00:00", periods=2 * 288, freq="5min", tz="UTC")
    out = time_features(stamps)
    assert (out["is_weekend"] == 1).all()
    assert set(np.unique(out["day_of_week"])) == {5.0, 6.0}
    for w in WINDOWS:
        assert (out[w] == 0).all(), w


def test_hour_of_day_has_minutes_and_cyclic_encodings_are_right():
    f = one(f"{MONDAY} 09:45")
    assert f["hour_of_day"] == pytest.approx(9.75)
    six = one(f"{MONDAY} 06:00")
    assert six["hour_sin"] == pytest.approx(1.0, abs=1e-6)
    assert six["hour_cos"] == pytest.approx(0.0, abs=1e-6)
    midnight = one(f"{MONDAY} 00:00")  # start of the week
    assert (midnight["week_sin"], midnight["week_cos"]) == pytest.approx((0.0, 1.0), abs=1e-6)
    thursday_noon = one("2026-01-08 12:00")  # half-way through the week
    assert thursday_noon["week_cos"] == pytest.approx(-1.0, abs=1e-6)


def test_full_week_covers_each_weekday_equally():
    stamps = pd.date_range(f"{MONDAY} 00:00", periods=7 * 288, freq="5min", tz="UTC")
    out = time_features(stamps)
    counts = np.bincount(out["day_of_week"].astype(int))
    assert counts.tolist() == [288] * 7
    assert out["is_weekend"].sum() == 2 * 288
    # Weekday windows: 2 h + 6.5 h + 3 h a day, five days.
    assert out["is_morning_spike"].sum() == 5 * 24
    assert out["is_market_hours"].sum() == 5 * 78
    assert out["is_end_of_day"].sum() == 5 * 36


def test_timezone_shifts_the_windows():
    # 14:00 UTC on a winter Monday is 09:00 in New York.
    utc = one(f"{MONDAY} 14:00")
    ny = one(f"{MONDAY} 14:00", timezone="America/New_York")
    assert (utc["is_morning_spike"], utc["is_market_hours"]) == (0, 1)
    assert (ny["is_morning_spike"], ny["is_market_hours"]) == (1, 0)
    assert ny["hour_of_day"] == 9.0


def test_timezone_follows_daylight_saving():
    # 13:30 UTC is 08:30 in New York in January (EST) and 09:30 in July (EDT).
    winter = one(f"{MONDAY} 13:30", timezone="America/New_York")
    summer = one("2026-07-06 13:30", timezone="America/New_York")
    assert (winter["is_morning_spike"], winter["is_market_hours"]) == (1, 0)
    assert (summer["is_morning_spike"], summer["is_market_hours"]) == (0, 1)


def test_timezone_moves_the_weekend():
    # 03:00 UTC on Saturday is still Friday 22:00 in New York.
    utc = one(f"{SATURDAY} 03:00")
    ny = one(f"{SATURDAY} 03:00", timezone="America/New_York")
    assert (utc["is_weekend"], utc["day_of_week"]) == (1.0, 5.0)
    assert (ny["is_weekend"], ny["day_of_week"]) == (0.0, 4.0)
    assert ny["hour_of_day"] == 22.0


def test_naive_timestamps_are_taken_as_utc():
    naive = pd.date_range(f"{MONDAY} 06:00", periods=48, freq="15min")
    aware = naive.tz_localize("UTC")
    a, b = time_features(naive), time_features(aware)
    for name in TIME_FEATURES:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    ny_naive = time_features(naive, timezone="America/New_York")
    ny_aware = time_features(aware, timezone="America/New_York")
    np.testing.assert_array_equal(ny_naive["hour_of_day"], ny_aware["hour_of_day"])


def test_aware_timestamps_in_another_zone_are_converted():
    paris = pd.Series(pd.to_datetime(["2026-01-05 11:00"]).tz_localize("Europe/Paris"))
    assert float(time_features(paris)["hour_of_day"][0]) == 10.0


def test_series_index_and_strings_give_the_same_features():
    index = pd.date_range("2026-01-09 15:00", periods=300, freq="5min", tz="UTC")
    series = pd.Series(index, index=np.arange(100, 400))  # an index unrelated to order
    strings = [t.isoformat() for t in index]
    from_index, from_series = time_features(index), time_features(series)
    from_strings = time_features(strings)
    for name in TIME_FEATURES:
        np.testing.assert_array_equal(from_index[name], from_series[name], err_msg=name)
        np.testing.assert_array_equal(from_index[name], from_strings[name], err_msg=name)
