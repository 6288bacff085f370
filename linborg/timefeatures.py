"""Time features derived from timestamps: the one function training and serving both call.

The fleet's business windows (market hours, end of day, morning spike) are part of the contract
because the generator draws them, the model learns them and the dashboards explain them.
Weekdays are Monday=0 .. Sunday=6; windows apply on weekdays only.
"""

from __future__ import annotations

import math

import numpy as np

#: Business windows in local hours of the day, [start, end).
MORNING_SPIKE_HOURS = (7.5, 9.5)
MARKET_HOURS = (9.5, 16.0)
END_OF_DAY_HOURS = (16.0, 19.0)

#: Names and order of the columns ``time_features`` returns; the model's known future inputs.
TIME_FEATURES: tuple[str, ...] = (
    "hour_of_day",
    "day_of_week",
    "is_weekend",
    "hour_sin",
    "hour_cos",
    "week_sin",
    "week_cos",
    "is_morning_spike",
    "is_market_hours",
    "is_end_of_day",
)


def _in_window(hour: np.ndarray, weekday: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    return ((hour >= window[0]) & (hour < window[1]) & ~weekday).astype(np.float32)


def time_features(timestamps, timezone: str = "UTC") -> dict[str, np.ndarray]:
    """Return the time features of ``timestamps`` as float32 arrays keyed by TIME_FEATURES.

    ``timestamps`` is anything pandas reads as datetimes (naive values are taken as UTC);
    ``timezone`` is the IANA zone whose wall clock the business windows follow.
    """
    import pandas as pd  # imported here so that `import linborg` stays light

    index = pd.DatetimeIndex(pd.to_datetime(timestamps, utc=True)).tz_convert(timezone)
    hour = (index.hour + index.minute / 60.0 + index.second / 3600.0).to_numpy(np.float64)
    dow = index.dayofweek.to_numpy(np.int64)
    weekend = dow >= 5
    week_pos = (dow + hour / 24.0) / 7.0
    day_angle = 2 * math.pi * hour / 24.0
    week_angle = 2 * math.pi * week_pos
    return {
        "hour_of_day": hour.astype(np.float32),
        "day_of_week": dow.astype(np.float32),
        "is_weekend": weekend.astype(np.float32),
        "hour_sin": np.sin(day_angle).astype(np.float32),
        "hour_cos": np.cos(day_angle).astype(np.float32),
        "week_sin": np.sin(week_angle).astype(np.float32),
        "week_cos": np.cos(week_angle).astype(np.float32),
        "is_morning_spike": _in_window(hour, weekend, MORNING_SPIKE_HOURS),
        "is_market_hours": _in_window(hour, weekend, MARKET_HOURS),
        "is_end_of_day": _in_window(hour, weekend, END_OF_DAY_HOURS),
    }
